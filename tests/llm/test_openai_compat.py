"""The OpenAI-compatible backend against a real llama.cpp server, with faults injected by a proxy.

The model (SmolLM2-135M) is weak: the tests assert behaviour (answers arrive, in order, parse
against the schema; errors and retries happen as documented), never the quality of an answer.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from xinstruct.llm import CachedLLM, ChatRequest, GenerationParams, LLMError, RequestCache
from xinstruct.llm.base import read_stream
from xinstruct.llm.openai_compat import OpenAICompatLLM

FAST = {"backoff": 0.05, "max_backoff": 0.2}  # retries in milliseconds, not seconds


@dataclass
class Reply:
    """What the proxy does with one request; the default forwards it to the llama server at once."""

    status: int | None = None  # answer with this status and `body` instead of forwarding
    body: bytes = b'{"error": {"message": "injected fault"}}'
    delay: float = 0.0  # wait this long first (cut short when the proxy stops)
    drop: bool = False  # after the delay, close the connection without an answer


Plan = Callable[[int, dict], Reply]  # (arrival index, JSON body) -> what to do


class FaultProxy:
    """A reverse proxy in front of the llama server that counts requests and injects faults."""

    def __init__(self, upstream: str, plan: Plan):
        self.plan = plan
        self.bodies: list[dict] = []  # request bodies in arrival order
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._client = httpx.Client(base_url=upstream, timeout=60.0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                proxy._handle(self)

            def do_POST(self):
                proxy._handle(self)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.bodies)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        with self._lock:
            index = len(self.bodies)
            self.bodies.append(body)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            reply = self.plan(index, body)
            stopping = reply.delay > 0 and self._stop.wait(reply.delay)
            if stopping or reply.drop:
                return
            if reply.status is not None:
                status, ctype, content = reply.status, "application/json", reply.body
            else:
                r = self._client.request(h.command, h.path, content=raw,
                                         headers={"Content-Type": h.headers.get("Content-Type", "application/json")})
                status, ctype, content = r.status_code, r.headers.get("Content-Type", "application/json"), r.content
            try:
                h.send_response(status)
                h.send_header("Content-Type", ctype)
                h.send_header("Content-Length", str(len(content)))
                h.end_headers()
                h.wfile.write(content)
            except OSError:
                pass  # the client gave up (timed out) before the answer
        finally:
            with self._lock:
                self._in_flight -= 1

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._client.close()


@pytest.fixture
def make_proxy(llama_server):
    """Start proxies in front of the llama server; all of them are shut down after the test."""
    upstream = llama_server.base_url.removesuffix("/v1")
    proxies: list[FaultProxy] = []

    def make(plan: Plan = lambda i, body: Reply()) -> FaultProxy:
        proxies.append(FaultProxy(upstream, plan))
        return proxies[-1]

    yield make
    for p in proxies:
        p.stop()


def _req(text: str, max_tokens: int = 4, **kw) -> ChatRequest:
    return ChatRequest(messages=({"role": "user", "content": text},),
                       params=GenerationParams(max_tokens=max_tokens, **kw))


def _assert_answered(g, max_tokens: int) -> None:
    assert g.error is None
    assert g.text
    assert g.prompt_tokens > 0
    assert 0 < g.completion_tokens <= max_tokens


# --- generation -------------------------------------------------------------------------


def test_generates_from_server_given_without_v1(llama_server):
    root = llama_server.base_url.removesuffix("/v1")  # the backend appends /v1 itself
    with OpenAICompatLLM(root, llama_server.model, concurrency=1) as llm:
        [g] = llm.generate([_req("Say hello.", max_tokens=6)])
    _assert_answered(g, 6)
    assert g.finish_reason in ("stop", "length")
    assert llm.retries == 0


def test_concurrent_results_keep_request_order(make_proxy, llama_server):
    # Prompts of growing length, so prompt_tokens must grow along the output. The proxy holds
    # the first request longest, so the server answers them in reverse order.
    max_tokens = [3, 4, 5, 6]
    prompts = ["Repeat: " + " ".join(["apple"] * n) for n in (1, 8, 16, 32)]
    proxy = make_proxy(lambda i, body: Reply(delay=0.4 * (7 - body["max_tokens"])))
    with OpenAICompatLLM(proxy.base_url, llama_server.model, concurrency=4) as llm:
        gens = llm.generate([_req(p, m) for p, m in zip(prompts, max_tokens, strict=True)])
    assert proxy.max_in_flight == 4  # really concurrent
    assert len(gens) == 4
    for g, m in zip(gens, max_tokens, strict=True):
        _assert_answered(g, m)
    tokens = [g.prompt_tokens for g in gens]
    assert tokens == sorted(tokens) and len(set(tokens)) == 4, tokens


# --- structured output ------------------------------------------------------------------

# llama.cpp's schema-to-grammar converter ignores minimum/maximum, so `enum` is what enforces 1-5;
# maxLength keeps the answer inside max_tokens, so the JSON is never cut off.
SCORE_SCHEMA = {
    "type": "object",
    "properties": {
        "score": {"type": "integer", "enum": [1, 2, 3, 4, 5], "minimum": 1, "maximum": 5},
        "reason": {"type": "string", "maxLength": 24},
    },
    "required": ["score", "reason"],
}


def _validate(obj) -> None:
    try:
        import jsonschema
    except ImportError:
        assert isinstance(obj, dict) and {"score", "reason"} <= obj.keys(), obj
        assert type(obj["score"]) is int and 1 <= obj["score"] <= 5, obj
        assert isinstance(obj["reason"], str) and len(obj["reason"]) <= 24, obj
    else:
        jsonschema.validate(obj, SCORE_SCHEMA)


def test_json_object_answers_parse_against_schema(make_proxy, llama_server):
    texts = ["Cats are nice.", "The weather is bad today.", "Paris is the capital of France."]
    system = {"role": "system", "content": "Rate the text from 1 to 5. Answer in JSON with a score and a reason."}
    params = GenerationParams(max_tokens=48, json_schema=SCORE_SCHEMA)
    reqs = [ChatRequest(messages=(system, {"role": "user", "content": t}), params=params) for t in texts]
    proxy = make_proxy()
    with OpenAICompatLLM(proxy.base_url, llama_server.model, concurrency=3, response_format="json_object") as llm:
        gens = llm.generate(reqs)
    for body in proxy.bodies:
        assert body["response_format"] == {"type": "json_object", "schema": SCORE_SCHEMA}
    for g in gens:
        assert g.error is None and g.finish_reason == "stop", g
        _validate(json.loads(g.text))


CANNED = json.dumps({"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()


@pytest.mark.parametrize("response_format, expected", [
    ("json_schema", {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCORE_SCHEMA, "strict": True}}),
    ("json_object", {"type": "json_object", "schema": SCORE_SCHEMA}),
    ("none", None),
])
def test_response_format_in_request_body(make_proxy, response_format, expected):
    proxy = make_proxy(lambda i, body: Reply(status=200, body=CANNED))
    with OpenAICompatLLM(proxy.base_url, "m", response_format=response_format, extra_body={"top_k": 1}) as llm:
        [g] = llm.generate([_req("x", json_schema=SCORE_SCHEMA, stop=("\n",))])
        [plain] = llm.generate([_req("y")])  # no schema: never a response_format
    assert (g.text, g.prompt_tokens, g.completion_tokens) == ("{}", 3, 1) and plain.error is None
    body, plain_body = proxy.bodies
    assert body.get("response_format") == expected
    assert "response_format" not in plain_body
    assert body["model"] == "m" and body["stop"] == ["\n"] and body["top_k"] == 1
    assert body["messages"] == [{"role": "user", "content": "x"}]


# --- retries and errors -----------------------------------------------------------------


@pytest.mark.parametrize("faults", [(503,), (503, 500), (429, 502, 504)])
def test_retryable_status_is_retried_until_success(make_proxy, llama_server, faults):
    proxy = make_proxy(lambda i, body: Reply(status=faults[i]) if i < len(faults) else Reply())
    with OpenAICompatLLM(proxy.base_url, llama_server.model, max_retries=5, **FAST) as llm:
        [g] = llm.generate([_req("Say hello.")])
    _assert_answered(g, 4)
    assert llm.retries == len(faults)
    assert proxy.count == len(faults) + 1


def test_retries_are_counted_across_concurrent_requests(make_proxy, llama_server):
    proxy = make_proxy(lambda i, body: Reply(status=503) if i < 3 else Reply())
    prompts = ["Hi " * n for n in (1, 4, 8, 16)]
    with OpenAICompatLLM(proxy.base_url, llama_server.model, concurrency=4, max_retries=5, **FAST) as llm:
        gens = llm.generate([_req(p, 3) for p in prompts])
    for g in gens:
        _assert_answered(g, 3)
    tokens = [g.prompt_tokens for g in gens]
    assert tokens == sorted(tokens) and len(set(tokens)) == 4, tokens
    assert llm.retries == 3
    assert proxy.count == 7


def test_exhausted_retries_raise_llm_error(make_proxy):
    proxy = make_proxy(lambda i, body: Reply(status=503))
    with OpenAICompatLLM(proxy.base_url, "m", max_retries=2, **FAST) as llm, pytest.raises(LLMError) as err:
        llm.generate([_req("x")])
    assert f"{proxy.base_url}/chat/completions" in str(err.value)
    assert "HTTP 503" in str(err.value) and "3 attempts" in str(err.value)
    assert llm.retries == 2 and proxy.count == 3


def test_timeout_is_retried(make_proxy, llama_server):
    # The first request hangs past the client's timeout; the retry is forwarded to the server.
    proxy = make_proxy(lambda i, body: Reply(delay=5.0, drop=True) if i == 0 else Reply())
    with OpenAICompatLLM(proxy.base_url, llama_server.model, timeout=2.0, max_retries=2, **FAST) as llm:
        [g] = llm.generate([_req("Say hello.")])
    _assert_answered(g, 4)
    assert llm.retries == 1 and proxy.count == 2


def test_server_that_always_hangs_raises_timed_out(make_proxy):
    proxy = make_proxy(lambda i, body: Reply(delay=5.0, drop=True))
    with OpenAICompatLLM(proxy.base_url, "m", timeout=0.5, max_retries=1, **FAST) as llm, \
            pytest.raises(LLMError) as err:
        llm.generate([_req("x")])
    msg = str(err.value)
    assert f"{proxy.base_url}/chat/completions" in msg and "timed out" in msg
    assert llm.retries == 1 and proxy.count == 2


def test_unreachable_server_raises_connection_failed():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with OpenAICompatLLM(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, **FAST) as llm, \
            pytest.raises(LLMError, match="connection failed"):
        llm.generate([_req("x")])
    assert llm.retries == 1


def test_client_error_fails_that_request_only(make_proxy, llama_server):
    too_long = b'{"error": {"message": "prompt too long", "type": "invalid_request_error", "code": 400}}'

    def plan(i, body):
        return Reply(status=400, body=too_long) if body["messages"][0]["content"] == "BAD" else Reply()

    proxy = make_proxy(plan)
    with OpenAICompatLLM(proxy.base_url, llama_server.model, concurrency=2, max_retries=5, **FAST) as llm:
        bad, good = llm.generate([_req("BAD"), _req("Say hello.")])
    assert bad.text == "" and bad.finish_reason == "error"
    assert "400" in bad.error and "prompt too long" in bad.error
    _assert_answered(good, 4)
    assert llm.retries == 0 and proxy.count == 2


# --- cache ------------------------------------------------------------------------------


def test_cached_llm_answers_repeats_without_a_request(make_proxy, llama_server, tmp_path):
    proxy = make_proxy()
    a, b, c = _req("Say hello."), _req("Name a colour."), _req("Count to three.")
    cache = RequestCache(tmp_path / "cache.sqlite")
    with CachedLLM(OpenAICompatLLM(proxy.base_url, llama_server.model, concurrency=2), cache) as llm:
        first = llm.generate([a, b])
        assert proxy.count == 2 and (llm.hits, llm.misses) == (0, 2)
        assert not any(g.cached for g in first)

        again = llm.generate([a, b])
        assert proxy.count == 2 and (llm.hits, llm.misses) == (2, 2)
        assert [g.text for g in again] == [g.text for g in first] and all(g.cached for g in again)

        mixed = llm.generate([c, b])  # only the new request reaches the server, order kept
        assert proxy.count == 3 and (llm.hits, llm.misses) == (3, 3)
        assert mixed[1].text == first[1].text and mixed[1].cached and not mixed[0].cached
        _assert_answered(mixed[0], 4)
    cache.close()


def test_cached_llm_does_not_keep_failures(make_proxy, llama_server, tmp_path):
    proxy = make_proxy(lambda i, body: Reply(status=400) if i == 0 else Reply())
    cache = RequestCache(tmp_path / "cache.sqlite")
    with CachedLLM(OpenAICompatLLM(proxy.base_url, llama_server.model), cache) as llm:
        [failed] = llm.generate([_req("Say hello.")])
        [retried] = llm.generate([_req("Say hello.")])
        [cached] = llm.generate([_req("Say hello.")])
    assert failed.error and retried.error is None and cached.cached
    assert proxy.count == 2 and len(cache) == 1
    cache.close()


# --- streaming ----------------------------------------------------------------------------


def test_stream_equals_generate(llama_server):
    req = _req("Tell me about Lake Victoria.", max_tokens=24)
    with OpenAICompatLLM(llama_server.base_url, llama_server.model) as llm:
        # llama.cpp's server reuses the KV cache of a repeated prompt, which can change greedy answers (a
        # fresh prompt is evaluated in one batch, a cached one is not): compare two calls that both reuse it.
        llm.generate([req])
        pieces, g = read_stream(llm.stream(req))
        whole = llm.generate([req])[0]
    assert len(pieces) > 5
    assert "".join(pieces) == g.text == whole.text
    assert g.finish_reason == whole.finish_reason
    assert 0 < g.completion_tokens <= 24


def test_stream_retries_before_the_first_piece(make_proxy, llama_server):
    proxy = make_proxy(lambda i, body: Reply(status=503) if i == 0 else Reply())
    with OpenAICompatLLM(proxy.base_url, llama_server.model, max_retries=2, **FAST) as llm:
        pieces, g = read_stream(llm.stream(_req("Say hello.", max_tokens=8)))
    assert pieces and "".join(pieces) == g.text
    assert llm.retries == 1 and proxy.count == 2
    assert all(b["stream"] is True for b in proxy.bodies)


def test_stream_client_error_raises_without_retry(make_proxy):
    proxy = make_proxy(lambda i, body: Reply(status=400, body=b'{"error": {"message": "prompt too long"}}'))
    with OpenAICompatLLM(proxy.base_url, "m", max_retries=3, **FAST) as llm, \
            pytest.raises(LLMError, match="HTTP 400.*prompt too long"):
        read_stream(llm.stream(_req("x")))
    assert proxy.count == 1


def test_stream_broken_after_text_raises_instead_of_repeating(make_proxy):
    body = b'data: {"choices": [{"delta": {"content": "Habari"}}]}\n\ndata: {"choices": [{"del\n\n'
    proxy = make_proxy(lambda i, b: Reply(status=200, body=body))
    with OpenAICompatLLM(proxy.base_url, "m", max_retries=3, **FAST) as llm:
        it = llm.stream(_req("x"))
        assert next(it) == "Habari"
        with pytest.raises(LLMError, match="after 1 pieces"):
            next(it)
    assert proxy.count == 1  # text was already shown: no retry
