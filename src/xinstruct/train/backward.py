"""The backward model (X-Instruction, step 1): native text -> the English instruction it answers.

    xinstruct train backward --out runs/backward                  # on the packaged seed pairs
    xinstruct generate --model runs/backward/merged --backend transformers ...

Training examples are built with the generation stage's own prompt, with no shots, so the
trained model sees at generation time exactly the prompt it learned from: each text is cut to
`text_max_tokens` tokens of the base's tokenizer (recorded in the model's metadata, and the
generation stage cuts corpus texts the same way). The saved model is marked as a backward model,
and the generation stage then prompts it zero-shot by default.

`xinstruct curate` trains one on the run's seeds before generating, once: `cached_backward_model`
keeps it in the xinstruct cache folder under a key of the base's weights, the seeds and the
settings, and writes it there only when it is whole (a killed training leaves no entry).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xinstruct.curate.generate import BackwardConfig, GenerateConfig, InstructionGenerator
from xinstruct.records import Record, Reject, stable_hash
from xinstruct.rows import read_pairs
from xinstruct.train.data import Mix
from xinstruct.train.formats import Example
from xinstruct.train.sft import TrainConfig, train_sft

BACKWARD_FORMAT = "1"  # bump when the examples or the training for the same settings change
DEFAULT_TEXT_MAX_TOKENS = BackwardConfig.text_max_tokens


def backward_examples(seeds: str | None = None, records: str | None = None, template: str = "generate_instruction",
                      text_max_tokens: int | None = None,
                      first_tokens: Callable[[str, int], str | None] | None = None,
                      ) -> tuple[list[Example], list[Reject]]:
    """One example per seed pair (and per curated record, if given): prompt = the zero-shot generation
    prompt over the native text, completion = the English instruction.

    Texts are cut to `text_max_tokens` tokens where `first_tokens` tokenizes (the base's tokenizer): a cut by
    characters would leave Tamil, Thai and Bengali seeds 3-10x longer in tokens than Latin ones, too long for
    CPU training, so every seed teaches at the same cost.
    """
    gen = InstructionGenerator(GenerateConfig(template=template, seeds=seeds, num_shots=0,
                                              text_max_tokens=text_max_tokens))
    examples: list[Example] = []
    rejects: list[Reject] = []
    items: list[tuple[str, str, str, str]] = [(s.instruction, s.response, s.lang, f"seed:{i}")
                                              for i, s in enumerate(gen.seeds)]
    if records:
        recs, rejs, _ = read_pairs(Path(records))
        rejects += rejs
        items += [(r.instruction or "", r.response or r.text, r.lang, r.source or r.id) for r in recs]
    for instruction, text, lang, origin in items:
        if lang == "*":
            rejects.append(Reject(stage="train-data", reason="no_language", unit="row", source=origin,
                                  detail=f"{origin}: a seed without a language cannot teach a language's prompt",
                                  record={"instruction": instruction, "response": text}))
            continue
        rec = Record(id=stable_hash(origin), doc_id=origin, lang=lang, text=text)
        prompt = gen.messages(rec, [], first_tokens)
        examples.append(Example(prompt, [{"role": "assistant", "content": instruction}], rec.id, lang,
                                source="backward", origin=origin))
    return examples, rejects


def train_backward(cfg: TrainConfig, *, seeds: str | None = None, records: str | None = None,
                   text_max_tokens: int | None = DEFAULT_TEXT_MAX_TOKENS, overwrite: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    import random

    from xinstruct.llm.hf import first_tokens
    from xinstruct.train.model import load_tokenizer

    tok = load_tokenizer(cfg.model) if text_max_tokens else None
    examples, rejects = backward_examples(seeds, records, text_max_tokens=text_max_tokens,
                                          first_tokens=(lambda t, n: first_tokens(tok, t, n)) if tok else None)
    if not examples:
        raise ValueError("no backward training examples (no seeds or records with a language)")
    random.Random(cfg.seed).shuffle(examples)
    cfg.task, cfg.format = "backward", "chat"
    cfg.data = cfg.data or f"seeds:{seeds or 'packaged'}" + (f"+records:{records}" if records else "")
    cfg.model_meta = {**cfg.model_meta, "text_max_tokens": text_max_tokens}
    mix = Mix.of("backward", examples, rejects, seeds=seeds or "packaged", records=records)
    return train_sft(cfg, overwrite=overwrite, mix=mix, progress=progress)


def teaching_seeds(seeds: str | None) -> int:
    """How many seed pairs can teach a backward model: those that name their language (see `backward_examples`)."""
    from xinstruct.curate.seeds import load_seeds

    return sum(s.lang != "*" for s in load_seeds(seeds))


def backward_key(bcfg: BackwardConfig, seeds: str | None, template: str) -> str:
    """What a cached backward model depends on: the base's weights, the seed pairs, the prompt and the settings
    (not `train`, which only says whether to use one)."""
    from xinstruct.curate.seeds import load_seeds
    from xinstruct.llm.artifacts import file_fingerprint, weights_fingerprint
    from xinstruct.prompts import load_template
    from xinstruct.train.model import resolve_base

    base = resolve_base(bcfg.base)
    if not base.exists():
        raise FileNotFoundError(f"generate.backward.base not found: {base}")
    weights = file_fingerprint(base) if base.is_file() else weights_fingerprint(base)
    pairs = [(s.instruction, s.response, s.lang) for s in load_seeds(seeds)]
    return stable_hash(BACKWARD_FORMAT, weights, pairs, load_template(template).id, bcfg.model_settings(), n=16)


def backward_train_config(bcfg: BackwardConfig, out: Path) -> TrainConfig:
    # Prompt (system, language line, text) plus instruction: the text's tokens and about 120 more.
    return TrainConfig(model=bcfg.base, out=str(out), method=bcfg.method, epochs=bcfg.epochs,
                       max_steps=bcfg.max_steps, batch_size=bcfg.batch_size, lr=bcfg.lr, seed=bcfg.seed,
                       max_length=bcfg.text_max_tokens + 160, save_steps=10**9, logging_steps=1,
                       warmup_ratio=0.1)


def cached_backward_model(bcfg: BackwardConfig, seeds: str | None = None, template: str = "generate_instruction",
                          *, progress: bool = True) -> dict[str, Any]:
    """The backward model for these seeds and settings: from the cache, or trained now and cached. Returns its
    metadata (`xinstruct_model.json`) with `path` (the model to generate with: its GGUF when the base was one,
    else its folder), `folder` and `cached` (whether it was there already)."""
    from xinstruct.llm.artifacts import read_model_meta, write_model_meta
    from xinstruct.llm.embedded import cache_dir

    key = backward_key(bcfg, seeds, template)
    root = cache_dir() / "backward"
    final = root / key
    if not (final / "config.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(root)
        work = root / f".{key}.{os.getpid()}.partial"
        shutil.rmtree(work, ignore_errors=True)
        n_seeds = teaching_seeds(seeds)
        tcfg = backward_train_config(bcfg, work)
        print(f"xinstruct: training the generator once: a backward model (native text -> English instruction) "
              f"from {bcfg.base} on {n_seeds} seed pairs ({bcfg.method} fine-tuning, "
              + (f"{bcfg.max_steps} steps" if bcfg.max_steps > 0 else f"{bcfg.epochs:g} epoch(s)")
              + f" in batches of {bcfg.batch_size}, texts cut to {bcfg.text_max_tokens} tokens; about 8 minutes on "
              f"2 CPU cores). It is cached in {final} for later runs.", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            m = train_backward(tcfg, seeds=seeds, text_max_tokens=bcfg.text_max_tokens, progress=progress)
            merged = work / "merged"
            meta = read_model_meta(merged)
            meta["backward"] = {"key": key, "base": bcfg.base, "seeds": seeds or "packaged",
                                "settings": bcfg.model_settings(),
                                "examples": m["examples"], "rejected": m["rejected"], "steps": m["global_step"],
                                "train_loss": round(m["train_loss"], 4),
                                "seconds": round(time.perf_counter() - t0, 1)}
            write_model_meta(merged, meta)
            try:
                os.replace(merged, final)  # whole or not at all: the entry appears with its last file written
            except OSError:
                if not (final / "config.json").is_file():  # not another process that finished first
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        cached = False
    else:
        cached = True
    meta = read_model_meta(final)
    gguf = final / "model.gguf"
    return {**meta, "path": str(gguf if gguf.is_file() else final), "folder": str(final), "cached": cached}


def _remove_abandoned(root: Path) -> None:
    """Partial trainings of processes that are gone (killed midway): never an entry, only space."""
    for p in root.glob(".*.partial"):
        try:
            pid = int(p.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass


def backward_summary(meta: dict[str, Any]) -> str:
    b = meta.get("backward", {})
    return (f"generator: backward model {meta.get('folder')} ({'cached' if meta.get('cached') else 'trained now'}"
            + (f", {b['seconds']:.0f} s, loss {b['train_loss']}" if not meta.get("cached") and b else "") + ")")


def wants_backward_model(gen: GenerateConfig) -> bool:
    """Whether the run's generator is a backward model trained on its seeds (see `BackwardConfig.train`)."""
    from xinstruct.llm.embedded import EMBEDDED_LLM

    b = gen.backward
    b.validate()
    if b.train == "on":
        return True
    return (b.train == "auto" and gen.model.model == EMBEDDED_LLM and gen.model.base_url is None
            and gen.num_shots is None)


def use_backward_model(gen: GenerateConfig, *, progress: bool = True) -> dict[str, Any] | None:
    """Point `gen` at the backward model its settings ask for (trained now or from the cache), prompted zero-shot
    with texts cut as it learned; returns the model's metadata (None: the generator is prompted few-shot)."""
    import importlib.util
    import logging
    from dataclasses import replace

    if not wants_backward_model(gen):
        return None
    why_not = None
    missing = [m for m in ("torch", "transformers", "trl") if importlib.util.find_spec(m) is None]
    if missing:
        why_not = f"{', '.join(missing)} not installed (pip install 'xinstruct[hf,train]')"
    elif not teaching_seeds(gen.seeds):
        why_not = "no seed pair names its language (a seed file without `lang`, not in a folder of LANG.jsonl)"
    if why_not is not None:
        if gen.backward.train == "on":
            raise ValueError(f"generate.backward.train=on, but no backward model can be trained: {why_not}")
        logging.getLogger(__name__).warning("the generator is prompted with few-shot seed pairs instead of a "
                                            "backward model trained on them: %s", why_not)
        return None
    meta = cached_backward_model(gen.backward, gen.seeds, gen.template, progress=progress)
    from xinstruct.llm import spec

    local = spec(gen.model.resolved_backend()).runs_gguf and gen.model.base_url is None
    gen.model = replace(gen.model, model=meta["path"], base_url=None,
                        **({} if local else {"backend": "auto", "options": {}}))
    if gen.num_shots is None:
        gen.num_shots = 0
    if gen.text_max_tokens is None:
        gen.text_max_tokens = meta.get("text_max_tokens")
    return meta
