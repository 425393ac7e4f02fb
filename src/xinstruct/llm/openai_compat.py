"""Any OpenAI-compatible chat endpoint: OpenAI, vLLM's server, llama.cpp's server, TGI, ...

Requests run concurrently. Timeouts, connection errors, 429 and 5xx are retried with
exponential backoff and jitter; when the retries run out the whole call raises
`LLMError` (a dead server should stop the run, which resumes from its cache later,
rather than turn the corpus into rejects). Other 4xx answers, such as a prompt too long
for the model, fail that request alone: its `Generation.error` says why.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from xinstruct.llm.base import LLM, ChatRequest, Generation, LLMError, ScoringUnsupported
from xinstruct.llm.hf import split_pair

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAICompatLLM(LLM):
    backend = "openai"
    supports_json_schema = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 8,
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
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.response_format = response_format
        self.extra_body = extra_body or {}
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers={"Authorization": f"Bearer {key}"},
                                    limits=httpx.Limits(max_connections=self.concurrency))
        self.retries = 0  # retried attempts, for the manifest and tests
        self._retries_lock = threading.Lock()  # requests retry from several threads at once

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

    def _wait(self, attempt: int) -> None:
        """Back off before retry `attempt` (1, 2, ...): exponential, capped, with jitter."""
        with self._retries_lock:
            self.retries += 1
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        time.sleep(delay * (0.5 + random.random() / 2))

    def _post(self, req: ChatRequest) -> Generation:
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._wait(attempt)
            try:
                r = self._client.post(url, json=self._body(req))
            except httpx.TimeoutException as e:
                last = f"timed out ({type(e).__name__})"
                continue
            except httpx.TransportError as e:
                last = f"connection failed ({type(e).__name__}: {e})"
                continue
            if (r.status_code >= 400 and "response_format" in r.text and self.response_format == "json_schema"
                    and req.params.json_schema is not None):
                # llama-cpp-python's server (and some others) know only {"type": "json_object", "schema": ...}.
                log.warning("%s refused response_format json_schema; using json_object with the schema", url)
                self.response_format = "json_object"
                return self._post(req)
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
                self._wait(attempt)
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
        if len(pairs) <= 1 or self.concurrency == 1:
            return [self._score(c, x) for c, x in pairs]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda p: self._score(*p), pairs))

    def _score(self, context: str, continuation: str) -> list[float]:
        url = f"{self.base_url}/completions"
        context, continuation = split_pair(context, continuation)  # a trailing space belongs to the next token
        body = {"model": self.model_id, "prompt": context + continuation, "max_tokens": 1, "temperature": 0.0,
                "echo": True, "logprobs": 1, **self.extra_body}
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._wait(attempt)
            try:
                r = self._client.post(url, json=body)
            except (httpx.TimeoutException, httpx.TransportError) as e:
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

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        if len(requests) <= 1 or self.concurrency == 1:
            return [self._post(r) for r in requests]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(self._post, requests))

    def close(self) -> None:
        self._client.close()


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
