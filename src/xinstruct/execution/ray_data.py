"""The Ray executor: a stage's unfinished shards as a Ray Data dataset, one row per shard, mapped by
`map_batches` over `ShardWorker` actors (one engine per actor, loaded once, on its first cache miss).

Work is sharded as the local executor shards it, with the same files: the driver writes each unfinished shard's
input beside the stage's outputs (`input-NNNNN.pkl`), an actor writes the shard's output atomically
(`shard-NNNNN.jsonl`, the completion marker: a rerun skips every shard that has one) and keeps the shard's
request cache next to it (`shard-NNNNN.cache.jsonl`, append-only), so a shard retried on another node, or after
the driver was killed, reuses the calls it had finished. Actors that die are restarted and their task retried
(Ray's actor fault tolerance); a retry that finds the output written does nothing more.

Resources per actor come from the step's model: GPUs for transformers and vLLM where the cluster has them, CPUs
for llama.cpp and CPU transformers, a quarter CPU for an OpenAI-compatible backend (a few actors share one
server); `ExecutorConfig` overrides each.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from xinstruct.execution.pool import ModelPool, StageLLM
from xinstruct.execution.settings import ExecutorConfig
from xinstruct.execution.shards import StageStats, StepFn, run_shard, shard_path, shards
from xinstruct.execution.step import Step, run_global, step_name
from xinstruct.io import atomic_write
from xinstruct.llm import ModelConfig
from xinstruct.llm.cache import ShardCache

log = logging.getLogger(__name__)


def input_path(folder: Path, i: int) -> Path:
    return folder / f"input-{i:05d}.pkl"


def cache_path(folder: Path, i: int) -> Path:
    return folder / f"shard-{i:05d}.cache.jsonl"


@dataclass
class ActorPlan:
    actors: int
    num_cpus: float
    num_gpus: float


def plan_actors(cfg: ExecutorConfig, backend: str | None, n_shards: int, cluster: dict[str, float]) -> ActorPlan:
    """How many actors, and the CPUs and GPUs of each, for a stage on `backend` with `n_shards` to run."""
    from xinstruct.llm.backends import spec

    cpus, gpus = float(cluster.get("CPU", 1)), float(cluster.get("GPU", 0))
    kind = spec(backend) if backend is not None else None
    if kind is not None and kind.server:
        num_cpus, num_gpus = cfg.cpus_per_actor if cfg.cpus_per_actor is not None else 0.25, 0.0
        default = 4
    elif kind is not None and kind.gpu and (cfg.gpus_per_actor or gpus >= 1):
        num_gpus = cfg.gpus_per_actor if cfg.gpus_per_actor is not None else 1.0
        num_cpus = cfg.cpus_per_actor if cfg.cpus_per_actor is not None else 1.0
        default = max(1, int(gpus // num_gpus)) if num_gpus else 1
    else:
        num_cpus = cfg.cpus_per_actor if cfg.cpus_per_actor is not None else min(cpus, 4.0)
        num_gpus = cfg.gpus_per_actor or 0.0
        default = max(1, int(cpus // num_cpus)) if num_cpus else 1
    return ActorPlan(max(1, min(cfg.actors or default, n_shards)), num_cpus, num_gpus)


class ShardWorker:
    """A Ray Data actor: runs one stage's step over whole shards, one engine for the actor's life."""

    def __init__(self, step: Step | StepFn, folder: str, batch_size: int | None):
        self.step, self.folder, self.batch_size = step, Path(folder), batch_size
        self.pool: ModelPool | None = None

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"shard": [], "n": [], "kept": [], "rejected": [], "llm": [], "ran": []}
        for i in (int(x) for x in batch["shard"]):
            path, inp = shard_path(self.folder, i), input_path(self.folder, i)
            n = kept = rejected = 0
            delta: dict[str, Any] = {}
            ran = not path.is_file()  # a retried task whose shard was written before the actor died: done
            if ran:
                with open(inp, "rb") as f:
                    items = pickle.load(f)
                n = len(items)
                cache = ShardCache(cache_path(self.folder, i))
                try:
                    self._bind(cache)
                    before = _llm_stats(self.step)
                    kept, rejected = run_shard(self.step, items, self.batch_size, path)
                    after = _llm_stats(self.step)
                    delta = {k: after[k] - before.get(k, 0) for k in StageLLM.COUNTS if k in after}
                    delta["loads"] = int(bool(after.get("loaded")) and not before.get("loaded"))  # weights, here
                finally:
                    cache.close()
            inp.unlink(missing_ok=True)
            for k, v in (("shard", i), ("n", n), ("kept", kept), ("rejected", rejected), ("llm", json.dumps(delta)),
                         ("ran", ran)):
                out[k].append(v)
        return out

    def _bind(self, cache: ShardCache) -> None:
        if self.pool is None:
            self.pool = ModelPool(cache)
            if isinstance(self.step, Step):
                self.step.bind(self.pool)
        else:
            self.pool.use_cache(cache)


def _pooled_task(fn: Callable[..., Any], args: tuple[Any, ...], cache: str | None) -> Any:
    """A Ray task's body: `fn(pool, *args)` with a model pool of its own over the request-cache file `cache`."""
    store = ShardCache(cache or Path(tempfile.mkdtemp()) / "task.cache.jsonl")
    try:
        with ModelPool(store) as pool:
            return fn(pool, *args)
    finally:
        store.close()


def _llm_stats(step: Step | StepFn) -> dict[str, Any]:
    return step.llm_stats() if isinstance(step, Step) else {}


class RayExecutor:
    """Runs a stage's unfinished shards on Ray Data actors (see the module's doc)."""

    kind = "ray"
    remote = True

    def __init__(self, cfg: ExecutorConfig):
        self.cfg = cfg

    def run_global(self, step: Step, items: list[Any]) -> tuple[list[Any], list[Any]]:
        """A global step runs once, in the driver, on the gathered items (as the local executor runs it)."""
        return run_global(step, items)

    def run_task(self, fn: Callable[..., Any], *args: Any, models: Sequence[ModelConfig | None] = (),
                 cache: Path | None = None) -> Any:
        """`fn(pool, *args)` once as a Ray task, with a model pool of its own (its request cache the JSONL file
        `cache`, else a temporary one), sized for the heaviest of `models` (a GPU where any needs one)."""
        ray = self.start()
        cluster = ray.cluster_resources()
        plans = [plan_actors(self.cfg, m.resolved_backend(), 1, cluster) for m in models if m is not None]
        num_cpus = max((p.num_cpus for p in plans), default=1.0)
        num_gpus = max((p.num_gpus for p in plans), default=0.0)
        task = ray.remote(_pooled_task).options(num_cpus=num_cpus, num_gpus=num_gpus or None)
        return ray.get(task.remote(fn, args, str(cache) if cache else None))

    def start(self) -> Any:
        try:
            import ray
        except ImportError as e:
            raise ImportError("--executor ray needs Ray Data: pip install 'xinstruct[ray]' (or 'ray[data]')") from e
        if not ray.is_initialized():
            if self.cfg.address:
                ray.init(address=self.cfg.address, include_dashboard=False, log_to_driver=True)
            else:
                ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=True)
        return ray

    def run(self, step: Step | StepFn, key: str, items: Iterable[Any], n_items: int, batch_size: int | None,
            cfg: Any, work: Path, shard_size: int | None = None, name: str | None = None,
            ) -> tuple[Path, StageStats]:
        name = name or step_name(step)
        folder = work / f"{name}-{key}"
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        todo: dict[int, int] = {}  # unfinished shard -> its items
        n_shards = 0
        for i, shard in enumerate(shards(items, shard_size or cfg.shard_size)):
            n_shards += 1
            if shard_path(folder, i).is_file():
                continue
            with atomic_write(input_path(folder, i), "wb") as f:
                pickle.dump(list(shard), f)
            todo[i] = len(shard)
        llm = dict.fromkeys((*StageLLM.COUNTS, "loads"), 0)
        if todo:
            ray = self.start()
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            model = step.model_config() if isinstance(step, Step) else None
            plan = plan_actors(self.cfg, model.resolved_backend() if model else None, len(todo),
                               ray.cluster_resources())
            log.info("%s: %d shards on %d Ray actors (%s CPUs, %s GPUs each)", name, len(todo), plan.actors,
                     plan.num_cpus, plan.num_gpus)
            ds = ray.data.from_items([{"shard": i} for i in todo], override_num_blocks=len(todo))
            ds = ds.map_batches(ShardWorker, fn_constructor_kwargs={"step": step, "folder": str(folder),
                                                                    "batch_size": batch_size},
                                batch_size=1, compute=ray.data.ActorPoolStrategy(size=plan.actors),
                                num_cpus=plan.num_cpus, num_gpus=plan.num_gpus or None)  # actors restart on death
            done_n = n_items - sum(todo.values())
            with tqdm(total=n_items, initial=done_n, desc=name, unit="rec", disable=not cfg.progress) as bar:
                for row in ds.iter_rows():
                    bar.update(todo[int(row["shard"])])
                    for k, v in json.loads(row["llm"]).items():
                        llm[k] = llm.get(k, 0) + v
        stats = StageStats(seconds=time.perf_counter() - t0, resumed=len(todo) < n_shards,
                           extra={"shards": n_shards, "shards_resumed": n_shards - len(todo), "executor": "ray"},
                           llm={"loaded": llm["loads"] > 0, **llm})
        return folder, stats
