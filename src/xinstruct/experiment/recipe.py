"""An experiment's recipe: the base, the arms, the shared training budget and the evaluation.

    name: sw-demo
    base: embedded                     # as `train sft --model` takes it: embedded, a .gguf, a HF folder
    arms:                              # name -> training data (a `train sft --data` spec), in this order
      seeds: {data: seeds}
      curated: {data: runs/demo}
      mixed: {data: "runs/demo+seeds*0.5", answer_lang: sw}
    train: {max_steps: 24, lr: 2.0e-4}  # train sft's settings, the same for every arm
    eval:
      lang: sw,tr                      # native questions in these languages
      answer_lang: sw,tr               # English questions, "Answer in <language>." (default: `lang`)
      limit: 4                         # questions per language
      judge: {model: embedded}
      benchmarks:
        xcopa: {task: xcopa, data: packaged}

An arm string is its data (`seeds: seeds`). Unknown keys are errors naming their path.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from xinstruct.config import from_dict, load_config
from xinstruct.evaluate.infer import answer_langs, parse_langs
from xinstruct.evaluate.questions import PACKAGED
from xinstruct.llm import ModelConfig
from xinstruct.train.sft import TrainConfig

BASE = "base"  # the base model's folder and row name
PACKAGED_RECIPES = "xinstruct.data.recipes"
BENCHMARK_TASKS = ("xcopa", "xnli", "xstorycloze", "pawsx")


@dataclass
class ArmConfig:
    data: str = ""  # a `train sft --data` spec
    alias: str | None = None  # its alias file (default: the recipe's)
    answer_lang: str | None = None  # the cross-lingual setting's answer languages for this arm (default: eval's)


@dataclass
class BenchmarkConfig:
    task: str = "xcopa"  # xcopa | xnli | xstorycloze | pawsx
    data: str = PACKAGED  # as `eval mc --data`; "packaged": the XCOPA-format fixture that ships with xinstruct
    lang: str | None = None
    shots: int = 0
    limit: int | None = None  # the first N items of each language


@dataclass
class EvalSettings:
    questions: str = PACKAGED  # a question file or folder, as `infer --questions`
    lang: str = "sw"  # native questions in these languages (comma-separated)
    source_lang: str = "en"  # the cross-lingual setting asks this language's questions...
    answer_lang: str | None = None  # ... once per answer language (default: `lang`; "none": off)
    limit: int | None = None  # the first N questions of each language
    max_tokens: int = 256
    system: str | None = None
    batch_size: int = 8
    judge: ModelConfig = field(default_factory=ModelConfig)
    judge_template: str = "judge_pairwise"
    orders: int = 2  # both orders, so that position bias cancels
    judge_max_tokens: int = 256
    benchmarks: dict[str, Any] = field(default_factory=dict)  # name -> BenchmarkConfig settings

    def answer_languages(self) -> list[str]:
        if self.answer_lang is not None and self.answer_lang.strip().lower() in ("", "none", "off"):
            return []
        return answer_langs(self.answer_lang or self.lang)


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    out: str = "runs/experiment"
    base: str = "embedded"  # the base model, as `train sft --model` takes it
    alias: str | None = None  # alias file for the arms' data specs
    arms: dict[str, Any] = field(default_factory=dict)  # name -> ArmConfig settings (or its data spec)
    # One budget for every arm: the same optimizer steps (not epochs, which would give a larger set more steps),
    # settings and seed.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_steps=100, out=""))
    eval: EvalSettings = field(default_factory=EvalSettings)
    progress: bool = True

    def arm_configs(self) -> dict[str, ArmConfig]:
        out = {}
        for name, value in self.arms.items():
            arm = from_dict(ArmConfig, {"data": value} if isinstance(value, str) else value or {}, f"arms.{name}")
            if not arm.data:
                raise ValueError(f"arms.{name}: no training data (give `data`, a `train sft --data` spec)")
            out[str(name)] = arm
        return out

    def benchmark_configs(self) -> dict[str, BenchmarkConfig]:
        out = {}
        for name, value in self.eval.benchmarks.items():
            b = from_dict(BenchmarkConfig, value or {}, f"eval.benchmarks.{name}")
            if b.task not in BENCHMARK_TASKS:
                raise ValueError(f"eval.benchmarks.{name}.task: {b.task!r} is not one of {', '.join(BENCHMARK_TASKS)}")
            if b.data == PACKAGED and b.task != "xcopa":
                raise ValueError(f"eval.benchmarks.{name}.data: only xcopa has a packaged fixture; give a file")
            out[_check_name(str(name), "eval.benchmarks")] = b
        return out

    def arm_train_config(self, name: str, arm: ArmConfig) -> TrainConfig:
        """The shared training settings with this arm's data, the base, and its run folder."""
        return dataclasses.replace(self.train, data=arm.data, alias=arm.alias or self.alias, model=self.base,
                                   out=str(Path(self.out) / name / "train"))

    def arm_answer_languages(self, arm: ArmConfig) -> list[str]:
        return answer_langs(arm.answer_lang) if arm.answer_lang else self.eval.answer_languages()

    def check(self) -> None:
        """Errors that name the setting, before anything runs."""
        arms = self.arm_configs()
        if not arms:
            raise ValueError("the recipe has no arms: give `arms: {NAME: {data: SPEC}, ...}`")
        for name in arms:
            _check_name(name, "arms")
        if BASE in arms:
            raise ValueError(f"arms: {BASE!r} names the base model's folder; call the arm something else")
        for key in ("data", "out"):
            if getattr(self.train, key):
                raise ValueError(f"train.{key} is set by the experiment (per arm); remove it from the recipe")
        if self.train.model != TrainConfig().model and self.train.model != self.base:
            raise ValueError("train.model: the base model is the recipe's `base`; remove train.model")
        if not parse_langs(self.eval.lang):
            raise ValueError("eval.lang: give the native question languages, comma-separated")
        self.eval.answer_languages()
        for name, arm in arms.items():
            self.arm_answer_languages(arm)
            self.arm_train_config(name, arm).check()
        self.benchmark_configs()
        if not self.train.merge:
            raise ValueError("train.merge: the experiment evaluates each arm's merged model; leave merge on")
        if self.train.max_steps <= 0:
            raise ValueError("train.max_steps: give every arm the same number of optimizer steps (> 0); epochs "
                             "would train a larger data set for more steps")


def _check_name(name: str, where: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ValueError(f"{where}: {name!r} is not a usable folder name (letters, digits, _ . -)")
    return name


def packaged_recipes() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files(PACKAGED_RECIPES).iterdir()
                  if p.name.endswith(".yaml"))


def recipe_path(recipe: str) -> Path:
    """A recipe file, or the name of a packaged recipe (`demo`)."""
    p = Path(recipe)
    if p.is_file():
        return p
    if recipe in packaged_recipes():
        return Path(str(resources.files(PACKAGED_RECIPES) / f"{recipe}.yaml"))
    raise FileNotFoundError(f"recipe not found: {recipe} (neither a file nor a packaged recipe: "
                            f"{', '.join(packaged_recipes())})")


def load_recipe(recipe: str | None, overrides: list[str] | None = None) -> ExperimentConfig:
    cfg = load_config(ExperimentConfig, recipe_path(recipe) if recipe else None, overrides)
    cfg.check()
    return cfg
