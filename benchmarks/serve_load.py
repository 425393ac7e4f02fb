"""How close the OpenAI-compatible backend comes to a server's capacity, in the generation stage and alone.

A stand-in server (no model; a subprocess on 127.0.0.1) answers /v1/chat/completions with a short instruction
after a fixed latency L, serving at most C requests at once (later ones queue), so it can do C/L calls/s, as a
batching server such as vLLM would at that latency. Against it run
  backend         `OpenAICompatLLM.generate` called once with N requests: the backend on its own;
  backend/batch   the same N requests in calls of `max_batch` each, one after another: the best a stage that
                  hands over `max_batch` requests and waits for them can do;
  pipeline        the generation stage of the curate job, `run_pipeline(cfg, ["generate"])`, over N documents
                  (the packaged sample corpus repeated, each copy with its own id and number so that no prompt
                  repeats and the request cache answers none; near-duplicate removal is off to keep them all),
                  timed over its LLM calls alone (the backend wrapped in a timer; the stage reads each answer
                  as it arrives, `xinstruct.llm.cache.as_ready`, so that time includes reading all but the last);
  pipeline/stage  the same run timed over the whole stage (`stages.generate.seconds` of the manifest: prompts,
                  calls, parsing, shard files): what the generation stage achieves. Preparing the corpus is
                  timed apart.
Each row gives calls/s, that rate over the capacity C/L, the most requests the server had open at once, and the
client's CPU time per call (all its threads, over the timed part; for the pipeline rows over the generation
stage; on 2 cores this, not the server, is what runs out first). The backend rows open their connections before
the timing, the pipeline starts cold. The table (Markdown) goes to stdout, progress to stderr; the last two lines
are `backend_ratio_vs_capacity=Y` (the backend row) and `ratio_vs_capacity=Z` for the pipeline/stage row (the
generation stage's calls/s over C/L; the backend row's with `--skip pipeline`).

    .venv/bin/python benchmarks/serve_load.py --latency 2
    .venv/bin/python benchmarks/serve_load.py --docs 256 --latency 0.5 --capacity 64 --max-in-flight 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

import xinstruct.execution.executors
from xinstruct.curate.config import CurateConfig
from xinstruct.curate.job import run_pipeline
from xinstruct.data import sample_corpus
from xinstruct.llm import LLM, ChatRequest, Generation, GenerationParams, ModelConfig, load_llm
from xinstruct.llm.openai_compat import OpenAICompatLLM

ANSWER = "Write a short text about the topic."


# --- the stand-in server (runs in its own process) ----------------------------------------------


class StandIn:
    """Answers every chat request after `latency` seconds, at most `capacity` at a time; GET /stats tells the
    peak of requests open at once (queued ones included) and of those being served; POST /reset zeroes them."""

    def __init__(self, latency: float, capacity: int):
        self.latency = latency
        self.slots = asyncio.Semaphore(capacity)
        self.open = self.serving = self.peak_open = self.peak_serving = self.served = 0
        usage = {"prompt_tokens": 100, "completion_tokens": 9, "total_tokens": 109}
        self.answer = json.dumps({"object": "chat.completion", "model": "stand-in", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}]}).encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # HTTP/1.1 keep-alive: requests one after another on this connection
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                method, path = head.split(" ", 2)[:2]
                length = next((int(line.split(":", 1)[1]) for line in head.lower().split("\r\n")
                               if line.startswith("content-length:")), 0)
                await reader.readexactly(length)
                if path.endswith("/chat/completions"):
                    body = await self.chat()
                elif path == "/stats":
                    body = json.dumps({"peak_open": self.peak_open, "peak_serving": self.peak_serving,
                                       "served": self.served}).encode()
                elif path == "/reset" and method == "POST":
                    self.peak_open = self.peak_serving = self.served = 0
                    body = b"{}"
                else:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    continue
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        except asyncio.CancelledError:
            pass  # the server is shutting down with keep-alive connections still open (Ray actors' pools)
        finally:
            writer.close()

    async def chat(self) -> bytes:
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)
        try:
            async with self.slots:
                self.serving += 1
                self.peak_serving = max(self.peak_serving, self.serving)
                try:
                    await asyncio.sleep(self.latency)
                finally:
                    self.serving -= 1
            self.served += 1
            return self.answer
        finally:
            self.open -= 1


def serve(latency: float, capacity: int, conn: Connection) -> None:
    """The server process: sends its port through `conn`, then serves until `conn` closes."""

    async def main() -> None:
        stand_in = StandIn(latency, capacity)
        server = await asyncio.start_server(stand_in.handle, "127.0.0.1", 0, backlog=4096)
        conn.send(server.sockets[0].getsockname()[1])
        await asyncio.get_running_loop().run_in_executor(None, _wait_closed, conn)
        server.close()

    asyncio.run(main())


def _wait_closed(conn: Connection) -> None:
    with contextlib.suppress(EOFError):
        conn.recv()  # the benchmark sends nothing: this returns when it closes its end


@contextlib.contextmanager
def stand_in_server(latency: float, capacity: int) -> Iterator[str]:
    """The stand-in server in its own process for the block: yields its base URL (http://127.0.0.1:PORT/v1)."""
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(latency, capacity, theirs), daemon=True)
    proc.start()
    try:
        yield f"http://127.0.0.1:{ours.recv()}/v1"
    finally:
        ours.close()
        proc.join(timeout=10)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def server_stats(url: str, reset: bool = False) -> dict[str, Any]:
    root = url.removesuffix("/v1")
    r = httpx.post(f"{root}/reset") if reset else httpx.get(f"{root}/stats")
    r.raise_for_status()
    return r.json()


# --- the runs -----------------------------------------------------------------------------------


def write_corpus(path: Path, n: int, lang: str | None = None) -> None:
    """N documents from the sample corpus (only its texts in `lang` if given), round after round, each with a
    sentence of its own in front."""
    docs = [json.loads(line) for line in sample_corpus().read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = [d for d in docs if lang in (None, d["lang"])]
    if not docs:
        raise SystemExit(f"the sample corpus has no texts in {lang!r}")
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            d = docs[i % len(docs)]
            text = f"{i}. {d['text']}\n\n({i // len(docs) + 1})"  # digits read as no language: langid unmoved
            f.write(json.dumps({"id": f"{d['id']}-{i:05d}", "lang": d["lang"], "text": text}, ensure_ascii=False)
                    + "\n")


class Timed(LLM):
    """Passes calls to `inner`, adding up the seconds spent in `generate`: the stage's LLM calls (the same
    `requests` object goes on, so the stage's `as_ready` reading of answers during a call reaches the backend)."""

    def __init__(self, inner: LLM):
        self.inner, self.seconds = inner, 0.0
        self.backend, self.model_id, self.max_batch = inner.backend, inner.model_id, inner.max_batch
        self.supports_json_schema = inner.supports_json_schema

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        t0 = time.perf_counter()
        try:
            return self.inner.generate(requests)
        finally:
            self.seconds += time.perf_counter() - t0

    def close(self) -> None:
        self.inner.close()


def run_stage(args: argparse.Namespace, url: str, folder: Path) -> dict[str, Any]:
    corpus = folder / "corpus.jsonl"
    write_corpus(corpus, args.docs)
    cfg = CurateConfig(input=str(corpus), out=str(folder / "run"), progress=False, report=False)
    cfg.selfcheck.enabled = False
    cfg.prepare.dedup = False  # the copies differ by a few characters: near duplicates by design
    cfg.generate.model = ModelConfig(model="stand-in", base_url=url, options={"max_in_flight": args.max_in_flight})
    llm = Timed(load_llm(cfg.generate.model))  # what the pipeline would load for cfg.generate.model
    server_stats(url, reset=True)
    cpu = {"generate": 0.0}
    sharded = xinstruct.execution.executors.run_sharded  # what the local executor runs a stage with

    def timed_sharded(name: str, *a: Any, **kw: Any) -> Any:  # the generation stage's CPU time, not prepare's
        t0 = time.process_time()
        try:
            return sharded(name, *a, **kw)
        finally:
            cpu[name] = cpu.get(name, 0.0) + time.process_time() - t0

    xinstruct.execution.executors.run_sharded = timed_sharded  # type: ignore[assignment]
    try:
        manifest = run_pipeline(cfg, ["generate"], models={"generate": llm})
    finally:
        xinstruct.execution.executors.run_sharded = sharded  # type: ignore[assignment]
    stats = server_stats(url)
    return {"calls": stats["served"], "seconds": manifest["stages"]["generate"]["seconds"], "calls_s": llm.seconds,
            "peak": stats["peak_open"], "cpu_s": cpu["generate"], "prepare_s": manifest["stages"]["prepare"]["seconds"],
            "records": manifest["counts"]["chunks"]}


def run_backend(args: argparse.Namespace, url: str, per_call: int | None) -> dict[str, Any]:
    params = GenerationParams(max_tokens=64)
    reqs = [ChatRequest(messages=({"role": "user", "content": f"Text {i}: a request."},), params=params)
            for i in range(args.docs)]
    with OpenAICompatLLM(url, "stand-in", max_in_flight=args.max_in_flight) as llm:
        llm.generate(reqs[: llm.max_in_flight])  # the event loop and the connections, outside the timing
        size = per_call or len(reqs)
        server_stats(url, reset=True)
        t0, cpu = time.perf_counter(), time.process_time()
        gens = [g for b in range(0, len(reqs), size) for g in llm.generate(reqs[b : b + size])]
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu
    assert all(g.text == ANSWER for g in gens)
    stats = server_stats(url)
    return {"calls": stats["served"], "seconds": seconds, "peak": stats["peak_open"], "cpu_s": cpu}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1024, help="documents (pipeline) and requests (backend)")
    ap.add_argument("--latency", type=float, default=2.0, help="seconds the server takes per request")
    ap.add_argument("--capacity", type=int, default=256, help="requests the server serves at once")
    ap.add_argument("--max-in-flight", type=int, default=256, help="the backend's max_in_flight")
    ap.add_argument("--skip", choices=["backend", "batch", "pipeline"], action="append", default=[],
                    help="leave a run out (repeatable)")
    args = ap.parse_args()
    capacity = args.capacity / args.latency
    rows: dict[str, dict[str, Any]] = {}
    with stand_in_server(args.latency, args.capacity) as url:
        log(f"stand-in server at {url}: latency {args.latency} s, capacity {args.capacity} ({capacity:.0f} calls/s)")
        if "backend" not in args.skip:
            log(f"backend: OpenAICompatLLM.generate with {args.docs} requests ...")
            rows["backend"] = run_backend(args, url, None)
        if "batch" not in args.skip:
            log(f"backend/batch: {args.docs} requests in calls of {args.max_in_flight} ...")
            rows["backend/batch"] = run_backend(args, url, args.max_in_flight)
        if "pipeline" not in args.skip:
            log(f"pipeline: the generation stage over {args.docs} documents ...")
            with tempfile.TemporaryDirectory() as tmp:
                stage = run_stage(args, url, Path(tmp))
            rows["pipeline"] = {**stage, "seconds": stage["calls_s"]}
            rows["pipeline/stage"] = stage
    print(f"stand-in server: latency {args.latency} s, capacity {args.capacity} at once = {capacity:.1f} calls/s; "
          f"backend max_in_flight={args.max_in_flight}; {args.docs} documents / requests\n")
    print(markdown_table(
        ["run", "calls", "seconds", "calls/s", "capacity calls/s", "ratio", "peak in flight", "client CPU ms/call"],
        [[name, r["calls"], f"{r['seconds']:.2f}", f"{r['calls'] / r['seconds']:.1f}", f"{capacity:.1f}",
          f"{r['calls'] / r['seconds'] / capacity:.2f}", r["peak"], f"{1000 * r['cpu_s'] / r['calls']:.2f}"]
         for name, r in rows.items()]))
    if "pipeline" in rows:
        p = rows["pipeline"]
        print(f"\npipeline: {p['records']} records; the generation stage took {p['seconds']:.2f} s in LLM calls "
              f"(row pipeline) of {rows['pipeline/stage']['seconds']:.2f} s in all (row pipeline/stage); preparing "
              f"the corpus took {p['prepare_s']:.2f} s apart")
    backend = rows.get("backend") or rows.get("backend/batch")
    if backend is not None:
        print(f"backend_ratio_vs_capacity={backend['calls'] / backend['seconds'] / capacity:.2f}")
    final = rows.get("pipeline/stage") or backend
    assert final is not None
    print(f"ratio_vs_capacity={final['calls'] / final['seconds'] / capacity:.2f}")


if __name__ == "__main__":
    main()
