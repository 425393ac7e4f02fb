"""The step protocol: what an executor runs, in this process or on a Ray actor.

A step is built from its config alone and holds no engine until an executor binds it to a model pool where it
runs (`bind`); the engine itself loads on the first call that misses the request cache. So the same step object
is run by the local executor (bound to the run's pool, shared with the other stages) and shipped to Ray actors
(pickled without its engine, bound there to the actor's own pool, one engine per actor).

    step = Refiner(cfg.refine, decides=True)          # no model yet
    step.bind(pool)                                   # where it runs: its engine comes from `pool`
    kept, rejects = step(batch)                       # a batch of records -> records and rejects
    step.fingerprint()                                # everything its output depends on, for the shard key

A global step (`is_global`: diversification) sees all records at once, so executors run it once, in the
driver, on the gathered records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from xinstruct.llm import LLM, ModelConfig
from xinstruct.records import Reject

if TYPE_CHECKING:
    from xinstruct.execution.pool import ModelPool


class Step:
    """Base of the sharded steps. Subclasses set `name` (the stage's folder prefix) and `role` (its model's role
    in the pool), and implement `model_config`, `fingerprint` and `__call__`; `on_bind` builds what needs
    the engine (a judge over it, a scorer)."""

    name = ""
    role: str | None = None
    is_global = False
    decisions: tuple[str, ...] = ()  # the reject reasons that are the step's selection decisions (not failures)

    def __init__(self, llm: LLM | None = None):
        """`llm`: an engine to use as it is (tests, or an engine built elsewhere) instead of one from a pool."""
        self._llm = llm
        if llm is not None:
            self.on_bind()

    def model_config(self) -> ModelConfig | None:
        """The model this step runs (None: it runs none); executors size their workers from it."""
        return None

    def fingerprint(self) -> str:
        raise NotImplementedError

    def __call__(self, batch: Sequence[Any]) -> tuple[list[Any], list[Reject]]:
        raise NotImplementedError

    def arrange(self, items: Iterable[Any]) -> Iterable[Any]:
        """The step's input in the order (and with the marks) it wants: as it comes, unless a step says otherwise."""
        return items

    def batch_size(self) -> int | None:
        """Items per call (None: a whole shard)."""
        return None

    def prompts(self) -> Any:
        """The prompt templates the step uses (for the manifest), or None."""
        return None

    def stage_info(self) -> dict[str, Any]:
        """What the step adds to its stage's entry in the manifest."""
        return {}

    def bind(self, models: ModelPool) -> Step:
        """Take this step's engine from `models` (loaded there on its first cache miss)."""
        cfg = self.model_config()
        if cfg is not None:
            self._llm = models.stage_llm(cfg, self.role)
            self.on_bind()
        return self

    def on_bind(self) -> None:
        """Build what needs the engine; called whenever the step gets one."""

    @property
    def bound(self) -> bool:
        return self._llm is not None

    def load(self) -> Step:
        """Load the step's model here, without a pool or a request cache (a step that no executor binds, e.g. in a
        script); `close` frees it. A bound step keeps its engine."""
        if self._llm is None:
            cfg = self.model_config()
            if cfg is None:
                return self
            from xinstruct.llm import load_llm

            self._llm = self._owned = load_llm(cfg)
            self.on_bind()
        return self

    def close(self) -> None:
        """Free the engine `load` loaded (a pool's engines are the pool's to close)."""
        owned = self.__dict__.pop("_owned", None)
        if owned is not None:
            owned.close()
            self._llm = None

    @property
    def llm(self) -> LLM:
        """The engine: bound by an executor (`bind`) or loaded by `load`; reading it never loads a model."""
        if self._llm is None:
            raise RuntimeError(f"step {self.name!r} has no engine: an executor binds it to a model pool, or "
                               "step.load() loads its model here")
        return self._llm

    def llm_stats(self) -> dict[str, Any]:
        """The bound engine's call counts for this step (a pool's `StageLLM` keeps them), or {}."""
        stats = getattr(self._llm, "stats", None)
        return stats() if callable(stats) else {}

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its engine (and what was built on it): the process that runs it binds its own."""
        state = dict(self.__dict__)
        state["_llm"] = None
        state.pop("_owned", None)
        for name in self.engine_attributes():
            state[name] = None  # rebuilt by on_bind where the step gets its engine
        return state

    def engine_attributes(self) -> Sequence[str]:
        """Attributes that `on_bind` builds over the engine, dropped when the step is pickled."""
        return ()


def step_name(step: Any) -> str:
    name = getattr(step, "name", "")
    if not name:
        raise ValueError(f"the step {step!r} has no name: pass name= to the executor")
    return name


def run_global(step: Step, items: list[Any]) -> tuple[list[Any], list[Any]]:
    """What every executor does with a global step: run it once, in the driver, on all items."""
    if not step.is_global:
        raise ValueError(f"step {step.name!r} is not global: run it over shards")
    return step(items)
