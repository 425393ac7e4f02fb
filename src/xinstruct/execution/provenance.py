"""Provenance of a run: the versions of what produced it (its input files' fingerprint: `xinstruct.rows`)."""

from __future__ import annotations

import platform
from contextlib import suppress
from importlib import metadata

from xinstruct import __version__


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    out = {"python": platform.python_version(), "xinstruct": __version__}
    for pkg in ("llama-cpp-python", "transformers", "torch", "vllm", "httpx", "py3langid", "datasketch",
                "datasets", "pyarrow", *extra):
        with suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out
