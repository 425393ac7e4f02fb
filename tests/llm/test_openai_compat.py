"""The OpenAI-compatible backend against a real llama.cpp server, with faults injected by a proxy, and against
a stand-in server (no model) that holds hundreds of requests at once, to show how many the backend keeps open.

The model (SmolLM2-135M) is weak: the tests assert behaviour (answers arrive, in order, parse
against the schema; errors and retries happen as documented), never the quality of an answer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
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


# --- requests in flight (a stand-in server) -------------------------------------------------


class StandIn:
    """An OpenAI-compatible server without a model, on an event loop of its own (a thread), so it can hold
    hundreds of requests at once. A chat request is answered with its last message's content, a completions
    request with one log-probability per character of its prompt (minus the character's code), unless `plan`
    says otherwise (`Reply.status`/`body`/`delay`/`drop`, as for the proxy). With `gate`, requests wait until
    `gate` of them are in flight, then a moment more (for any beyond the client's limit to arrive), before
    any is answered. `peak` is the most requests in flight at once."""

    def __init__(self, plan: Plan = lambda i, body: Reply(), gate: int = 0):
        self.plan, self.gate = plan, gate
        self.bodies: list[dict] = []
        self.peak = self._in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._open = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        start = asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=1024)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: one request after another on this connection
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")
                               if line.startswith("content-length:")), 0)
                body = json.loads(await reader.readexactly(length) or b"{}")
                index = len(self.bodies)
                self.bodies.append(body)
                self._in_flight += 1
                self.peak = max(self.peak, self._in_flight)
                try:
                    reply = self.plan(index, body)
                    await self._hold()
                    await asyncio.sleep(reply.delay)
                finally:
                    self._in_flight -= 1
                if reply.drop:
                    return
                status, content = (reply.status, reply.body) if reply.status is not None else (200, _answer(body))
                writer.write(f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(content)}\r\n\r\n".encode() + content)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        finally:
            writer.close()

    async def _hold(self) -> None:
        if not self.gate or self._open.is_set():
            return
        if self._in_flight >= self.gate:
            await asyncio.sleep(0.3)
            self._open.set()
            return
        try:
            await asyncio.wait_for(self._open.wait(), timeout=10)
        except asyncio.TimeoutError:  # TimeoutError from Python 3.11 on
            self._open.set()  # fewer than `gate` ever came: answer them (the test's peak assertion fails)

    def stop(self) -> None:
        async def shut() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def _answer(body: dict) -> bytes:
    if "messages" in body:
        text = body["messages"][-1]["content"]
        return json.dumps({"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": len(text), "completion_tokens": 1}}).encode()
    prompt = body["prompt"]
    lp = {"text_offset": list(range(len(prompt))), "token_logprobs": [-float(ord(c)) for c in prompt]}
    return json.dumps({"choices": [{"text": prompt, "logprobs": lp}]}).encode()


@pytest.fixture
def stand_in():
    """Start stand-in servers; all of them are stopped after the test."""
    servers: list[StandIn] = []

    def make(plan: Plan = lambda i, body: Reply(), gate: int = 0) -> StandIn:
        servers.append(StandIn(plan, gate))
        return servers[-1]

    yield make
    for s in servers:
        s.stop()


@pytest.mark.parametrize("n, max_in_flight", [(300, 256), (40, 4)])
def test_keeps_max_in_flight_requests_open(stand_in, n, max_in_flight):
    server = stand_in(gate=max_in_flight)
    with OpenAICompatLLM(server.base_url, "m", max_in_flight=max_in_flight) as llm:
        gens = llm.generate([_req(f"request {i}") for i in range(n)])
    assert server.peak == max_in_flight  # as many as allowed, never more
    assert [g.text for g in gens] == [f"request {i}" for i in range(n)]
    assert len(server.bodies) == n and llm.retries == 0


def test_max_in_flight_is_max_batch_and_concurrency_its_old_name():
    llm = OpenAICompatLLM("http://127.0.0.1:9/v1", "m")
    old = OpenAICompatLLM("http://127.0.0.1:9/v1", "m", concurrency=8, max_in_flight=100)
    assert (llm.max_in_flight, llm.max_batch) == (256, 256)
    assert (old.max_in_flight, old.max_batch) == (8, 8)
    llm.close()
    old.close()


def test_many_results_keep_request_order(stand_in):
    n = 200  # the later the request, the sooner its answer
    server = stand_in(lambda i, body: Reply(delay=0.002 * (n - int(body["messages"][0]["content"]))))
    with OpenAICompatLLM(server.base_url, "m") as llm:
        gens = llm.generate([_req(str(i)) for i in range(n)])
    assert [g.text for g in gens] == [str(i) for i in range(n)]
    assert [g.prompt_tokens for g in gens] == [len(str(i)) for i in range(n)]


def test_rate_limited_requests_are_retried(stand_in):
    limited = {"2", "5"}  # answered 429 the first time

    def plan(i, body):
        text = body["messages"][0]["content"]
        if text in limited:
            limited.discard(text)
            return Reply(status=429, body=b'{"error": {"message": "slow down"}}')
        return Reply()

    server = stand_in(plan)
    with OpenAICompatLLM(server.base_url, "m", max_retries=2, **FAST) as llm:
        gens = llm.generate([_req(str(i)) for i in range(8)])
    assert [g.text for g in gens] == [str(i) for i in range(8)] and all(g.error is None for g in gens)
    assert llm.retries == 2 and len(server.bodies) == 10


def test_bad_request_fails_that_request_only(stand_in):
    bad = b'{"error": {"message": "prompt too long"}}'
    server = stand_in(lambda i, body: Reply(status=400, body=bad) if body["messages"][0]["content"] == "3"
                      else Reply())
    with OpenAICompatLLM(server.base_url, "m", max_retries=3, **FAST) as llm:
        gens = llm.generate([_req(str(i)) for i in range(50)])
    assert gens[3].text == "" and gens[3].finish_reason == "error" and "HTTP 400" in gens[3].error
    assert "prompt too long" in gens[3].error
    assert all(g.error is None and g.text == str(i) for i, g in enumerate(gens) if i != 3)
    assert llm.retries == 0 and len(server.bodies) == 50


def test_exhausted_retries_fail_the_call_and_leave_the_backend_usable(stand_in):
    server = stand_in(lambda i, body: Reply(status=503) if body["messages"][0]["content"] == "dead"
                      else Reply(delay=0.5))
    with OpenAICompatLLM(server.base_url, "m", max_retries=1, **FAST) as llm:
        with pytest.raises(LLMError, match="2 attempts: HTTP 503"):
            llm.generate([_req(str(i)) for i in range(20)] + [_req("dead")])
        [g] = llm.generate([_req("alive")])  # the cancelled requests hold no slots
    assert g.text == "alive"


def test_token_logprobs_keep_order_and_the_limit(stand_in):
    server = stand_in(gate=4)
    pairs = [(f"ctx{i}:", f"cont{i}") for i in range(30)]
    with OpenAICompatLLM(server.base_url, "m", max_in_flight=4) as llm:
        scores = llm.token_logprobs(pairs)
    assert scores == [[-float(ord(c)) for c in cont] for _, cont in pairs]
    assert server.peak == 4


def test_generate_works_inside_a_running_event_loop(stand_in):
    server = stand_in()

    async def caller() -> list[str]:
        with OpenAICompatLLM(server.base_url, "m") as llm:
            return [g.text for g in llm.generate([_req("a"), _req("b")])]

    assert asyncio.run(caller()) == ["a", "b"]


def test_close_stops_the_event_loop(stand_in):
    server = stand_in()
    llm = OpenAICompatLLM(server.base_url, "m")
    llm.generate([_req("a")])
    thread = llm._thread
    assert thread is not None and thread.is_alive()
    llm.close()
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        llm.generate([_req("a")])
