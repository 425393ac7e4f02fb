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
from collections.abc import Generator, Iterable, Iterator, Sequence
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


def read_stream(stream: Generator[str, None, Generation]) -> tuple[list[str], Generation]:
    """All of a stream: (its pieces, the `Generation` it returned)."""
    pieces = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as done:
            return pieces, done.value


def cut_at_stop(pieces: Iterable[str], stop: Sequence[str]) -> Iterator[str]:
    """Stream `pieces` up to the first stop string, which is never yielded, even when it arrives split
    across pieces: text that could be the start of a stop string is held back until it cannot be."""
    if not stop:
        yield from pieces
        return
    hold = max(map(len, stop)) - 1
    buf = ""
    for piece in pieces:
        buf += piece
        hits = [buf.index(s) for s in stop if s in buf]
        if hits:
            if buf[: min(hits)]:
                yield buf[: min(hits)]
            return
        safe = len(buf) - hold
        if safe > 0:
            yield buf[:safe]
            buf = buf[safe:]
    if buf:
        yield buf


class LLMError(RuntimeError):
    """A backend failed in a way that retrying the same call will not fix."""


class ScoringUnsupported(LLMError):
    """The backend (or the server behind it) cannot give per-token log-probabilities of a given text."""


class LLM(ABC):
    """Batched chat generation. Subclasses set `backend` and `model_id`."""

    backend: str = "base"
    model_id: str = "unknown"
    supports_json_schema: bool = False
    # How many requests one `generate` call should get for this backend to run at capacity: stages hand it
    # this many at once (a server backend keeps them all in flight, vLLM batches them continuously). None:
    # the stage's own batch size.
    max_batch: int | None = None

    @property
    def fingerprint(self) -> str:
        """What identifies this model's outputs in the request cache."""
        return f"{self.backend}:{self.model_id}"

    @abstractmethod
    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        """One `Generation` per request, in order."""

    def stream(self, request: ChatRequest) -> Generator[str, None, Generation]:
        """One answer's text in pieces as it is decoded; the generator returns the finished `Generation`
        (`text` is the pieces joined). A failed call raises `LLMError`. Closing the generator early stops
        the decoding. Backends that cannot stream (vLLM in-process) yield the whole answer at once."""
        g = self.generate([request])[0]
        if g.error is not None:
            raise LLMError(g.error)
        if g.text:
            yield g.text
        return g

    def count_prompt_tokens(self, messages: Sequence[Message]) -> int | None:
        """Tokens the prompt will take, where the backend can tell cheaply (None: unknown)."""
        return None

    context_window: int | None = None  # tokens, where known

    def first_tokens(self, text: str, n: int) -> str | None:
        """`text` cut to its first `n` tokens of this model's tokenizer (itself when shorter; None: the backend
        cannot tokenize here, e.g. behind a server)."""
        return None

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Sum of log-probabilities of each continuation given its context (optional)."""
        raise NotImplementedError(f"{self.backend} does not implement loglikelihood")

    def token_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[list[float]]:
        """The log-probability of each token of each continuation given its context, in order (optional;
        `ScoringUnsupported` where the backend or its server cannot score)."""
        raise ScoringUnsupported(f"the {self.backend} backend cannot score text (no per-token log-probabilities)")

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        """The text the model's chat template makes of `messages`, ending with the assistant's turn (optional;
        NotImplementedError where the template is not known here, e.g. behind a server)."""
        raise NotImplementedError(f"the {self.backend} backend cannot render its chat template here")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine (threads, GPU memory, connections)."""

    def __enter__(self) -> LLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
