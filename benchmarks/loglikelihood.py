"""Multiple-choice scoring speed and agreement: xinstruct's backends against lm-evaluation-harness on the
same file and model (default: the packaged XCOPA-format fixture and the embedded SmolLM2-135M-Instruct).

Each engine runs `xinstruct.evaluate.multiple_choice.run_multiple_choice` in a fresh folder (no resume), so
its time includes loading the model. The table (Markdown) goes to stdout, progress to stderr.

    .venv/bin/python benchmarks/loglikelihood.py
    .venv/bin/python benchmarks/loglikelihood.py --engines transformers-fp32,llama.cpp-1 --data xcopa_sw.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from xinstruct.evaluate.multiple_choice import MCConfig, packaged_fixture, run_multiple_choice
from xinstruct.llm import ModelConfig
from xinstruct.llm.embedded import smollm2_gguf
from xinstruct.llm.hf import dequantized_gguf

ENGINES = ("transformers-fp32", "transformers-bf16", "llama.cpp-1", "llama.cpp-2", "lm-eval")


def config(engine: str, data: str, gguf: Path, out: Path) -> MCConfig:
    if engine.startswith("transformers"):
        model = ModelConfig(str(dequantized_gguf(gguf)), backend="transformers",
                            options={"dtype": engine.split("-")[1]})
    elif engine.startswith("llama.cpp"):
        model = ModelConfig(str(gguf), backend="llama.cpp", options={"n_threads": int(engine.split("-")[1])})
    else:
        model = ModelConfig(str(dequantized_gguf(gguf)), backend="transformers")
    return MCConfig(task="xcopa", data=data, out=str(out), model=model,
                    engine="lm-eval" if engine == "lm-eval" else "xinstruct")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(packaged_fixture()))
    ap.add_argument("--engines", default=",".join(ENGINES))
    args = ap.parse_args()
    gguf = smollm2_gguf()
    dequantized_gguf(gguf)  # converted once, outside the timings
    rows, preds = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            print(f"{engine} ...", file=sys.stderr, flush=True)
            out = Path(tmp) / engine
            t0 = time.perf_counter()
            res = run_multiple_choice(config(engine, args.data, gguf, out))
            seconds = time.perf_counter() - t0
            preds[engine] = {r["id"]: r["pred"] for r in map(json.loads, (out / "predictions.jsonl").open())}
            rows.append((engine, res["overall"]["n"], res["overall"]["acc"], res["overall"].get("acc_norm"), seconds))
    first = rows[0][0]
    print(f"| engine | items | acc | acc_norm | seconds (incl. load) | items/s | same prediction as {first} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for engine, n, acc, acc_norm, s in rows:
        same = sum(preds[engine].get(k) == v for k, v in preds[first].items())
        print(f"| {engine} | {n} | {acc:.2f} | {acc_norm:.2f} | {s:.1f} | {n / s:.2f} | {same}/{len(preds[first])} |")


if __name__ == "__main__":
    main()
