"""Multiple-choice scoring speed and agreement: xinstruct's backends against lm-evaluation-harness on the
same file and model (default: the packaged XCOPA-format fixture, all its languages, and the embedded
SmolLM2-135M-Instruct, dequantised for transformers and lm-eval).

Each engine runs `xinstruct.evaluate.multiple_choice.run_multiple_choice` (fresh folder, no resume) in a
fresh Python process, as `xinstruct eval mc` runs it:
- total: from that process's start to the result (imports, model load, scoring, files), both engines alike
  (lm-eval's engine loads and scores in a subprocess of its own);
- load: the model load alone; scoring: the rest of `run_multiple_choice`. For lm-eval, whose subprocess
  cannot be split, both are measured in the child afterwards: its HF model (`HFLM`, the same folder, dtype
  and batch size) loaded, then its `loglikelihood` alone on the same requests (no task building): a
  lower bound of what lm-eval spends besides the load; scoring CPU: the same in CPU seconds (all threads).
Each time is the best of --repeat rounds (engines interleaved: other work on the machine comes and goes;
with --threads 1 the CPU seconds hardly depend on it).

The table (Markdown) goes to stdout, then whether xinstruct's transformers engines and lm-eval pick the same choice
(acc and acc_norm) for every item, `ratio_vs_lmeval_scoring=` (load excluded for both) and last
`ratio_vs_lmeval=W`: lm-eval's total over the total of the fastest xinstruct transformers engine (fp32 or bf16)
that picks the same choice as lm-eval in fp32 on every item (load included for both).

    .venv/bin/python benchmarks/loglikelihood.py
    .venv/bin/python benchmarks/loglikelihood.py --engines transformers-fp32,lm-eval --repeat 3 --shots 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENGINES = ("transformers-fp32", "transformers-bf16", "llama.cpp-1", "llama.cpp-2", "lm-eval")
CANDIDATES = ("transformers-fp32", "transformers-bf16")  # counted in the ratio where they choose as lm-eval does


def config(engine: str, data: str, shots: int, gguf: Path, out: Path):  # type: ignore[no-untyped-def]
    from xinstruct.evaluate.multiple_choice import MCConfig
    from xinstruct.llm import ModelConfig
    from xinstruct.llm.hf import dequantized_gguf

    if engine.startswith("transformers"):
        model = ModelConfig(str(dequantized_gguf(gguf)), backend="transformers",
                            options={"dtype": engine.split("-")[1]})
    elif engine.startswith("llama.cpp"):
        model = ModelConfig(str(gguf), backend="llama.cpp", options={"n_threads": int(engine.split("-")[1])})
    else:
        model = ModelConfig(str(dequantized_gguf(gguf)), backend="transformers")
    return MCConfig(task="xcopa", data=data, out=str(out), model=model, shots=shots,
                    engine="lm-eval" if engine == "lm-eval" else "xinstruct")


def child(engine: str, data: str, shots: int, out: Path, started: float) -> dict:
    """One engine's run in this (fresh) process; `started`: when the parent started it (time.time())."""
    import transformers  # noqa: F401 - imported before the clock of the load, as for lm-eval's below

    from xinstruct.evaluate import multiple_choice as mc
    from xinstruct.llm.embedded import smollm2_gguf

    cfg = config(engine, data, shots, smollm2_gguf(), out)
    load = []
    real_load = mc._load_model

    def timed_load(model):  # type: ignore[no-untyped-def]
        t, c = time.perf_counter(), time.process_time()
        got = real_load(model)
        load.append((time.perf_counter() - t, time.process_time() - c))
        return got

    mc._load_model = timed_load
    t0, c0 = time.perf_counter(), time.process_time()
    res = mc.run_multiple_choice(cfg)
    run_s, run_cpu, total = time.perf_counter() - t0, time.process_time() - c0, time.time() - started
    rows = [json.loads(line) for line in (out / "predictions.jsonl").open(encoding="utf-8")]
    got = {"n": res["overall"]["n"], "acc": res["overall"]["acc"], "acc_norm": res["overall"]["acc_norm"],
           "total": total, "preds": {r["id"]: [r["pred"], r["pred_norm"], r["loglikelihoods"]] for r in rows}}
    if engine == "lm-eval":
        got["load"], got["scoring"], got["scoring_cpu"] = lmeval_in_process(cfg)
        got["prompt_mismatches"] = res["lm_eval"]["prompt_mismatches"]
    else:
        got["load"], got["scoring"], got["scoring_cpu"] = load[0][0], run_s - load[0][0], run_cpu - load[0][1]
    return got


def lmeval_in_process(cfg) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """lm-eval's HF model: seconds to load it, and to score the run's requests with its `loglikelihood`
    (wall, CPU)."""
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from xinstruct.evaluate import multiple_choice as mc
    from xinstruct.evaluate.lmeval import hf_folder

    items, _ = mc.load_items(cfg.task, cfg.data)
    langs = mc._by_lang(items)
    pairs = []
    for its in langs.values():
        examples = mc.fewshot_examples(its, its, cfg.shots, cfg.seed, True)
        pairs += [p for it, ex in zip(its, examples, strict=True)
                  for p in mc.requests_for(it, mc.build_context(it, ex))]
    t = time.perf_counter()
    lm = HFLM(pretrained=str(hf_folder(cfg.model)), dtype="float32", batch_size=cfg.batch_size,
              device="cuda" if torch.cuda.is_available() else "cpu")  # as the lm-eval engine runs it
    load = time.perf_counter() - t
    requests = [Instance(request_type="loglikelihood", doc={}, arguments=p, idx=0) for p in pairs]
    t, c = time.perf_counter(), time.process_time()
    lm.loglikelihood(requests, disable_tqdm=True)
    return load, time.perf_counter() - t, time.process_time() - c


def run_child(engine: str, args: argparse.Namespace, out: Path) -> dict:
    result = out.with_suffix(".json")
    cmd = [sys.executable, __file__, "--child", engine, "--data", args.data, "--shots", str(args.shots),
           "--out", str(out), "--started", repr(time.time())]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    with open(result, "w", encoding="utf-8") as f:
        subprocess.run(cmd, stdout=f, check=True, env=env)
    return json.loads(result.read_text(encoding="utf-8").splitlines()[-1])


def agreement(ours: dict, ref: dict) -> tuple[int, list[str], float]:
    """(items where acc's and acc_norm's choices are the same, the others' ids, max |loglikelihood difference|)."""
    same = [i for i, (p, pn, _) in ref.items() if ours.get(i, [None, None])[:2] == [p, pn]]
    diff = max((abs(a - b) for i, (_, _, lls) in ref.items() if i in ours
                for a, b in zip(ours[i][2], lls, strict=True)), default=0.0)
    return len(same), sorted(set(ref) - set(same)), diff


def main() -> None:
    from xinstruct.evaluate.multiple_choice import packaged_fixture

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(packaged_fixture()), help="an XCOPA-format file (default: the packaged one)")
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="rounds; each time is the best of them")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS for torch in every engine (default: torch's); "
                    "1 is steadier on a machine that other work shares")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--started", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.shots, Path(args.out), args.started)))
        return

    from xinstruct.llm.embedded import smollm2_gguf
    from xinstruct.llm.hf import dequantized_gguf

    dequantized_gguf(smollm2_gguf())  # converted once, outside the timings
    engines = args.engines.split(",")
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for engine in engines:
                print(f"round {r + 1}/{args.repeat}: {engine} ...", file=sys.stderr, flush=True)
                runs[engine].append(run_child(engine, args, Path(tmp) / f"{engine}-{r}"))
    timed = ("total", "load", "scoring", "scoring_cpu")
    best = {e: {**rs[0], **{k: min(x[k] for x in rs) for k in timed}} for e, rs in runs.items()}
    ref = "lm-eval" if "lm-eval" in best else engines[0]
    threads = f"{args.threads} torch thread(s)" if args.threads else "torch's default threads"
    print(f"{Path(args.data).name}, {args.shots}-shot, {threads}, best of {args.repeat}; total: process start to "
          "result, model load included; scoring: model load excluded (lm-eval: its loglikelihood alone); "
          "scoring CPU: the CPU seconds of the scoring, all threads (with 1 thread, steadier than wall time "
          "while other work shares the machine)")
    print("| engine | items | acc | acc_norm | total s | load s | scoring s | scoring CPU s | items/s (scoring) "
          f"| same choice as {ref} |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for engine, b in best.items():
        same = agreement(b["preds"], best[ref]["preds"])[0]
        print(f"| {engine} | {b['n']} | {b['acc']:.2f} | {b['acc_norm']:.2f} | {b['total']:.1f} | {b['load']:.1f} | "
              f"{b['scoring']:.1f} | {b['scoring_cpu']:.1f} | {b['n'] / b['scoring']:.2f} | "
              f"{same}/{len(best[ref]['preds'])} |")
    if "lm-eval" not in best or not any(e in CANDIDATES for e in engines):
        return
    lm = best["lm-eval"]
    if lm["prompt_mismatches"]:
        print(f"lm-eval built other prompts for {len(lm['prompt_mismatches'])} items: {lm['prompt_mismatches'][:5]}")
    identical = []
    for engine in [e for e in engines if e in CANDIDATES]:
        same, differ, diff = agreement(best[engine]["preds"], lm["preds"])
        verdict = "identical" if not differ else f"NOT identical: {differ}"
        print(f"predictions {engine} vs lm-eval: same choice for {same}/{len(lm['preds'])} items, {verdict} "
              f"(max |loglikelihood difference| {diff:.1e})")
        if not differ:
            identical.append(engine)
    if not identical:
        print("ratio_vs_lmeval=0 (no engine chose as lm-eval did on every item)")
        return
    # The ratio counts the fastest engine whose choices equal lm-eval's (fp32) on every item: bf16 where it
    # keeps the predictions.
    fastest = min(identical, key=lambda e: best[e]["total"])
    quickest = min(identical, key=lambda e: best[e]["scoring"])
    print(f"ratio_vs_lmeval_scoring={lm['scoring'] / best[quickest]['scoring']:.2f} ({quickest}; CPU seconds: "
          f"{lm['scoring_cpu'] / best[quickest]['scoring_cpu']:.2f})")
    print(f"ratio_vs_lmeval={lm['total'] / best[fastest]['total']:.2f} ({fastest})")


if __name__ == "__main__":
    main()
