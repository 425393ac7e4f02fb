"""The backend registry. Each backend's module defines its engine class and, next to it, its `SPEC`: what the rest of
xinstruct needs to know of the backend without loading a model (how to build its engine, its shard and batch
sizes, the options it needs to score text, the resources its Ray actors take). Nothing outside a backend's own
module and this registry compares a backend's name.

    spec("llama.cpp").shard_size      # 32
    spec(cfg.resolved_backend()).load(path, cfg)

A module is imported the first time its spec is asked for; the heavy libraries (llama_cpp, torch, vllm) load only
when an engine does, so a CPU install never needs vLLM.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from xinstruct.llm.base import LLM

ModelConfig = Any  # xinstruct.llm.ModelConfig (which imports this registry)

MODULES = {"llama.cpp": "xinstruct.llm.llamacpp", "transformers": "xinstruct.llm.hf", "vllm": "xinstruct.llm.vllm",
           "openai": "xinstruct.llm.openai_compat"}
NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


def _no_max_batch(options: Mapping[str, Any]) -> int | None:
    return None


@dataclass(frozen=True)
class BackendSpec:
    name: str
    # (the model's path or served name, its config) -> the engine
    load: Callable[[str, ModelConfig], LLM]
    # records per resumable shard where a run does not set it: large for servers and vLLM (kept full by hundreds of
    # requests in flight), smaller for in-process CPU engines (less work lost to a kill)
    shard_size: int
    # the engine's tokenizer, chat template, context window and identity without its weights (None: the backend
    # has no such load): a run whose calls are all in the request cache then loads no weights
    load_tokenizer: Callable[[str, ModelConfig], LLM] | None = None
    # the most requests a stage hands the engine per call (None: a whole batch), from its options
    max_batch: Callable[[Mapping[str, Any]], int | None] = _no_max_batch
    judge_batch: int | None = None  # pairs per judge call (None: a whole shard)
    # options the relevance gate's scorer is loaded with (defaults; the user's options win)
    gate_options: Mapping[str, Any] = field(default_factory=lambda: NO_OPTIONS)
    # options for exact log-likelihood scoring (multiple-choice benchmarks; defaults, the user's options win)
    exact_scoring_options: Mapping[str, Any] = field(default_factory=lambda: NO_OPTIONS)
    server: bool = False  # it calls a server: its Ray actors take a fraction of a CPU, and it loads no weights here
    gpu: bool = False  # it uses a GPU where there is one (Ray gives its actors one each)
    runs_gguf: bool = False  # it runs a .gguf file as it is (a backward model xinstruct trained, for one)


def spec(backend: str) -> BackendSpec:
    """The registered spec of `backend` (a name of BACKENDS)."""
    if backend not in MODULES:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(MODULES)} or auto")
    found: BackendSpec = importlib.import_module(MODULES[backend]).SPEC
    return found
