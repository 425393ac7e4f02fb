"""Supervised fine-tuning with `trl` and `peft`: LoRA by default, full fine-tuning as an option.

    xinstruct train sft --data runs/demo --out runs/sft

Examples are prompt-completion pairs, so the loss covers the response tokens only. A run
folder holds the data it trained on, checkpoints, the adapter, the merged standalone
model (plus a GGUF for llama.cpp when the base came from one), a manifest and a loss
plot. Running the same command again resumes from the last checkpoint; a finished run is
not trained again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinstruct.execution.provenance import versions
from xinstruct.io import atomic_write, write_jsonl
from xinstruct.llm.artifacts import write_model_meta
from xinstruct.records import Reject, stable_hash
from xinstruct.train.data import Mix
from xinstruct.train.formats import ALPACA_CHAT_TEMPLATE, FORMATS, Example
from xinstruct.train.model import load_for_training, render_text


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class TrainConfig:
    """Settings shared by `train sft`, `train backward` and `train dpo`."""

    data: str = ""  # a data spec: paths or aliases joined by '+' (see xinstruct.train.data)
    alias: str | None = None  # alias file (YAML/JSON) for the names in `data`
    format: str = "chat"  # chat | alpaca | answer_in
    model: str = "embedded"  # base: 'embedded', a .gguf file or a local HF folder
    out: str = "runs/sft"
    method: str = "lora"  # lora | full
    lora: LoraSettings = field(default_factory=LoraSettings)
    max_length: int = 512  # tokens per example (prompt + completion); longer ones are truncated
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 4
    grad_accum: int = 1
    lr: float | None = None  # default: 2e-4 for LoRA, 2e-5 for full fine-tuning
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    seed: int = 0
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 5
    dtype: str = "auto"  # weights: float32 on CPU, bf16 on GPUs that have it
    bf16: bool | None = None  # bf16 mixed precision; None = on for GPUs with bf16, off on CPU
    threads: int | None = None  # torch CPU threads (default: torch's choice)
    gradient_checkpointing: bool = False  # saves activation memory for long sequences, at ~30% more compute
    merge: bool = True  # save OUT/merged: base + adapter as one standalone model
    gguf: bool = True  # also write OUT/merged/model.gguf when the base is a GGUF (llama.cpp backend)
    task: str = "sft"  # sft | backward: recorded in the model's metadata for the other commands
    model_meta: dict[str, Any] = field(default_factory=dict)  # more metadata for the saved model's xinstruct_model.json
    trainer: dict[str, Any] = field(default_factory=dict)  # any other trl SFTConfig/DPOConfig argument

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.method == "lora" else 2e-5)

    def check(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.method not in ("lora", "full"):
            raise ValueError(f"method must be 'lora' or 'full', not {self.method!r}")
        if not self.data:
            raise ValueError("no training data: pass --data (a run folder, a file, or a spec such as a+b*0.5)")


def peft_config(cfg: TrainConfig) -> Any:
    if cfg.method != "lora":
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")


def warmup_steps(cfg: TrainConfig, n_examples: int) -> int:
    """`warmup_ratio` of the run's optimizer steps, rounded down: transformers rounds up, which spends the
    first step of a 3-step run at learning rate 0."""
    per_step = cfg.batch_size * cfg.grad_accum * int(os.environ.get("WORLD_SIZE", "1"))
    total = cfg.max_steps if cfg.max_steps > 0 else math.ceil(cfg.epochs * math.ceil(n_examples / per_step))
    return int(cfg.warmup_ratio * total)


def common_args(cfg: TrainConfig, out: Path, n_examples: int) -> dict[str, Any]:
    """TrainingArguments shared by the SFT and DPO configs."""
    import torch

    bf16 = cfg.bf16 if cfg.bf16 is not None else bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    args: dict[str, Any] = dict(
        output_dir=str(out / "checkpoints"), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate(), lr_scheduler_type=cfg.scheduler,
        weight_decay=cfg.weight_decay, seed=cfg.seed, data_seed=cfg.seed, save_strategy="steps",
        save_steps=cfg.save_steps, save_total_limit=cfg.save_total_limit, logging_steps=cfg.logging_steps,
        logging_first_step=True, report_to=[], bf16=bf16, max_length=cfg.max_length,
        dataloader_num_workers=0, disable_tqdm=False,
        dataloader_pin_memory=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available(),
    )
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    args["warmup_steps"] = warmup_steps(cfg, n_examples)
    args["activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"] = \
        cfg.gradient_checkpointing
    args.update(cfg.trainer)
    return args


def run_key(cfg: TrainConfig, examples: list[Example], kind: str) -> str:
    """What a run's result depends on: settings that change training, and the exact examples."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k not in ("out", "save_steps", "save_total_limit", "logging_steps", "threads", "merge", "gguf",
                             "model_meta")}
    return stable_hash(kind, settings, [e.to_row() for e in examples])


def prepare_out(out: Path, key: str, cfg: TrainConfig, overwrite: bool) -> None:
    """A run folder belongs to one configuration: resume it, or refuse to mix another into it."""
    meta = out / "run.json"
    if meta.is_file():
        old = json.loads(meta.read_text(encoding="utf-8")).get("key")
        if old != key:
            if not overwrite:
                raise ValueError(f"{out} holds a training run with other data or settings; pass another --out, "
                                 "or --overwrite to start it again")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if not meta.is_file():
        with atomic_write(meta) as f:
            json.dump({"key": key, "config": dataclasses.asdict(cfg)}, f, indent=2, ensure_ascii=False)


def last_checkpoint(out: Path) -> str | None:
    ckpts = [p for p in (out / "checkpoints").glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)
             and (p / "trainer_state.json").is_file()]
    return str(max(ckpts, key=lambda p: int(p.name.split("-")[1]))) if ckpts else None


def write_data(out: Path, mix: Mix, extra_rejects: list[Reject]) -> None:
    write_jsonl(out / "data" / "train.jsonl", [e.to_row() for e in mix.examples])
    write_jsonl(out / "data" / "rejects.jsonl", list(mix.rejects) + extra_rejects)
    write_jsonl(out / "data" / "unsampled.jsonl", [e.to_row() for e in mix.unsampled])
    with atomic_write(out / "data" / "mix.json") as f:
        json.dump(mix.sources, f, indent=2, ensure_ascii=False)


def filter_too_long(examples: list[Example], tokenizer: Any, max_length: int) -> tuple[list[Example], list[Reject],
                                                                                       dict[str, int]]:
    """Drop examples whose prompt leaves no room for an answer; count tokens and truncations."""
    kept, rejects = [], []
    stats = {"prompt_tokens": 0, "completion_tokens": 0, "truncated": 0}
    for e in examples:
        p, c = prompt_and_completion_tokens(e, tokenizer)
        if p >= max_length - 8:
            rejects.append(Reject(stage="train-data", reason="prompt_too_long", unit="row", id=e.id, source=e.origin,
                                  detail=f"{e.origin}: the prompt alone is {p} tokens; max_length is {max_length}",
                                  record=e.to_row()))
            continue
        stats["prompt_tokens"] += p
        stats["completion_tokens"] += min(c, max_length - p)
        stats["truncated"] += p + c > max_length
        kept.append(e)
    return kept, rejects, stats


def prompt_and_completion_tokens(e: Example, tokenizer: Any) -> tuple[int, int]:
    prefix, full = render_text(tokenizer, e.prompt, e.completion)
    p = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    return p, len(tokenizer(full, add_special_tokens=False)["input_ids"]) - p


def sft_dataset(examples: list[Example]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in examples])


def build_sft_trainer(cfg: TrainConfig, model: Any, tokenizer: Any, examples: list[Example], out: Path) -> Any:
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**common_args(cfg, out, len(examples)), completion_only_loss=True, packing=False)
    return SFTTrainer(model=model, args=args, train_dataset=sft_dataset(examples), processing_class=tokenizer,
                      peft_config=peft_config(cfg))


def train_sft(cfg: TrainConfig, *, overwrite: bool = False, mix: Mix | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Train, save the adapter (LoRA) and the merged model; returns the run manifest."""
    from xinstruct.train.data import build_mix

    cfg.check()
    out = Path(cfg.out)
    mix = mix or build_mix(cfg.data, aliases=cfg.alias, fmt=cfg.format, seed=cfg.seed)
    return _train(cfg, out, mix, kind="sft", overwrite=overwrite, progress=progress)


def _train(cfg: TrainConfig, out: Path, mix: Mix, *, kind: str, overwrite: bool, progress: bool,
           trainer_fn: Any = None) -> dict[str, Any]:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    model, tok, base = load_for_training(cfg.model, cfg.dtype)
    examples, too_long, tokens = filter_too_long(mix.examples, tok, cfg.max_length)
    if not examples:
        raise ValueError(f"no training examples left: all {len(mix.examples)} prompts exceed max_length "
                         f"{cfg.max_length}")
    key = run_key(cfg, examples, kind)
    main = is_main_process()
    if main:
        prepare_out(out, key, cfg, overwrite)
        write_data(out, mix, too_long)
    manifest_path = out / "train.json"
    final = out / ("adapter" if cfg.method == "lora" else "model")
    previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    load_s = time.perf_counter() - t0
    if not (previous.get("finished") and final.is_dir()):
        build = trainer_fn or build_sft_trainer
        trainer = build(cfg, model, tok, examples, out)
        if not progress:
            trainer.args.disable_tqdm = True
        resume = last_checkpoint(out)
        t1 = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=resume)
        train_s = time.perf_counter() - t1
        trainer.save_model(str(final))  # only the main process writes
        if main:
            tok.save_pretrained(str(final))
        history = trainer.state.log_history
        trained = trainer.model
        manifest = {
            "finished": True, "kind": kind, "key": key, "base": str(base), "method": cfg.method,
            "format": cfg.format, "resumed_from": resume, "examples": len(examples), "data": mix.sources,
            "rejected": len(mix.rejects) + len(too_long), "tokens": tokens, "global_step": trainer.state.global_step,
            "epochs": trainer.state.epoch, "train_loss": result.training_loss, "seconds": {
                "load": round(load_s, 2), "train": round(train_s, 2)},
            "train_tokens_per_s": _tokens_per_s(history, train_s) if not resume else None,
            "log_history": history, "config": dataclasses.asdict(cfg),
            "versions": versions(("trl", "peft", "accelerate")),
        }
        if not main:  # under `accelerate launch` with several processes, the first one writes the results
            return manifest
        _plot_loss(history, out / "loss.png", kind)
        with atomic_write(manifest_path) as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
    else:
        manifest, trained = previous, None
    if cfg.merge and not (out / "merged" / "config.json").is_file():
        if trained is None:
            trained = _reload_trained(cfg, model, final)
        save_merged(trained, tok, out / "merged", base=base, cfg=cfg, kind=kind)
    manifest["merged"] = str(out / "merged") if cfg.merge else None
    gguf = out / "merged" / "model.gguf"
    manifest["gguf"] = str(gguf) if gguf.is_file() else None
    return manifest


def is_main_process() -> bool:
    """False in every process but the first of a multi-process (`accelerate launch`, torchrun) run."""
    return int(os.environ.get("RANK", "0")) == 0


def _tokens_per_s(history: list[dict[str, Any]], seconds: float) -> float | None:
    """Tokens trained on (prompt and completion, no padding) per second, from trl's `num_tokens` log."""
    n = max((h.get("num_tokens", 0) for h in history), default=0)
    return round(n / seconds, 1) if n and seconds > 0 else None


def _reload_trained(cfg: TrainConfig, model: Any, final: Path) -> Any:
    if cfg.method == "lora":
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(final))
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(final))


def save_merged(trained: Any, tokenizer: Any, folder: Path, *, base: Path, cfg: TrainConfig, kind: str) -> None:
    """Merge a LoRA adapter into its base and save one standalone folder (plus a GGUF when the base was one)."""
    merged = trained.merge_and_unload() if hasattr(trained, "merge_and_unload") else trained
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tok = tokenizer
    if cfg.format == "alpaca":  # the trained prompt format becomes the chat template every backend applies
        tok.chat_template = ALPACA_CHAT_TEMPLATE
    tok.save_pretrained(str(tmp))
    write_model_meta(tmp, {"task": cfg.task if kind == "sft" else kind, "format": cfg.format, "base": str(base),
                           "method": cfg.method, "trained_with": "xinstruct train " + kind,
                           "weights_sha256": files_sha256(sorted(tmp.glob("*.safetensors"))), **cfg.model_meta})
    if cfg.gguf and base.suffix == ".gguf":
        from xinstruct.train.gguf import export_gguf

        export_gguf(merged, base, tmp / "model.gguf", chat_template=getattr(tok, "chat_template", None))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def files_sha256(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                h.update(block)
    return h.hexdigest()


def _plot_loss(history: list[dict[str, Any]], path: Path, kind: str) -> None:
    pts = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    if len(pts) < 2:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"xinstruct train {kind}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

