"""What identifies a configured model without loading it (for shard keys and result cards), and its short
label for reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xinstruct.llm import EMBEDDED_LLM, ModelConfig, spec
from xinstruct.llm.artifacts import file_fingerprint, weights_fingerprint


def model_identity(cfg: ModelConfig) -> dict[str, Any]:
    """What identifies the model's weights without loading it: a file fingerprint for GGUF files, the
    recorded weights hash (or file stats) for checkpoint folders, the URL and name for servers."""
    backend = cfg.resolved_backend()
    ident: dict[str, Any] = {"model": cfg.model, "backend": backend, "options": cfg.options}
    if spec(backend).server:
        ident["base_url"] = cfg.base_url
        return ident
    path = Path(cfg.model)
    if cfg.model == EMBEDDED_LLM:
        from xinstruct.llm.embedded import smollm2_gguf

        path = smollm2_gguf()
    if path.is_file():
        ident["weights"] = file_fingerprint(path)
    elif path.is_dir():
        ident["weights"] = weights_fingerprint(path)
    else:
        raise FileNotFoundError(f"model not found: {cfg.model} (a .gguf file, a checkpoint folder, 'embedded', "
                                "or a served model name with --base-url)")
    return ident


def default_label(cfg: ModelConfig) -> str:
    """A short name for reports: the folder or file name (`merged` is named by its run folder)."""
    if cfg.model == EMBEDDED_LLM:
        return "embedded"
    p = Path(cfg.model)
    if p.name in ("merged", "adapter") and p.parent.name:
        return p.parent.name
    return p.stem if p.suffix == ".gguf" and p.stem != "model" else (p.parent.name if p.stem == "model" else p.name)
