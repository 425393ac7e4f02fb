"""Training throughput: LoRA SFT of the embedded SmolLM2-135M on CPU, tokens/s per setting.

The examples are the packaged seed pairs (English instruction, native response; ten
languages) in the model's chat template, responses cut to --response-chars so that the
sequence length is controlled. Each setting loads the model fresh, runs --warmup steps
that are not timed, then --steps timed steps; tokens are the prompt and completion
tokens trained on (no padding), as trl counts them.

    .venv/bin/python benchmarks/train.py                       # fp32 vs bf16 autocast, LoRA r=16
    .venv/bin/python benchmarks/train.py --settings fp32 --steps 10 --json runs/bench-train.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from xinstruct.curate.seeds import load_seeds
from xinstruct.train.formats import render
from xinstruct.train.model import load_for_training
from xinstruct.train.sft import TrainConfig, build_sft_trainer

SETTINGS: dict[str, dict[str, Any]] = {
    "fp32": {"bf16": False},
    "bf16": {"bf16": True},  # bf16 autocast over fp32 weights
    "fp32+ckpt": {"bf16": False, "gradient_checkpointing": True},
    "fp32-r8": {"bf16": False, "lora": {"r": 8}},
}


class StepTimer(TrainerCallback):
    def __init__(self, warmup: int):
        self.warmup, self.t0, self.tokens0 = warmup, 0.0, 0.0
        self.seconds = self.tokens = 0.0

    def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
        if state.global_step == self.warmup:
            self.t0, self.tokens0 = time.perf_counter(), getattr(state, "num_input_tokens_seen", 0)

    def on_train_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
        self.seconds = time.perf_counter() - self.t0


def run(name: str, overrides: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    seeds = load_seeds()
    examples = [render(s.instruction, s.response[: args.response_chars], "chat", lang=s.lang, rid=str(i))
                for i, s in enumerate(seeds)]
    lora = overrides.pop("lora", {})
    cfg = TrainConfig(data="seeds", max_steps=args.warmup + args.steps, batch_size=args.batch_size,
                      max_length=args.max_length, logging_steps=1, save_steps=10**6, seed=0,
                      **overrides)
    for k, v in lora.items():
        setattr(cfg.lora, k, v)
    t0 = time.perf_counter()
    model, tok, _ = load_for_training("embedded")
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_sft_trainer(cfg, model, tok, examples, Path(tmp))
        trainer.args.disable_tqdm = True
        timer = StepTimer(args.warmup)
        trainer.add_callback(timer)
        trainer.train()
        logs = [h for h in trainer.state.log_history if "num_tokens" in h and "loss" in h]
    # trl logs the running token count at every step (logging_steps=1): take the timed steps' share.
    by_step = {h["step"]: float(h["num_tokens"]) for h in logs}
    tokens = by_step[args.warmup + args.steps] - by_step.get(args.warmup, 0.0)
    return {"setting": name, "load_s": round(load_s, 1), "steps": args.steps,
            "s_per_step": round(timer.seconds / args.steps, 2), "tokens": int(tokens),
            "tokens_per_s": round(tokens / timer.seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="fp32,bf16", help=f"comma-separated, from {', '.join(SETTINGS)}")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--response-chars", type=int, default=400)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    rows = [run(n, dict(SETTINGS[n]), args) for n in args.settings.split(",")]
    print(f"LoRA SFT, SmolLM2-135M-Instruct (dequantised GGUF), batch {args.batch_size}, max_length "
          f"{args.max_length}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"torch {metadata.version('torch')}, trl {metadata.version('trl')}")
    print(f"{'setting':<12}{'s/step':>8}{'tokens/s':>10}{'tokens':>8}{'load s':>8}")
    for r in rows:
        print(f"{r['setting']:<12}{r['s_per_step']:>8}{r['tokens_per_s']:>10}{r['tokens']:>8}{r['load_s']:>8}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
