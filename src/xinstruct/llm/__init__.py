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
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from xinstruct.llm.backends import MODULES, BackendSpec, spec
from xinstruct.llm.base import LLM, ChatRequest, Generation, GenerationParams, LLMError, Message, ScoringUnsupported
from xinstruct.llm.cache import CachedLLM, RequestCache
from xinstruct.llm.embedded import EMBEDDED_LLM, EMBEDDED_SCORER, gemma3_gguf, smollm2_gguf

log = logging.getLogger(__name__)

BACKENDS = tuple(MODULES)

__all__ = ["LLM", "BACKENDS", "BackendSpec", "CachedLLM", "ChatRequest", "Generation", "GenerationParams",
           "LLMError", "LazyLLM", "Message", "ModelConfig", "RequestCache", "ScoringUnsupported", "load_llm",
           "load_tokenizer", "spec"]


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


def _model_path(cfg: ModelConfig, backend: BackendSpec) -> str:
    """The model as the backend takes it: the embedded models' files, or the setting as it is."""
    if cfg.model == EMBEDDED_LLM and not backend.server:
        return str(smollm2_gguf())
    if cfg.model == EMBEDDED_SCORER and not backend.server:
        return str(gemma3_gguf())
    return cfg.model


def load_llm(cfg: ModelConfig) -> LLM:
    backend = spec(cfg.resolved_backend())
    return backend.load(_model_path(cfg, backend), cfg)


def load_tokenizer(cfg: ModelConfig) -> LLM | None:
    """The model's tokenizer, chat template, context window and identity without its weights, where its backend
    can load them so (`BackendSpec.load_tokenizer`); None where it cannot."""
    backend = spec(cfg.resolved_backend())
    if backend.load_tokenizer is None:
        return None
    return backend.load_tokenizer(_model_path(cfg, backend), cfg)


class LazyLLM(LLM):
    """A model whose weights load on the first call that needs them (generating, scoring); its tokenizer, chat
    template, context window and identity come from a light load first. Behind the request cache, a run whose
    calls are all cached never loads the weights. `on_load` is called with the engine once it has loaded."""

    def __init__(self, light: LLM, load: Callable[[], LLM], on_load: Callable[[LLM], None] | None = None):
        self._light, self._load, self._on_load = light, load, on_load
        self._full: LLM | None = None
        self._lock = threading.Lock()
        self.backend, self.model_id = light.backend, light.model_id
        self.supports_json_schema, self.max_batch = light.supports_json_schema, light.max_batch

    @property
    def loaded(self) -> bool:
        return self._full is not None

    def engine(self) -> LLM:
        """The engine with its weights, loaded here the first time."""
        with self._lock:
            if self._full is None:
                full = self._load()
                if (full.backend, full.model_id) != (self.backend, self.model_id):
                    full.close()
                    raise RuntimeError(f"the model loaded as {full.backend}:{full.model_id}, not as the "
                                       f"{self.backend}:{self.model_id} its tokenizer-only load named")
                self._full = full
                if self._on_load is not None:
                    self._on_load(full)
            return self._full

    def _view(self) -> LLM:
        return self._full or self._light

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        return self.engine().generate(requests)

    def stream(self, request: ChatRequest) -> Generator[str, None, Generation]:
        return (yield from self.engine().stream(request))

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return self.engine().loglikelihood(pairs)

    def token_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[list[float]]:
        return self.engine().token_logprobs(pairs)

    def chat_prompt(self, messages):  # type: ignore[no-untyped-def]
        return self._view().chat_prompt(messages)

    def count_prompt_tokens(self, messages):  # type: ignore[no-untyped-def]
        return self._view().count_prompt_tokens(messages)

    def first_tokens(self, text: str, n: int) -> str | None:
        return self._view().first_tokens(text, n)

    @property
    def context_window(self) -> int | None:  # type: ignore[override]
        return self._view().context_window

    def close(self) -> None:
        for m in (self._full, self._light):
            if m is not None:
                m.close()
        self._full = None
