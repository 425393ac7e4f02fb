"""The one record type that flows through every stage, and the reject that records a drop.

A `Record` keeps its whole history: where its text came from (source file, line,
document id, chunk), and for each field a model wrote, which model, prompt template
version and generation parameters wrote it. Later stages append scores and history
entries; nothing is overwritten without a trace.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Provenance:
    """Who wrote a field: the model, the prompt template and the generation parameters."""

    model: str
    backend: str
    prompt: str
    prompt_version: str
    params: dict[str, Any] = field(default_factory=dict)
    raw: str | None = None  # the model's unparsed answer

    @classmethod
    def of_call(cls, llm: Any, template: Any, params: Any, raw: str, **extra: Any) -> Provenance:
        """What an LLM call wrote with: `llm` (model_id, backend), a prompt template (name, version) and its
        GenerationParams (the JSON schema left out: the template version names it), plus `extra` settings."""
        p: dict[str, Any] = params.to_dict()
        p.pop("json_schema", None)
        p.update(extra)
        return cls(model=llm.model_id, backend=llm.backend, prompt=template.name, prompt_version=template.version,
                   params=p, raw=raw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Provenance:
        return cls(**{k: d[k] for k in d if k in _PROV_FIELDS})


_PROV_FIELDS = {f.name for f in dataclasses.fields(Provenance)}


@dataclass
class Record:
    """A native text and, once generated, the cross-lingual pair built from it.

    `text` is the native (target-language) text read from the corpus; `response`
    starts as that text and may later be refined. `instruction` is English.
    """

    id: str
    doc_id: str
    lang: str
    text: str
    instruction: str | None = None
    response: str | None = None
    source: str | None = None  # "path:line" of the input record
    chunk: int = 0
    n_chunks: int = 1
    provenance: dict[str, Provenance] = field(default_factory=dict)
    scores: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    cluster: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def judge_scores(self) -> list[dict[str, Any]]:
        """The judge's labels among `scores`, oldest first (entries before `method` existed are the judge's)."""
        return [s for s in self.scores if s.get("method", "judge") == "judge"]

    def relevance_scores(self) -> list[dict[str, Any]]:
        """The relevance gate's measurements among `scores`, oldest first."""
        return [s for s in self.scores if s.get("method") == "relevance"]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["provenance"] = {k: dataclasses.asdict(v) for k, v in self.provenance.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        d = dict(d)
        prov = d.pop("provenance", None) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown record fields: {sorted(unknown)}")
        rec = cls(**d)
        rec.provenance = {k: Provenance.from_dict(v) for k, v in prov.items()}
        return rec


@dataclass
class Reject:
    """An input unit that left the pipeline, with the stage and the reason.

    `unit` says what was dropped: a whole input "document" (before chunking) or a
    "chunk" (a record). `record` holds the dropped data so that nothing is lost.
    """

    stage: str
    reason: str
    detail: str
    unit: str  # "document" | "chunk"
    doc_id: str | None = None
    id: str | None = None
    source: str | None = None
    record: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, rec: Record, stage: str, reason: str, detail: str) -> Reject:
        return cls(stage=stage, reason=reason, detail=detail, unit="chunk", doc_id=rec.doc_id,
                   id=rec.id, source=rec.source, record=rec.to_dict())


def stable_hash(*parts: Any, n: int = 16) -> str:
    """A short, process-independent hash (Python's hash() is salted per process)."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode())
    return h.hexdigest()[:n]
