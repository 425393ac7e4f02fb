"""Any OpenAI-compatible chat endpoint: OpenAI, vLLM's server, llama.cpp's server, TGI, ...

A server batches the requests it holds, so the backend keeps up to `max_in_flight` of them open at once
(default 256; `concurrency=` is the old name), and `max_batch` asks stages for that many per call. `generate`
and `token_logprobs` run their requests as asyncio tasks on an event loop of the backend's own, in a
background thread, so they work the same whether or not the caller runs an event loop, through one aiohttp
session whose connector keeps up to `max_in_flight` connections alive (httpx's AsyncClient cost ~2 ms of CPU
per call and its pool slows down with its connections, httpx #3215; aiohttp's ~0.4 ms). Timeouts, connection
errors, 408, 409, 425, 429 and 5xx are retried with exponential backoff and jitter; when the retries run out
the whole call raises `LLMError` and its other requests are cancelled (a dead server should stop the run,
which resumes from its cache later, rather than turn the corpus into rejects). Other 4xx answers, such as a
prompt too long for the model, fail that request alone: its `Generation.error` says why. Under
`xinstruct.llm.cache.as_ready`, `generate` hands each answer to the caller's callback, in the caller's thread,
as soon as it arrives. `stream` (one answer at a time, for the chat server) uses a blocking client (httpx) in
the caller's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import random
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from xinstruct.llm.backends import BackendSpec
from xinstruct.llm.base import LLM, ChatRequest, Generation, LLMError, ScoringUnsupported
from xinstruct.llm.cache import ReadyFn, ready_callback
from xinstruct.llm.hf import split_pair

if TYPE_CHECKING:
    from xinstruct.llm import ModelConfig

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256  # requests open at once by default


def resolve_max_in_flight(max_in_flight: int | None, concurrency: int | None = None) -> int:
    """The in-flight limit from the settings: `concurrency` (its old name) wins where given."""
    value = concurrency if concurrency is not None else max_in_flight
    return max(1, int(value if value is not None else MAX_IN_FLIGHT))


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
T = TypeVar("T")


class OpenAICompatLLM(LLM):
    backend = "openai"
    supports_json_schema = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
        concurrency: int | None = None,  # the old name of max_in_flight; wins where given
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        response_format: str = "json_schema",
        extra_body: dict[str, Any] | None = None,
    ):
        if response_format not in ("json_schema", "json_object", "none"):
            raise ValueError("response_format must be json_schema, json_object or none")
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model_id = model
        self.max_in_flight = resolve_max_in_flight(max_in_flight, concurrency)
        self.max_batch = self.max_in_flight  # fewer requests per call leave the server part idle
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.response_format = response_format
        self.extra_body = extra_body or {}
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._timeout = timeout
        self._headers = {"Authorization": f"Bearer {key}"}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers=self._headers)  # stream() only
        self.retries = 0  # retried attempts, for the manifest and tests
        self._retries_lock = threading.Lock()  # stream() retries from the caller's thread, the rest on the loop
        # The event loop that runs generate() and token_logprobs() and its thread, started on first use and
        # stopped by close(). A request in flight holds one of max_in_flight slots (one backing off holds none)
        # and a connection of the session, which is opened on the loop by the first request.
        self._loop_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._proxy: tuple[Any, Any] = (None, None)  # (url, auth) from HTTP(S)_PROXY/NO_PROXY, as httpx would
        self._slots = asyncio.Semaphore(self.max_in_flight)  # binds to the loop on first use (Python >= 3.10)
        self._closed = False

    @property
    def fingerprint(self) -> str:
        return f"{self.backend}:{self.base_url}:{self.model_id}"

    def _body(self, req: ChatRequest) -> dict[str, Any]:
        p = req.params
        body: dict[str, Any] = {"model": self.model_id, "messages": list(req.messages), "max_tokens": p.max_tokens,
                                "temperature": p.temperature, "top_p": p.top_p, "seed": p.seed}
        if p.stop:
            body["stop"] = list(p.stop)
        if p.json_schema is not None and self.response_format == "json_schema":
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": p.json_schema, "strict": True}}
        elif p.json_schema is not None and self.response_format == "json_object":
            body["response_format"] = {"type": "json_object", "schema": p.json_schema}
        return {**body, **self.extra_body}

    def _delay(self, attempt: int) -> float:
        """Count retry `attempt` (1, 2, ...) and say how long to back off first: exponential, capped, jittered."""
        with self._retries_lock:
            self.retries += 1
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)

    # --- the event loop -----------------------------------------------------------------------

    def _run_all(self, fn: Callable[..., Awaitable[T]], items: Sequence[Any],
                 on_ready: Callable[[int, T], None] | None = None) -> list[T]:
        """`fn(*item)` for every item, concurrently on the backend's loop, results in input order. Blocks the
        calling thread (a caller's own event loop included) until all are done or one raises; meanwhile it
        calls `on_ready(i, result)` as each result arrives (in this thread, so the loop goes on sending and
        receiving; an exception from it fails the call)."""
        if not items:
            return []
        loop = self._start()
        done: queue.SimpleQueue[tuple[int, T] | None] | None = None if on_ready is None else queue.SimpleQueue()
        future = asyncio.run_coroutine_threadsafe(self._gather(fn, items, done), loop)
        try:
            if done is not None and on_ready is not None:
                future.add_done_callback(lambda _: done.put(None))
                while (item := done.get()) is not None:
                    on_ready(*item)
                    # Hand the GIL to the loop's thread now if it waits (not after the 5 ms switch interval): its
                    # sending and receiving comes first, the caller's work fits in its waits.
                    time.sleep(0)
            return future.result()
        except BaseException:
            future.cancel()  # the caller was interrupted (KeyboardInterrupt), or on_ready failed: stop the requests
            raise

    async def _gather(self, fn: Callable[..., Awaitable[T]], items: Sequence[Any],
                      done: queue.SimpleQueue[tuple[int, T] | None] | None = None) -> list[T]:
        if done is not None:
            async def one(i: int, item: Sequence[Any]) -> T:
                result = await fn(*item)
                done.put((i, result))
                return result

            tasks = [asyncio.ensure_future(one(i, item)) for i, item in enumerate(items)]
        else:
            tasks = [asyncio.ensure_future(fn(*item)) for item in items]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:  # the first failure fails the call: the other requests are not worth waiting for
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._loop_lock:
            if self._closed:
                raise RuntimeError(f"{self.fingerprint}: the backend is closed")
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                # A daemon: a backend nobody closed must not keep the interpreter alive.
                self._thread = threading.Thread(target=self._loop.run_forever, name="openai-compat-loop",
                                                daemon=True)
                self._thread.start()
            return self._loop

    async def _send(self, url: str, body: dict[str, Any]) -> _Answer:
        """One attempt, holding one of the `max_in_flight` slots (a request that backs off holds none). The
        body is encoded as httpx encodes `json=`: UTF-8, compact, no NaN."""
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        async with self._slots:
            session = self._session or self._open()
            async with session.post(url, data=data, headers=_JSON, proxy=self._proxy[0],
                                    proxy_auth=self._proxy[1]) as r:
                return _Answer(r.status, await r.read())

    def _open(self) -> aiohttp.ClientSession:
        """The session, on the loop's thread. `timeout` bounds connecting and each wait for data, as httpx's
        did (not the whole answer: a long generation that keeps the connection alive is not cut off); waiting
        for a slot has no limit. TLS trusts what httpx trusts (certifi, or SSL_CERT_FILE/SSL_CERT_DIR)."""
        tls: ssl.SSLContext | bool = httpx.create_ssl_context() if self.base_url.startswith("https:") else True
        with contextlib.suppress(LookupError):
            self._proxy = get_env_proxy_for_url(URL(self.base_url))  # once, not per request (trust_env would)
        # Idle connections are closed after 5 s, as httpx does (servers close theirs after 5 s too: uvicorn's).
        connector = aiohttp.TCPConnector(limit=self.max_in_flight, limit_per_host=0, ssl=tls, keepalive_timeout=5.0)
        timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=self._timeout,
                                        sock_read=self._timeout)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, headers=self._headers)
        return self._session

    async def _shutdown(self) -> None:
        current = asyncio.current_task()
        rest = [t for t in asyncio.all_tasks() if t is not current]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # --- requests -----------------------------------------------------------------------------

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        on_ready: ReadyFn | None = ready_callback(requests)
        return self._run_all(self._chat, [(r,) for r in requests], on_ready)

    async def _chat(self, req: ChatRequest) -> Generation:
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt))
            try:
                r = await self._send(url, self._body(req))
            except asyncio.TimeoutError as e:  # aiohttp's timeouts (TimeoutError from Python 3.11 on)
                last = f"timed out ({type(e).__name__})"
                continue
            except aiohttp.ClientError as e:  # refused, reset, closed without an answer, broken body
                last = f"connection failed ({type(e).__name__}: {e})"
                continue
            if (r.status_code >= 400 and "response_format" in r.text and self.response_format == "json_schema"
                    and req.params.json_schema is not None):
                # llama-cpp-python's server (and some others) know only {"type": "json_object", "schema": ...}.
                log.warning("%s refused response_format json_schema; using json_object with the schema", url)
                self.response_format = "json_object"
                return await self._chat(req)
            if r.status_code in RETRYABLE_STATUS:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:
                return Generation(text="", finish_reason="error", error=f"HTTP {r.status_code}: {r.text[:500]}")
            try:
                data = r.json()
                choice = data["choices"][0]
                usage = data.get("usage") or {}
                return Generation(text=choice["message"].get("content") or "",
                                  finish_reason=choice.get("finish_reason"),
                                  prompt_tokens=usage.get("prompt_tokens", 0),
                                  completion_tokens=usage.get("completion_tokens", 0))
            except (ValueError, KeyError, IndexError, TypeError) as e:
                last = f"unreadable answer ({type(e).__name__}: {e}): {r.text[:200]}"
                continue
        raise LLMError(f"{url} failed after {self.max_retries + 1} attempts: {last}")

    def stream(self, request: ChatRequest) -> Generator[str, None, Generation]:
        """Server-sent events (`"stream": true`). Failures before the first piece are retried as in
        `generate`; a stream that breaks after text was shown raises `LLMError` (a retry would repeat it).
        Token counts come from the server's usage where it sends one, else `completion_tokens` counts the
        content events (one per token on vLLM and llama.cpp's server)."""
        url = f"{self.base_url}/chat/completions"
        body = {**self._body(request), "stream": True}
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._delay(attempt))
            pieces: list[str] = []
            try:
                with self._client.stream("POST", url, json=body) as r:
                    if r.status_code >= 400:
                        text = r.read().decode(errors="replace")
                        if r.status_code in RETRYABLE_STATUS:
                            last = f"HTTP {r.status_code}: {text[:200]}"
                            continue
                        raise LLMError(f"HTTP {r.status_code}: {text[:500]}")
                    finish, usage = None, {}
                    for event in _sse_data(r.iter_lines()):
                        choices = event.get("choices") or []
                        usage = event.get("usage") or usage
                        if not choices:
                            continue
                        finish = choices[0].get("finish_reason") or finish
                        piece = (choices[0].get("delta") or {}).get("content") or ""
                        if piece:
                            pieces.append(piece)
                            yield piece
                    return Generation(text="".join(pieces), finish_reason=finish,
                                      prompt_tokens=usage.get("prompt_tokens", 0),
                                      completion_tokens=usage.get("completion_tokens", len(pieces)))
            except (httpx.TimeoutException, httpx.TransportError, ValueError) as e:
                last = f"stream failed ({type(e).__name__}: {e})"
                if pieces:
                    raise LLMError(f"{url}: {last} after {len(pieces)} pieces") from e
        raise LLMError(f"{url} failed after {self.max_retries + 1} attempts: {last}")

    def token_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[list[float]]:
        """Per-token log-probabilities of each continuation from the legacy `/v1/completions` endpoint with
        `echo` and `logprobs` (vLLM's server; llama.cpp's with logits_all): the prompt is context +
        continuation, and the continuation's tokens are those whose text offset is past the context. A
        server that answers without log-probabilities, or refuses them, raises `ScoringUnsupported`."""
        return self._run_all(self._score, pairs)

    async def _score(self, context: str, continuation: str) -> list[float]:
        url = f"{self.base_url}/completions"
        context, continuation = split_pair(context, continuation)  # a trailing space belongs to the next token
        body = {"model": self.model_id, "prompt": context + continuation, "max_tokens": 1, "temperature": 0.0,
                "echo": True, "logprobs": 1, **self.extra_body}
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt))
            try:
                r = await self._send(url, body)
            except (asyncio.TimeoutError, aiohttp.ClientError) as e:
                last = f"request failed ({type(e).__name__}: {e})"
                continue
            refusal = r.status_code in (400, 404, 405, 422, 500, 501) and (
                r.status_code in (404, 405, 501) or any(w in r.text.lower() for w in ("logprob", "logits", "echo")))
            if refusal:
                raise ScoringUnsupported(f"{url} gives no log-probabilities of a prompt: HTTP {r.status_code}: "
                                         f"{r.text[:300]}")
            if r.status_code in RETRYABLE_STATUS:
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                continue
            if r.status_code >= 400:
                raise LLMError(f"{url}: HTTP {r.status_code}: {r.text[:500]}")
            try:
                lp = r.json()["choices"][0].get("logprobs") or {}
            except (ValueError, KeyError, IndexError, TypeError) as e:
                last = f"unreadable answer ({type(e).__name__}: {e}): {r.text[:200]}"
                continue
            offsets, values = lp.get("text_offset"), lp.get("token_logprobs")
            if not offsets or not values or len(offsets) != len(values):
                raise ScoringUnsupported(f"{url} answered without prompt log-probabilities (echo + logprobs)")
            start, end = len(context), len(context) + len(continuation)
            out = [v for off, v in zip(offsets, values, strict=True) if start <= off < end]
            if any(v is None for v in out):
                raise ScoringUnsupported(f"{url} left some prompt log-probabilities empty")
            return [float(v) for v in out]
        raise LLMError(f"{url} failed after {self.max_retries + 1} attempts: {last}")

    def close(self) -> None:
        with self._loop_lock:
            loop, thread, self._loop, self._closed = self._loop, self._thread, None, True
        if loop is not None and thread is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result()
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
        self._client.close()


_JSON = {"Content-Type": "application/json"}


class _Answer:
    """A finished answer of the async path: its status and body (read whole before the slot is freed)."""

    __slots__ = ("status_code", "content")

    def __init__(self, status_code: int, content: bytes):
        self.status_code, self.content = status_code, content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def _sse_data(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The JSON objects of an OpenAI-style event stream's `data:` lines, up to `[DONE]`."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, comments (": ping"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            return
        obj = json.loads(data)  # ValueError: the stream is broken
        if isinstance(obj, dict) and obj.get("error"):
            raise LLMError(f"server error in stream: {obj['error']}")
        yield obj


def _load(model: str, cfg: ModelConfig) -> OpenAICompatLLM:
    if not cfg.base_url:
        raise ValueError("the openai backend needs a base_url (e.g. http://127.0.0.1:8000/v1)")
    return OpenAICompatLLM(cfg.base_url, model, **cfg.options)


SPEC = BackendSpec("openai", load=_load, shard_size=1024, server=True,
                   max_batch=lambda options: resolve_max_in_flight(options.get("max_in_flight"),
                                                                   options.get("concurrency")))
