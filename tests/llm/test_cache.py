"""The request cache: finished calls are never made twice, across processes and restarts."""

import subprocess
import sys
import time

from xinstruct.llm import CachedLLM, ChatRequest, Generation, GenerationParams, RequestCache
from xinstruct.llm.base import LLM


class CountingLLM(LLM):
    """A test double that records the calls it receives (the cache is under test, not a model)."""

    backend, model_id = "test", "counting"

    def __init__(self, fail_on: str | None = None):
        self.calls: list[str] = []
        self.fail_on = fail_on

    def generate(self, requests):
        out = []
        for r in requests:
            text = r.messages[-1]["content"]
            self.calls.append(text)
            err = "boom" if text == self.fail_on else None
            out.append(Generation(text=text.upper(), completion_tokens=len(text), error=err))
        return out


def _req(text, **params):
    return ChatRequest(messages=({"role": "user", "content": text},), params=GenerationParams(**params))


def test_second_call_is_answered_from_the_cache(tmp_path):
    inner = CountingLLM()
    llm = CachedLLM(inner, RequestCache(tmp_path / "c.sqlite"))
    first = llm.generate([_req("a"), _req("b")])
    again = llm.generate([_req("b"), _req("c"), _req("a")])
    assert [g.text for g in again] == ["B", "C", "A"]
    assert [g.cached for g in again] == [True, False, True]
    assert inner.calls == ["a", "b", "c"]
    assert (llm.hits, llm.misses) == (2, 3)
    assert [g.text for g in first] == ["A", "B"]


def test_key_includes_parameters_and_model(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    inner = CountingLLM()
    llm = CachedLLM(inner, cache)
    llm.generate([_req("a"), _req("a", temperature=0.7), _req("a", max_tokens=5)])
    assert len(inner.calls) == 3
    other = CountingLLM()
    other.model_id = "another-model"
    CachedLLM(other, cache).generate([_req("a")])
    assert other.calls == ["a"]


def test_failed_calls_are_not_cached(tmp_path):
    inner = CountingLLM(fail_on="bad")
    llm = CachedLLM(inner, RequestCache(tmp_path / "c.sqlite"))
    assert llm.generate([_req("bad")])[0].error == "boom"
    llm.generate([_req("bad")])
    assert inner.calls == ["bad", "bad"]


FILL = """
import sys, time
from xinstruct.llm import ChatRequest, Generation, GenerationParams, RequestCache
from xinstruct.llm.cache import request_key
while time.time() < float(sys.argv[3]):  # all processes open the new file at the same moment
    pass
cache = RequestCache(sys.argv[1])
for i in range(int(sys.argv[2]), int(sys.argv[2]) + 50):
    req = ChatRequest(messages=({"role": "user", "content": str(i)},), params=GenerationParams())
    cache.put_many("counting", [(request_key("test:counting", req), Generation(text=str(i).upper()))])
"""


def test_cache_survives_restart_and_is_shared_by_processes(tmp_path):
    path = tmp_path / "c.sqlite"
    # Several processes create the same new file at once (WAL setup races), then write into it.
    start = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", FILL, str(path), str(s), start]) for s in range(0, 200, 25)]
    assert [p.wait(120) for p in procs] == [0] * 8
    cache = RequestCache(path)
    assert len(cache) == 225
    inner = CountingLLM()
    CachedLLM(inner, cache).generate([_req(str(i)) for i in range(225)])
    assert inner.calls == []


def test_log_likelihoods_are_cached_apart_from_token_log_probabilities(tmp_path):
    class Scorer(LLM):
        backend, model_id = "scripted", "scorer"

        def __init__(self):
            self.calls = []

        def generate(self, requests):
            raise AssertionError("scoring only")

        def token_logprobs(self, pairs):
            self.calls.append(("token_logprobs", list(pairs)))
            return [[-1.0] * len(x.split()) for _, x in pairs]

        def loglikelihood(self, pairs):
            self.calls.append(("loglikelihood", list(pairs)))
            return [-1.0 * len(x.split()) for _, x in pairs]

    cache = RequestCache(tmp_path / "c.sqlite")
    inner = Scorer()
    llm = CachedLLM(inner, cache)
    pairs = [("ctx", " a b"), ("ctx", " c")]
    assert llm.loglikelihood(pairs) == [-2.0, -1.0]
    assert llm.loglikelihood(pairs + [("ctx", " d e f")]) == [-2.0, -1.0, -3.0]  # only the new pair is scored
    assert llm.token_logprobs(pairs[:1]) == [[-1.0, -1.0]]  # its own entry: a list, not the sum
    assert [(kind, len(p)) for kind, p in inner.calls] == [("loglikelihood", 2), ("loglikelihood", 1),
                                                            ("token_logprobs", 1)] and llm.hits == 2
