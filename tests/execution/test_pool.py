"""The one model pool that every stage family opens: one engine per model setting, the request cache in
front of it, everything released on close."""

from __future__ import annotations

import json
import sqlite3

import pytest

from xinstruct.execution.pool import ModelPool
from xinstruct.execution.shards import read_shards, run_sharded
from xinstruct.llm import LLM, ChatRequest, Generation, ModelConfig
from xinstruct.records import Reject


class Echo(LLM):
    backend = "echo"

    def __init__(self, name: str):
        self.model_id, self.calls, self.closed = name, 0, 0

    def generate(self, requests):
        self.calls += len(requests)
        return [Generation(f"{self.model_id}: {r.messages[-1]['content']}", "stop") for r in requests]

    def close(self):
        self.closed += 1


def ask(text: str) -> list[ChatRequest]:
    return [ChatRequest(messages=({"role": "user", "content": text},))]


def test_a_pool_opened_on_a_folder_caches_calls_and_closes_engines_and_cache(tmp_path):
    policy, judge = Echo("policy"), Echo("judge")
    with ModelPool.open(None, tmp_path, by_role={"policy": policy, "judge": judge}) as pool:
        a = pool.get(ModelConfig(), "policy")
        b = pool.get(ModelConfig(), "judge")  # the same setting, another given engine: kept apart by role
        assert a.generate(ask("x"))[0].text == "policy: x" and b.generate(ask("x"))[0].text == "judge: x"
        assert a.generate(ask("x"))[0].cached  # the second call is the cache's
        assert policy.calls == 1 and pool.get(ModelConfig(), "policy") is a
    assert (tmp_path / "cache" / "llm.sqlite").is_file()
    assert policy.closed == 1 and judge.closed == 1
    assert {m["model_id"] for m in pool.identities()} == {"policy", "judge"}  # still known after close
    with pytest.raises(sqlite3.ProgrammingError):  # the pool closed the cache it opened
        len(pool.cache)
    # A reopened pool answers the same call from the file, without the engine.
    again = Echo("policy")
    with ModelPool.open(None, tmp_path, by_role={"policy": again}) as pool:
        assert pool.get(ModelConfig(), "policy").generate(ask("x"))[0].text == "policy: x"
    assert again.calls == 0


def test_one_engine_serves_roles_that_share_a_setting(tmp_path, monkeypatch):
    loaded = []

    def fake_load(cfg):
        loaded.append(cfg)
        return Echo(f"m{len(loaded)}")

    monkeypatch.setattr("xinstruct.llm.load_llm", fake_load)
    monkeypatch.setattr("xinstruct.llm.load_tokenizer", lambda cfg: None)  # a backend without a tokenizer-only load
    with ModelPool.open(None, tmp_path, by_role={"policy": None}) as pool:  # None: not given, loaded
        assert pool.get(ModelConfig(model="a.gguf"), "policy") is pool.get(ModelConfig(model="a.gguf"), "judge")
        assert pool.get(ModelConfig(model="b.gguf"), "judge").model_id == "m2"
    assert [c.model for c in loaded] == ["a.gguf", "b.gguf"]


def test_sharded_rows_come_back_in_order_with_their_rejects(tmp_path):
    class Cfg:
        shard_size, progress = 2, False

    def step(batch):
        rows = [{"n": n} for n in batch if n % 3]
        rejects = [Reject(stage="t", reason="three", detail=f"{n} divides by 3", unit="row", id=str(n))
                   for n in batch if not n % 3]
        return rows, rejects

    folder, stats = run_sharded("t", "k", range(1, 8), 7, step, None, Cfg(), tmp_path)
    rows, rejects = read_shards(folder)
    assert [r["n"] for r in rows] == [1, 2, 4, 5, 7] and [r["id"] for r in rejects] == ["3", "6"]
    assert stats.extra == {"shards": 4, "shards_resumed": 0}
    assert json.loads((folder / "shard-00001.jsonl").read_text().splitlines()[1])["reject"]["reason"] == "three"


def test_a_stages_view_scores_log_likelihoods_through_the_cache_and_counts_them(tmp_path):
    class Scorer(Echo):
        def loglikelihood(self, pairs):
            self.calls += len(pairs)
            return [-float(len(x)) for _, x in pairs]

    scorer = Scorer("scorer")
    with ModelPool.open(None, tmp_path, by_role={"mc": scorer}) as pool:
        view = pool.stage_llm(ModelConfig(), "mc")
        assert view.loglikelihood([("c", " ab"), ("c", " a")]) == [-3.0, -2.0]
        assert view.loglikelihood([("c", " ab")]) == [-3.0]  # from the cache
        stats = view.stats()
    assert scorer.calls == 2 and stats["scored"] == 3 and stats["cache_hits"] == 1 and stats["generated"] == 2


def test_weights_load_on_the_first_call_the_cache_cannot_answer(tmp_path, monkeypatch):
    """Where the backend loads a tokenizer alone, the pool's model answers tokenizer questions and cached calls
    without its weights; the first miss loads them, once, and only then is the model listed as loaded."""
    class Light(Echo):
        def first_tokens(self, text, n):
            return text[:n]

        def generate(self, requests):
            raise AssertionError("the light load cannot generate")

    loads = []

    def full(cfg):
        loads.append(cfg)
        return Echo("m")

    monkeypatch.setattr("xinstruct.llm.load_llm", full)
    monkeypatch.setattr("xinstruct.llm.load_tokenizer", lambda cfg: Light("m"))
    with ModelPool.open(None, tmp_path) as pool:
        view = pool.stage_llm(ModelConfig(model="a.gguf"))
        assert view.first_tokens("Habari", 3) == "Hab" and loads == [] and pool.identities() == []
        assert view.generate(ask("x"))[0].text == "m: x" and len(loads) == 1  # a miss: the weights load
        assert view.generate(ask("x"))[0].cached and len(loads) == 1
        assert [m["model_id"] for m in pool.identities()] == ["m"] and view.stats()["loaded"]
    with ModelPool.open(None, tmp_path) as pool:  # a rerun: every call is cached
        view = pool.stage_llm(ModelConfig(model="a.gguf"))
        assert view.generate(ask("x"))[0].text == "m: x"
        assert len(loads) == 1 and pool.identities() == [] and not view.stats()["loaded"]
    # the weights must be the model the tokenizer-only load named, or the cache keys would be wrong
    monkeypatch.setattr("xinstruct.llm.load_llm", lambda cfg: Echo("other"))
    with ModelPool.open(None, tmp_path / "b") as pool, pytest.raises(RuntimeError, match="not as the"):
        pool.stage_llm(ModelConfig(model="a.gguf")).generate(ask("y"))
