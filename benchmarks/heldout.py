"""The generator on texts it was not taught from: the backward model (the default) against few-shot prompting.

    python benchmarks/heldout.py                       # benchmarks/data/heldout.jsonl, both generators
    python benchmarks/heldout.py --input texts.jsonl --out runs/heldout

`benchmarks/data/heldout.jsonl` holds 25 short native texts written for this check (5 each in Indonesian,
Swahili, Turkish, Finnish and Vietnamese; none is a seed or a sample-corpus text). Each generator runs the whole
curate job on them with the embedded models; the script prints, per generator, how many texts end with a kept
pair (per language), the generation rejects by reason, the self-check's gate figures and wall time, and writes
`OUT/GENERATOR/kept.md`: each kept pair's instruction beside its text's first line, to be read and judged by a
person (does the instruction fit the text?). The judgement is the reader's: this script prints no quality
figure of its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
GENERATORS = {"backward": [], "few-shot": ["--num-shots", "2"]}


def run(generator: str, src: Path, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "xinstruct", "curate", "--input", str(src), "--out", str(out), "--no-progress",
           *GENERATORS[generator], *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t0
    m = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text(encoding="utf-8").splitlines() if x]
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines() if x]
    docs = Counter(json.loads(x)["lang"] for x in src.read_text(encoding="utf-8").splitlines() if x.strip())
    kept_docs = {(s["lang"], s["doc_id"]) for s in samples}
    kept = Counter(lang for lang, _ in kept_docs)
    lines = [f"# Kept pairs: {generator}", "", "| lang | instruction | text begins | fits? |",
             "| --- | --- | --- | --- |"]
    for s in samples:
        first = next((x.strip() for x in s["response"].splitlines() if x.strip()), "")[:110]
        lines.append(f"| {s['lang']} | {s['instruction']} | {first} | |")
    (out / "kept.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    gate = (m.get("selection") or {}).get("selfcheck", {}).get("relevance") or {}
    return {"generator": generator, "seconds": round(seconds, 1), "docs": sum(docs.values()),
            "docs_kept": len(kept_docs), "by_lang": {lang: f"{kept[lang]}/{n}" for lang, n in sorted(docs.items())},
            "generate_rejects": dict(Counter(r["reason"] for r in rejects if r["stage"] == "generate")),
            "gate_auc": gate.get("auc"), "gate_threshold": gate.get("threshold"),
            "planted_true_kept": f"{gate.get('true_kept')}/{gate.get('true')}",
            "planted_shuffled_kept": f"{gate.get('shuffled_kept')}/{gate.get('shuffled')}",
            "stage_seconds": {k: v.get("seconds") for k, v in m.get("stages", {}).items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", default=str(HERE / "data" / "heldout.jsonl"))
    p.add_argument("--out", default="runs/heldout")
    p.add_argument("--generators", default=",".join(GENERATORS), help="comma-separated: backward, few-shot")
    p.add_argument("--set", action="append", default=[], help="a curate setting for both runs (KEY=VALUE)")
    a = p.parse_args(argv)
    extra = [x for kv in a.set for x in ("--set", kv)]
    results = [run(g, Path(a.input), Path(a.out) / g, extra) for g in a.generators.split(",")]
    print("\n| generator | texts with a kept pair | per language | generation rejects | gate AUC | threshold "
          "| planted true kept | planted shuffled kept | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['generator']} | {r['docs_kept']}/{r['docs']} | "
              + ", ".join(f"{k} {v}" for k, v in r["by_lang"].items())
              + f" | {r['generate_rejects']} | {r['gate_auc']} | {r['gate_threshold']} | {r['planted_true_kept']} "
              f"| {r['planted_shuffled_kept']} | {r['seconds']} |")
    for r in results:
        print(f"{r['generator']}: stage seconds {r['stage_seconds']}; kept pairs to read in "
              f"{Path(a.out) / r['generator'] / 'kept.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
