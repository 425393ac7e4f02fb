"""The generation engine is picked among those installed: transformers where it decodes batches faster (a GPU, or a
CPU with native bf16) and is installed, llama.cpp otherwise, with the reason in the log."""

from __future__ import annotations

import importlib.util
import logging

from xinstruct.llm import ModelConfig
from xinstruct.llm import hf as hf_module


def test_batches_go_to_transformers_only_where_it_is_installed(monkeypatch, caplog):
    monkeypatch.setattr(hf_module, "batches_faster_than_llamacpp", lambda: True)
    assert ModelConfig().for_batches().backend == "transformers"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    with caplog.at_level(logging.WARNING):
        cfg = ModelConfig().for_batches()
    assert cfg.backend == "auto" and cfg.resolved_backend() == "llama.cpp"
    assert "gguf is not installed" in caplog.text and "running it in llama.cpp" in caplog.text


def test_batches_stay_in_llamacpp_where_it_is_faster(monkeypatch):
    monkeypatch.setattr(hf_module, "batches_faster_than_llamacpp", lambda: False)
    assert ModelConfig().for_batches() == ModelConfig()
