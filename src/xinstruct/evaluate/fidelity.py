"""Language fidelity: the share of answers written in the language that was asked for, by language-ID.

An answer counts as in its language when the identifier's top language is that language (or one it is
confused with, e.g. id/ms) with probability >= `min_prob`. Empty answers and answers without letters
count as not in the language (the user got nothing they can read); answers in a language the identifier
does not know are counted apart (`unsupported`) and left out of the share rather than guessed. Answers that
end in a loop are counted too (`repetitive`): in the language, and saying nothing.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xinstruct.io import read_jsonl, write_jsonl
from xinstruct.langid import LanguageIdentifier


@dataclass
class FidelityConfig:
    answers: str = ""  # an answers.jsonl (from `xinstruct infer`) or the folder holding one
    out: str | None = None  # default: beside the answers, in fidelity/
    langid: str = "py3langid"
    min_prob: float = 0.5
    label: str | None = None
    task: str = "questions"  # the question set's name in reports


def answers_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "answers.jsonl"
    if not p.is_file():
        raise FileNotFoundError(f"answers not found: {p} (run `xinstruct infer` first)")
    return p


def answer_text(row: dict[str, Any]) -> str | None:
    """The answer of a row from `xinstruct infer`, FastChat (`choices[0].turns[0]`) or AlpacaEval (`output`)."""
    if isinstance(row.get("answer"), str):
        return row["answer"]
    if isinstance(row.get("output"), str):
        return row["output"]
    choices = row.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        turns = choices[0].get("turns")
        if isinstance(turns, list) and turns and isinstance(turns[0], str):
            return turns[0]
    return None


# An answer that loops (a small model's greedy decoding: "mwena mwena mwena ...") can be in the asked language and
# still say nothing, so fidelity counts it apart. Compression measures the loop in any script: the last
# REPEAT_WINDOW bytes of natural text compress (zlib) to at least 0.37 of their size (140 packaged seed responses
# and corpus documents, 10+ languages), a loop to well under 0.3.
VERSION = 2  # of the verdicts' rules and fields (2: `repetitive`); whatever caches fidelity results keys on it
REPEAT_WINDOW = 600
REPEAT_MIN_BYTES = 200  # shorter answers are not judged
REPEAT_RATIO = 0.3


def repetitive(text: str) -> bool:
    """Whether the answer ends in a loop: its last REPEAT_WINDOW bytes compress below REPEAT_RATIO."""
    data = text.encode("utf-8")
    if len(data) < REPEAT_MIN_BYTES:
        return False
    tail = data[-REPEAT_WINDOW:]
    return len(zlib.compress(tail, 9)) / len(tail) < REPEAT_RATIO


def score_fidelity(rows: Iterable[dict[str, Any]], ident: LanguageIdentifier, min_prob: float = 0.5
                   ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-answer verdicts, per-language figures ({n, in_language, fidelity (percent), empty, unsupported,
    detected: the languages found instead, repetitive: answers that end in a loop}) and the overall figure over
    all scored answers."""
    verdicts = []
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        lang = str(row.get("lang") or "").lower()
        text = answer_text(row) or ""
        v = {"question_id": row.get("question_id", row.get("id")), "lang": lang, "repetitive": repetitive(text)}
        if not ident.supports(lang):
            v.update(status="unsupported", in_language=None, detected=None, p=None)
        elif not text.strip():
            v.update(status="empty", in_language=False, detected=None, p=0.0)
        else:
            ok, detected, p = ident.is_language(text, lang, min_prob)
            v.update(status="ok" if ok else "other", in_language=ok, detected=detected, p=round(p, 4))
        verdicts.append(v)
        groups[lang].append(v)
    per_lang = {lang: _summary(vs) for lang, vs in sorted(groups.items())}
    return verdicts, per_lang, _summary(verdicts)


def _summary(vs: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [v for v in vs if v["in_language"] is not None]
    hits = sum(bool(v["in_language"]) for v in scored)
    other = Counter(v["detected"] for v in scored if v["status"] == "other")
    return {"n": len(scored), "in_language": hits, "fidelity": round(100 * hits / len(scored), 2) if scored else None,
            "empty": sum(v["status"] == "empty" for v in vs),
            "unsupported": sum(v["status"] == "unsupported" for v in vs), "detected_instead": dict(other.most_common()),
            "repetitive": sum(v["repetitive"] for v in vs)}


def run_fidelity(cfg: FidelityConfig) -> dict[str, Any]:
    """Write OUT/fidelity.jsonl (a verdict per answer) and OUT/result.json; returns the result."""
    from xinstruct.evaluate.results import file_sha256, make_result, write_result

    src = answers_file(cfg.answers)
    rows = list(read_jsonl(src))
    if not rows:
        raise ValueError(f"{src} holds no answers")
    ident = LanguageIdentifier(cfg.langid)
    verdicts, per_lang, overall = score_fidelity(rows, ident, cfg.min_prob)
    out = Path(cfg.out) if cfg.out else src.parent / "fidelity"
    write_jsonl(out / "fidelity.jsonl", verdicts)
    first_model = next((r["model"] for r in rows if isinstance(r.get("model"), dict)), {})
    model = {**first_model, "label": cfg.label or first_model.get("label") or src.parent.name}
    config = {"answers": str(src), "answers_sha256": file_sha256(src),
              "langid": cfg.langid, "min_prob": cfg.min_prob}
    result = make_result("fidelity", cfg.task, model, per_lang, overall, config, extra_versions=("py3langid",))
    write_result(out, result)
    return result
