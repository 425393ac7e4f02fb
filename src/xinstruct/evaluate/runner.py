"""Answer a list of prompts with one model, sharded, cached and resumable: the engine under `xinstruct infer`
and the generation tasks (translation, QA, summarisation), so they all resume the same way.

A prompt's answer is written once its shard finishes; every call is also in the request cache, so a run
killed inside a shard redoes only the calls it had not finished. A failed call is a reject (with the
prompt), never a silent gap; a rerun retries it, because failures are not cached.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinstruct.config import to_dict
from xinstruct.execution.executors import ExecutorConfig, make_executor
from xinstruct.execution.pool import ModelPool
from xinstruct.execution.shards import read_shards
from xinstruct.execution.step import Step
from xinstruct.llm import LLM, ChatRequest, GenerationParams, ModelConfig
from xinstruct.llm.identity import model_identity
from xinstruct.records import Reject, stable_hash

RUNNER_FORMAT = "1"  # bump when the rows written for the same prompts and settings change


@dataclass
class PromptItem:
    """One prompt to answer: `fields` are copied into the answer row (question, category, references...)."""

    id: str
    lang: str
    messages: list[dict[str, str]]
    fields: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # file:line it came from


@dataclass
class Answers:
    rows: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    model: dict[str, Any]
    calls: dict[str, Any]


class AnswerStep(Step):
    """Answers a batch of prompts with one model: a row per answer (the item's fields, the answer, the call's
    details), a reject per failed call."""

    def __init__(self, name: str, model: ModelConfig, params: GenerationParams, label: str, llm: LLM | None = None):
        self.name, self.model, self.params, self.label = name, model, params, label
        p = params.to_dict()
        p.pop("json_schema", None)
        self.params_row = p
        super().__init__(llm)

    def model_config(self) -> ModelConfig:
        return self.model

    def fingerprint(self) -> str:
        return stable_hash(RUNNER_FORMAT, model_identity(self.model), self.params_row)

    def __call__(self, batch: Sequence[PromptItem]) -> tuple[list[dict[str, Any]], list[Reject]]:
        llm = self.llm
        gens = llm.generate([ChatRequest(tuple(i.messages), self.params) for i in batch])
        rows, rejects = [], []
        for item, g in zip(batch, gens, strict=True):
            if g.error is not None:
                rejects.append(Reject(stage=self.name, reason="llm_error", detail=f"{item.source or item.id}: "
                                      f"{g.error}", unit="prompt", id=item.id, source=item.source,
                                      record=dataclasses.asdict(item)))
                continue
            rows.append({**item.fields, "id": item.id, "lang": item.lang, "answer": g.text.strip(),
                         "finish_reason": g.finish_reason, "prompt_tokens": g.prompt_tokens,
                         "completion_tokens": g.completion_tokens, "messages": item.messages,
                         "model": {"label": self.label, "backend": llm.backend, "model_id": llm.model_id},
                         "params": self.params_row, "source": item.source})
        return rows, rejects


def answer_prompts(name: str, items: Sequence[PromptItem], model: ModelConfig, params: GenerationParams, out: Path,
                   *, label: str, cfg: Any, cache: str | Path | None = None, batch_size: int = 8,
                   llm: LLM | None = None, executor: ExecutorConfig | None = None) -> Answers:
    """Answer every item; rows keep the item's fields plus `answer`, the model and the call's details.

    `cfg` is any config with `shard_size` and `progress`; `llm` replaces loading `model` (tests); `executor`
    says where the calls run (default: this process).
    """
    ids = [(i.lang, i.id) for i in items]
    if len(set(ids)) != len(ids):
        dup = next(x for x in ids if ids.count(x) > 1)
        raise ValueError(f"{name}: two prompts share the id {dup[1]!r} in language {dup[0]!r}")
    step = AnswerStep(name, model, params, label)
    key = stable_hash(step.fingerprint(), cfg.shard_size, [dataclasses.asdict(i) for i in items])
    with ModelPool.open(cache, out, llm) as pool:
        folder, stats = make_executor(executor, pool).run(step, key, items, len(items), batch_size, cfg,
                                                          out / "work")
    identity = pool.identities()
    rows, rejects = read_shards(folder)
    card = {"label": label, "model": model.model, "backend": model.resolved_backend(),
            "model_id": rows[0]["model"]["model_id"] if rows else (identity[0]["model_id"] if identity else None)}
    calls = {**stats.llm, "seconds": round(stats.seconds, 2), "shards_resumed": stats.extra["shards_resumed"],
             "config": to_dict(model)}
    return Answers(rows, rejects, card, calls)


def dump_config(cfg: Any) -> dict[str, Any]:
    """A config dataclass as JSON-safe data, without the run-local keys (progress bar)."""
    d = json.loads(json.dumps(to_dict(cfg), default=str))
    d.pop("progress", None)
    return d
