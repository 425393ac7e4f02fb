"""The one result format every evaluation writes, so that the report can read them all.

    OUT/result.json = {
      "kind":  "judge" | "multiple_choice" | "translation" | "qa" | "summarization" | "fidelity",
      "task":  a name (e.g. "xcopa", "flores", "questions"),
      "model": {"label": ..., "backend": ..., "model_id": ...},   # the model evaluated
      "metrics": {"LANG": {"n": N, "<metric>": value, ...}, ...}, # per language
      "overall": {"n": N, "<metric>": value, ...},
      "config": {...},    # everything needed to run it again
      "versions": {...},  # python, xinstruct, engines
      "created": "2026-11-23T12:00:00Z",
    }
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from xinstruct.io import atomic_write

RESULT_FILE = "result.json"
KINDS = ("judge", "multiple_choice", "translation", "qa", "summarization", "fidelity")


def make_result(kind: str, task: str, model: dict[str, Any], metrics: dict[str, dict[str, Any]],
                overall: dict[str, Any], config: dict[str, Any], extra_versions: tuple[str, ...] = (),
                **extra: Any) -> dict[str, Any]:
    from xinstruct.execution.provenance import versions

    if kind not in KINDS:
        raise ValueError(f"unknown result kind {kind!r}; one of {', '.join(KINDS)}")
    return {"kind": kind, "task": task, "model": model, "metrics": metrics, "overall": overall, "config": config,
            "versions": versions(extra_versions), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **extra}


def write_result(out: str | Path, result: dict[str, Any]) -> Path:
    path = Path(out) / RESULT_FILE
    with atomic_write(path) as f:
        f.write(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    return path


def find_results(root: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every result.json under `root` (itself included), in path order."""
    root = Path(root)
    paths = [root / RESULT_FILE] if (root / RESULT_FILE).is_file() else []
    paths += sorted(p for p in root.rglob(RESULT_FILE) if p.parent != root)
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in paths]


def file_sha256(path: str | Path) -> str:
    """The first 16 hex digits of a file's SHA-256: which inputs a result was computed from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
