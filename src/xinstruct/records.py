"""The one record type that flows through every stage, and the reject that records a drop.

A `Record` keeps its whole history: where its text came from (source file, line,
document id, chunk), and for each field a model wrote, which model, prompt template
version and generation parameters wrote it. Later stages append scores and history
entries; nothing is overwritten without a trace.
"""

from __future__ import annotations

import copy
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

    def to_dict(self) -> dict[str, Any]:
        """`dataclasses.asdict(self)`."""
        return _asdict(self)


def _copy(obj: Any) -> Any:
    """A value as `dataclasses.asdict` copies it: JSON-like values (the usual case) at once, anything else as
    asdict does (dataclasses to dicts, containers rebuilt, other objects deep-copied)."""
    t = type(obj)
    if t is str or t is int or t is float or t is bool or obj is None:
        return obj
    if t is dict:
        return {_copy(k): _copy(v) for k, v in obj.items()}
    if t is list:
        return [_copy(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _asdict(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a named tuple
        return t(*[_copy(v) for v in obj])
    if isinstance(obj, (list, tuple)):
        return t(_copy(v) for v in obj)
    if isinstance(obj, dict):
        items = ((_copy(k), _copy(v)) for k, v in obj.items())
        return t(obj.default_factory, items) if hasattr(t, "default_factory") else t(items)
    return copy.deepcopy(obj)


def _asdict(obj: Any) -> dict[str, Any]:
    """`dataclasses.asdict(obj)`, ~4x faster on records (it spends its time on generic checks and deep copies of
    strings); the same dict, keys in field order, every mutable value a copy."""
    names = _FIELD_NAMES.get(type(obj))
    if names is None:
        names = _FIELD_NAMES[type(obj)] = tuple(f.name for f in dataclasses.fields(obj))
    return {name: _copy(getattr(obj, name)) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # a dataclass's fields, in order


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
        d = _asdict(self)
        d["provenance"] = {k: dataclasses.asdict(v) if type(v) is not Provenance else v.to_dict()
                           for k, v in self.provenance.items()}  # asdict: a value that is no dataclass is an error
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        d = dict(d)
        prov = d.pop("provenance", None) or {}
        known = _RECORD_FIELDS if cls is Record else {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown record fields: {sorted(unknown)}")
        rec = cls(**d)
        rec.provenance = {k: Provenance.from_dict(v) for k, v in prov.items()}
        return rec


_RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(Record))


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
        return _asdict(self)

    @classmethod
    def of(cls, rec: Record, stage: str, reason: str, detail: str) -> Reject:
        return cls(stage=stage, reason=reason, detail=detail, unit="chunk", doc_id=rec.doc_id,
                   id=rec.id, source=rec.source, record=rec.to_dict())


def stable_hash(*parts: Any, n: int = 16) -> str:
    """A short, process-independent hash (Python's hash() is salted per process)."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode())
    return h.hexdigest()[:n]
