"""Parsers that read a model's answer, each named by the prompt templates that use it.

A parser returns the value or a `ParseError` whose `reason` is a short code and whose
`detail` says what was wrong; the stage turns the latter into a reject.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class ParseError:
    reason: str
    detail: str


_LABEL = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly|here(?:'s| is)(?: the| an| your)?(?: english)?"
    r"(?: instruction| prompt| question| task)?)\b[^:\n]{0,40}:\s*)?"
    r"(?:(?:the\s+)?(?:english\s+)?(?:instruction|prompt|question|task|user|request|query)"
    r"(?:\s+(?:is|would be))?\s*[:\-–]\s*)?",
    re.IGNORECASE,
)
_QUOTES = "\"'“”‘’«»`「」„"
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def clean_instruction(text: str) -> str:
    """The instruction inside a model's answer: first non-empty line, no labels, quotes or markup."""
    text = re.sub(r"```[a-z]*", "", text).replace("**", "").replace("__", "")
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    for _ in range(2):  # "Sure! Instruction: ..." has two layers
        line = _LABEL.sub("", line, count=1).strip()
        line = _BULLET.sub("", line).strip()
    if len(line) >= 2 and line[0] in _QUOTES and line[-1] in _QUOTES:
        line = line[1:-1].strip()
    return line.strip(_QUOTES).strip()


def _shingles(text: str, n: int = 5) -> set[str]:
    t = re.sub(r"\s+", " ", text.lower())
    return {t[i : i + n] for i in range(max(1, len(t) - n + 1))}


def parse_instruction(answer: str, *, text: str, lang: str, finish_reason: str | None = None,
                      min_words: int = 3, max_words: int = 60, max_chars: int = 400) -> str | ParseError:
    """An English instruction for native `text` (in `lang`), or why the answer is not one."""
    from xinstruct.curate.langid import is_english

    if finish_reason == "length" and "\n" not in answer.strip():
        return ParseError("truncated", f"the answer hit the token limit before the instruction ended: {answer[:120]!r}")
    inst = clean_instruction(answer)
    if not inst:
        return ParseError("empty_instruction", f"no instruction in the model's answer {answer[:120]!r}")
    words = len(inst.split())
    if words < min_words:
        return ParseError("too_short", f"instruction has {words} words (< {min_words}): {inst!r}")
    if words > max_words or len(inst) > max_chars:
        return ParseError("too_long", f"instruction has {words} words / {len(inst)} chars "
                                      f"(> {max_words} / {max_chars}): {inst[:120]!r}...")
    ok, why = is_english(inst, other=lang)
    if not ok:
        return ParseError("not_english", f"instruction is not English ({why}): {inst[:120]!r}")
    sh = _shingles(inst)
    if len(inst) >= 40 and len(sh & _shingles(text)) / len(sh) > 0.8:
        return ParseError("copies_text", f"instruction copies the response text: {inst[:120]!r}")
    return inst


PARSERS: dict[str, Callable[..., object]] = {"instruction_v1": parse_instruction}
