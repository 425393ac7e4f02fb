"""LLM backends behind one interface, chosen by a `ModelConfig`.

    backend       model                                   where
    llama.cpp     a .gguf file, "embedded" (SmolLM2-135M-Instruct) or "embedded-scorer" (Gemma-3-270M base)
    transformers  a local checkpoint folder or .gguf      CPU / GPU
    vllm          a local checkpoint folder               GPU, optional extra
    openai        the served model name (+ base_url)      any OpenAI-compatible server

Backends are imported only when chosen, so a CPU install never needs vLLM.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from xinstruct.llm.backends import MODULES, BackendSpec, spec
from xinstruct.llm.base import LLM, ChatRequest, Generation, GenerationParams, LLMError, Message, ScoringUnsupported
from xinstruct.llm.cache import CachedLLM, RequestCache
from xinstruct.llm.embedded import EMBEDDED_LLM, EMBEDDED_SCORER, gemma3_gguf, smollm2_gguf

log = logging.getLogger(__name__)

BACKENDS = tuple(MODULES)

__all__ = ["LLM", "BACKENDS", "BackendSpec", "CachedLLM", "ChatRequest", "Generation", "GenerationParams", "LLMError",
           "Message", "ModelConfig", "RequestCache", "ScoringUnsupported", "load_llm", "spec"]


@dataclass
class ModelConfig:
    """Which model to run and how. `options` go to the backend's constructor."""

    model: str = EMBEDDED_LLM
    # auto: openai if base_url, llama.cpp for .gguf/embedded, else transformers; see `for_batches` for stages
    # that send whole batches (generation)
    backend: str = "auto"
    base_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def resolved_backend(self) -> str:
        if self.backend != "auto":
            if self.backend not in BACKENDS:
                raise ValueError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)} or auto")
            return self.backend
        if self.base_url:
            return "openai"
        if self.model in (EMBEDDED_LLM, EMBEDDED_SCORER) or self.model.endswith(".gguf"):
            return "llama.cpp"
        return "transformers"

    def for_batches(self) -> ModelConfig:
        """This config for a stage that hands the engine whole batches (generation): with backend auto, a .gguf or
        the embedded chat model runs in transformers where it decodes batches faster than llama.cpp (a GPU, or
        a CPU that computes bf16 natively: AVX512-BF16/AMX) and `options` hold only transformers settings.
        Measured on 2 Xeon cores with AMX, the generation stage over the sample corpus (40 documents) took 88 s
        in transformers bf16 and 455 s in llama.cpp; on AVX2-only CPUs llama.cpp stays, bf16 being emulated."""
        if self.backend != "auto" or self.base_url or self.model == EMBEDDED_SCORER:
            return self
        if self.resolved_backend() != "llama.cpp":
            return self
        from xinstruct.llm.hf import batches_faster_than_llamacpp, transformers_options

        if not set(self.options) <= transformers_options() or not batches_faster_than_llamacpp():
            return self
        missing = [m for m in ("torch", "transformers", "gguf") if importlib.util.find_spec(m) is None]
        if missing:
            log.warning("transformers would decode this stage's batches faster than llama.cpp here (a GPU or a CPU "
                        "with native bf16), but %s %s not installed (pip install 'xinstruct[hf]'): running it in "
                        "llama.cpp", ", ".join(missing), "is" if len(missing) == 1 else "are")
            return self
        return replace(self, backend="transformers")


def load_llm(cfg: ModelConfig) -> LLM:
    backend = spec(cfg.resolved_backend())
    model = cfg.model
    if model == EMBEDDED_LLM and not backend.server:
        model = str(smollm2_gguf())
    elif model == EMBEDDED_SCORER and not backend.server:
        model = str(gemma3_gguf())
    return backend.load(model, cfg)
