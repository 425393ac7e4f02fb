"""What the chat page does, without the page: models, the messages they see, streaming two at once,
the language check of each answer, and the conversation log.

The page (`serve/app.py`) only lays this out; tests drive it directly and through a browser.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from xinstruct.io import atomic_write, dumps
from xinstruct.languages import PAPER_LANGUAGES, language_name
from xinstruct.llm import LLM, ChatRequest, Generation, GenerationParams, Message, ModelConfig, load_llm
from xinstruct.rows import json_lines


@dataclass
class ChatConfig:
    """`xinstruct chat` settings; `--config FILE.yaml` and `--set key=value` reach every one."""

    model: ModelConfig = field(default_factory=ModelConfig)
    label: str | None = None  # the model's name on the page and in saved conversations (default: from its path)
    compare: ModelConfig | None = None  # a second model answering the same messages, side by side
    compare_label: str | None = None
    system: str = ""  # the system prompt the page starts with
    lang: str | None = None  # the target language the selector starts on; None: no language instruction
    languages: str | None = None  # the selector's codes, comma-separated (default: en + the paper's ten)
    language_prompt: str = "Answer in {language}."  # added to the system prompt when a language is chosen
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    save: str = "runs/chat/conversations.jsonl"  # where "Save" (and autosave) writes
    autosave: bool = False  # save every finished turn
    langid: str = "py3langid"  # identifier for the language check under each answer ("lingua" is the other)
    host: str = "127.0.0.1"
    port: int = 7860

    def language_codes(self) -> list[str]:
        codes = [c.strip() for c in (self.languages or "").split(",") if c.strip()]
        codes = codes or ["en", *PAPER_LANGUAGES]
        if self.lang and self.lang not in codes:
            codes.append(self.lang)
        return codes


def system_message(system: str, lang: str | None, language_prompt: str) -> str:
    """The system prompt the model gets: the user's, plus the language instruction for `lang`."""
    parts = [system.strip()] if system and system.strip() else []
    if lang:
        parts.append(language_prompt.format(language=language_name(lang), code=lang))
    return "\n\n".join(parts)


def build_messages(history: Sequence[Message], user: str, system: str) -> list[Message]:
    """The chat `messages` for the next answer: system (if any), the turns so far, the new user message."""
    head = [{"role": "system", "content": system}] if system else []
    return [*head, *({"role": m["role"], "content": m["content"]} for m in history), {"role": "user", "content": user}]


class ChatModel:
    """One model on the page. Calls are serialised: an engine instance decodes one answer at a time, and
    the page may send to the same instance from several browser tabs (or both sides of a comparison)."""

    def __init__(self, cfg: ModelConfig, label: str, llm: LLM | None = None):
        from xinstruct.llm.identity import model_identity

        self.cfg = cfg
        self.label = label
        self.identity = model_identity(cfg) if llm is None else {"model": cfg.model, "backend": llm.backend}
        self.llm = llm if llm is not None else load_llm(cfg)
        self.lock = threading.Lock()

    def stream(self, messages: Sequence[Message], params: GenerationParams,
               cancel: threading.Event | None = None) -> Iterator[str | Generation]:
        """The answer's pieces, then its `Generation`. Stops early (without a Generation) once `cancel` is set."""
        with self.lock:
            it = self.llm.stream(ChatRequest(messages=list(messages), params=params))
            try:
                while True:
                    if cancel is not None and cancel.is_set():
                        return
                    yield next(it)
            except StopIteration as done:
                yield done.value
            finally:
                it.close()

    def close(self) -> None:
        self.llm.close()


def load_models(cfg: ChatConfig) -> list[ChatModel]:
    """The page's models, labelled (two that would share a label are told apart by backend, then side)."""
    from xinstruct.llm.identity import default_label

    specs = [(cfg.model, cfg.label)] + ([(cfg.compare, cfg.compare_label)] if cfg.compare is not None else [])
    labels = [label or default_label(m) for m, label in specs]
    if len(labels) == 2 and labels[0] == labels[1] and not (cfg.label and cfg.compare_label):
        labels = [f"{x} ({m.resolved_backend()})" for x, (m, _) in zip(labels, specs, strict=True)]
        if labels[0] == labels[1]:
            labels = [f"{labels[0]} A", f"{labels[1]} B"]
    models: list[ChatModel] = []
    try:
        for (m, _), label in zip(specs, labels, strict=True):
            models.append(ChatModel(m, label))
    except BaseException:
        for loaded in models:
            loaded.close()
        raise
    return models


@dataclass
class Event:
    """One update of a streamed answer: a new `piece`, or the end (`done`, or an `error`)."""

    side: int
    piece: str = ""
    done: Generation | None = None
    error: str | None = None
    seconds: float = 0.0  # since the side started, at the end


def stream_answers(models: Sequence[ChatModel], messages: Sequence[Sequence[Message]], params: GenerationParams,
                   cancel: threading.Event | None = None) -> Iterator[Event]:
    """Stream every model's answer to its own messages at once (each in a thread), merged in arrival order.

    Each side ends with exactly one `done` or `error` event; a side cut short ends with `error="stopped"`.
    Setting `cancel` (the page's Stop) stops the decoding within a token; closing the iterator early (a closed
    tab) does too, and waits for the engines to be free."""
    events: queue.Queue[Event] = queue.Queue()
    cancel = cancel if cancel is not None else threading.Event()

    def run(side: int, model: ChatModel, msgs: Sequence[Message]) -> None:
        start = time.monotonic()
        try:
            for item in model.stream(msgs, params, cancel):
                if isinstance(item, Generation):
                    events.put(Event(side, done=item, seconds=time.monotonic() - start))
                    return
                events.put(Event(side, piece=item))
            events.put(Event(side, error="stopped", seconds=time.monotonic() - start))
        except Exception as e:  # noqa: BLE001 - every side must end with an event, or the page waits forever
            events.put(Event(side, error=f"{type(e).__name__}: {e}", seconds=time.monotonic() - start))

    threads = [threading.Thread(target=run, args=(i, m, msgs), name=f"chat-{i}", daemon=True)
               for i, (m, msgs) in enumerate(zip(models, messages, strict=True))]
    for t in threads:
        t.start()
    open_sides = len(threads)
    try:
        while open_sides:
            ev = events.get()
            if ev.done is not None or ev.error is not None:
                open_sides -= 1
            yield ev
    finally:
        cancel.set()
        for t in threads:
            t.join()


@dataclass
class LanguageCheck:
    detected: str  # the identifier's code, "und" for text without letters
    probability: float  # of the target language's close group
    ok: bool | None  # None: no target language, or one the identifier does not know


def check_language(text: str, lang: str | None, backend: str = "py3langid", min_prob: float = 0.5) -> LanguageCheck:
    """Whether an answer is in the chosen language, as `xinstruct eval fidelity` counts it."""
    from xinstruct.langid import default_identifier

    ident = default_identifier(backend)
    if not text.strip():
        return LanguageCheck("und", 0.0, False if lang else None)
    if not lang or not ident.supports(lang):
        detected, prob = ident.detect(text)
        return LanguageCheck(detected, prob, None)
    ok, detected, prob = ident.is_language(text, lang, min_prob)
    return LanguageCheck(detected, prob, ok)


def answer_status(gen: Generation | None, seconds: float, check: LanguageCheck | None, lang: str | None,
                  error: str | None = None) -> str:
    """The line under an answer: language check, tokens and speed (Markdown)."""
    if error:
        return f"⚠️ {error}"
    parts = []
    if check is not None:
        name = language_name(check.detected)
        if check.ok is None:
            parts.append(f"detected {name} ({check.detected})")
        elif check.ok:
            parts.append(f"✅ {language_name(lang or '')} (p {check.probability:.2f})")
        else:
            parts.append(f"❌ not {language_name(lang or '')}: detected {name} ({check.detected})")
    if gen is not None:
        rate = gen.completion_tokens / seconds if seconds > 0 else 0.0
        parts.append(f"{gen.completion_tokens} tokens in {seconds:.1f} s ({rate:.1f} tok/s)")
        if gen.finish_reason == "length":
            parts.append("stopped at the token limit")
    return " · ".join(parts)


def new_conversation_id() -> str:
    return f"chat-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def conversation_record(conv_id: str, model: ChatModel, messages: Sequence[Message], *, lang: str | None,
                        system: str, params: GenerationParams, side: str | None = None,
                        comparison: str | None = None) -> dict[str, Any]:
    """A saved conversation: the chat `messages` exactly as the model saw and answered them (trl and
    `xinstruct train sft` read them as they are), with the settings and model that produced them."""
    rec: dict[str, Any] = {"id": conv_id, "messages": [dict(m) for m in messages], "model": model.label,
                           "model_info": model.identity, "lang": lang, "system": system,
                           "params": params.to_dict(),
                           "saved": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if comparison:
        rec.update(comparison=comparison, side=side)
    return rec


class ConversationLog:
    """A JSONL file of conversations, one line per conversation id: saving a conversation again (after more
    turns) replaces its line, so the file never holds two versions of one. Writes are atomic; lines this
    class cannot read are kept as they are."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def save(self, records: Sequence[dict[str, Any]]) -> int:
        """Write `records` (replacing same-id lines); returns how many conversations the file holds."""
        with self._lock:
            lines: list[tuple[str | None, str]] = []
            if self.path.exists():
                for _where, value, bad in json_lines(self.path):
                    if bad is not None:
                        lines.append((None, bad.raw))
                    else:
                        lines.append((value.get("id") if isinstance(value, dict) else None, dumps(value)))
            new = {r["id"]: dumps(r) for r in records}
            out = [(k, new.pop(k) if k in new else line) for k, line in lines]
            out += list(new.items())
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.path) as f:
                for _, line in out:
                    f.write(line.rstrip("\n") + "\n")
            return len(out)

    def read(self) -> list[dict[str, Any]]:
        return [v for _, v, bad in json_lines(self.path) if bad is None] if self.path.exists() else []
