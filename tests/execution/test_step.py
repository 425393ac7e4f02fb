"""The step protocol and what the Ray executor builds on it, without Ray: steps pickle without their engine and
bind again where they run, per-shard caches answer a retried shard, actors are sized from the backend."""

from __future__ import annotations

import pickle

import pytest

from xinstruct.curate.generate import GenerateConfig, InstructionGenerator
from xinstruct.curate.refine import RefineConfig, Refiner
from xinstruct.curate.relevance import RelevanceConfig, RelevanceGate
from xinstruct.evaluate.runner import AnswerStep, PromptItem
from xinstruct.execution.executors import ExecutorConfig, LocalExecutor
from xinstruct.execution.pool import ModelPool
from xinstruct.execution.ray_data import ShardWorker, cache_path, input_path, plan_actors
from xinstruct.execution.shards import read_shards, shard_files, shard_path
from xinstruct.llm import LLM, Generation, GenerationParams, ModelConfig
from xinstruct.llm.cache import ShardCache


class Echo(LLM):
    backend = "echo"
    model_id = "echo"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, requests):
        self.calls += len(requests)
        return [Generation(f"echo: {r.messages[-1]['content']}", "stop") for r in requests]


def items(*texts: str) -> list[PromptItem]:
    return [PromptItem(f"q{i}", "sw", [{"role": "user", "content": t}], {"question": t}) for i, t in enumerate(texts)]


def test_steps_pickle_without_their_engine_and_keep_their_fingerprint(tmp_path):
    engine = Echo()
    steps = [InstructionGenerator(GenerateConfig(), llm=engine), Refiner(RefineConfig(), engine),
             RelevanceGate(RelevanceConfig(), 0.1, True, "pre", layout="plain", llm=engine),
             AnswerStep("infer", ModelConfig(), GenerationParams(max_tokens=8), "x", llm=engine)]
    for step in steps:
        assert step.bound
        copy = pickle.loads(pickle.dumps(step))
        assert not copy.bound, type(step).__name__
        assert copy.fingerprint() == step.fingerprint() and copy.name == step.name
    # the refiner's judge goes without the engine too, and gets the one bound later
    refiner = pickle.loads(pickle.dumps(steps[1]))
    assert refiner.judge.llm is None
    with ModelPool(ShardCache(tmp_path / "c.jsonl"), by_role={"refine": engine}) as pool:
        refiner.bind(pool)
        assert refiner.judge.llm is refiner.llm
    # settings that change the output change the fingerprint
    assert Refiner(RefineConfig(keep_at=5)).fingerprint() != Refiner(RefineConfig()).fingerprint()
    assert Refiner(RefineConfig(), decides=False).fingerprint() != Refiner(RefineConfig()).fingerprint()


def test_the_local_executor_binds_the_step_to_the_runs_pool(tmp_path):
    engine = Echo()

    class Cfg:
        shard_size, progress = 2, False

    with ModelPool.open(None, tmp_path, engine) as pool:
        step = AnswerStep("infer", ModelConfig(), GenerationParams(max_tokens=8), "x")
        folder, stats = LocalExecutor(pool).run(step, "k", items("a", "b", "c"), 3, None, Cfg, tmp_path / "work")
    rows, rejects = read_shards(folder)
    assert [r["answer"] for r in rows] == ["echo: a", "echo: b", "echo: c"] and not rejects
    assert stats.llm["requests"] == 3 and stats.llm["generated"] == 3 and engine.calls == 3


def test_a_shard_worker_writes_each_shard_once_and_a_retry_reuses_its_cache(tmp_path):
    """What a Ray actor does with one row of the dataset, run here in-process: the shard's output is written
    atomically with its cache beside it; a retried task finds the output and does nothing; a shard retried after
    a death mid-shard answers its finished calls from the shard's cache."""
    folder = tmp_path / "infer-k"
    folder.mkdir()
    for i, shard in enumerate([items("a", "b"), items("c")]):
        with open(input_path(folder, i), "wb") as f:
            pickle.dump(shard, f)
    engine = Echo()
    step = AnswerStep("infer", ModelConfig(), GenerationParams(max_tokens=8), "x")
    worker = ShardWorker(pickle.loads(pickle.dumps(step)), str(folder), None)
    worker.pool = ModelPool(ShardCache(tmp_path / "first.jsonl"), engine)
    worker.step.bind(worker.pool)
    out = worker({"shard": [0, 1]})
    assert out["ran"] == [True, True] and out["n"] == [2, 1] and out["kept"] == [2, 1]
    assert [p.name for p in shard_files(folder)] == ["shard-00000.jsonl", "shard-00001.jsonl"]
    assert not list(folder.glob("input-*")) and cache_path(folder, 0).is_file()
    assert len(ShardCache(cache_path(folder, 0))) == 2 and engine.calls == 3
    # a retried task whose output exists runs nothing
    assert worker({"shard": [1]})["ran"] == [False] and engine.calls == 3

    # shard 0 again, as if its actor died after its calls but before the output was written
    shard_path(folder, 0).unlink()
    with open(input_path(folder, 0), "wb") as f:
        pickle.dump(items("a", "b"), f)
    again = worker({"shard": [0]})
    assert again["ran"] == [True] and engine.calls == 3  # both answers came from the shard's cache
    assert read_shards(folder)[0][0]["answer"] == "echo: a"


def test_a_shard_cache_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "shard-00000.cache.jsonl"
    c = ShardCache(path)
    c.put_values("m", [("k1", {"text": "one"}), ("k2", {"text": "two"})])
    c.close()
    with open(path, "a", encoding="utf-8") as f:
        f.write('["k3", "m", {"text": "thr')  # killed mid-write
    c = ShardCache(path)
    assert c.get_values(["k1", "k2", "k3"]) == {"k1": {"text": "one"}, "k2": {"text": "two"}}
    c.put_values("m", [("k3", {"text": "three"})])  # the next line starts on its own line
    c.close()
    assert ShardCache(path).get_values(["k3"]) == {"k3": {"text": "three"}}


def test_actors_are_sized_from_the_backend_and_the_cluster():
    cpu8, gpu4 = {"CPU": 8.0}, {"CPU": 32.0, "GPU": 4.0}
    cfg = ExecutorConfig(kind="ray")
    assert plan_actors(cfg, "llama.cpp", 10, cpu8).__dict__ == {"actors": 2, "num_cpus": 4.0, "num_gpus": 0.0}
    assert plan_actors(cfg, "llama.cpp", 10, {"CPU": 2.0}).__dict__ == {"actors": 1, "num_cpus": 2.0, "num_gpus": 0.0}
    assert plan_actors(cfg, "vllm", 10, gpu4).__dict__ == {"actors": 4, "num_cpus": 1.0, "num_gpus": 1.0}
    assert plan_actors(cfg, "transformers", 10, cpu8).num_gpus == 0.0  # no GPU in the cluster: CPU actors
    assert plan_actors(cfg, "openai", 10, cpu8).__dict__ == {"actors": 4, "num_cpus": 0.25, "num_gpus": 0.0}
    assert plan_actors(cfg, "openai", 2, cpu8).actors == 2  # never more actors than shards
    set_ = ExecutorConfig(kind="ray", actors=3, cpus_per_actor=1, gpus_per_actor=0.5)
    assert plan_actors(set_, "vllm", 10, gpu4).__dict__ == {"actors": 3, "num_cpus": 1, "num_gpus": 0.5}


def test_llama_cpp_threads_follow_the_cpus_ray_gives_an_actor(monkeypatch):
    """Ray sets OMP_NUM_THREADS to an actor's CPUs: llama.cpp's threads stay within them (not the node's cores)."""
    from xinstruct.llm import llamacpp

    monkeypatch.setattr(llamacpp.os, "cpu_count", lambda: 64)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert (llamacpp.cores(), llamacpp.default_threads(), llamacpp.batch_threads(3)) == (4, 3, 4)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert (llamacpp.cores(), llamacpp.default_threads(), llamacpp.batch_threads(3)) == (64, 16, 16)
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert llamacpp.cores() == 64


def test_a_global_step_runs_once_on_all_items_in_either_executor_and_a_sharded_one_is_refused():
    from xinstruct.execution.ray_data import RayExecutor
    from xinstruct.execution.step import Step

    class Reverse(Step):
        name, is_global = "reverse", True

        def __init__(self) -> None:
            self.calls = 0
            super().__init__()

        def __call__(self, batch):
            self.calls += 1
            return list(batch)[::-1], []

    step = Reverse()
    assert LocalExecutor().run_global(step, [1, 2, 3]) == ([3, 2, 1], [])
    assert RayExecutor(ExecutorConfig(kind="ray")).run_global(step, [1, 2]) == ([2, 1], [])  # no Ray started
    assert step.calls == 2


    with pytest.raises(ValueError, match="not global"):
        LocalExecutor().run_global(AnswerStep("infer", ModelConfig(), GenerationParams(), "x"), [])


def test_the_local_executor_runs_a_task_on_the_runs_pool(tmp_path):
    with ModelPool.open(None, tmp_path, Echo()) as pool:
        ex = LocalExecutor(pool)
        assert ex.run_task(lambda p, x: (p, x), 3, models=[ModelConfig()]) == (pool, 3) and not ex.remote
    with pytest.raises(ValueError, match="model pool"):
        LocalExecutor().run_task(lambda p: p)


def test_the_ray_executor_refuses_engines_built_in_this_process(tmp_path):
    from xinstruct.execution.executors import make_executor

    with ModelPool.open(None, tmp_path, Echo()) as pool:
        with pytest.raises(ValueError, match="cannot be shipped to Ray"):
            make_executor(ExecutorConfig(kind="ray"), pool)
        assert make_executor(ExecutorConfig(), pool).kind == "local"
    with ModelPool.open(None, tmp_path) as pool:
        assert make_executor(ExecutorConfig(kind="ray"), pool).kind == "ray"  # settings only: fine
    with pytest.raises(ValueError, match="executor.kind"):
        make_executor(ExecutorConfig(kind="dask"), None)


def test_a_stage_llms_counts_are_the_ones_the_ray_executor_adds_up(tmp_path):
    from xinstruct.execution.pool import StageLLM

    with ModelPool.open(None, tmp_path, Echo()) as pool:
        assert set(pool.stage_llm(ModelConfig()).stats()) == {"loaded", *StageLLM.COUNTS}
