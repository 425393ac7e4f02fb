"""Generation-stage throughput: xinstruct against the raw engine and a per-example transformers loop.

Three ways to back-translate the same N documents with the embedded SmolLM2-135M (greedy):
  (a) xinstruct   `InstructionGenerator` on the llama.cpp backend (prompt building and parsing included);
  (b) raw engine  `llama_cpp.Llama.create_chat_completion` on exactly the prompts (a) builds, in the same order;
  (c) hf loop     the model dequantised into `transformers`, one `generate` call per example, as the
                  Alpaca-style seed scripts run inference.
(a)/(b) shows what xinstruct costs over its engine; (a)/(c) what it gains over the usual script.
Model load and one short warm-up request are excluded from the timings (load is reported apart).

    .venv/bin/python benchmarks/generate.py --docs 16 --json runs/bench-generate.json
    .venv/bin/python benchmarks/generate.py --thread-sweep 1,2 --docs 4 --skip-hf
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

from xinstruct.curate.generate import GenerateConfig, InstructionGenerator
from xinstruct.llm import LLM, ChatRequest, Generation, GenerationParams, Message, ModelConfig
from xinstruct.llm.embedded import smollm2_gguf
from xinstruct.llm.llamacpp import LlamaCppLLM, batch_threads, default_threads, model_params
from xinstruct.records import Record

SAMPLE = Path(__file__).resolve().parents[1] / "src/xinstruct/data/corpus/sample.jsonl"
ENGINE_DEFAULTS = inspect.signature(LlamaCppLLM).parameters  # n_ctx, n_batch as xinstruct runs them
WARMUP: list[Message] = [{"role": "user", "content": "Say hello."}]


@dataclass
class Run:
    """One timed pass of an engine over all documents."""

    wall_s: float
    texts: list[str]
    prompt_tokens: int
    completion_tokens: int
    decode_s: float | None = None  # llama.cpp's own decode time (token-by-token phase), when known
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return len(self.texts) / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s


def load_records(path: Path, n: int) -> list[Record]:
    """N records taken round-robin across the languages of a `{"id", "lang", "text"}` JSONL file."""
    by_lang: dict[str, list[dict[str, Any]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            by_lang.setdefault(row["lang"], []).append(row)
    rows: list[dict[str, Any]] = []
    for i in range(max(map(len, by_lang.values()), default=0)):
        rows += [docs[i] for docs in by_lang.values() if i < len(docs)]
    if len(rows) < n:
        sys.exit(f"{path} has {len(rows)} documents, fewer than --docs {n}")
    return [Record(id=r["id"], doc_id=r["id"], lang=r["lang"], text=r["text"], response=r["text"]) for r in rows[:n]]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def best_of(k: int, once: Callable[[], Run]) -> Run:
    runs = [once() for _ in range(k)]
    best = min(runs, key=lambda r: r.wall_s)
    best.extra["all_wall_s"] = [round(r.wall_s, 3) for r in runs]
    return best


class Recording(LLM):
    """Passes requests through to an engine, keeping what was sent and returned (for token counts)."""

    def __init__(self, inner: LLM):
        self.inner, self.backend, self.model_id = inner, inner.backend, inner.model_id
        self.context_window = inner.context_window
        self.sent: list[ChatRequest] = []
        self.generations: list[Generation] = []

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        return self.inner.count_prompt_tokens(messages)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        gens = self.inner.generate(requests)
        self.sent += requests
        self.generations += gens
        return gens

    def close(self) -> None:
        self.inner.close()


# --- (a) xinstruct -------------------------------------------------------------------------------


def xinstruct_generator(args: argparse.Namespace) -> tuple[InstructionGenerator, Recording, float]:
    """The generation stage on the llama.cpp backend, loaded and warmed up; also returns the load time."""
    from xinstruct.llm import load_llm

    options = {"n_threads": args.threads, "n_ctx": args.n_ctx, "n_batch": args.n_batch}
    cfg = GenerateConfig(model=ModelConfig(backend="llama.cpp", options=options), max_tokens=args.max_tokens,
                         temperature=0.0)
    cfg.batch_size = args.batch_size or cfg.batch_size
    t0 = time.perf_counter()
    llm = Recording(load_llm(cfg.model))
    load_s = time.perf_counter() - t0
    llm.generate([ChatRequest(messages=WARMUP, params=GenerationParams(max_tokens=4))])
    return InstructionGenerator(cfg, llm=llm), llm, load_s


def bench_xinstruct(args: argparse.Namespace, gen: InstructionGenerator, llm: Recording,
                    records: Callable[[], list[Record]]) -> Run:
    """Calls the generator directly (no request cache), batch by batch, prompts built and answers parsed."""
    size = gen.cfg.batch_size

    def once() -> Run:
        recs, kept, rejected = records(), 0, 0
        llm.sent.clear()
        llm.generations.clear()
        t = time.perf_counter()
        for s in range(0, len(recs), size):
            k, r = gen(recs[s : s + size])
            kept, rejected = kept + len(k), rejected + len(r)
        wall = time.perf_counter() - t
        g = llm.generations
        return Run(wall, [x.text for x in g], sum(x.prompt_tokens for x in g), sum(x.completion_tokens for x in g),
                   extra={"kept": kept, "rejected": rejected, "batch_size": size})

    return best_of(args.repeat, once)


# --- (b) raw llama.cpp ---------------------------------------------------------------------------


def raw_engine(args: argparse.Namespace, threads: int) -> tuple[Any, float]:
    from llama_cpp import Llama

    t0 = time.perf_counter()
    with model_params(use_extra_bufts=False):  # as LlamaCppLLM: AMX buffers crash on Q4_1 (see llamacpp.py)
        llm = Llama(model_path=str(smollm2_gguf()), n_ctx=args.n_ctx, n_threads=threads,
                    n_threads_batch=batch_threads(threads), n_batch=args.n_batch, verbose=False)
    load_s = time.perf_counter() - t0
    llm.create_chat_completion(messages=WARMUP, max_tokens=4, temperature=0.0)
    return llm, load_s


def raw_pass(llm: Any, requests: Sequence[ChatRequest]) -> Run:
    """One sequence at a time (all the high-level API allows); the KV cache reuses shared prefixes."""
    import llama_cpp

    ctx = llm._ctx.ctx  # llama.cpp's perf counters split prompt processing from decoding
    llama_cpp.llama_perf_context_reset(ctx)
    outs = []
    t = time.perf_counter()
    for r in requests:
        p = r.params
        outs.append(llm.create_chat_completion(messages=list(r.messages), max_tokens=p.max_tokens,
                                               temperature=p.temperature, top_p=p.top_p, seed=p.seed))
    wall = time.perf_counter() - t
    perf = llama_cpp.llama_perf_context(ctx)
    return Run(wall, [o["choices"][0]["message"]["content"] or "" for o in outs],
               sum(o["usage"]["prompt_tokens"] for o in outs), sum(o["usage"]["completion_tokens"] for o in outs),
               decode_s=perf.t_eval_ms / 1000,
               extra={"decode_tokens": perf.n_eval, "prompt_eval_tokens": perf.n_p_eval,
                      "prompt_eval_s": round(perf.t_p_eval_ms / 1000, 3)})


def bench_raw(args: argparse.Namespace, requests: Sequence[ChatRequest], threads: int) -> tuple[Run, float]:
    llm, load_s = raw_engine(args, threads)
    run = best_of(args.repeat, lambda: raw_pass(llm, requests))
    llm.close()
    return run, load_s


# --- (c) per-example transformers loop -----------------------------------------------------------


def bench_hf(args: argparse.Namespace, requests: Sequence[ChatRequest]) -> tuple[Run, float]:
    import torch

    from xinstruct.llm.hf import load_causal_lm

    t0 = time.perf_counter()
    model, tok, _ = load_causal_lm(smollm2_gguf(), dtype=args.hf_dtype, device="cpu")
    load_s = time.perf_counter() - t0
    eos = {tok.eos_token_id, tok.pad_token_id}
    kw = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None, "pad_token_id": tok.pad_token_id}

    def one(messages: Sequence[Message], max_new_tokens: int) -> tuple[str, int, int]:
        enc = tok.apply_chat_template(list(messages), add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, **kw)
        n_in = enc["input_ids"].shape[1]
        ids = out[0, n_in:].tolist()
        n = next((i for i, t in enumerate(ids) if t in eos), len(ids))
        return tok.decode(ids[:n], skip_special_tokens=True), n_in, n

    one(WARMUP, 4)

    def once() -> Run:
        t = time.perf_counter()
        outs = [one(r.messages, r.params.max_tokens) for r in requests]
        wall = time.perf_counter() - t
        return Run(wall, [o[0] for o in outs], sum(o[1] for o in outs), sum(o[2] for o in outs),
                   extra={"dtype": str(model.dtype).removeprefix("torch."), "torch_threads": torch.get_num_threads()})

    return best_of(args.repeat, once), load_s


# --- report --------------------------------------------------------------------------------------


def machine_facts(args: argparse.Namespace) -> dict[str, Any]:
    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    try:
        import torch

        torch_threads: int | None = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    return {"cpu_count": os.cpu_count(), "affinity_cpus": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            "llama_threads": args.threads, "llama_threads_batch": batch_threads(args.threads),
            "torch_threads": torch_threads, "llama-cpp-python": version("llama_cpp_python"),
            "transformers": version("transformers"), "torch": version("torch")}


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[f"{c:,.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for r in [list(headers), *cells]:  # first column left-aligned, numbers right-aligned
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def thread_sweep(args: argparse.Namespace, requests: Sequence[ChatRequest], counts: list[int]) -> dict[str, Any]:
    """Raw engine with n decode threads (prompt evaluation threads as xinstruct sets them) for each n."""
    rows, out = [], {}
    for n in counts:
        run, _ = bench_raw(args, requests, n)
        log(f"{n} threads: {run.wall_s:.1f} s")
        decode = run.extra["decode_tokens"] / run.decode_s if run.decode_s else float("nan")
        prompt = run.extra["prompt_eval_tokens"] / run.extra["prompt_eval_s"] if run.extra["prompt_eval_s"] else 0.0
        out[str(n)] = {"decode_tokens_per_s": decode, "prompt_tokens_per_s": prompt, "docs_per_s": run.docs_per_s,
                       "gen_tokens_per_s": run.tokens_per_s, **asdict(run)}
        rows.append([n, batch_threads(n), decode, prompt, run.docs_per_s, run.tokens_per_s])
    print(f"\nraw llama.cpp thread sweep ({len(requests)} docs, best of {args.repeat}; decode and prompt rates "
          "from llama.cpp's perf counters)")
    print_table(["threads", "batch thr", "decode tok/s", "prompt tok/s", "docs/s", "gen tok/s"], rows)
    return out


def compare(args: argparse.Namespace, records: Callable[[], list[Record]], requests: Sequence[ChatRequest],
            xinstruct: tuple[InstructionGenerator, Recording, float]) -> dict[str, Any]:
    """Runs (a), (b) and (c) one after the other, prints the table and returns the figures."""
    gen, llm, load_s = xinstruct
    runs = {"xinstruct": (bench_xinstruct(args, gen, llm, records), load_s)}
    if llm.sent != list(requests):
        log("warning: xinstruct sent other prompts than the ones given to the other engines")
    gen.close()  # one engine in memory at a time
    log(f"(a) xinstruct: {runs['xinstruct'][0].wall_s:.1f} s")
    runs["raw llama.cpp"] = bench_raw(args, requests, args.threads)
    log(f"(b) raw llama.cpp: {runs['raw llama.cpp'][0].wall_s:.1f} s")
    if not args.skip_hf:
        runs["hf per-example"] = bench_hf(args, requests)
        log(f"(c) hf per-example: {runs['hf per-example'][0].wall_s:.1f} s")
    print(f"\ngeneration stage, {args.docs} docs, best of {args.repeat} (load and warm-up excluded)")
    print_table(["engine", "load s", "wall s", "docs/s", "gen tok/s", "gen tokens", "prompt tokens"],
                [[name, load, r.wall_s, r.docs_per_s, r.tokens_per_s, r.completion_tokens, r.prompt_tokens]
                 for name, (r, load) in runs.items()])
    b = runs["raw llama.cpp"][0]
    print(f"raw llama.cpp split (perf counters): prompt evaluation {b.extra['prompt_eval_s']:.1f} s for "
          f"{b.extra['prompt_eval_tokens']} tokens (the rest reused from the KV cache), decoding "
          f"{b.decode_s:.1f} s for {b.extra['decode_tokens']} tokens")
    a = runs["xinstruct"][0]
    ratios = {"a/b": a.docs_per_s / runs["raw llama.cpp"][0].docs_per_s}
    print(f"\ndocs/s ratio xinstruct / raw llama.cpp: {ratios['a/b']:.2f}")
    if "hf per-example" in runs:
        ratios["a/c"] = a.docs_per_s / runs["hf per-example"][0].docs_per_s
        print(f"docs/s ratio xinstruct / hf per-example: {ratios['a/c']:.2f}")
    same = {name: sum(x == y for x, y in zip(a.texts, r.texts, strict=True))
            for name, (r, _) in runs.items() if r is not a}
    print(f"xinstruct parsed {a.extra['kept']} instructions, rejected {a.extra['rejected']}; texts identical "
          "to xinstruct's: " + ", ".join(f"{name} {n}/{len(a.texts)}" for name, n in same.items()))
    engines = {name: {"load_s": load, "docs_per_s": r.docs_per_s, "gen_tokens_per_s": r.tokens_per_s, **asdict(r)}
               for name, (r, load) in runs.items()}
    return {"ratios": ratios, "identical_texts": same, "engines": engines}


def main(argv: Sequence[str] | None = None) -> None:
    defaults = GenerateConfig()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=16, help="documents, round-robin across languages")
    ap.add_argument("--input", type=Path, default=SAMPLE, help="JSONL with id, lang, text (default: sample corpus)")
    ap.add_argument("--batch-size", type=int, default=0, help=f"records per generator call ({defaults.batch_size})")
    ap.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    ap.add_argument("--threads", type=int, default=default_threads(), help="llama.cpp decode threads")
    ap.add_argument("--n-ctx", type=int, default=ENGINE_DEFAULTS["n_ctx"].default)
    ap.add_argument("--n-batch", type=int, default=ENGINE_DEFAULTS["n_batch"].default)
    ap.add_argument("--hf-dtype", default="bfloat16", help="transformers dtype for (c)")
    ap.add_argument("--skip-hf", action="store_true", help="skip (c), the transformers loop")
    ap.add_argument("--repeat", type=int, default=1, help="timed passes per engine; the best is reported")
    ap.add_argument("--thread-sweep", help="comma-separated thread counts, e.g. 1,2: raw engine only")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    facts = machine_facts(args)
    print("machine: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    print(f"model: {smollm2_gguf().name}; {args.docs} docs from {args.input}; max_tokens={args.max_tokens}, greedy")
    records = partial(load_records, args.input, args.docs)  # fresh records for every pass
    xinstruct = xinstruct_generator(args)
    # The prompts (a) sends (shots fitted to the context by its engine), in its order, for (b) and (c) unchanged.
    requests = [xinstruct[0].request(r) for r in records()]
    result: dict[str, Any] = {"machine": facts, "args": {k: str(v) for k, v in vars(args).items()}}

    if args.thread_sweep:
        xinstruct[0].close()
        result["thread_sweep"] = thread_sweep(args, requests, [int(n) for n in args.thread_sweep.split(",")])
    else:
        result.update(compare(args, records, requests, xinstruct))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
