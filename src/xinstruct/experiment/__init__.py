"""`xinstruct experiment RECIPE.yaml`: the paper's comparison as one command.

One base model, several *arms* (training data as `train sft` takes it: `seeds`, a curate run folder, a translated
set, a mix joined by `+`), one training budget shared by every arm, and one evaluation applied to the base and to
every arm: answers to the question sets (native questions, and English questions answered in each target
language), their language fidelity, a pairwise judge against the base in both orders, and log-likelihood
benchmarks. The results come as one table (`results.md`, `results.json`) and one picture (`results.png`).

    OUT/experiment.json    the recipe as run, and each finished step with its key (what a rerun skips)
    OUT/base/              the base model's evaluation: answers/, answers-xl/, fidelity*/, mc-NAME/
    OUT/ARM/train/         `train sft`'s run folder (adapter, merged model, train.json, loss.png)
    OUT/ARM/...            the arm's evaluation as the base's, plus judge/ and judge-xl/ against the base
    OUT/results.md|json|png

A killed experiment resumes where it stopped: a finished step is skipped (its key recorded in experiment.json),
and a step cut short resumes through its own command (training from its last checkpoint, answers and
judgments from their shards and request cache).
"""

from __future__ import annotations

from typing import Any

from xinstruct.experiment.recipe import ArmConfig, BenchmarkConfig, EvalSettings, ExperimentConfig, load_recipe

__all__ = ["ArmConfig", "BenchmarkConfig", "EvalSettings", "ExperimentConfig", "load_recipe", "run_experiment"]


def run_experiment(cfg: ExperimentConfig, *, overwrite: bool = False, only_report: bool = False) -> dict[str, Any]:
    """Run (or resume) the experiment, then write its results; returns them (as OUT/results.json)."""
    from xinstruct.experiment.results import write_results
    from xinstruct.experiment.run import Experiment

    exp = Experiment(cfg, overwrite=overwrite)
    if not only_report:
        exp.run()
    return write_results(exp)
