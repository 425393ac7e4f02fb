"""Seed pairs (English instruction, native response) that teach instruction back-translation.

Packaged seeds cover the paper's ten languages (`data/seeds/{lang}.jsonl`). A user's
seed file is JSONL with `instruction`, `response` and optionally `lang`; pairs without
`lang` count for every language.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

SEED_PACKAGE = "xinstruct.data.seeds"


@dataclass(frozen=True)
class Seed:
    instruction: str
    response: str
    lang: str


def _parse(lines: list[str], origin: str, lang: str | None) -> list[Seed]:
    seeds = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{origin}:{i}: seed line is not valid JSON ({e})") from e
        if not isinstance(d, dict) or not all(isinstance(d.get(k), str) and d[k].strip()
                                              for k in ("instruction", "response")):
            raise ValueError(f"{origin}:{i}: a seed needs non-empty string fields 'instruction' and 'response'")
        seeds.append(Seed(d["instruction"].strip(), d["response"].strip(), d.get("lang") or lang or "*"))
    return seeds


def packaged_seed_languages() -> list[str]:
    return sorted(p.name.removesuffix(".jsonl") for p in resources.files(SEED_PACKAGE).iterdir()
                  if p.name.endswith(".jsonl"))


def load_seeds(path: str | Path | None = None) -> list[Seed]:
    """The packaged seeds for all languages, or a user's seed file (or folder of `{lang}.jsonl`)."""
    if path is None:
        out: list[Seed] = []
        for lang in packaged_seed_languages():
            res = resources.files(SEED_PACKAGE) / f"{lang}.jsonl"
            out += _parse(res.read_text(encoding="utf-8").splitlines(), f"seeds/{lang}.jsonl", lang)
        return out
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"no *.jsonl seed files in {p}")
        return [s for f in files for s in _parse(f.read_text(encoding="utf-8").splitlines(), str(f), f.stem)]
    if not p.is_file():
        raise FileNotFoundError(f"seed file not found: {p}")
    seeds = _parse(p.read_text(encoding="utf-8").splitlines(), str(p), None)
    if not seeds:
        raise ValueError(f"seed file {p} holds no seeds")
    return seeds
