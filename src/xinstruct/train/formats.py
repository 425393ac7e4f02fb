"""Training examples and the prompt formats the seed systems train with.

Every training row becomes one *example*: a prompt (what the model reads) and a
completion (what it learns to write; the loss covers only these tokens). Rows come
in any of four shapes, recognised per row:

    records            xinstruct's own records (`instruction`, `response`, `lang`)
    alpaca             `instruction`, optional `input`, `output` (Stanford Alpaca, x-LLM)
    messages           chat `messages`; the last assistant turn is the completion
    prompt/completion  trl's prompt-completion format, passed through

and is rendered in one of three prompt formats, chosen by name:

    chat       the model's own chat template (default)
    alpaca     the Alpaca template (x-LLM): "### Instruction: ... ### Response:"
    answer_in  the chat template, with "Answer in {Language}." appended to the English
               instruction, as the released X-Instruction models were prompted
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xinstruct.languages import language_name

FORMATS = ("chat", "alpaca", "answer_in")

ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                 "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
ALPACA_PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                       "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                       "{instruction}\n\n### Input:\n{input}\n\n### Response:\n")

# The same template as a Jinja chat template, written into the tokenizer of a model trained
# with the Alpaca format, so that every backend (transformers, vLLM, llama.cpp via GGUF
# metadata, OpenAI-compatible servers) prompts it the way it was trained.
ALPACA_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}"
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\n\n### Instruction:\n{{ m['content'] }}\n\n### Response:\n"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}\n\n{% endif %}{% endfor %}"
)


# For base models without a chat template (Gemma-3-270M base): the turns as plain text, the assistant's answer
# after "\n" and closed by EOS, so chat-format data (the backward model's prompts among them) trains them too.
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}\n"
    "{% else %}{{ m['content'] }}\n\n{% endif %}{% endfor %}"
)


class FormatError(ValueError):
    """A row that cannot become a training example; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Example:
    """One training example: `prompt` and `completion` are chat messages (format chat/answer_in)
    or plain strings (format alpaca)."""

    prompt: list[dict[str, str]] | str
    completion: list[dict[str, str]] | str
    id: str
    lang: str | None = None
    source: str = ""  # the mixing source it came from
    origin: str = ""  # "file:line"
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "origin": self.origin, "lang": self.lang,
                "prompt": self.prompt, "completion": self.completion}


def _text(row: dict[str, Any], key: str, *, required: bool = True) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            raise FormatError("missing_field", f"field {key!r} is missing or empty")
        return ""
    if not isinstance(v, str):
        raise FormatError("bad_field", f"field {key!r} must be a string, not {type(v).__name__}")
    return v.strip()


def row_kind(row: dict[str, Any]) -> str:
    if "messages" in row:
        return "messages"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "output" in row and "instruction" in row:
        return "alpaca"
    if "instruction" in row and ("response" in row or "text" in row):
        return "records"
    raise FormatError("unknown_shape", "row has none of: messages | prompt+completion | instruction+output "
                                       f"(Alpaca) | instruction+response (xinstruct records); keys: {sorted(row)}")


def _check_messages(msgs: Any) -> list[dict[str, str]]:
    if not isinstance(msgs, list) or not msgs:
        raise FormatError("bad_messages", "`messages` must be a non-empty list")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise FormatError("bad_messages", f"message {i} needs a role of system/user/assistant")
        if not isinstance(m.get("content"), str) or not m["content"].strip():
            raise FormatError("bad_messages", f"message {i} ({m['role']}) has no text content")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def to_example(row: dict[str, Any], fmt: str = "chat", *, default_lang: str | None = None, rid: str = "",
               system: str | None = None) -> Example:
    """Render one row (any of the four shapes) as an example in prompt format `fmt`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown prompt format {fmt!r}; choose one of {', '.join(FORMATS)}")
    kind = row_kind(row)
    lang = row.get("lang") or default_lang
    rid = str(row.get("id") or rid)
    if kind == "prompt_completion":
        p, c = row["prompt"], row["completion"]
        if isinstance(p, str) and isinstance(c, str):
            if not p.strip() or not c.strip():
                raise FormatError("missing_field", "prompt or completion is empty")
            return Example(p, c, rid, lang)
        return Example(_check_messages(p), _check_messages(c), rid, lang)
    if kind == "messages":
        msgs = _check_messages(row["messages"])
        if msgs[-1]["role"] != "assistant":
            raise FormatError("bad_messages", "the last message must be the assistant's answer")
        prompt, completion = msgs[:-1], msgs[-1:]
        if not any(m["role"] == "user" for m in prompt):
            raise FormatError("bad_messages", "no user message before the answer")
        if fmt == "chat":
            return Example(prompt, completion, rid, lang)
        if len(prompt) != 1 + (prompt[0]["role"] == "system"):
            raise FormatError("multi_turn", f"format {fmt!r} takes single-turn rows; this one has "
                                            f"{len(prompt)} prompt messages (use format 'chat')")
        instruction, inp, response = prompt[-1]["content"], "", completion[0]["content"]
    elif kind == "alpaca":
        instruction, inp, response = _text(row, "instruction"), _text(row, "input", required=False), \
            _text(row, "output")
    else:
        instruction, inp, response = _text(row, "instruction"), "", \
            _text(row, "response", required=False) or _text(row, "text")
    return render(instruction, response, fmt, lang=lang, input=inp, rid=rid, system=system)


def render(instruction: str, response: str, fmt: str, *, lang: str | None = None, input: str = "",
           rid: str = "", system: str | None = None) -> Example:
    """One single-turn pair in prompt format `fmt`."""
    if fmt == "alpaca":
        tpl = ALPACA_PROMPT_INPUT if input else ALPACA_PROMPT
        return Example(tpl.format(instruction=instruction, input=input), response, rid, lang)
    user = instruction if not input else f"{instruction}\n\n{input}"
    if fmt == "answer_in":
        if not lang:
            raise FormatError("no_language", "format 'answer_in' needs the row's output language (`lang`)")
        user = answer_in(user, lang)
    prompt = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return Example(prompt, [{"role": "assistant", "content": response}], rid, lang)


def answer_in(instruction: str, lang: str) -> str:
    """X-Instruction's prompt: the English instruction with the output language appended."""
    instruction = instruction.rstrip()
    sep = "" if not instruction or instruction[-1] in ".?!:" else "."
    return f"{instruction}{sep} Answer in {language_name(lang)}."
