"""Question sets in the Vicuna/FastChat `question.jsonl` format, one language per file or per row.

    {"question_id": 1, "text": "...", "category": "generic"}          # + "lang", or a LANG in the file name
    {"question_id": 81, "category": "writing", "turns": ["...", ...]}  # MT-bench rows: the first turn is asked

A path is a file or a folder of `*.jsonl` files; a file's language is its rows' `lang` field, else the
language code that ends its name (`question.sw.jsonl`, `sw.jsonl`, `questions_sw.jsonl`), else `--lang`.
The packaged set (`packaged`) has 8 questions (one per Vicuna-style category) in English and the paper's
ten languages, translated by xinstruct's developers, not by native speakers: check them before you
publish numbers on them, or bring your own set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from xinstruct.languages import lang_from_name
from xinstruct.rows import json_lines, objects_only

PACKAGED = "packaged"


@dataclass
class Question:
    question_id: str
    text: str
    lang: str
    category: str = "general"
    source: str | None = None  # file:line
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {"question_id": self.question_id, "text": self.text, "category": self.category, "lang": self.lang,
                **({"meta": self.meta} if self.meta else {})}


def packaged_questions() -> Path:
    return Path(str(resources.files("xinstruct.data.questions")))


def _reject(source: str, reason: str, detail: str, row: Any = None) -> dict[str, Any]:
    return {"stage": "questions", "reason": reason, "detail": f"{source}: {detail}", "unit": "question",
            "source": source, "record": row if isinstance(row, dict) else {"raw": row}}


def read_questions(path: str | Path = PACKAGED, *, lang: str | None = None, langs: set[str] | None = None
                   ) -> tuple[list[Question], list[dict[str, Any]]]:
    """The questions of a file or folder (only `langs`, if given), and a reject per unusable row."""
    root = packaged_questions() if str(path) == PACKAGED else Path(path)
    if not root.exists():
        raise FileNotFoundError(f"question file or folder not found: {root}")
    # A folder written by `translate-questions` also holds its rejects.jsonl: not questions.
    files = sorted(f for f in root.glob("*.jsonl") if f.name != "rejects.jsonl") if root.is_dir() else [root]
    if not files:
        raise ValueError(f"{root} holds no .jsonl question files")
    questions: list[Question] = []
    rejects: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for f in files:
        file_lang = lang or lang_from_name(f)
        for src, row, bad in objects_only(json_lines(f)):
            if bad is not None:
                raw = bad.raw[:2000] if isinstance(bad.raw, str) else bad.raw
                rejects.append(_reject(src, bad.reason, bad.detail, raw))
                continue
            q = _question(row, src, file_lang)
            if isinstance(q, dict):
                rejects.append(q)
                continue
            if langs and q.lang not in langs:
                continue
            if (q.lang, q.question_id) in seen:
                rejects.append(_reject(src, "duplicate_id", f"question_id {q.question_id} appears twice for "
                                                            f"language {q.lang}", row))
                continue
            seen.add((q.lang, q.question_id))
            questions.append(q)
    return questions, rejects


def _question(row: dict[str, Any], src: str, file_lang: str | None) -> Question | dict[str, Any]:
    qid = row.get("question_id", row.get("id"))
    if qid is None or str(qid).strip() == "":
        return _reject(src, "missing_field", "no question_id", row)
    text = row.get("text")
    if text is None and isinstance(row.get("turns"), list) and row["turns"]:
        text = row["turns"][0]
    if not isinstance(text, str) or not text.strip():
        return _reject(src, "missing_field", "no question text (`text`, or `turns` with a first turn)", row)
    lang = row.get("lang") or file_lang
    if not lang:
        return _reject(src, "no_language", "no `lang` field, no language code in the file name and no --lang", row)
    meta = {k: v for k, v in row.items() if k not in ("question_id", "id", "text", "turns", "category", "lang", "meta")}
    if isinstance(row.get("meta"), dict):
        meta.update(row["meta"])
    if isinstance(row.get("turns"), list) and len(row["turns"]) > 1:
        meta["later_turns_ignored"] = len(row["turns"]) - 1
    return Question(str(qid), text.strip(), str(lang).lower(), str(row.get("category") or "general"), src, meta)
