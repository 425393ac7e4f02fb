"""Parsers that read a model's answer, each named by the prompt templates that use it.

A parser returns the value or a `ParseError` whose `reason` is a short code and whose
`detail` says what was wrong; the stage turns the latter into a reject.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


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


_SPACES = re.compile(r"\s+")


def _shingles(text: str, n: int = 5) -> set[str]:
    t = _SPACES.sub(" ", text.lower())
    return {t[i : i + n] for i in range(max(1, len(t) - n + 1))}


def _copies(inst: str, text: str, share: float = 0.8, n: int = 5) -> bool:
    """Whether more than `share` of the instruction's character n-grams are the text's:
    `len(_shingles(inst) & _shingles(text)) / len(_shingles(inst)) > share`, without building the text's
    n-grams (a substring search each) and stopping as soon as the outcome is certain."""
    a, t = _SPACES.sub(" ", inst.lower()), _SPACES.sub(" ", text.lower())
    sh = _shingles(inst, n)
    if len(a) < n or len(t) < n:  # a string shorter than n is its own single shingle
        return len(sh & _shingles(text, n)) / len(sh) > share
    total, hits, misses = len(sh), 0, 0
    for g in sh:
        if g in t:
            hits += 1
            if hits / total > share:
                return True
        else:
            misses += 1
            if (total - misses) / total <= share:
                return False
    return hits / total > share


# An answer that apologises or refuses speaks for the model, not for a user asking something: small models
# write "I'm sorry, but I'm unable to provide a recipe for ..." when a text does not fit the shots' pattern.
_REFUSAL = re.compile(
    r"^(?:i'?m sorry|i am sorry|sorry,|i apologi[sz]e|as an ai\b"
    r"|(?:i'?m|i am) (?:unable|not able) to|i (?:cannot|can'?t|could not|couldn'?t|won'?t) "
    r"(?:provide|help|assist|answer|generate|create|write|fulfil|comply|describe|do that))", re.IGNORECASE)


def parse_instruction(answer: str, *, text: str, lang: str, finish_reason: str | None = None,
                      min_words: int = 3, max_words: int = 60, max_chars: int = 400) -> str | ParseError:
    """An English instruction for native `text` (in `lang`), or why the answer is not one."""
    from xinstruct.langid import is_english

    if finish_reason == "length" and "\n" not in answer.strip():
        return ParseError("truncated", f"the answer hit the token limit before the instruction ended: {answer[:120]!r}")
    inst = clean_instruction(answer)
    if not inst:
        return ParseError("empty_instruction", f"no instruction in the model's answer {answer[:120]!r}")
    if _REFUSAL.match(inst.replace("\u2019", "'")):
        return ParseError("refusal", f"the answer refuses or apologises instead of asking: {inst[:120]!r}")
    words = len(inst.split())
    if words < min_words:
        return ParseError("too_short", f"instruction has {words} words (< {min_words}): {inst!r}")
    if words > max_words or len(inst) > max_chars:
        return ParseError("too_long", f"instruction has {words} words / {len(inst)} chars "
                                      f"(> {max_words} / {max_chars}): {inst[:120]!r}...")
    ok, why = is_english(inst, other=lang)
    if not ok:
        return ParseError("not_english", f"instruction is not English ({why}): {inst[:120]!r}")
    if len(inst) >= 40 and _copies(inst, text, 0.8):
        return ParseError("copies_text", f"instruction copies the response text: {inst[:120]!r}")
    return inst


@dataclass
class Label:
    """A judge's verdict on one pair."""

    score: int
    reason: str


def _first_json_object(text: str) -> tuple[Any, str]:
    """The JSON object the answer starts with (after an optional ```json fence), and what follows it."""
    t = text.strip()
    t = re.sub(r"^```(?:json)?\s*", "", t, flags=re.IGNORECASE)
    if not t.startswith("{"):
        raise ValueError("the answer does not start with a JSON object")
    obj, end = json.JSONDecoder().raw_decode(t)
    return obj, t[end:]


def _verdict_object(answer: str) -> dict[str, Any] | ParseError:
    try:
        obj, _rest = _first_json_object(answer)
    except ValueError as e:
        return ParseError("judge_unparseable", f"no JSON verdict ({e}): {answer[:160]!r}")
    if not isinstance(obj, dict):
        return ParseError("judge_unparseable", f"the verdict is not a JSON object: {answer[:160]!r}")
    return obj


def parse_label(answer: str, *, min_score: int = 1, max_score: int = 5, **_: Any) -> Label | ParseError:
    """The judge's score and reason, read only from the JSON object the answer starts with.

    The score is taken from that object's "score" field and nowhere else: a number elsewhere in the
    answer, or an instruction to the judge inside the rated text, never becomes the score.
    """
    obj = _verdict_object(answer)
    if isinstance(obj, ParseError):
        return obj
    score = obj.get("score")
    if isinstance(score, str) and score.strip().isdigit():
        score = int(score.strip())
    if isinstance(score, float) and score.is_integer():
        score = int(score)
    if isinstance(score, bool) or not isinstance(score, int):
        return ParseError("judge_unparseable", f"the verdict has no integer score: {answer[:160]!r}")
    if not min_score <= score <= max_score:
        return ParseError("judge_unparseable", f"score {score} is outside {min_score}-{max_score}: {answer[:160]!r}")
    reason = obj.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return ParseError("judge_unparseable", f"the verdict has no reason: {answer[:160]!r}")
    return Label(score=score, reason=" ".join(reason.split()))


_RESPONSE_LABEL = re.compile(r"^\s*(?:(?:here is |here's )?(?:the )?(?:new |rewritten |revised )?response\s*:\s*)",
                             re.IGNORECASE)


def parse_response(answer: str, *, lang: str, original: str, finish_reason: str | None = None,
                   min_chars: int = 20, **_: Any) -> str | ParseError:
    """A rewritten native-language response, or why the answer is not one (checked by language-ID)."""
    from xinstruct.langid import default_identifier

    if finish_reason == "length":
        return ParseError("truncated", f"the rewrite hit the token limit: ...{answer[-120:]!r}")
    text = re.sub(r"```[a-z]*", "", answer).strip()
    text = _RESPONSE_LABEL.sub("", text, count=1)
    text = re.sub(r"</?response>", "", text).strip().strip(_QUOTES).strip()
    if len(text) < min_chars:
        return ParseError("empty_response", f"the rewrite has {len(text)} characters (< {min_chars}): {text!r}")
    if " ".join(text.split()) == " ".join(original.split()):
        return ParseError("unchanged", "the rewrite is the same as the response")
    ident = default_identifier()
    if ident.supports(lang):
        ok, detected, p = ident.is_language(text, lang)
        if not ok:
            return ParseError("wrong_language", f"the rewrite is not in {lang} (detected {detected}, "
                                                f"p({lang})={p:.2f}): {text[:120]!r}")
    return text


@dataclass
class PairwiseVerdict:
    """A pairwise judge's verdict on answers A and B: the winner ("A", "B" or "tie"), why, and the two
    scores where the judge gave scores instead of a choice."""

    winner: str
    reason: str
    score_a: float | None = None
    score_b: float | None = None


def parse_pairwise(answer: str, **_: Any) -> PairwiseVerdict | ParseError:
    """{"reason": ..., "winner": "A" | "B" | "tie"}: the winner read only from that field, never guessed
    from prose ("Assistant A is better" outside the JSON object does not count)."""
    obj = _verdict_object(answer)
    if isinstance(obj, ParseError):
        return obj
    winner = obj.get("winner")
    w = winner.strip().strip(_QUOTES).strip().lower() if isinstance(winner, str) else None
    w = {"a": "A", "b": "B", "tie": "tie", "[[a]]": "A", "[[b]]": "B", "[[c]]": "tie"}.get(w or "")
    if w is None:
        return ParseError("judge_unparseable", f"winner must be A, B or tie, not {winner!r}: {answer[:160]!r}")
    reason = obj.get("reason")
    return PairwiseVerdict(winner=w, reason=" ".join(reason.split()) if isinstance(reason, str) else "")


def parse_pairwise_scores(answer: str, *, max_score: int = 10, **_: Any) -> PairwiseVerdict | ParseError:
    """{"reason": ..., "score_a": 0-10, "score_b": 0-10} (X-Instruction's protocol): the higher score
    wins, equal scores tie."""
    obj = _verdict_object(answer)
    if isinstance(obj, ParseError):
        return obj
    scores = []
    for key in ("score_a", "score_b"):
        v = obj.get(key)
        if isinstance(v, str):
            with contextlib.suppress(ValueError):
                v = float(v.strip())
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= max_score:
            return ParseError("judge_unparseable", f"{key} must be a number from 0 to {max_score}, not {v!r}: "
                                                   f"{answer[:160]!r}")
        scores.append(float(v))
    a, b = scores
    reason = obj.get("reason")
    return PairwiseVerdict(winner="A" if a > b else "B" if b > a else "tie", score_a=a, score_b=b,
                           reason=" ".join(reason.split()) if isinstance(reason, str) else "")


def load_template_with_parser(name_or_path: str) -> tuple[Any, Callable[..., Any]]:
    """A prompt template (packaged name or YAML path) and the parser it names."""
    from xinstruct.prompts import load_template

    t = load_template(name_or_path)
    parse = PARSERS.get(t.parser)
    if parse is None:
        raise ValueError(f"template {t.id} names unknown parser {t.parser!r}")
    return t, parse


PARSERS: dict[str, Callable[..., object]] = {"instruction_v1": parse_instruction, "judge_v1": parse_label,
                                             "response_v1": parse_response,
                                             "pairwise_v1": parse_pairwise, "pairwise_scores_v1": parse_pairwise_scores}
