"""Running a job's stages one after the other, each over what the one before it kept.

What every stage of a job does around its step is done here once: its key (the folder of the stage before it, the
step's fingerprint, the shard size), the executor's call, the stream of its shard files, its rejects and its entry
in the manifest. A job is then a list of steps:

    stages = StageRunner(executor, cfg, work, out, upstream=prepared.name)
    records = stages.run(InstructionGenerator(cfg.generate), records, n)
    records = stages.run(Refiner(cfg.refine), records)
    ...
    stages.rejects   # the rejects of every stage, in stage order (sources read when the output is written)
    stages.info      # per stage: seconds, folder, shards resumed, rejected, LLM calls

A global step (`is_global`: it needs all records at once, e.g. clustering) runs once on the gathered records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from xinstruct.execution.executors import Executor
from xinstruct.execution.shards import StageStats, Stream
from xinstruct.execution.step import Step
from xinstruct.records import Reject, stable_hash

RejectSource = Callable[[], Iterable[Reject]]


def stage_info(st: StageStats, folder: Path, out: Path, rejected: int) -> dict[str, Any]:
    """A sharded stage's entry in the manifest."""
    return {"seconds": round(st.seconds, 2), "resumed": st.resumed, "folder": str(folder.relative_to(out)),
            "rejected": rejected, **st.extra, "llm": st.llm}


class StageRunner:
    """Runs steps in order with one executor; `upstream` names what the first step reads (its key's start)."""

    def __init__(self, executor: Executor, cfg: Any, work: Path, out: Path, upstream: str = ""):
        self.executor, self.cfg, self.work, self.out, self.upstream = executor, cfg, work, out, upstream
        self.shard_size = cfg.effective_shard_size()
        self.rejects: list[tuple[str, RejectSource]] = []  # (stage, its rejects), in stage order
        self.info: dict[str, Any] = {}
        self.prompts: dict[str, Any] = {}
        self.decisions: dict[str, tuple[str, ...]] = {}  # stage -> the reasons its step rejects by decision

    def run(self, step: Step, records: Iterable[Any], n: int | None = None) -> Iterable[Any]:
        """`step` over `records` (`n` of them: their `len` where not given); returns what it kept."""
        if n is None:
            n = len(records)  # type: ignore[arg-type]
        self.decisions[step.name] = step.decisions
        prompts = step.prompts()
        if prompts is not None:
            self.prompts[step.name] = prompts
        if step.is_global:
            return self._run_global(step, records)
        key = stable_hash(self.upstream, step.fingerprint(), self.shard_size)
        folder, st = self.executor.run(step, key, step.arrange(records), n, step.batch_size(), self.cfg, self.work,
                                       self.shard_size)
        kept, rejects, n_rejected = Stream.of_shards(folder)
        self.rejects.append((step.name, rejects))
        self.upstream = folder.name
        info = stage_info(st, folder, self.out, n_rejected)
        if step.model_config() is None:
            del info["llm"]  # a step without a model makes no LLM calls
        self.info[step.name] = {**info, **step.stage_info()}
        return kept

    def _run_global(self, step: Step, records: Iterable[Any]) -> list[Any]:
        t0 = time.perf_counter()
        kept, rejects = self.executor.run_global(step, list(records))
        self.rejects.append((step.name, lambda: iter(rejects)))
        self.info[step.name] = {**step.stage_info(), "seconds": round(time.perf_counter() - t0, 2)}
        return kept
