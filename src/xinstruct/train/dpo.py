"""Preference tuning on cross-lingual feedback (xLLMs-100): build chosen/rejected pairs, then DPO.

    xinstruct data preferences --data runs/demo --out runs/prefs     # sample, judge, pair
    xinstruct train dpo --data runs/prefs --out runs/dpo               # trl DPO with LoRA

For each English instruction the policy model samples several answers. The refinement
stage's judge scores each (instruction, answer) pair, and language ID checks that the
answer is in the language asked for: an answer in the wrong language ranks below every
answer in the right one, whatever the judge says. That is the cross-lingual feedback
signal. The dataset's own response (native web text) joins the candidates by default.
The best candidate becomes `chosen`, the worst `rejected`; prompts whose candidates all
rank alike are rejected with reason `no_preference`. Every call goes through the request
cache and finished shards are kept, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinstruct.curate.refine import PairJudge, RefineConfig
from xinstruct.execution.pool import ModelPool
from xinstruct.execution.shards import read_shards, run_sharded
from xinstruct.io import atomic_write, write_jsonl
from xinstruct.langid import default_identifier
from xinstruct.llm import LLM, ChatRequest, GenerationParams, ModelConfig
from xinstruct.records import Reject, stable_hash
from xinstruct.train.formats import Example
from xinstruct.train.sft import TrainConfig, _train, common_args, peft_config


@dataclass
class PreferenceConfig:
    data: str = ""  # a data spec (run folder, file, aliases joined by '+')
    alias: str | None = None
    format: str = "answer_in"  # prompts name the answer's language, so the feedback can check it
    out: str = "runs/prefs"
    policy: ModelConfig = field(default_factory=ModelConfig)  # samples the candidate answers
    judge: ModelConfig = field(default_factory=ModelConfig)  # scores them (the refinement judge)
    samples: int = 4  # sampled answers per prompt
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    include_reference: bool = True  # the dataset's own response is a candidate too
    min_margin: int = 1  # rank points between chosen and rejected
    min_lang_prob: float = 0.5
    seed: int = 0
    limit: int | None = None  # only the first N prompts
    shard_size: int = 16
    cache: str | None = None  # request cache; None = OUT/cache/llm.sqlite
    progress: bool = True


def _text(msgs: list[dict[str, str]] | str) -> str:
    return msgs if isinstance(msgs, str) else msgs[-1]["content"]


def _instruction(ex: Example) -> str:
    """The instruction the judge sees: the user's last message (with 'Answer in X.' when asked)."""
    if isinstance(ex.prompt, str):
        return ex.prompt
    return next(m["content"] for m in reversed(ex.prompt) if m["role"] == "user")


class PreferenceBuilder:
    def __init__(self, cfg: PreferenceConfig, policy: LLM, judge: LLM):
        self.cfg, self.policy = cfg, policy
        self.judge = PairJudge(RefineConfig(model=cfg.judge), judge)
        self.langid = default_identifier()

    def _requests(self, ex: Example) -> list[ChatRequest]:
        c = self.cfg
        msgs = ex.prompt if isinstance(ex.prompt, list) else [{"role": "user", "content": ex.prompt}]
        return [ChatRequest(tuple(msgs), GenerationParams(max_tokens=c.max_tokens, temperature=c.temperature,
                                                          top_p=c.top_p,
                                                          seed=int(stable_hash(ex.id, k, c.seed), 16) % 2**31))
                for k in range(c.samples)]

    def __call__(self, batch: Sequence[Example]) -> tuple[list[dict[str, Any]], list[Reject]]:
        c = self.cfg
        reqs = [self._requests(ex) for ex in batch]
        gens = self.policy.generate([r for rs in reqs for r in rs])
        rows, rejects = [], []
        for i, ex in enumerate(batch):
            cands = [{"text": g.text.strip(), "reference": False, "finish": g.finish_reason, "error": g.error}
                     for g in gens[i * c.samples : (i + 1) * c.samples]]
            cands = [x for x in cands if x["error"] is None and x["text"]]
            if c.include_reference:
                cands.append({"text": _text(ex.completion).strip(), "reference": True, "finish": "stop",
                              "error": None})
            if len(cands) < 2:
                rejects.append(self._reject(ex, "too_few_candidates", f"{len(cands)} usable answers"))
                continue
            instruction = _instruction(ex)
            verdicts = self.judge([(instruction, x["text"], ex.lang or "en") for x in cands])
            for x, v in zip(cands, verdicts, strict=True):
                x.pop("error")
                x["score"] = v.label.score if v.label else None
                x["reason"] = v.label.reason if v.label else (v.error.detail if v.error else "")
                ok, detected, p = (self.langid.is_language(x["text"], ex.lang, c.min_lang_prob) if ex.lang
                                   else (True, "", 1.0))
                x.update(lang=detected, lang_ok=ok, lang_prob=round(p, 3))
                # Rank: right language first, then the judge's score, then truncated answers last.
                x["rank"] = 10 * ok + (x["score"] or 0) - (x["finish"] == "length")
            scored = [x for x in cands if x["score"] is not None]
            if len(scored) < 2:
                rejects.append(self._reject(ex, "judge_unparseable", "fewer than 2 answers got a score", cands))
                continue
            best = max(scored, key=lambda x: (x["rank"], x["reference"]))
            worst = min(scored, key=lambda x: (x["rank"], x["reference"]))
            if best["rank"] - worst["rank"] < c.min_margin:
                rejects.append(self._reject(ex, "no_preference", f"candidates rank {worst['rank']}..{best['rank']}, "
                                            f"margin < {c.min_margin}", cands))
                continue
            prompt = ex.prompt if isinstance(ex.prompt, list) else [{"role": "user", "content": ex.prompt}]
            rows.append({"id": ex.id, "lang": ex.lang, "origin": ex.origin, "prompt": prompt,
                         "chosen": [{"role": "assistant", "content": best["text"]}],
                         "rejected": [{"role": "assistant", "content": worst["text"]}],
                         "chosen_rank": best["rank"], "rejected_rank": worst["rank"], "candidates": cands,
                         "policy": self.policy.model_id, "judge": self.judge.llm.model_id,
                         "judge_prompt": self.judge.template.id})
        return rows, rejects

    def _reject(self, ex: Example, reason: str, detail: str, cands: Any = None) -> Reject:
        return Reject(stage="preferences", reason=reason, detail=f"{ex.origin}: {detail}", unit="row", id=ex.id,
                      source=ex.origin, record={**ex.to_row(), "candidates": cands})


def build_preferences(cfg: PreferenceConfig, *, policy: LLM | None = None, judge: LLM | None = None
                      ) -> dict[str, Any]:
    """Write OUT/preferences.jsonl (trl's prompt/chosen/rejected format), rejects.jsonl and manifest.json."""
    from xinstruct.train.data import build_mix

    if not cfg.data:
        raise ValueError("no prompts: pass --data (a run folder, a file, or a spec such as a+b)")
    mix = build_mix(cfg.data, aliases=cfg.alias, fmt=cfg.format, seed=cfg.seed)
    examples = mix.examples[: cfg.limit] if cfg.limit else mix.examples
    out = Path(cfg.out)
    # One model serves both roles when policy and judge are the same setting (and none is given).
    pool = ModelPool.open(cfg.cache, out, by_role={"policy": policy, "judge": judge})
    t0 = time.perf_counter()
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "cache", "progress", "limit")}
    builder: PreferenceBuilder | None = None

    def step(batch: Sequence[Example]) -> tuple[list[dict[str, Any]], list[Reject]]:
        nonlocal builder
        if builder is None:  # models load only when a shard is left to do
            builder = PreferenceBuilder(cfg, pool.get(cfg.policy, "policy"), pool.get(cfg.judge, "judge"))
        return builder(batch)

    with pool:
        folder, stats = run_sharded("preferences", stable_hash(settings, [e.to_row() for e in examples]), examples,
                                    len(examples), step, cfg.shard_size, cfg, out / "work")
    rows, shard_rejects = read_shards(folder)
    rejects = [r.to_dict() for r in mix.rejects] + shard_rejects
    write_jsonl(out / "preferences.jsonl", rows)
    write_jsonl(out / "rejects.jsonl", rejects)

    def picked(row: dict[str, Any], side: str) -> dict[str, Any]:
        return next(c for c in row["candidates"] if c["text"] == row[side][0]["content"])

    manifest = {"prompts": len(examples), "pairs": len(rows), "rejected": len(rejects),
                "rejects_by_reason": dict(Counter(r["reason"] for r in rejects)),
                "chosen_reference": sum(picked(r, "chosen")["reference"] for r in rows),
                "rejected_wrong_language": sum(not picked(r, "rejected")["lang_ok"] for r in rows),
                "seconds": round(time.perf_counter() - t0, 1), "shards_resumed": stats.extra["shards_resumed"],
                "config": dataclasses.asdict(cfg)}
    with atomic_write(out / "manifest.json") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
    return manifest


# ---- DPO training -------------------------------------------------------------------------------

@dataclass
class DPOTrainConfig(TrainConfig):
    out: str = "runs/dpo"
    beta: float = 0.1
    epochs: float = 1.0
    lr: float | None = 5e-5
    max_length: int = 512


def preference_examples(path: str | Path) -> tuple[list[Example], list[Reject]]:
    """Rows with prompt/chosen/rejected (a preferences.jsonl or a folder holding one)."""
    from xinstruct.train.data import read_rows

    p = Path(path)
    if p.is_dir() and (p / "preferences.jsonl").is_file():
        p = p / "preferences.jsonl"
    examples, rejects = [], []
    for origin, row in read_rows(p):
        if isinstance(row, Reject):
            rejects.append(row)
            continue
        if not all(row.get(k) for k in ("prompt", "chosen", "rejected")):
            rejects.append(Reject(stage="train-data", reason="not_a_preference", unit="row", source=origin,
                                  detail=f"{origin}: needs prompt, chosen and rejected", record=row))
            continue
        ex = Example(row["prompt"], row["chosen"], str(row.get("id") or stable_hash(origin)), row.get("lang"),
                     source=str(path), origin=origin, meta={"rejected": row["rejected"]})
        examples.append(ex)
    return examples, rejects


def dpo_dataset(examples: list[Example]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": e.prompt, "chosen": e.completion, "rejected": e.meta["rejected"]}
                              for e in examples])


def build_dpo_trainer(cfg: DPOTrainConfig, model: Any, tokenizer: Any, examples: list[Example], out: Path) -> Any:
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**common_args(cfg, out, len(examples)), beta=cfg.beta)
    return DPOTrainer(model=model, ref_model=None, args=args, train_dataset=dpo_dataset(examples),
                      processing_class=tokenizer, peft_config=peft_config(cfg))


def train_dpo(cfg: DPOTrainConfig, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    from xinstruct.train.data import Mix

    if not cfg.data:
        raise ValueError("no preference pairs: pass --data (a `xinstruct data preferences` folder or JSONL)")
    if cfg.method not in ("lora", "full"):
        raise ValueError(f"method must be 'lora' or 'full', not {cfg.method!r}")
    examples, rejects = preference_examples(cfg.data)
    if not examples:
        raise ValueError(f"{cfg.data} holds no preference pairs")
    mix = Mix.of(cfg.data, examples, rejects)
    return _train(cfg, Path(cfg.out), mix, kind="dpo", overwrite=overwrite, progress=progress,
                  trainer_fn=build_dpo_trainer)
