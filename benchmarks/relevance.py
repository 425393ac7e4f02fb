"""The relevance gate on planted pairs: how well a scorer separates true seed pairs from shuffled ones (AUC, keep
counts at several thresholds, per language) and how fast it scores, per scorer model and thread count.

Planted pairs are built as the self-check builds them (`planted_pairs`: a seed instruction with its own response,
and with another seed's response of the same language). Scores are not cached: each configuration is timed from
a cold start of its model. The table (Markdown) goes to stdout.

    .venv/bin/python benchmarks/relevance.py                        # the embedded scorer, 40 + 40 pairs
    .venv/bin/python benchmarks/relevance.py --threads 1,2 --size 24
    .venv/bin/python benchmarks/relevance.py --model embedded --layout chat   # SmolLM2 in its chat template
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from xinstruct.curate.relevance import RelevanceConfig, RelevanceScorer
from xinstruct.curate.seeds import load_seeds
from xinstruct.curate.selfcheck import auc, planted_pairs
from xinstruct.llm import ModelConfig, load_llm

LANGS = "fi,id,th,tr,vi,bn,hi,sw,ta,ur"
THRESHOLDS = (0.0, 0.01, 0.02, 0.025, 0.03, 0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="embedded-scorer")
    ap.add_argument("--layout", default="auto", choices=["auto", "plain", "chat"])
    ap.add_argument("--langs", default=LANGS)
    ap.add_argument("--size", type=int, default=80, help="planted pairs, half true and half shuffled")
    ap.add_argument("--threads", default="1", help="comma-separated llama.cpp thread counts")
    args = ap.parse_args()
    pairs = planted_pairs(load_seeds(), args.langs.split(","), args.size)
    print(f"{len(pairs)} planted pairs over {len({p.lang for p in pairs})} languages, scorer {args.model} "
          f"({args.layout} layout)\n")
    print("| threads | s/pair | AUC | " + " | ".join(f"kept at {t} (true / shuffled)" for t in THRESHOLDS) + " |")
    print("|---" * (3 + len(THRESHOLDS)) + "|")
    for threads in [int(t) for t in args.threads.split(",")]:
        options = {"n_threads": threads, "score_threads": threads}
        cfg = RelevanceConfig(model=ModelConfig(model=args.model, options=options), layout=args.layout)
        t0 = time.perf_counter()
        with load_llm(cfg.scorer_model()) as llm:
            gains = RelevanceScorer(cfg, llm).gains([(p.instruction or "", p.response or "", p.lang) for p in pairs])
        seconds = time.perf_counter() - t0
        by_kind: dict[str, list[float]] = defaultdict(list)
        by_lang: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for p, g in zip(pairs, gains, strict=True):
            by_kind[p.meta["planted"]].append(g.value)
            by_lang[p.lang][p.meta["planted"]].append(g.value)
        true, shuffled = by_kind["true"], by_kind["shuffled"]
        cells = [f"{sum(v >= t for v in true)} / {sum(v >= t for v in shuffled)}" for t in THRESHOLDS]
        print(f"| {threads} | {seconds / len(pairs):.2f} | {auc(true, shuffled):.3f} | " + " | ".join(cells) + " |")
    print("\nAUC per language (last configuration): " + ", ".join(
        f"{lang} {auc(v['true'], v['shuffled']):.2f}" for lang, v in sorted(by_lang.items())))


if __name__ == "__main__":
    main()
