"""The chat page (Gradio): one model, or two side by side answering the same messages.

Layout: system prompt and target language on top, generation settings folded away, one chat column per
model with a line under it (language check, tokens, speed), the message box, and Save / New chat. Element
ids (`#msg`, `#send`, `#chat-a`, `#status-a`, `#save`, ...) are stable for browser tests.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from xinstruct.languages import language_name
from xinstruct.llm import GenerationParams
from xinstruct.serve.chat import (
    ChatConfig,
    ChatModel,
    ConversationLog,
    answer_status,
    build_messages,
    check_language,
    conversation_record,
    new_conversation_id,
    stream_answers,
    system_message,
)

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no calls home

SIDES = "ab"
NO_LANGUAGE = ""
STOPPED = "⏹️ stopped"

log = logging.getLogger(__name__)


def language_choices(codes: Sequence[str]) -> list[tuple[str, str]]:
    return [("any (no instruction)", NO_LANGUAGE)] + [(f"{language_name(c)} ({c})", c) for c in codes]


def parse_language(value: str | None, codes: Sequence[str]) -> str | None:
    """The selector's value as a code: a listed label ("Swahili (sw)") or a typed code ("yo")."""
    value = (value or "").strip()
    if not value:
        return None
    for label, code in language_choices(codes):
        if value in (label, code):
            return code or None
    if value.endswith(")") and "(" in value:
        return value[value.rindex("(") + 1 : -1].strip() or None
    return value


def new_state(n: int) -> dict[str, Any]:
    return {"id": new_conversation_id(), "histories": [[] for _ in range(n)], "system": "", "lang": None,
            "params": None}


class ChatPage:
    """The page's event handlers over `ChatModel`s; `build()` lays them out with Gradio."""

    def __init__(self, cfg: ChatConfig, models: Sequence[ChatModel]):
        self.cfg = cfg
        self.models = list(models)
        self.log = ConversationLog(cfg.save)
        self.codes = cfg.language_codes()
        self._running: dict[str, threading.Event] = {}  # conversation id -> its answer's Stop
        self._running_lock = threading.Lock()

    def respond(self, message: str, system: str, lang_value: str, max_tokens: float, temperature: float,
                top_p: float, state: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
        """Send `message` to every model; yields (message box, chats..., statuses..., state) as pieces arrive."""
        n = len(self.models)
        message = (message or "").strip()
        if not message:
            yield ("", *state["histories"], *([""] * n), state)
            return
        lang = parse_language(lang_value, self.codes)
        sys_text = system_message(system, lang, self.cfg.language_prompt)
        params = GenerationParams(max_tokens=int(max_tokens), temperature=float(temperature), top_p=float(top_p),
                                  seed=random.randrange(2**31) if float(temperature) > 0 else 0)
        msgs = [build_messages(h, message, sys_text) for h in state["histories"]]
        for h in state["histories"]:
            h += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        state.update(system=sys_text, lang=lang, params=params)
        status = ["⏳ answering…"] * n
        yield ("", *snapshot(state), *status, state)
        cancel = threading.Event()
        with self._running_lock:
            self._running[state["id"]] = cancel
        try:
            for ev in stream_answers(self.models, msgs, params, cancel):
                turn = state["histories"][ev.side][-1]
                label = self.models[ev.side].label
                if ev.piece:
                    turn["content"] += ev.piece
                elif ev.error == "stopped":
                    status[ev.side] = STOPPED
                    log.info("%s: %s stopped after %d characters (%.1f s)", state["id"], label,
                             len(turn["content"]), ev.seconds)
                elif ev.error is not None:
                    status[ev.side] = answer_status(None, ev.seconds, None, lang, error=ev.error)
                    log.warning("%s: %s failed: %s", state["id"], label, ev.error)
                    if not turn["content"]:
                        del state["histories"][ev.side][-2:]  # a failed turn is not part of the conversation
                else:
                    check = check_language(turn["content"], lang, self.cfg.langid)
                    status[ev.side] = answer_status(ev.done, ev.seconds, check, lang)
                    log.info("%s: %s answered %d tokens in %.1f s", state["id"], label, ev.done.completion_tokens,
                             ev.seconds)
                if not cancel.is_set():
                    yield (gr_skip(), *snapshot(state), *status, state)
            if cancel.is_set():  # Stopped: one last update, so the page ends on exactly what Save writes
                yield (gr_skip(), *snapshot(state), *status, state)
        finally:
            with self._running_lock:
                if self._running.get(state["id"]) is cancel:
                    del self._running[state["id"]]
        if self.cfg.autosave:
            self.save(state)

    def stop(self, state: dict[str, Any], *statuses: str) -> tuple[str, ...] | str:
        """Stop: the answer being decoded for this conversation stops within a token (its text so far
        stays, and is what Save writes); its status lines say so."""
        with self._running_lock:
            cancel = self._running.get(state["id"])
        if cancel is not None:
            cancel.set()
        return stopped_status(*statuses) if statuses else ()

    def records(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """The conversation as saved: one record per model (two share a `comparison` id)."""
        params = state["params"] or GenerationParams()
        compare = len(self.models) > 1
        recs = []
        for side, (model, history) in enumerate(zip(self.models, state["histories"], strict=True)):
            if not history:
                continue
            msgs = ([{"role": "system", "content": state["system"]}] if state["system"] else []) + history
            recs.append(conversation_record(f"{state['id']}-{SIDES[side]}" if compare else state["id"], model, msgs,
                                            lang=state["lang"], system=state["system"], params=params,
                                            side=SIDES[side] if compare else None,
                                            comparison=state["id"] if compare else None))
        return recs

    def save(self, state: dict[str, Any]) -> str:
        recs = self.records(state)
        if not recs:
            return "Nothing to save yet."
        total = self.log.save(recs)
        turns = max(sum(m["role"] == "user" for m in r["messages"]) for r in recs)
        return (f"Saved `{state['id']}` ({len(recs)} model{'s' * (len(recs) > 1)}, {turns} turn{'s' * (turns > 1)}) "
                f"to `{self.log.path}` ({total} conversation{'s' * (total != 1)} in the file).")

    def new_chat(self, old: dict[str, Any] | None = None) -> tuple[Any, ...]:
        """A new conversation on every side; an answer still being decoded for the `old` one stops."""
        if old is not None:
            self.stop(old)
        n = len(self.models)
        state = new_state(n)
        return (*state["histories"], *([""] * n), "", state)

    def build(self) -> Any:
        import gradio as gr

        cfg = self.cfg
        labels = [m.label for m in self.models]
        title = " vs ".join(labels)
        with gr.Blocks(title=f"xinstruct chat: {title}", analytics_enabled=False) as page:
            gr.Markdown(f"## xinstruct chat: {' vs '.join(f'**{x}**' for x in labels)}\n"
                        + ("The same message goes to both models; answers stream side by side."
                           if len(labels) > 1 else "Answers stream as the model decodes them."))
            with gr.Row():
                system = gr.Textbox(value=cfg.system, label="System prompt", lines=2, scale=3, elem_id="system")
                lang = gr.Dropdown(choices=language_choices(self.codes), value=cfg.lang or NO_LANGUAGE,
                                   label="Answer language", allow_custom_value=True, scale=1, elem_id="lang",
                                   info=f"adds “{cfg.language_prompt}” to the system prompt; type any code")
            with gr.Accordion("Generation", open=False, elem_id="generation-settings"), gr.Row():
                max_tokens = gr.Slider(16, 4096, value=cfg.max_tokens, step=16, label="Max new tokens",
                                       elem_id="max-tokens")
                temperature = gr.Slider(0.0, 2.0, value=cfg.temperature, step=0.05,
                                        label="Temperature (0: greedy)")
                top_p = gr.Slider(0.05, 1.0, value=cfg.top_p, step=0.05, label="Top p")
            chats, statuses = [], []
            with gr.Row(equal_height=True):
                for side, label in zip(SIDES, labels, strict=False):
                    with gr.Column():
                        chats.append(gr.Chatbot(label=label, height=460, elem_id=f"chat-{side}",
                                                buttons=["copy", "copy_all"], feedback_options=None))
                        statuses.append(gr.Markdown("", elem_id=f"status-{side}"))
            with gr.Row():
                msg = gr.Textbox(placeholder="Type a message (English or any language) and press Enter",
                                 show_label=False, scale=6, elem_id="msg", autofocus=True)
                send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                stop = gr.Button("Stop", variant="stop", scale=1, elem_id="stop")
            with gr.Row():
                new = gr.Button("New chat", elem_id="new-chat", size="sm")
                save = gr.Button("Save conversation", elem_id="save", size="sm")
            saved = gr.Markdown("", elem_id="save-status")  # its own line: it names the file, a long path
            state = gr.State(new_state(len(self.models)))
            inputs = [msg, system, lang, max_tokens, temperature, top_p, state]
            outputs = [msg, *chats, *statuses, state]
            events = [trigger(self.respond, inputs, outputs) for trigger in (send.click, msg.submit)]
            stop.click(self.stop, [state, *statuses], statuses)
            new.click(self.new_chat, state, [*chats, *statuses, saved, state], cancels=events)
            save.click(self.save, state, saved)
            for chat in chats:  # a chat's own clear button starts a new conversation on every side
                chat.clear(self.new_chat, state, [*chats, *statuses, saved, state], cancels=events)
        return page

    def launch(self, *, host: str, port: int) -> tuple[Any, str]:
        """Start serving in the background; returns (the Gradio app, its local URL). `page.block_thread()`
        then waits for Ctrl-C. Nothing is fetched from outside: no analytics, no share link, local fonts."""
        import gradio as gr

        page = self.build()
        page.queue(default_concurrency_limit=1)  # one answer at a time: the engines decode one sequence each
        _, url, _ = page.launch(server_name=host, server_port=port, share=False, ssr_mode=False, quiet=True,
                                prevent_thread_lock=True, theme=gr.themes.Default(), footer_links=[],
                                show_error=True)
        return page, url


def stopped_status(*statuses: str) -> tuple[str, ...] | str:
    """Status lines after Stop: an answer still being decoded is marked stopped (its text so far stays)."""
    out = tuple(STOPPED if (x or "").startswith("⏳") else x for x in statuses)
    return out if len(out) > 1 else out[0]


def snapshot(state: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The chats as they are now; the state's own lists keep changing while the answer streams."""
    return [[dict(m) for m in h] for h in state["histories"]]


def gr_skip() -> Any:
    """Leave a component as it is (the message box, once cleared, while the answer streams)."""
    import gradio as gr

    return gr.skip()
