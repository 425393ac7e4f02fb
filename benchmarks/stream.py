"""Chat streaming speed of each engine on the embedded SmolLM2-135M-Instruct: time to the first piece (what a
person waits before the answer starts on `xinstruct chat`), decode rate after it, and both sides of a `--compare`
page at once. The table (Markdown) goes to stdout, progress to stderr.

Every engine answers the same chat prompts greedily, after one warm-up answer; the times are medians over the
prompts. The OpenAI-compatible row runs a real llama_cpp.server on 127.0.0.1 (one thread).

    .venv/bin/python benchmarks/stream.py
    .venv/bin/python benchmarks/stream.py --engines llama.cpp-1,llama.cpp-2 --max-tokens 256
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from xinstruct.llm import ChatRequest, GenerationParams, ModelConfig, load_llm
from xinstruct.llm.embedded import smollm2_gguf
from xinstruct.llm.hf import dequantized_gguf
from xinstruct.serve.chat import ChatModel, stream_answers

ENGINES = ("llama.cpp-1", "llama.cpp-2", "transformers-bf16", "transformers-fp32", "openai-server", "compare")
PROMPTS = ["Tell me about the city of Mombasa.", "How do I cook ugali?", "Explain photosynthesis simply.",
           "Write a short poem about the Indian Ocean.", "What should a visitor see in Zanzibar?"]


def model_config(engine: str, gguf: Path, base_url: str | None = None) -> ModelConfig:
    if engine.startswith("llama.cpp"):
        return ModelConfig(str(gguf), backend="llama.cpp", options={"n_threads": int(engine.split("-")[1])})
    if engine.startswith("transformers"):
        return ModelConfig(str(dequantized_gguf(gguf)), backend="transformers", options={"dtype": engine.split("-")[1]})
    return ModelConfig("embedded", backend="openai", base_url=base_url)


def timed_stream(llm, prompt: str, params: GenerationParams) -> tuple[float, float, int]:
    """(seconds to the first piece, total seconds, completion tokens) of one streamed answer."""
    start = time.perf_counter()
    first = None
    it = llm.stream(ChatRequest(messages=[{"role": "user", "content": prompt}], params=params))
    while True:
        try:
            next(it)
            first = first if first is not None else time.perf_counter() - start
        except StopIteration as done:
            return first or 0.0, time.perf_counter() - start, done.value.completion_tokens


def start_server(gguf: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "xinstruct.llm.llamacpp", "--model", str(gguf), "--port", str(port),
                             "--n_threads", "1", "--n_ctx", "4096"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("llama_cpp.server did not start")


def row(engine: str, samples: list[tuple[float, float, int]]) -> str:
    ttft = statistics.median(s[0] for s in samples)
    rate = statistics.median(s[2] / max(s[1] - s[0], 1e-9) for s in samples)
    tokens = statistics.median(s[2] for s in samples)
    return f"| {engine} | {ttft * 1000:.0f} | {rate:.1f} | {tokens:.0f} |"


def bench_compare(gguf: Path, params: GenerationParams) -> str:
    """llama.cpp (1 thread) and transformers bf16 answering at once, as `xinstruct chat --compare` does."""
    models = [ChatModel(model_config(engine, gguf), engine) for engine in ("llama.cpp-1", "transformers-bf16")]
    try:
        list(stream_answers(models, [[{"role": "user", "content": "Hi"}]] * 2, params))  # warm-up
        per_side: list[list[tuple[float, float, int]]] = [[], []]
        for prompt in PROMPTS:
            start, first = time.perf_counter(), [None, None]
            for ev in stream_answers(models, [[{"role": "user", "content": prompt}]] * 2, params):
                now = time.perf_counter() - start
                if ev.piece and first[ev.side] is None:
                    first[ev.side] = now
                if ev.done is not None:
                    per_side[ev.side].append((first[ev.side] or 0.0, now, ev.done.completion_tokens))
        return "\n".join(row(f"compare: {name} beside the other", s)
                         for name, s in zip(("llama.cpp-1", "transformers-bf16"), per_side, strict=True))
    finally:
        for m in models:
            m.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    gguf = smollm2_gguf()
    dequantized_gguf(gguf)  # converted once, outside the timings
    params = GenerationParams(max_tokens=args.max_tokens)
    lines = ["| engine | first piece (ms) | decode (tok/s) | tokens |", "|---|---|---|---|"]
    for engine in args.engines.split(","):
        print(f"{engine} ...", file=sys.stderr, flush=True)
        if engine == "compare":
            lines.append(bench_compare(gguf, params))
            continue
        server = None
        try:
            if engine == "openai-server":
                server, url = start_server(gguf)
                llm = load_llm(model_config(engine, gguf, url))
            else:
                llm = load_llm(model_config(engine, gguf))
            timed_stream(llm, "Hi", params)  # warm-up
            lines.append(row(engine, [timed_stream(llm, p, params) for p in PROMPTS]))
            llm.close()
        finally:
            if server is not None:
                server.terminate()
                server.wait()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
