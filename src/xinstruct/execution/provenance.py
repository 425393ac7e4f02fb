"""Provenance of a run: the versions of what produced it and a fingerprint of its input files."""

from __future__ import annotations

import platform
from contextlib import suppress
from importlib import metadata
from pathlib import Path
from typing import Any

from xinstruct import __version__


def input_fingerprint(path: Path) -> list[Any]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(f.relative_to(path) if path.is_dir() else f.name), f.stat().st_size, f.stat().st_mtime_ns)
            for f in files]


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    out = {"python": platform.python_version(), "xinstruct": __version__}
    for pkg in ("llama-cpp-python", "transformers", "torch", "vllm", "httpx", "py3langid", "datasketch",
                "datasets", "pyarrow", *extra):
        with suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out
