"""A persistent request cache, so that a rerun never redoes a finished LLM call.

Keyed by (model fingerprint, messages, generation parameters). SQLite in WAL mode:
each finished batch is committed at once, so a run killed at any point keeps every
answer it already had, and several processes may share one cache file. `ShardCache` is the
same store as one append-only JSONL file per shard, for executors whose workers run on
other machines (the Ray executor keeps one beside each shard's output).

`as_ready` lets a stage do its own work on each answer while the rest of the call is in
flight: `CachedLLM` passes it on to backends that answer requests one by one (the
OpenAI-compatible one) and encodes each fresh answer for the cache as it arrives.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from xinstruct.llm.base import LLM, ChatRequest, Generation

ReadyFn = Callable[[int, Generation], None]  # (index of the request in the call, its answer)
_READY: ContextVar[tuple[Sequence[ChatRequest], ReadyFn] | None] = ContextVar("xinstruct_as_ready", default=None)


@contextlib.contextmanager
def as_ready(requests: Sequence[ChatRequest], callback: ReadyFn) -> Iterator[None]:
    """Within this block, a `generate` call that is handed this very `requests` object (not an equal copy) by a
    backend that supports it calls `callback(i, generation)` in the calling thread as soon as `requests[i]` is
    answered, before the call returns; the call still returns every answer, and it fails (cancelling the rest)
    when `callback` raises. `generation` is the object the call returns for `requests[i]`. A backend that does
    not support it (or a wrapper that hands its backend other requests) calls nothing: callers must cope with
    answers that never came through `callback`."""
    token = _READY.set((requests, callback))
    try:
        yield
    finally:
        _READY.reset(token)


def ready_callback(requests: Sequence[ChatRequest]) -> ReadyFn | None:
    """For a backend's `generate(requests)`: the callback that `as_ready` set for exactly this `requests`."""
    entry = _READY.get()
    return entry[1] if entry is not None and entry[0] is requests else None


def request_key(fingerprint: str, req: ChatRequest) -> str:
    payload = {"model": fingerprint, "messages": list(req.messages), "params": req.params.to_dict()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def score_key(fingerprint: str, context: str, continuation: str, kind: str = "token_logprobs") -> str:
    """The key of a scoring request: `kind` is token_logprobs (a list per token) or loglikelihood (their sum)."""
    payload = {"model": fingerprint, kind: [context, continuation]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class Cache:
    """What a request cache stores: JSON values (generations, scores) by key. Subclasses keep the rows
    (`get_values`, `put_rows`, `close`, `len`); the rest is written once here."""

    def get_values(self, keys: Sequence[str]) -> dict[str, Any]:
        """The JSON values stored under `keys` (generations, or scores)."""
        raise NotImplementedError

    def put_rows(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """(key, model, JSON value) rows, written at once."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def get_many(self, keys: Sequence[str]) -> dict[str, Generation]:
        return {k: Generation(**v) for k, v in self.get_values(keys).items()}

    def put_values(self, model: str, items: Sequence[tuple[str, Any]]) -> None:
        self.put_rows([(k, model, _encode(v)) for k, v in items])

    def put_many(self, model: str, items: Sequence[tuple[str, Generation]]) -> None:
        self.put_values(model, [(k, g.to_dict()) for k, g in items])


class RequestCache(Cache):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._setup()

    def _setup(self, wait_s: float = 60.0) -> None:
        """WAL mode and the table. Switching to WAL takes an exclusive lock, and SQLite answers "database
        is locked" at once (no busy wait) when another process is creating the same file: retry then."""
        deadline = time.monotonic() + wait_s
        delay = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, model TEXT, response TEXT)")
                self._db.commit()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def get_values(self, keys: Sequence[str]) -> dict[str, Any]:
        """The JSON values stored under `keys` (generations, or scores)."""
        out: dict[str, Any] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = list(keys[i : i + 500])
                q = f"SELECT key, response FROM calls WHERE key IN ({','.join('?' * len(part))})"
                for key, resp in self._db.execute(q, part):
                    out[key] = json.loads(resp)
        return out

    def put_rows(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """(key, model, JSON value) rows, in one transaction."""
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?)", rows)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class ShardCache(Cache):
    """A request cache in one append-only JSONL file, for one shard's calls: what the Ray executor keeps beside
    each shard's output, so a shard retried on another machine reuses its finished calls. One process writes it
    at a time (the shard's worker); each finished call is a line, flushed as it is written, so nothing but
    appends ever touches a shared file system (SQLite's WAL mode needs shared memory, which network file
    systems lack). A torn last line (a kill mid-write) is skipped when the file is read."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}  # key -> the JSON value, encoded
        if self.path.is_file():
            with open(self.path, "rb") as f:
                data = f.read()
            for line in data.splitlines():
                try:
                    key, _model, value = json.loads(line)
                except (ValueError, TypeError):
                    continue  # the torn last line of a killed write
                self._values[key] = _encode(value)
            if data and not data.endswith(b"\n"):
                with open(self.path, "ab") as f:  # start the next line after a torn one
                    f.write(b"\n")
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (open for the cache's life; see close)

    def get_values(self, keys: Sequence[str]) -> dict[str, Any]:
        with self._lock:
            return {k: json.loads(self._values[k]) for k in keys if k in self._values}

    def put_rows(self, rows: Sequence[tuple[str, str, str]]) -> None:
        if not rows:
            return
        with self._lock:
            for key, _model, value in rows:
                self._values[key] = value
            self._file.write("".join(f"[{json.dumps(k)}, {json.dumps(m)}, {v}]\n" for k, m, v in rows))
            self._file.flush()

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()


def _encode(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class CachedLLM(LLM):
    """Wraps any backend: answers found in the cache are returned, the rest generated and stored.

    Failed calls (`Generation.error`) are not cached, so a rerun retries them.
    """

    def __init__(self, llm: LLM, cache: Cache):
        self.llm = llm
        self.cache = cache
        self.backend = llm.backend
        self.model_id = llm.model_id
        self.supports_json_schema = llm.supports_json_schema
        self.max_batch = llm.max_batch
        self.hits = 0
        self.misses = 0

    @property
    def fingerprint(self) -> str:
        return self.llm.fingerprint

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        fingerprint = self.fingerprint
        keys = [request_key(fingerprint, r) for r in requests]
        found = self.cache.get_many(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(requests) - len(todo)
        self.misses += len(todo)
        fresh: list[Generation] = []
        # The fresh answers' cache rows, encoded as they arrive where the backend hands them over one by one
        # (while the rest are in flight), by position in `todo`, with the answer they encode.
        early: dict[int, tuple[Generation, tuple[str, str, str]]] = {}
        if todo:
            outer = ready_callback(requests)
            sub = [requests[i] for i in todo]

            def ready(j: int, g: Generation) -> None:
                if g.error is None:
                    early[j] = (g, (keys[todo[j]], fingerprint, _encode(g.to_dict())))
                if outer is not None:
                    outer(todo[j], g)

            with as_ready(sub, ready):
                fresh = self.llm.generate(sub)
        rows = []
        for j, (i, g) in enumerate(zip(todo, fresh, strict=True)):
            if g.error is None:
                e = early.get(j)
                rows.append(e[1] if e is not None and e[0] is g else (keys[i], fingerprint, _encode(g.to_dict())))
        self.cache.put_rows(rows)
        out: list[Generation] = []
        new = iter(fresh)
        for k in keys:
            if k in found:
                g = found[k]
                g.cached = True
                out.append(g)
            else:
                out.append(next(new))
        return out

    def stream(self, request: ChatRequest) -> Generator[str, None, Generation]:
        """Not cached: a live conversation wants the model, and the cache is for finished batch calls."""
        return (yield from self.llm.stream(request))

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Cached like generations (multiple-choice scoring's calls)."""
        return self._scores("loglikelihood", self.llm.loglikelihood, pairs)

    def token_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[list[float]]:
        """Cached like generations: a rerun never scores the same (context, continuation) twice."""
        return self._scores("token_logprobs", self.llm.token_logprobs, pairs)

    def _scores(self, kind: str, score: Callable[[Sequence[tuple[str, str]]], list[Any]],
                pairs: Sequence[tuple[str, str]]) -> list[Any]:
        """`score(pairs)` for the pairs the cache lacks, stored once the call returns (a call that raises stores
        nothing); the others from the cache."""
        keys = [score_key(self.fingerprint, c, x, kind) for c, x in pairs]
        found = self.cache.get_values(keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(pairs) - len(todo)
        self.misses += len(todo)
        fresh = score([pairs[i] for i in todo]) if todo else []
        self.cache.put_values(self.fingerprint, [(keys[i], v) for i, v in zip(todo, fresh, strict=True)])
        new = dict(zip(todo, fresh, strict=True))
        return [found[k] if k in found else new[i] for i, k in enumerate(keys)]

    def chat_prompt(self, messages):  # type: ignore[no-untyped-def]
        return self.llm.chat_prompt(messages)

    def count_prompt_tokens(self, messages):  # type: ignore[no-untyped-def]
        return self.llm.count_prompt_tokens(messages)

    def first_tokens(self, text: str, n: int) -> str | None:
        return self.llm.first_tokens(text, n)

    @property
    def context_window(self) -> int | None:  # type: ignore[override]
        return self.llm.context_window

    def close(self) -> None:
        self.llm.close()
