"""Curation throughput: the generation stage of the curate job against its raw engine and the seeds' way.

For the same documents (default: the packaged sample corpus, 40 documents in 10 languages) and model (the
embedded SmolLM2-135M-Instruct, greedy), three ways to write their instructions:
  (a) xinstruct     `run_pipeline(cfg, ["generate"])` (prepare, prompts, shards, request cache, parsing) on
                    the generation engine it runs by default (see --engine), the model loaded beforehand;
  (b) raw engine    the same engine's own batched API on exactly the prompts (a) sent: transformers
                    `model.generate` on left-padded batches sorted by length, or llama.cpp's
                    `create_chat_completion` in (a)'s order (its KV cache reuses shared prefixes);
  (c) seeds' way    one `transformers.generate` call per example, as X-Instruction's inference.py runs it,
                    in fp32 and bf16: both on --probe-docs prompts spread over the prompt lengths, then the
                    faster on all of them.
Model loads and a warm-up are excluded. It also counts the prompt tokens each document costs the engine
after prefix reuse, today's (random shots: llama.cpp reuses only the system prompt) against xinstruct's
(rotated shot sets), and, unless --no-copies, the rate of `copies_seed` rejects and the candidates kept with
rotated sets from the shared pool, from per-language pools, and with random shots.
Ends with one line `ratio_vs_seeds=X ratio_vs_engine=Y` (docs/s of (a) over (c)'s faster dtype, and over (b)).

The sample corpus has 4 texts per language, so a rotated shot set serves 2 of them; on a corpus of realistic
size a set serves many. --one-language LANG measures that shape: --docs (default 40) documents, the sample
corpus's texts in LANG round after round, each numbered (serve_load.py's corpus): timings and prompt tokens
count, copies_seed and candidates repeat themselves.

    .venv/bin/python benchmarks/curate.py
    .venv/bin/python benchmarks/curate.py --engine llama.cpp --no-copies
    .venv/bin/python benchmarks/curate.py --one-language fi --docs 40 --no-copies
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import generate  # benchmarks/generate.py, beside this script
from generate import print_table
from serve_load import write_corpus
from xinstruct.curate.config import CurateConfig
from xinstruct.curate.generate import GenerateConfig, InstructionGenerator
from xinstruct.curate.job import run_pipeline
from xinstruct.curate.prepare import prepare
from xinstruct.curate.readers import read_documents
from xinstruct.data import sample_corpus
from xinstruct.llm import LLM, ChatRequest, Message, ModelConfig, load_llm
from xinstruct.llm.hf_decode import common_prefix_len
from xinstruct.records import Record

WARMUP: list[Message] = [{"role": "user", "content": "Say hello."}]
OTHER_POOL = {"shared": "language", "language": "shared"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Recording(generate.Recording):
    """benchmarks/generate.py's recorder, left open when the run's model pool closes: the same engine serves
    the rotated-shot run, the random-shot run and the prompt count after them."""

    def close(self) -> None:
        pass


def records_of(corpus: Path, limit: int | None, dedup: bool = True) -> list[Record]:
    cfg = CurateConfig()
    cfg.prepare.dedup = dedup
    docs = read_documents(corpus)
    recs = [x for x in prepare(docs, None, cfg.prepare) if isinstance(x, Record)]
    return recs[:limit] if limit else recs


def chain_tokens(tok: Any, prompts: Sequence[str]) -> int:
    """Prompt tokens an engine evaluates for `prompts` sent one after another when it reuses the longest
    prefix shared with the previous prompt (llama.cpp's KV cache)."""
    total, prev = 0, []
    for p in prompts:
        ids = tok(p, add_special_tokens=False)["input_ids"]
        total += len(ids) - min(common_prefix_len([prev, ids]), len(ids) - 1) if prev else len(ids)
        prev = ids
    return total


def run_xinstruct(args: argparse.Namespace, llm: LLM, out: Path, **generate: Any) -> dict[str, Any]:
    cfg = CurateConfig(input=str(args.input), out=str(out), progress=False, report=False)
    cfg.limit = args.docs
    cfg.prepare.dedup = args.dedup
    for k, v in generate.items():
        setattr(cfg.generate, k, v)
    cfg.generate.max_tokens = args.max_tokens
    rec = Recording(llm)
    t = time.perf_counter()
    manifest = run_pipeline(cfg, ["generate"], models={"generate": rec})
    wall = time.perf_counter() - t
    reasons = manifest["rejects_by_reason"]
    n = len(rec.sent)
    return {"wall_s": manifest["stages"]["generate"]["seconds"], "job_s": wall, "docs": n, "sent": rec.sent,
            "texts": [g.text for g in rec.generations], "candidates": manifest["counts"]["candidates"],
            "copies_seed": reasons.get("generate/copies_seed", 0),
            "completion_tokens": sum(g.completion_tokens for g in rec.generations)}


def hf_model(dtype: str) -> tuple[Any, Any]:
    from xinstruct.llm.embedded import smollm2_gguf
    from xinstruct.llm.hf import load_causal_lm

    model, tok, _ = load_causal_lm(smollm2_gguf(), dtype=dtype, device="cpu")
    return model, tok


def per_example(model: Any, tok: Any, requests: Sequence[ChatRequest]) -> tuple[float, list[str]]:
    """(c): one `generate` call per example, greedy, as the seeds' inference script."""
    import torch

    eos = {tok.eos_token_id, tok.pad_token_id}
    outs = []
    t = time.perf_counter()
    for r in requests:
        enc = tok.apply_chat_template(list(r.messages), add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode():
            ids = model.generate(**enc, max_new_tokens=r.params.max_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tok.pad_token_id)[0, enc["input_ids"].shape[1]:]
        ids = ids.tolist()
        n = next((i for i, x in enumerate(ids) if x in eos), len(ids))
        outs.append(tok.decode(ids[:n], skip_special_tokens=True))
    return time.perf_counter() - t, outs


def raw_hf(model: Any, tok: Any, requests: Sequence[ChatRequest], batch_size: int) -> tuple[float, list[str]]:
    """(b) for transformers: `model.generate` on left-padded batches of prompts sorted by length."""
    import torch

    texts = [tok.apply_chat_template(list(r.messages), tokenize=False, add_generation_prompt=True) for r in requests]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    tok.padding_side = "left"
    eos = {tok.eos_token_id, tok.pad_token_id}
    outs: list[str] = [""] * len(texts)
    t = time.perf_counter()
    for s in range(0, len(order), batch_size):
        part = order[s : s + batch_size]
        enc = tok([texts[i] for i in part], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=requests[part[0]].params.max_tokens, do_sample=False,
                                 temperature=None, top_p=None, top_k=None, pad_token_id=tok.pad_token_id)
        for i, row in zip(part, gen[:, enc["input_ids"].shape[1]:].tolist(), strict=True):
            n = next((k for k, x in enumerate(row) if x in eos), len(row))
            outs[i] = tok.decode(row[:n], skip_special_tokens=True)
    return time.perf_counter() - t, outs


def raw_llamacpp(llm: Any, requests: Sequence[ChatRequest]) -> tuple[float, list[str]]:
    outs = []
    t = time.perf_counter()
    for r in requests:
        p = r.params
        o = llm.create_chat_completion(messages=list(r.messages), max_tokens=p.max_tokens, temperature=p.temperature,
                                       top_p=p.top_p, seed=p.seed)
        outs.append(o["choices"][0]["message"]["content"] or "")
    return time.perf_counter() - t, outs


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=sample_corpus(), help="corpus (default: the sample corpus)")
    ap.add_argument("--docs", type=int, default=None, help="read only the first N documents")
    ap.add_argument("--engine", default=None, help="transformers | llama.cpp (default: the generation default)")
    ap.add_argument("--max-tokens", type=int, default=GenerateConfig().max_tokens)
    ap.add_argument("--probe-docs", type=int, default=4,
                    help="prompts (spread over the lengths) on which (c) compares fp32 and bf16")
    ap.add_argument("--threads", type=int, default=None, help="threads for every engine (default: each engine's)")
    ap.add_argument("--shot-pool", default=GenerateConfig().shot_pool, choices=sorted(OTHER_POOL),
                    help="generate.shot_pool of (a) (default: the default)")
    ap.add_argument("--no-copies", action="store_true",
                    help="skip the runs with random shots and with the other shot pool (copies_seed rates)")
    ap.add_argument("--one-language", metavar="LANG",
                    help="instead of --input: --docs (default 40) numbered copies of the sample texts in LANG")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    args.dedup = not args.one_language  # the copies differ by a few characters: near duplicates by design
    with tempfile.TemporaryDirectory() as tmp:
        if args.one_language:
            args.docs = args.docs or 40
            args.input = Path(tmp) / f"{args.one_language}-{args.docs}.jsonl"
            write_corpus(args.input, args.docs, args.one_language)
        run(args)


def run(args: argparse.Namespace) -> None:
    engine = args.engine or GenerateConfig().model.for_batches().resolved_backend()
    mc = ModelConfig(backend=engine)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        if engine == "llama.cpp":
            mc.options["n_threads"] = args.threads
    print(f"machine: {os.cpu_count()} cpus ({platform.processor() or platform.machine()}); engine {engine}; "
          f"threads {args.threads or 'default'}")
    t0 = time.perf_counter()
    llm = load_llm(mc)
    load_s = time.perf_counter() - t0
    llm.generate([ChatRequest(messages=WARMUP)])
    log(f"loaded {llm.model_id} in {load_s:.1f} s")
    figures: dict[str, Any] = {"engine": engine, "model": llm.model_id, "load_s": load_s}

    with tempfile.TemporaryDirectory() as tmp:
        decoder = getattr(llm, "decoder", None)
        before = decoder.prompt_tokens_evaluated if decoder is not None else 0
        a = run_xinstruct(args, llm, Path(tmp) / "rotate", shot_pool=args.shot_pool)
        log(f"(a) xinstruct: {a['wall_s']:.1f} s for {a['docs']} docs")
        requests = a["sent"]
        evaluated = decoder.prompt_tokens_evaluated - before if decoder is not None else None
        rand = other = None
        if not args.no_copies:
            rand = run_xinstruct(args, llm, Path(tmp) / "random", shot_selection="random")
            log(f"xinstruct with random shots: {rand['wall_s']:.1f} s")
            other = run_xinstruct(args, llm, Path(tmp) / "other", shot_pool=OTHER_POOL[args.shot_pool])
            log(f"xinstruct with shot_pool={OTHER_POOL[args.shot_pool]}: {other['wall_s']:.1f} s")
    engine_dtype = str(getattr(getattr(llm, "model", None), "dtype", "float32")).removeprefix("torch.")
    llm.close()

    model, tok = hf_model("float32")
    texts = [tok.apply_chat_template(list(r.messages), tokenize=False, add_generation_prompt=True) for r in requests]
    if evaluated is None:  # llama.cpp: its prefix reuse over (a)'s order
        evaluated = chain_tokens(tok, texts)
    # Today's prompts: random shots, in input order, on llama.cpp (which reuses the shared system prompt).
    recs = records_of(args.input, args.docs, args.dedup)
    old = InstructionGenerator(GenerateConfig(shot_selection="random"), llm=llm)
    old_texts = [tok.apply_chat_template(old.messages(r, old.shots(r)), tokenize=False, add_generation_prompt=True)
                 for r in recs]
    today = chain_tokens(tok, old_texts)
    total = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)

    if engine == "transformers":  # in the dtype xinstruct's engine ran
        raw_model = model if engine_dtype == "float32" else hf_model(engine_dtype)[0]
        b_wall, b_texts = raw_hf(raw_model, tok, requests, getattr(llm, "batch_size", 16))
        del raw_model
    else:
        from llama_cpp import Llama

        from xinstruct.llm.embedded import smollm2_gguf
        from xinstruct.llm.llamacpp import batch_threads, default_threads, model_params

        with model_params(use_extra_bufts=False):
            raw = Llama(model_path=str(smollm2_gguf()), n_ctx=4096, n_threads=args.threads or default_threads(),
                        n_threads_batch=batch_threads(args.threads or default_threads()), verbose=False)
        raw.create_chat_completion(messages=WARMUP, max_tokens=4)
        b_wall, b_texts = raw_llamacpp(raw, requests)
    log(f"(b) raw {engine}: {b_wall:.1f} s")

    # The probe spans the prompt lengths (short prompts favour fp32, whose single-row decoding steps cost less;
    # long ones bf16, whose prompt evaluation is faster where the CPU has AVX512-BF16/AMX).
    by_len = sorted(range(n_req := len(requests)), key=lambda i: len(texts[i]))
    probe = [requests[by_len[round(j * (n_req - 1) / max(1, args.probe_docs - 1))]]
             for j in range(min(args.probe_docs, n_req))]
    probes = {"float32": per_example(model, tok, probe)[0]}
    bf16, _ = hf_model("bfloat16")
    probes["bfloat16"] = per_example(bf16, tok, probe)[0]
    del bf16
    best = min(probes, key=probes.get)  # type: ignore[arg-type]
    log(f"(c) per-example probe on {len(probe)} docs: " + ", ".join(f"{k} {v:.1f} s" for k, v in probes.items()))
    seeds_model = model if best == "float32" else hf_model("bfloat16")[0]
    c_wall, c_texts = per_example(seeds_model, tok, requests)
    log(f"(c) per-example {best}: {c_wall:.1f} s")

    n = len(requests)
    rows = [["(a) xinstruct", a["wall_s"], n / a["wall_s"], a["completion_tokens"] / a["wall_s"], evaluated / n],
            [f"(b) raw {engine}", b_wall, n / b_wall, None, None],
            [f"(c) seeds' loop, {best}", c_wall, n / c_wall, None, total / n]]
    print(f"\ngeneration stage, {n} docs of {args.input.name}, greedy, max_tokens={args.max_tokens}; "
          f"load and warm-up excluded")
    print_table(["way", "wall s", "docs/s", "gen tok/s", "prompt tok/doc evaluated"],
                [[c if c is not None else "" for c in r] for r in rows])
    print(f"(c) fp32 vs bf16 on {len(probe)} docs: " + ", ".join(f"{k} {v:.1f} s" for k, v in probes.items()))
    print(f"prompt tokens per document: {total / n:.0f} in all; evaluated after prefix reuse: xinstruct "
          f"{evaluated / n:.0f}, today's random shots on llama.cpp {today / n:.0f} ({evaluated / today:.0%} of today)")
    same_b = sum(x == y for x, y in zip(a["texts"], b_texts, strict=True))
    same_c = sum(x == y for x, y in zip(a["texts"], c_texts, strict=True))
    print(f"answers identical to xinstruct's: raw engine {same_b}/{n}, seeds' loop {same_c}/{n}")
    if rand is not None and other is not None:
        print("shots            copies_seed  candidates  wall s")
        for name, r in ((f"rotated, {args.shot_pool}", a), (f"rotated, {OTHER_POOL[args.shot_pool]}", other),
                        ("random", rand)):
            print(f"{name:<16} {r['copies_seed']:>4}/{n} {r['copies_seed'] / n:4.0%}  {r['candidates']:>10}  "
                  f"{r['wall_s']:6.1f}")
    ratio_seeds, ratio_engine = c_wall / a["wall_s"], b_wall / a["wall_s"]
    figures.update(docs=n, xinstruct_s=a["wall_s"], raw_s=b_wall, seeds_s=c_wall, seeds_dtype=best, probes=probes,
                   prompt_tokens_per_doc=total / n, evaluated_per_doc=evaluated / n, today_per_doc=today / n,
                   shot_pool=args.shot_pool, copies_rotate=a["copies_seed"], candidates=a["candidates"],
                   copies_random=rand and rand["copies_seed"], candidates_random=rand and rand["candidates"],
                   copies_other_pool=other and other["copies_seed"],
                   candidates_other_pool=other and other["candidates"],
                   ratio_vs_seeds=ratio_seeds, ratio_vs_engine=ratio_engine)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(f"ratio_vs_seeds={ratio_seeds:.2f} ratio_vs_engine={ratio_engine:.2f}")


if __name__ == "__main__":
    main()
