"""One LLM interface for every backend.

A backend takes a batch of chat requests (messages in the OpenAI/`transformers` chat
format plus generation parameters) and returns one `Generation` per request, in order.
The backend applies the model's own chat template. Structured output (`json_schema`)
is enforced by the engine where it can be (llama.cpp grammars, vLLM guided decoding,
OpenAI `response_format`); elsewhere (transformers) the answer is started for the model
with `json_prefix(schema)`, and the caller's parser must cope with the rest.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy: reproducible runs by default
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = field(default=None, hash=False)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        return d

    def replace(self, **kw: Any) -> GenerationParams:
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...] | list[Message]
    params: GenerationParams = GenerationParams()


@dataclass
class Generation:
    text: str
    finish_reason: str | None = None  # "stop" | "length" | ...
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None  # set when the call failed for this request only

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def json_prefix(schema: dict[str, Any]) -> str:
    """The start of a JSON answer to `schema`, for engines that cannot constrain decoding: the model
    continues `{"reason": "` instead of choosing whether to answer in JSON at all (SmolLM2-135M
    answered 0 of 16 judge prompts with JSON in transformers without it)."""
    props = schema.get("properties") or {}
    if schema.get("type") != "object" or not props:
        return ""
    first = (schema.get("required") or list(props))[0]
    quote = '"' if (props.get(first) or {}).get("type") == "string" else ""
    return '{"' + first + '": ' + quote


class LLMError(RuntimeError):
    """A backend failed in a way that retrying the same call will not fix."""


class LLM(ABC):
    """Batched chat generation. Subclasses set `backend` and `model_id`."""

    backend: str = "base"
    model_id: str = "unknown"
    supports_json_schema: bool = False

    @property
    def fingerprint(self) -> str:
        """What identifies this model's outputs in the request cache."""
        return f"{self.backend}:{self.model_id}"

    @abstractmethod
    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        """One `Generation` per request, in order."""

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        """Tokens the prompt will take, where the backend can tell cheaply (None: unknown)."""
        return None

    context_window: int | None = None  # tokens, where known

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Sum of log-probabilities of each continuation given its context (optional)."""
        raise NotImplementedError(f"{self.backend} does not implement loglikelihood")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine (threads, GPU memory, connections)."""

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
