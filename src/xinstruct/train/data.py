"""Training data: sources, x-LLM style mixing specs, and the examples they resolve to.

A spec joins sources with `+`, as x-LLM's `alpaca_en+alpaca_zh+translation_ncwm_en-zh`:

    xinstruct train sft --data xinstruct_sw+alpaca_en*0.5+translation_en-sw --alias alias.yaml

Each name is looked up in the alias file (YAML or JSON), else read as a path; `seeds` (when neither) is the
packaged seed pairs, all ten languages:

    xinstruct_sw: {path: runs/sw}                 # a run folder (its samples.jsonl), file or folder
    alpaca_en:    {path: data/alpaca_en.jsonl, ratio: 0.5}
    translation_en-sw: {parallel: data/en-sw.tsv, src: en, tgt: sw, directions: both}

A row without a `lang` takes its source's `lang`, else the language code that ends its file's name (`sw.jsonl`).
`ratio` samples that fraction of a source (above 1 repeats it), `n` an absolute count;
`name*R` in the spec overrides the ratio. Sampling and the final shuffle are seeded, so
the same spec, alias file and seed give the same examples in the same order. A row that
cannot become an example is a reject with its `file:line` and reason; nothing is dropped
silently.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from xinstruct.curate.seeds import SEED_PACKAGE
from xinstruct.languages import lang_from_name
from xinstruct.records import Reject, stable_hash
from xinstruct.rows import read_rows as read_file_rows
from xinstruct.train.formats import Example, FormatError, to_example
from xinstruct.train.translation import translation_rows

SEEDS = "seeds"  # the packaged seed pairs, as a data source


@dataclass
class Source:
    name: str
    path: str | None = None
    parallel: str | None = None  # a parallel corpus: the source is translation instructions built from it
    src: str | None = None
    tgt: str | None = None
    directions: str = "both"
    ratio: float | None = None
    n: int | None = None
    lang: str | None = None  # the output language of rows that do not name one
    system: str | None = None


@dataclass
class Mix:
    examples: list[Example]
    rejects: list[Reject]
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # per source: read, rejected, used
    unsampled: list[Example] = field(default_factory=list)  # left out by a source's ratio < 1

    @classmethod
    def of(cls, name: str, examples: list[Example], rejects: list[Reject], **info: Any) -> Mix:
        """One source used whole (backward seeds, preference pairs)."""
        return cls(examples, rejects, {name: {"rows": len(examples) + len(rejects), "rejected": len(rejects),
                                              "examples": len(examples), "used": len(examples), **info}})


def load_aliases(path: str | Path | None) -> dict[str, dict[str, Any]]:
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"alias file not found: {p}")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(v, (dict, str)) for v in data.values()):
        raise ValueError(f"{p}: an alias file maps names to a path or to {{path|parallel, ratio, n, ...}}")
    base = p.parent
    out = {}
    for name, v in data.items():
        d = {"path": v} if isinstance(v, str) else dict(v)
        unknown = set(d) - (set(Source.__dataclass_fields__) - {"name"})
        if unknown:
            raise ValueError(f"{p}: alias {name!r} has unknown keys {sorted(unknown)}")
        for key in ("path", "parallel"):  # relative paths are relative to the alias file
            if d.get(key) and not Path(d[key]).is_absolute() and (base / d[key]).exists():
                d[key] = str(base / d[key])
        out[str(name)] = d
    return out


def parse_spec(spec: str, aliases: dict[str, dict[str, Any]]) -> list[Source]:
    """`a+b*0.5+c` -> sources; a name not in the alias file must be an existing path."""
    sources = []
    for term in (t.strip() for t in spec.split("+")):
        if not term:
            raise ValueError(f"empty source in data spec {spec!r}")
        name, _, ratio = term.partition("*")
        if name in aliases:
            src = Source(name=name, **aliases[name])
        elif Path(name).exists():
            src = Source(name=name, path=name)
        elif name == SEEDS:
            src = Source(name=name, path=str(resources.files(SEED_PACKAGE)))
        else:
            known = ", ".join(sorted(aliases)) or "none (pass --alias FILE)"
            raise ValueError(f"data source {name!r} is neither an alias nor a path (nor {SEEDS!r}, the packaged seed "
                             f"pairs); aliases: {known}")
        if ratio:
            try:
                src.ratio = float(ratio)
            except ValueError:
                raise ValueError(f"bad ratio in {term!r}: expected name*FLOAT") from None
        if (src.path is None) == (src.parallel is None):
            raise ValueError(f"source {name!r} needs exactly one of `path` or `parallel`")
        if src.parallel and not (src.src and src.tgt):
            raise ValueError(f"translation source {name!r} needs `src` and `tgt` language codes")
        sources.append(src)
    return sources


def read_rows(path: str | Path) -> Iterator[tuple[str, dict[str, Any] | Reject]]:
    """(origin, row) for every row of a file, a folder of files, a run folder or a `datasets` folder
    (`xinstruct.rows`); a row that cannot be read (or is not a JSON object) comes back as a Reject."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"training data not found: {p}")
    for origin, row, bad in read_file_rows(p):
        yield origin, row if bad is None else _reject(origin, bad.reason, bad.detail, bad.raw)


def _reject(origin: str, reason: str, detail: str, row: Any, rid: str | None = None) -> Reject:
    return Reject(stage="train-data", reason=reason, detail=f"{origin}: {detail}", unit="row", id=rid,
                  source=origin, record=row if isinstance(row, dict) else {"row": row})


def source_examples(src: Source, fmt: str, seed: int = 0) -> tuple[list[Example], list[Reject]]:
    """All examples of one source (before sampling), and its rejects."""
    if src.parallel:
        assert src.src and src.tgt
        rows, rejects = translation_rows(src.parallel, src.src, src.tgt, directions=src.directions, seed=seed)
        pairs: list[tuple[str, dict[str, Any] | Reject]] = [(r.pop("origin"), r) for r in rows]
    else:
        assert src.path
        pairs, rejects = list(read_rows(src.path)), []
    examples: list[Example] = []
    for origin, row in pairs:
        if isinstance(row, Reject):
            rejects.append(row)
            continue
        try:
            lang = src.lang or lang_from_name(origin.rsplit(":", 1)[0])  # origin: file:line
            ex = to_example(row, fmt, default_lang=lang, rid=stable_hash(origin), system=src.system)
        except FormatError as e:
            rejects.append(_reject(origin, e.reason, e.detail, row, str(row.get("id") or "") or None))
            continue
        ex.source, ex.origin = src.name, origin
        examples.append(ex)
    return examples, rejects


def _sample(examples: list[Example], src: Source, seed: int) -> list[Example]:
    if src.n is None and src.ratio is None:
        return examples
    want = src.n if src.n is not None else round((src.ratio or 0) * len(examples))
    if want < 0:
        raise ValueError(f"source {src.name!r}: ratio and n must be >= 0")
    rng = random.Random(stable_hash(src.name, seed))
    full, rest = divmod(want, len(examples)) if examples else (0, 0)
    return examples * full + rng.sample(examples, rest)


def build_mix(spec: str, *, aliases: str | Path | None = None, fmt: str = "chat", seed: int = 0) -> Mix:
    """Resolve `spec`, render each source in `fmt`, sample each by its ratio and shuffle the union."""
    sources = parse_spec(spec, load_aliases(aliases))
    examples: list[Example] = []
    rejects: list[Reject] = []
    unsampled: list[Example] = []
    stats: dict[str, dict[str, Any]] = {}
    for src in sources:
        exs, rejs = source_examples(src, fmt, seed)
        used = _sample(exs, src, seed)
        if not used:
            raise ValueError(f"source {src.name!r} gives no training examples ({len(rejs)} rows rejected"
                             + (f"; first: {rejs[0].detail}" if rejs else "") + ")")
        stats[src.name] = {"rows": len(exs) + len(rejs), "rejected": len(rejs), "examples": len(exs),
                           "used": len(used), "ratio": src.ratio, "n": src.n,
                           "from": src.path or src.parallel}
        examples += used
        rejects += rejs
        picked = {id(e) for e in used}
        unsampled += [e for e in exs if id(e) not in picked]
    random.Random(seed).shuffle(examples)
    return Mix(examples, rejects, stats, unsampled)
