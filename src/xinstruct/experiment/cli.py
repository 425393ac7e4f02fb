"""`xinstruct experiment RECIPE`: base vs arms, trained alike and evaluated alike, in one table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """\
examples:
  xinstruct experiment demo                                # the packaged CPU-sized recipe (after make demo)
  xinstruct experiment recipe.yaml --out runs/exp-sw
  xinstruct experiment recipe.yaml --set train.max_steps=200 --set eval.limit=20
  xinstruct experiment recipe.yaml --report-only           # rewrite results.md/json/png from what is there

A killed experiment resumes when the same command runs again: finished steps are skipped (experiment.json),
a trained arm is not trained again and an answered question is not answered again.
"""

RECIPE_HELP = """\
recipe (YAML):
  name: sw                               base: embedded | a .gguf | a HF folder
  arms: {seeds: {data: seeds}, curated: {data: runs/demo}, mix: {data: "runs/demo+seeds*0.5", answer_lang: sw}}
  train: {max_steps: 24, lr: 2.0e-4}     train sft's settings, one budget for every arm
  eval: {lang: sw, answer_lang: sw, limit: 8, judge: {model: embedded},
         benchmarks: {xcopa: {task: xcopa, data: packaged}}}
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("experiment", help="base vs arms: train each arm alike, evaluate all alike, one table",
                       description="Train the base model on each arm's data with one shared budget, then answer the "
                                   "question sets (native, and English asked with 'Answer in <language>.'), check "
                                   "language fidelity, judge each arm against the base in both orders and score "
                                   "the benchmarks; writes OUT/results.md, results.json and results.png.\n\n"
                                   + RECIPE_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    x.add_argument("recipe", help="a recipe YAML file, or a packaged recipe's name (demo)")
    x.add_argument("--out", help="the experiment's folder, instead of the recipe's `out`")
    x.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting by dotted path")
    x.add_argument("--overwrite", action="store_true", help="retrain an arm whose run folder holds other settings")
    x.add_argument("--report-only", action="store_true", help="only rewrite the results from finished steps")
    x.add_argument("--no-progress", action="store_true")
    x.set_defaults(func=cmd_experiment)


def cmd_experiment(args: argparse.Namespace) -> int:
    from xinstruct.experiment import load_recipe, run_experiment

    overrides = list(args.set) + ([f"out={json.dumps(args.out)}"] if args.out else []) + (
        ["progress=false"] if args.no_progress else [])
    cfg = load_recipe(args.recipe, overrides)
    from xinstruct.experiment.results import table

    res = run_experiment(cfg, overwrite=args.overwrite, only_report=args.report_only)
    out = Path(cfg.out)
    print(table(res, out))
    print(f"wrote {out / 'results.md'}, results.json, results.png ({len(res['rows'])} models)")
    return 0
