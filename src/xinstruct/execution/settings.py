"""Where a command's LLM stages run: the executor's settings (the `executor` section of a recipe)."""

from __future__ import annotations

from dataclasses import dataclass

EXECUTORS = ("local", "ray")


@dataclass
class ExecutorConfig:
    kind: str = "local"  # local: this process; ray: Ray Data actors (pip install 'xinstruct[ray]')
    # ray: a running cluster ("auto", "ray://head:10001", or host:port); None starts a local Ray on this machine's
    # cores. The run's output folder must be one that every node sees (a shared file system).
    address: str | None = None
    actors: int | None = None  # ray: actors per LLM stage; None: from the cluster's resources and the backend
    cpus_per_actor: float | None = None  # None: 0.25 for an OpenAI-compatible server, else min(node cores, 4)
    gpus_per_actor: float | None = None  # None: 1 for transformers/vLLM where the cluster has GPUs, else 0

    def validate(self) -> None:
        if self.kind not in EXECUTORS:
            raise ValueError(f"executor.kind must be one of {', '.join(EXECUTORS)}, not {self.kind!r}")
        for name in ("actors", "cpus_per_actor", "gpus_per_actor"):
            v = getattr(self, name)
            if v is not None and v < (1 if name == "actors" else 0):
                raise ValueError(f"executor.{name} must be >= {1 if name == 'actors' else 0}, not {v}")
