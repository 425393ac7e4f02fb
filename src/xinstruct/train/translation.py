"""Translation-task instruction data from a parallel corpus (x-LLM's `translation_*` sets).

Each sentence pair gives one example per direction (src->tgt and tgt->src), with an
instruction drawn from several templates, reproducibly per pair. Rows come out in the
Alpaca shape (`instruction`, `input`, `output`, `lang`), so every prompt format applies.

Parallel input: TSV (`source<TAB>target` per line; a first line naming the two language
codes is taken as a header) or JSONL with the two sides under the language codes
(`{"en": ..., "sw": ...}`) or under `src`/`tgt` or `source`/`target`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xinstruct.languages import language_name
from xinstruct.records import Reject, stable_hash

TEMPLATES = (
    "Translate the following {src} text into {tgt}.",
    "Translate this sentence from {src} to {tgt}.",
    "What is the {tgt} translation of the following {src} sentence?",
    "Render the following {src} text in {tgt}, keeping its meaning.",
    "Please translate from {src} into {tgt}:",
)


def read_parallel(path: str | Path, src: str, tgt: str) -> Iterator[tuple[str, tuple[str, str] | Reject]]:
    """Yield (origin, (source, target)) per line, or (origin, Reject) for a line that is not a pair."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parallel corpus not found: {path}")
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            origin = f"{path}:{i}"
            if not line.strip():
                continue
            pair, problem = _parse_line(line, path.suffix, src, tgt)
            if pair is None and i == 1 and problem == "header":
                continue
            if pair is None:
                yield origin, Reject(stage="translation", reason="bad_parallel_line", detail=f"{origin}: {problem}",
                                     unit="row", source=origin, record={"line": line.rstrip("\n")})
            else:
                yield origin, pair


def _parse_line(line: str, suffix: str, src: str, tgt: str) -> tuple[tuple[str, str] | None, str]:
    if suffix == ".jsonl":
        try:
            d: Any = json.loads(line)
        except json.JSONDecodeError as e:
            return None, f"not valid JSON ({e})"
        if not isinstance(d, dict):
            return None, "a JSONL line must be an object"
        for a, b in ((src, tgt), ("src", "tgt"), ("source", "target")):
            if a in d and b in d:
                s, t = d[a], d[b]
                break
        else:
            return None, f"no {src!r}/{tgt!r} (or src/tgt, source/target) fields; keys: {sorted(d)}"
    else:
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) != 2:
            return None, f"expected 2 tab-separated columns, found {len(cols)}"
        s, t = cols
        if (s.strip(), t.strip()) == (src, tgt):
            return None, "header"
    if not isinstance(s, str) or not isinstance(t, str) or not s.strip() or not t.strip():
        return None, "a side of the pair is empty"
    return (s.strip(), t.strip()), ""


def translation_rows(path: str | Path, src: str, tgt: str, *, directions: str = "both",
                     seed: int = 0, templates: tuple[str, ...] = TEMPLATES) -> tuple[list[dict[str, Any]],
                                                                                    list[Reject]]:
    """Alpaca-shaped instruction rows for `directions` (both | src-tgt | tgt-src), and the rejects."""
    if directions not in ("both", f"{src}-{tgt}", f"{tgt}-{src}"):
        raise ValueError(f"directions must be 'both', '{src}-{tgt}' or '{tgt}-{src}', not {directions!r}")
    ways = [(src, tgt), (tgt, src)] if directions == "both" else [tuple(directions.split("-", 1))]
    rows: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for origin, item in read_parallel(path, src, tgt):
        if isinstance(item, Reject):
            rejects.append(item)
            continue
        text = dict(zip((src, tgt), item, strict=True))
        for a, b in ways:
            rng = random.Random(stable_hash(origin, a, b, seed))
            tpl = rng.choice(templates)
            rows.append({"id": stable_hash(origin, a, b), "lang": b, "origin": origin, "task": f"translation_{a}-{b}",
                         "instruction": tpl.format(src=language_name(a), tgt=language_name(b)),
                         "input": text[a], "output": text[b]})
    return rows, rejects
