"""Executors: what runs a stage's steps over its shards. The local one runs them in this process (the shard runner
of `shards`, the step bound to the run's model pool); the Ray one ships them to Ray Data actors
(`xinstruct.execution.ray_data`). Both write the same shard files, so a stage's output does not depend on which
one ran it, and either resumes what the other began.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from xinstruct.execution.pool import ModelPool
from xinstruct.execution.settings import ExecutorConfig
from xinstruct.execution.shards import StageStats, StepFn, run_sharded
from xinstruct.execution.step import Step, run_global, step_name
from xinstruct.llm import ModelConfig

__all__ = ["Executor", "ExecutorConfig", "LocalExecutor", "make_executor"]


class Executor(Protocol):
    kind: str
    remote: bool  # whether model work runs outside this process (then this process loads no model)

    def run(self, step: Step | StepFn, key: str, items: Iterable[Any], n_items: int, batch_size: int | None,
            cfg: Any, work: Path, shard_size: int | None = None, name: str | None = None,
            ) -> tuple[Path, StageStats]:
        """Run `step` over `items` in shards (see `run_sharded`): the stage folder and its stats."""
        ...

    def run_global(self, step: Step, items: list[Any]) -> tuple[list[Any], list[Any]]:
        """Run a global step (`is_global`: it needs all items at once) once, here, on the gathered items."""
        ...

    def run_task(self, fn: Callable[..., Any], *args: Any, models: Sequence[ModelConfig | None] = (),
                 cache: Path | None = None) -> Any:
        """`fn(pool, *args)` once, with a model pool where the executor runs model work (`models`: what it will
        load, to size its resources; `cache`: the request-cache file of a pool of its own); returns its result."""
        ...


class LocalExecutor:
    """Runs a step in this process, bound to the run's model pool (so stages share engines)."""

    kind = "local"
    remote = False

    def __init__(self, pool: ModelPool | None = None):
        self.pool = pool

    def run(self, step: Step | StepFn, key: str, items: Iterable[Any], n_items: int, batch_size: int | None,
            cfg: Any, work: Path, shard_size: int | None = None, name: str | None = None,
            ) -> tuple[Path, StageStats]:
        loaded = False
        if isinstance(step, Step) and not step.bound:
            if self.pool is not None:
                step.bind(self.pool)
            else:
                step.load()
                loaded = True
        try:
            folder, stats = run_sharded(name or step_name(step), key, items, n_items, step, batch_size, cfg, work,
                                        shard_size)
            if isinstance(step, Step):
                stats.llm = step.llm_stats()
        finally:
            if loaded:
                step.close()  # type: ignore[union-attr]
        return folder, stats

    def run_global(self, step: Step, items: list[Any]) -> tuple[list[Any], list[Any]]:
        return run_global(step, items)

    def run_task(self, fn: Callable[..., Any], *args: Any, models: Sequence[ModelConfig | None] = (),
                 cache: Path | None = None) -> Any:
        """`fn(pool, *args)` on the run's pool, here (`models` and `cache` are for executors that run elsewhere)."""
        if self.pool is None:
            raise ValueError("the local executor runs tasks on the run's model pool: give it one")
        return fn(self.pool, *args)


def make_executor(cfg: ExecutorConfig | None, pool: ModelPool | None) -> Executor:
    """The executor `cfg` names; the local one gets `pool`, the Ray one ignores it (its actors load their own)."""
    cfg = cfg or ExecutorConfig()
    cfg.validate()
    if cfg.kind == "ray":
        from xinstruct.execution.ray_data import RayExecutor

        if pool is not None and (pool.llm is not None or pool.by_role):
            raise ValueError("engines built in this process (llm=, models=) cannot be shipped to Ray actors: use "
                             "the local executor, or give their settings (ModelConfig) instead")
        return RayExecutor(cfg)
    return LocalExecutor(pool)
