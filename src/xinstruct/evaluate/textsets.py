"""Readers for the generation tasks' files, and the prompt each task sends to a chat model.

- Translation, Flores-style: two line-aligned text files (`read_translation_files`), or one JSONL/TSV
  file with `source`/`target`, `src`/`tgt` or HF-style `sentence_<code>` fields (`read_translation_table`).
- QA: SQuAD-format JSON as XQuAD and MLQA ship it, or flat JSONL with `answers` (`read_qa`).
- Summarisation: XL-Sum JSONL with `id`, `url`, `title`, `summary`, `text` (`read_summaries`).

Every reader returns `(items, rejects)`. A bad record never stops a file: it becomes a reject
`{"source": "file:line", "reason": "<code>", "detail": "..."}` (reasons: bad_encoding, malformed_json,
not_an_object, wrong_columns, missing_field, wrong_type, empty_input, empty_reference, duplicate_id,
unknown_lang). In a SQuAD JSON file, which is one JSON document (often one line), the source is a JSON
path instead: "xquad.th.json:data[0].paragraphs[2].qas[1]". A file that cannot be read at all, Flores
files of different lengths, or a file whose language cannot be told, raise ValueError.

Languages come from the reader's argument, else a record's `lang` (`src_lang`/`tgt_lang`) field, else
the file name ("xquad.th.json", "eng_Latn.devtest", "test-context-hi-question-hi.json",
"tamil_test.jsonl"). Flores codes of the paper's languages become our two-letter codes
(`FLORES_CODES`); other codes are kept as given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xinstruct.languages import NAMES, language_name
from xinstruct.rows import Row as FileRow
from xinstruct.rows import json_lines, objects_only, table_rows

# ISO 639-3 codes (the first part of Flores codes such as "swh_Latn") of the paper's languages and English.
FLORES_CODES = {"eng": "en", "fin": "fi", "ind": "id", "tha": "th", "tur": "tr", "vie": "vi", "ben": "bn",
                "hin": "hi", "swh": "sw", "swa": "sw", "tam": "ta", "urd": "ur"}

Reject = dict[str, str]


def lang_code(code: str) -> str:
    """"swh_Latn" or "swh" -> "sw"; any other code as given (stripped)."""
    code = code.strip()
    return FLORES_CODES.get(code.partition("_")[0], code) if re.fullmatch(r"[a-z]{3}(_[A-Z][a-z]{3})?", code) else code


_FLORES_RE = re.compile(r"(?<![A-Za-z])([a-z]{3}_[A-Z][a-z]{3})(?![A-Za-z])")
_MLQA_RE = re.compile(r"context-([a-z]{2})-question-[a-z]{2}")
_ENGLISH_NAMES = {name.lower(): code for code, name in NAMES.items() if " " not in name}


def langs_in_name(path: str | Path) -> list[str]:
    """The languages a file name names, in order, each once: Flores codes ("eng_Latn"), two-letter codes
    and English names ("tamil") between separators; MLQA's "context-hi-question-en" gives the context's."""
    name = Path(path).name
    if m := _MLQA_RE.search(name):
        return [m.group(1)]
    found = [(m.start(), lang_code(m.group(1))) for m in _FLORES_RE.finditer(name)]
    for m in re.finditer(r"[^\W_]+", _FLORES_RE.sub(" ", name)):
        word = m.group(0).lower()
        code = (word if word in NAMES else _ENGLISH_NAMES.get(word)
                or (FLORES_CODES.get(word) if len(word) == 3 else None))
        if code:
            found.append((m.start(), code))
    return list(dict.fromkeys(code for _, code in sorted(found)))


def _name_lang(path: Path) -> str | None:
    langs = langs_in_name(path)
    return langs[0] if len(langs) == 1 else None


def _no_lang_error(path: Path, what: str = "lang") -> ValueError:
    named = langs_in_name(path)
    why = f"its name names several languages ({', '.join(named)})" if named else "no language in its name"
    return ValueError(f"cannot tell the language of {path}: {why}; pass {what}=..., add a 'lang' field to each "
                      "record, or name the file like xquad.th.json / eng_Latn.devtest")


# --- items ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranslationItem:
    """One sentence to translate from `src_lang` into `lang`, scored against `reference`."""

    id: str
    lang: str  # the target language: the output's language, which the scores are reported under
    src_lang: str
    src_text: str
    reference: str
    source: str  # "file:line"

    @property
    def references(self) -> list[str]:
        return [self.reference]

    def prompt(self) -> str:
        return translation_prompt(self.src_text, self.src_lang, self.lang)


@dataclass(frozen=True)
class QAItem:
    """One extractive question: the answer is a span of `context`; any of `answers` counts as right."""

    id: str
    lang: str
    context: str
    question: str
    answers: tuple[str, ...]
    source: str

    @property
    def references(self) -> list[str]:
        return list(self.answers)

    def prompt(self) -> str:
        return qa_prompt(self.context, self.question, self.lang)


@dataclass(frozen=True)
class SummaryItem:
    """One article to summarise, scored against its reference `summary`."""

    id: str
    lang: str
    text: str
    summary: str
    title: str
    url: str
    source: str

    @property
    def references(self) -> list[str]:
        return [self.summary]

    def prompt(self) -> str:
        return summary_prompt(self.text, self.lang)


# --- prompts ----------------------------------------------------------------------------------------------


def translation_prompt(src_text: str, src_lang: str, tgt_lang: str) -> str:
    """The user message asking for a translation, and nothing else, so the reply can be scored as is."""
    return (f"Translate the following {language_name(src_lang)} text into {language_name(tgt_lang)}. "
            f"Reply with the translation only.\n\n{src_text}")


def qa_prompt(context: str, question: str, lang: str) -> str:
    """The user message asking for a short span of the passage, as extractive QA is scored."""
    name = language_name(lang)
    return (f"Read the {name} passage and answer the question with a short phrase copied from the passage, "
            f"in {name}. Reply with the answer only.\n\nPassage: {context}\n\nQuestion: {question}")


def summary_prompt(text: str, lang: str) -> str:
    """The user message asking for a one-sentence summary, the length of XL-Sum's references."""
    name = language_name(lang)
    return (f"Summarise the following {name} article in one sentence, in {name}. "
            f"Reply with the summary only.\n\n{text}")


_ANSWER_LABEL = re.compile(r"^\s*answer\s*:\s*", re.IGNORECASE)


def qa_answer(reply: str) -> str:
    """The answer in a chat model's reply: its first non-empty line, stripped, without a leading
    "Answer:" label (chat models add one; EM would count it). Nothing else is guessed."""
    for line in reply.splitlines():
        if line.strip():
            return _ANSWER_LABEL.sub("", line).strip()
    return ""


# --- record helpers ---------------------------------------------------------------------------------------


class _Bad(Exception):
    """A record that becomes a reject."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _reject(source: str, reason: str, detail: str) -> Reject:
    return {"source": source, "reason": reason, "detail": detail}


def _text(obj: dict[str, Any], *names: str, empty: str = "empty_input") -> str:
    """The first of `names` present in `obj`, stripped; missing, not a string, or blank is a _Bad."""
    for name in names:
        if obj.get(name) is not None:
            value = obj[name]
            if not isinstance(value, str):
                raise _Bad("wrong_type", f"field {name!r} is {type(value).__name__}, not a string")
            if not value.strip():
                raise _Bad(empty, f"field {name!r} is blank")
            return value.strip()
    raise _Bad("missing_field", f"no {' or '.join(repr(n) for n in names)} field")


def _id(obj: dict[str, Any], default: str) -> str:
    value = obj.get("id")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Bad("wrong_type", f"field 'id' is {type(value).__name__}, not a string")
    return str(value)


def _lang(obj: dict[str, Any], field: str, arg: str | None, fallback: str | None) -> str:
    if arg:
        return lang_code(arg)
    value = obj.get(field)
    if isinstance(value, str) and value.strip():
        return lang_code(value)
    if fallback:
        return fallback
    raise _Bad("unknown_lang", f"no {field!r} field, and neither the caller nor the file name gives it")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        raise _Bad("bad_encoding", f"not UTF-8: {e}") from None


Row = tuple[str, dict[str, Any] | None, Reject | None]  # (source, record, reject): one of the two is None


def _jsonl(path: Path) -> Iterator[Row]:
    """A row per non-blank line: its object, or a reject if the line is not a JSON object."""
    return _rows(objects_only(json_lines(path)))


def _tsv(path: Path) -> Iterator[Row]:
    """A row ({column: cell}) per line of a tab-separated file whose first line names the columns.
    No quoting: Flores sentences contain quote marks, never tabs."""
    return _rows(table_rows(path, tsv=True))


def _rows(read: Iterator[FileRow]) -> Iterator[Row]:
    for source, row, bad in read:
        yield source, row, None if bad is None else _reject(source, bad.reason, bad.detail)


def _collect(rows: Iterator[Row], parse: Callable[[str, dict[str, Any]], Any],
             path: Path) -> tuple[list[Any], list[Reject]]:
    """Items parsed from rows, rejects for rows that fail, duplicate ids rejected; raises if no record
    could be given a language (the whole file is unlabelled, not one record bad)."""
    items: list[Any] = []
    rejects: list[Reject] = []
    seen: set[tuple[str, str]] = set()
    for source, row, reject in rows:
        if reject is not None:
            rejects.append(reject)
            continue
        assert row is not None
        try:
            item = parse(source, row)
            key = (item.lang, item.id)
            if key in seen:
                raise _Bad("duplicate_id", f"id {item.id!r} ({item.lang}) already read")
            seen.add(key)
            items.append(item)
        except _Bad as e:
            rejects.append(_reject(source, e.reason, str(e)))
    if not items and any(r["reason"] == "unknown_lang" for r in rejects):
        raise _no_lang_error(path)
    return items, rejects


# --- translation ------------------------------------------------------------------------------------------


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line.rstrip(b"\r") for line in lines]


def read_translation_files(src_path: str | Path, tgt_path: str | Path, *, src_lang: str | None = None,
                           tgt_lang: str | None = None) -> tuple[list[TranslationItem], list[Reject]]:
    """Two line-aligned Flores files (e.g. eng_Latn.devtest and swh_Latn.devtest): line i of one
    translates line i of the other. Item ids are line numbers (1-based), the same in every language."""
    src_path, tgt_path = Path(src_path), Path(tgt_path)
    langs = []
    for path, arg, what in ((src_path, src_lang, "src_lang"), (tgt_path, tgt_lang, "tgt_lang")):
        lang = lang_code(arg) if arg else _name_lang(path)
        if not lang:
            raise _no_lang_error(path, what)
        langs.append(lang)
    src_lines, tgt_lines = _lines(src_path), _lines(tgt_path)
    if len(src_lines) != len(tgt_lines):
        raise ValueError(f"Flores files are not aligned: {src_path} has {len(src_lines)} lines, "
                         f"{tgt_path} has {len(tgt_lines)}")
    items: list[TranslationItem] = []
    rejects: list[Reject] = []
    for i, (raw_src, raw_tgt) in enumerate(zip(src_lines, tgt_lines, strict=True), 1):
        s_source, t_source = f"{src_path}:{i}", f"{tgt_path}:{i}"
        source = s_source
        try:
            src = _decode(raw_src).strip()
            if not src:
                raise _Bad("empty_input", "blank source line")
            source = t_source
            tgt = _decode(raw_tgt).strip()
            if not tgt:
                raise _Bad("empty_reference", "blank reference line")
        except _Bad as e:
            rejects.append(_reject(source, e.reason, str(e)))
            continue
        items.append(TranslationItem(str(i), langs[1], langs[0], src, tgt, s_source))
    return items, rejects


def _sentence_columns(obj: dict[str, Any]) -> dict[str, str]:
    """{our code: column} for HF Flores columns such as "sentence_eng_Latn"."""
    return {lang_code(k[len("sentence_"):]): k for k in obj if k.startswith("sentence_")}


def read_translation_table(path: str | Path, *, src_lang: str | None = None,
                           tgt_lang: str | None = None) -> tuple[list[TranslationItem], list[Reject]]:
    """A JSONL (or .tsv with a header line) of sentence pairs: `source`/`target` or `src`/`tgt` fields
    with `src_lang`/`tgt_lang` (or `lang` for the target) fields or a name like "en-sw.tsv"; or HF
    Flores `sentence_<code>` columns, picked by `src_lang`/`tgt_lang`, the file name, or, with just two
    columns, the one not named (English is the source when nothing says otherwise)."""
    path = Path(path)
    named = langs_in_name(path)
    name_src, name_tgt = (named[0], named[1]) if len(named) == 2 else (None, None)
    src_arg = lang_code(src_lang) if src_lang else None
    tgt_arg = lang_code(tgt_lang) if tgt_lang else None

    def parse(source: str, obj: dict[str, Any]) -> TranslationItem:
        line = source.rpartition(":")[2]
        columns = _sentence_columns(obj)
        if not columns:
            src = _text(obj, "source", "src")
            tgt = _text(obj, "target", "tgt", empty="empty_reference")
            s_lang = _lang(obj, "src_lang", src_arg, name_src)
            t_lang = _lang(obj, "tgt_lang" if "tgt_lang" in obj else "lang", tgt_arg, name_tgt)
            return TranslationItem(_id(obj, line), t_lang, s_lang, src, tgt, source)
        s_lang, t_lang = _pick_columns(list(columns), src_arg or name_src, tgt_arg or name_tgt)
        src = _text(obj, columns[s_lang])
        tgt = _text(obj, columns[t_lang], empty="empty_reference")
        return TranslationItem(_id(obj, line), t_lang, s_lang, src, tgt, source)

    rows = _tsv(path) if path.suffix.lower() in (".tsv", ".tab") else _jsonl(path)
    return _collect(rows, parse, path)


def _pick_columns(langs: list[str], src: str | None, tgt: str | None) -> tuple[str, str]:
    """Source and target among a record's sentence_ column languages: the ones asked for (a missing
    column is a missing field), else with two columns the other one, English first if neither is asked."""
    if (src is None) != (tgt is None) and len(langs) == 2:
        known = src or tgt
        other = next((x for x in langs if x != known), None)
        src, tgt = (src, other) if tgt is None else (other, tgt)
    elif src is None and tgt is None and len(langs) == 2 and "en" in langs:
        src, tgt = "en", next(x for x in langs if x != "en")
    if src is None or tgt is None or src == tgt:
        raise _Bad("unknown_lang", f"cannot pick source and target among sentence_ columns for {', '.join(langs)}: "
                                   "pass src_lang and tgt_lang")
    for lang in (src, tgt):
        if lang not in langs:
            raise _Bad("missing_field", f"no sentence_ column for {lang!r} (columns for {', '.join(langs)})")
    return src, tgt


# --- QA ---------------------------------------------------------------------------------------------------


def _answers(obj: dict[str, Any]) -> tuple[str, ...]:
    """Answer texts from `answers` as a list of strings, a list of {"text": ...} (SQuAD) or
    {"text": [...]} (HF datasets), or a single `answer` string; blanks dropped, duplicates once."""
    if "answers" not in obj and isinstance(obj.get("answer"), str):
        raw: Any = [obj["answer"]]
    elif "answers" not in obj:
        raise _Bad("missing_field", "no 'answers' field")
    else:
        raw = obj["answers"]
        if isinstance(raw, dict):
            raw = raw.get("text")
    if not isinstance(raw, list):
        raise _Bad("wrong_type", "'answers' is neither a list nor {'text': [...]}")
    texts = [a.get("text") if isinstance(a, dict) else a for a in raw]
    if not all(isinstance(t, str) for t in texts):
        raise _Bad("wrong_type", "an answer text is not a string")
    answers = tuple(dict.fromkeys(t.strip() for t in texts if t.strip()))
    if not answers:
        raise _Bad("empty_reference", "no non-blank answer (unanswerable questions are not scored)")
    return answers


def _qa_item(obj: dict[str, Any], context: Any, default_id: str, lang: str, source: str) -> QAItem:
    if context is None:
        raise _Bad("missing_field", "no 'context' field")
    if not isinstance(context, str):
        raise _Bad("wrong_type", f"field 'context' is {type(context).__name__}, not a string")
    if not context.strip():
        raise _Bad("empty_input", "field 'context' is blank")
    return QAItem(_id(obj, default_id), lang, context, _text(obj, "question"), _answers(obj), source)


def read_qa(path: str | Path, *, lang: str | None = None) -> tuple[list[QAItem], list[Reject]]:
    """SQuAD-format JSON (XQuAD, MLQA) or flat JSONL (`id`, `context`, `question`, `answers`, optional
    `lang`). A .json file that is not one JSON document is read as JSON lines (HF `to_json` writes those)."""
    path = Path(path)
    name_lang = _name_lang(path)
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        if doc is not None:
            if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
                raise ValueError(f"{path}: not SQuAD format (expected {{\"data\": [...]}})")
            if not (lang or name_lang):
                raise _no_lang_error(path)
            return _read_squad(path, doc["data"], lang_code(lang) if lang else name_lang)

    def parse(source: str, obj: dict[str, Any]) -> QAItem:
        item_lang = _lang(obj, "lang", lang, name_lang)
        return _qa_item(obj, obj.get("context"), source.rpartition(":")[2], item_lang, source)

    return _collect(_jsonl(path), parse, path)


def _squad_rows(path: Path, data: list[Any]) -> Iterator[Row]:
    """(source, qa with its paragraph's context) per question; a bad article or paragraph is one reject."""
    for a, article in enumerate(data):
        where = f"{path}:data[{a}]"
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            yield where, None, _reject(where, "missing_field", "article without a 'paragraphs' list")
            continue
        for p, paragraph in enumerate(article["paragraphs"]):
            where = f"{path}:data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                yield where, None, _reject(where, "missing_field", "paragraph without a 'qas' list")
                continue
            for q, qa in enumerate(paragraph["qas"]):
                source = f"{where}.qas[{q}]"
                if not isinstance(qa, dict):
                    yield source, None, _reject(source, "not_an_object", f"a JSON {type(qa).__name__}, not an object")
                else:
                    yield source, {**qa, "_context": paragraph.get("context")}, None


def _read_squad(path: Path, data: list[Any], lang: str) -> tuple[list[QAItem], list[Reject]]:
    def parse(source: str, qa: dict[str, Any]) -> QAItem:
        return _qa_item(qa, qa["_context"], source.rpartition(":")[2], lang, source)

    return _collect(_squad_rows(path, data), parse, path)


# --- summarisation ----------------------------------------------------------------------------------------


def read_summaries(path: str | Path, *, lang: str | None = None) -> tuple[list[SummaryItem], list[Reject]]:
    """XL-Sum JSONL: `text` and `summary` required; `id` (default: the line number), `title`, `url`
    optional; `lang` from the argument, a `lang` field or a name like "tamil_test.jsonl"."""
    path = Path(path)
    fallback = _name_lang(path)

    def parse(source: str, obj: dict[str, Any]) -> SummaryItem:
        item_lang = _lang(obj, "lang", lang, fallback)
        summary = _text(obj, "summary", empty="empty_reference")
        text = _text(obj, "text")
        title = obj.get("title") if isinstance(obj.get("title"), str) else ""
        url = obj.get("url") if isinstance(obj.get("url"), str) else ""
        return SummaryItem(_id(obj, source.rpartition(":")[2]), item_lang, text, summary, title, url, source)

    return _collect(_jsonl(path), parse, path)
