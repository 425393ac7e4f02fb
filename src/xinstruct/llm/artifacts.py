"""Model-artifact metadata: what a model folder saved by `xinstruct train` says about itself.

A saved model folder carries `xinstruct_model.json`: how it was trained (task, prompt format, base, the
weights' content hash), so the other commands prompt it the way it learned and the request cache tells its
weights from another run's. Training writes it; the LLM layer and the stages read it from here alone, with the
fingerprints that tell one checkpoint's weights from another's (`xinstruct.llm.identity` builds a model's
identity and report label from them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from xinstruct.records import stable_hash

MODEL_META = "xinstruct_model.json"


def read_model_meta(path: str | Path) -> dict[str, Any]:
    """The `xinstruct_model.json` of a model folder (or the folder of a .gguf inside one), if any."""
    p = Path(path)
    for folder in (p, p.parent):
        f = folder / MODEL_META
        if f.is_file():
            return json.loads(f.read_text(encoding="utf-8"))
    return {}


def write_model_meta(folder: Path, meta: dict[str, Any]) -> None:
    from xinstruct.io import atomic_write

    with atomic_write(folder / MODEL_META) as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)


def read_backward_meta(model: str | None, base_url: str | None = None) -> dict[str, Any] | None:
    """The metadata of a backward model saved by `xinstruct train backward` (None: not one): it learned the
    zero-shot generation prompt, with texts cut to `text_max_tokens` tokens where that is set."""
    if base_url is not None or model is None:
        return None
    meta = read_model_meta(model)
    return meta if meta.get("task") == "backward" else None


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def weights_fingerprint(path: Path) -> str:
    """What tells this checkpoint's weights from another's with the same folder name (e.g. two runs'
    `merged/`), for the request cache: the content hash `xinstruct train` records, or else the weight
    files' names, sizes and modification times (a re-saved model is then a cache miss, never a wrong hit)."""
    recorded = read_model_meta(path).get("weights_sha256") if path.is_dir() else None
    if recorded:
        return str(recorded)[:12]
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    return stable_hash([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files], n=12)


def file_fingerprint(path: Path) -> str:
    """Name, size and a hash of the first 4 MiB: cheap, and changes with the weights."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(4 << 20))
    return f"{path.name}:{path.stat().st_size}:{h.hexdigest()[:12]}"
