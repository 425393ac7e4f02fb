"""Running an experiment: a list of steps (train each arm, then answer, check and judge with each model), each
skipped when experiment.json records it finished under the same key.

A step's key hashes the settings it runs with and the keys of the steps it reads (an arm's answers depend on
its training), so a changed recipe redoes exactly the steps it touches. A step cut short by a kill is not
recorded; run again, it resumes through its own command (training from its last checkpoint, answers and
judgments from their shards and request cache).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinstruct.evaluate.fidelity import VERSION as FIDELITY_VERSION
from xinstruct.experiment.recipe import BASE, ArmConfig, ExperimentConfig
from xinstruct.io import atomic_write
from xinstruct.llm import ModelConfig
from xinstruct.records import stable_hash

log = logging.getLogger(__name__)

LEDGER = "experiment.json"


@dataclass
class ExpStep:
    name: str  # "seeds/train", "base/answers-xl", ...
    settings: dict[str, Any]  # what the step runs with (its key's input)
    run: Callable[[], dict[str, Any]]  # does the work; returns a short summary for the ledger
    after: tuple[str, ...] = ()  # the steps whose outputs it reads
    key: str = ""


@dataclass
class Ledger:
    """experiment.json: the recipe as run and each finished step's key and summary, written atomically after
    every step."""

    path: Path
    recipe: dict[str, Any]
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, out: Path, recipe: dict[str, Any]) -> Ledger:
        path = out / LEDGER
        steps = json.loads(path.read_text(encoding="utf-8")).get("steps", {}) if path.is_file() else {}
        return cls(path, recipe, steps)

    def done(self, step: ExpStep) -> bool:
        return self.steps.get(step.name, {}).get("key") == step.key

    def record(self, step: ExpStep, summary: dict[str, Any], seconds: float) -> None:
        self.steps[step.name] = {"key": step.key, "seconds": round(seconds, 2), **summary}
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path) as f:
            json.dump({"recipe": self.recipe, "steps": self.steps}, f, indent=2, ensure_ascii=False, default=str)


class Experiment:
    """The steps of one recipe, built up front; `run` does the unfinished ones in order."""

    def __init__(self, cfg: ExperimentConfig, *, overwrite: bool = False):
        self.cfg, self.overwrite = cfg, overwrite
        self.out = Path(cfg.out)
        self.arms = cfg.arm_configs()
        self.benchmarks = cfg.benchmark_configs()
        # the base answers every answer language any arm is evaluated in
        self.answer_langs = sorted({x for a in self.arms.values() for x in cfg.arm_answer_languages(a)})
        self.steps: list[ExpStep] = []
        self.mixes: dict[str, Any] = {}
        for name, arm in self.arms.items():
            tc = cfg.arm_train_config(name, arm)
            self.mixes[name] = mix = _read_mix(name, tc)
            data = stable_hash(json.dumps([e.to_row() for e in mix.examples], sort_keys=True, ensure_ascii=False))
            self._add(ExpStep(f"{name}/train", {**_settings(tc), "examples": data},
                              lambda n=name, a=arm: self.train(n, a)))
        for name in (BASE, *self.arms):
            self._eval_steps(name)

    # ---- building the list

    def _add(self, step: ExpStep) -> None:
        known = {s.name: s.key for s in self.steps}
        step.key = stable_hash(json.dumps(step.settings, sort_keys=True, default=str),
                               *(known[a] for a in step.after))
        self.steps.append(step)

    def _eval_steps(self, name: str) -> None:
        e = self.cfg.eval
        trained = () if name == BASE else (f"{name}/train",)
        model = {"base": self.cfg.base} if name == BASE else {}
        langs = self.answer_langs if name == BASE else self.cfg.arm_answer_languages(self.arms[name])
        common = {"questions": e.questions, "limit": e.limit, "max_tokens": e.max_tokens, "system": e.system, **model}
        answer_sets = [("answers", {**common, "lang": e.lang})]
        if langs:
            answer_sets.append(("answers-xl", {**common, "lang": e.source_lang, "answer_lang": ",".join(langs)}))
        for folder, settings in answer_sets:
            self._add(ExpStep(f"{name}/{folder}", settings, lambda n=name, f=folder, s=settings: self.answer(n, f, s),
                              after=trained))
            fid = folder.replace("answers", "fidelity")
            self._add(ExpStep(f"{name}/{fid}", {"fidelity": FIDELITY_VERSION},
                              lambda n=name, f=folder: self.fidelity(n, f), after=(f"{name}/{folder}",)))
            if name != BASE:
                judge = folder.replace("answers", "judge")
                js = {"judge": dataclasses.asdict(e.judge), "template": e.judge_template, "orders": e.orders,
                      "max_tokens": e.judge_max_tokens, "lang": ",".join(langs) if folder == "answers-xl" else None}
                self._add(ExpStep(f"{name}/{judge}", js, lambda n=name, f=folder, s=js: self.judge(n, f, s),
                                  after=(f"{name}/{folder}", f"{BASE}/{folder}")))
        for bench, b in self.benchmarks.items():
            self._add(ExpStep(f"{name}/mc-{bench}", {**dataclasses.asdict(b), **model},
                              lambda n=name, k=bench: self.mc(n, k), after=trained))

    # ---- running it

    def run(self) -> None:
        ledger = Ledger.open(self.out, _settings(self.cfg))
        ledger.write()
        todo = [s for s in self.steps if not ledger.done(s)]
        print(f"experiment {self.cfg.name}: {len(self.steps)} steps, {len(self.steps) - len(todo)} already done "
              f"({self.out / LEDGER})", flush=True)
        for i, step in enumerate(self.steps, 1):
            if ledger.done(step):
                continue
            print(f"[{i}/{len(self.steps)}] {step.name} ...", flush=True)
            t0 = time.perf_counter()
            summary = step.run()
            ledger.record(step, summary, time.perf_counter() - t0)
            print(f"[{i}/{len(self.steps)}] {step.name}: {_line(summary)} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)

    def folder(self, name: str) -> Path:
        return self.out / name

    def model(self, name: str) -> ModelConfig:
        """The model a row is evaluated with: the base, or the arm's merged model (its GGUF where the base was
        one, so that base and arms run in the same engine)."""
        if name == BASE:
            return ModelConfig(model=self.cfg.base)
        merged = self.folder(name) / "train" / "merged"
        gguf = merged / "model.gguf"
        if gguf.is_file():
            return ModelConfig(model=str(gguf))
        if (merged / "config.json").is_file():
            return ModelConfig(model=str(merged))
        raise FileNotFoundError(f"{name}: no merged model in {merged} (train.merge off?); the experiment "
                                "evaluates merged models")

    def train(self, name: str, arm: ArmConfig) -> dict[str, Any]:
        from xinstruct.train.sft import train_sft

        m = train_sft(self.cfg.arm_train_config(name, arm), overwrite=self.overwrite, mix=self.mixes[name],
                      progress=self.cfg.progress)
        _release_memory()  # the trainer's model and optimizer, before the next arm trains or an engine loads
        return {"examples": m["examples"], "steps": m["global_step"], "loss": round(m["train_loss"], 4),
                "data": {k: v.get("used") for k, v in m["data"].items()}}

    def answer(self, name: str, folder: str, settings: dict[str, Any]) -> dict[str, Any]:
        from xinstruct.evaluate.infer import InferConfig, run_infer

        s = {k: v for k, v in settings.items() if k != "base"}
        cfg = InferConfig(**s, model=self.model(name), label=name, out=str(self.folder(name) / folder),
                          batch_size=self.cfg.eval.batch_size, progress=self.cfg.progress)
        m = run_infer(cfg)
        return {"answers": m["answers"], "rejected": m["rejected"], "stopped_by_length": m["stopped_by_length"]}

    def fidelity(self, name: str, folder: str) -> dict[str, Any]:
        from xinstruct.evaluate.fidelity import FidelityConfig, run_fidelity

        res = run_fidelity(FidelityConfig(answers=str(self.folder(name) / folder),
                                          out=str(self.folder(name) / folder.replace("answers", "fidelity")),
                                          label=name, task=_task(folder)))
        return {"fidelity": res["overall"]["fidelity"], "n": res["overall"]["n"]}

    def judge(self, name: str, folder: str, s: dict[str, Any]) -> dict[str, Any]:
        from xinstruct.evaluate.judge import JudgeConfig, run_judge

        cfg = JudgeConfig(candidate=str(self.folder(name) / folder), reference=str(self.folder(BASE) / folder),
                          out=str(self.folder(name) / folder.replace("answers", "judge")), task=_task(folder),
                          judge=self.cfg.eval.judge, template=s["template"], orders=s["orders"],
                          max_tokens=s["max_tokens"], lang=s["lang"], progress=self.cfg.progress)
        o = run_judge(cfg)["overall"]
        return {k: o[k] for k in ("n", "win", "tie", "loss", "unparsed", "win_rate", "ci_low", "ci_high",
                                  "lc_win_rate")}

    def mc(self, name: str, bench: str) -> dict[str, Any]:
        from xinstruct.evaluate.multiple_choice import MCConfig, packaged_fixture, run_multiple_choice
        from xinstruct.evaluate.questions import PACKAGED

        b = self.benchmarks[bench]
        data = str(packaged_fixture()) if b.data == PACKAGED else b.data  # xcopa's (checked with the recipe)
        res = run_multiple_choice(MCConfig(task=b.task, data=data, out=str(self.folder(name) / f"mc-{bench}"),
                                           lang=b.lang, shots=b.shots, limit=b.limit, model=self.model(name),
                                           label=name))
        return {"acc": res["overall"]["acc"], "n": res["overall"]["n"]}


def _read_mix(name: str, tc: Any) -> Any:
    """An arm's training examples, read before anything runs, so that bad data fails first, naming the arm."""
    from xinstruct.train.data import build_mix

    try:
        return build_mix(tc.data, aliases=tc.alias, fmt=tc.format, seed=tc.seed)
    except (ValueError, FileNotFoundError) as e:
        raise type(e)(f"arms.{name}: {e}") from e


def _release_memory() -> None:
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _task(folder: str) -> str:
    return "questions-xl" if folder.endswith("-xl") else "questions"


def _settings(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)


def _line(summary: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in summary.items() if not isinstance(v, dict))

