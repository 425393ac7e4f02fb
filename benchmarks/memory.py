"""Peak memory of the curate job against corpus size: the same job over N and 10 x N documents.

Reading, preparing, generation, the relevance gate and refinement stream through their shard files, so
memory should not grow with the corpus. Each size runs `run_pipeline(cfg, ["generate", "refine"])` in a
fresh process with a fast scripted backend (instructions made from each text's first words, judge labels
and log-probabilities computed from the prompt: no model, so the job's own memory is what is measured),
and reports the process's peak resident memory and the peak of Python's own allocations (tracemalloc).
Diversification is left out: it clusters all instructions at once and holds them by design.

    .venv/bin/python benchmarks/memory.py               # N = 1,000 documents
    .venv/bin/python benchmarks/memory.py --docs 500
Ends with one line `peak_ratio_10x=R` (peak resident memory at 10 x N over that at N).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xinstruct.data import sample_corpus
from xinstruct.io import read_jsonl
from xinstruct.llm import LLM, ChatRequest, Generation


class ScriptedLLM(LLM):
    """Answers at once: an English instruction naming the text's first words, a judge label, log-probabilities."""

    backend, model_id = "scripted", "memory-bench"
    max_batch = 1024

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        out = []
        for r in requests:
            text = r.messages[-1]["content"]
            if r.params.json_schema is not None:
                out.append(Generation(text='{"reason": "The text answers the instruction.", "score": 5}',
                                      finish_reason="stop"))
            else:
                words = [w for w in text.split() if w.isalpha()][3:7]
                out.append(Generation(text=f"Write a short text about {' and '.join(words) or 'this topic'}.",
                                      finish_reason="stop"))
        return out

    def token_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[list[float]]:
        return [[-1.0 if "Write a text." in c else -0.5] * 8 for c, _ in pairs]


def make_corpus(path: Path, n: int) -> None:
    """N documents made from the sample corpus: the words of one of its texts in a shuffled order, so each is
    in its language but no two are near duplicates (which preparation would drop)."""
    rows = list(read_jsonl(sample_corpus()))
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            row = rows[i % len(rows)]
            words = row["text"].split()
            random.Random(i).shuffle(words)
            f.write(json.dumps({"id": f"doc{i:07d}", "lang": row["lang"], "text": " ".join(words)},
                               ensure_ascii=False) + "\n")


def child(corpus: Path, out: Path, trace: bool) -> None:
    from xinstruct.curate.config import CurateConfig
    from xinstruct.curate.job import run_pipeline

    if trace:
        tracemalloc.start()
    cfg = CurateConfig(input=str(corpus), out=str(out), progress=False, report=False)
    cfg.selfcheck.enabled = False  # planted pairs are a fixed cost; left out to keep the job's own growth visible
    cfg.refine.iterations = 0
    t = time.perf_counter()
    manifest = run_pipeline(cfg, ["generate", "refine"], llm=ScriptedLLM())
    traced = tracemalloc.get_traced_memory()[1] if trace else 0
    print(json.dumps({"seconds": time.perf_counter() - t, "documents": manifest["counts"]["documents_read"],
                      "samples": manifest["counts"]["samples"],
                      "rejected": sum(manifest["counts"]["rejected"].values()),
                      "reasons": manifest["rejects_by_reason"],
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "traced_peak_mib": traced / 2**20}))


def measure(n: int, trace: bool, tmp: Path) -> dict[str, Any]:
    corpus = tmp / f"corpus-{n}.jsonl"
    make_corpus(corpus, n)
    cmd = [sys.executable, __file__, "--child", str(corpus), str(tmp / f"run-{n}-{int(trace)}")]
    if trace:
        cmd.append("--trace")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the run over {n} documents failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1000, help="N, the smaller corpus")
    ap.add_argument("--child", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), args.trace)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.docs, 10 * args.docs):
            plain, traced = measure(n, False, Path(tmp)), measure(n, True, Path(tmp))
            print(f"{n} docs: {plain['seconds']:.1f} s, peak RSS {plain['peak_rss_mib']:.0f} MiB, "
                  f"Python allocations peak {traced['traced_peak_mib']:.1f} MiB", file=sys.stderr, flush=True)
            rows.append((n, plain, traced))
    print("| documents | samples | rejects | seconds | peak RSS MiB | peak Python allocations MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, plain, traced in rows:
        print(f"| {n:,} | {plain['samples']:,} | {plain['rejected']:,} | {plain['seconds']:.1f} | "
              f"{plain['peak_rss_mib']:.0f} | {traced['traced_peak_mib']:.1f} |")
    reasons = rows[1][1]["reasons"]
    print(f"\nrejects at {rows[1][0]:,} documents: " + ", ".join(f"{k} {v:,}" for k, v in reasons.items()))
    ratio = rows[1][1]["peak_rss_mib"] / rows[0][1]["peak_rss_mib"]
    traced_ratio = rows[1][2]["traced_peak_mib"] / rows[0][2]["traced_peak_mib"]
    print(f"\npeak RSS at 10x over 1x: {ratio:.3f}; Python allocations: {traced_ratio:.3f}")
    print(f"peak_ratio_10x={ratio:.3f}")


if __name__ == "__main__":
    main()
