"""Read a corpus into `Document`s, turning every unreadable record into a `Reject`.

One entry point, `read_documents`, takes whatever the user has: a JSON-lines file (plain
or gzipped), a Parquet file, a folder saved by `datasets.Dataset.save_to_disk`, a folder
of plain-text files (one document each) or a folder of JSONL/Parquet files; the rows come
from `xinstruct.rows`, the reader every input file goes through. A bad record
never stops the run: it becomes a Reject (stage "read", unit "document") that names the
file and line or row and keeps the raw data. A path that holds nothing readable is the
user's error and raises.

Sources are "path:line" (1-based, as editors count) for JSON lines, "path:row" (0-based,
as `dataset[row]` indexes) for Parquet, saved datasets and a .json file holding one array,
and the path for text files. A record without an id gets "basename:line" (or ":row").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinstruct.records import Reject
from xinstruct.rows import (
    JSON_SUFFIXES,
    PARQUET_SUFFIXES,
    Row,
    file_rows,
    has_suffix,
    is_saved_dataset,
    saved_dataset_rows,
)

log = logging.getLogger(__name__)

STAGE = "read"
TEXT_SUFFIXES = (".txt",)


@dataclass
class Document:
    """One input document before cleaning; `meta` keeps every other field of the input record."""

    doc_id: str
    text: str
    lang: str | None
    source: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Fields:
    text: str
    id: str
    lang: str


def _reject(reason: str, detail: str, source: str, record: dict[str, Any],
            doc_id: str | None = None) -> Reject:
    return Reject(stage=STAGE, reason=reason, detail=detail, unit="document", doc_id=doc_id, id=doc_id,
                  source=source, record=record)


def read_documents(path: str | Path, *, text_field: str = "text", id_field: str = "id",
                   lang_field: str = "lang") -> Iterator[Document | Reject]:
    """Documents (and Rejects for unreadable records) from a file or folder, in a fixed order.

    Duplicate ids are made unique by appending "#2", "#3"... in reading order; the id
    as read is then kept in ``meta["orig_id"]``.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"corpus path {str(root)!r} does not exist")
    fields = _Fields(text_field, id_field, lang_field)
    sources = _plan(root)  # raises before the first document, not halfway through
    return _unique_ids(doc for src in sources for doc in src(fields))


def _plan(root: Path) -> list[Any]:
    """One reader per input unit, in order; raises if the path holds nothing readable."""
    if root.is_file():
        return [_file_reader(root, root.parent)]
    if is_saved_dataset(root):
        return [lambda f: _read_rows(saved_dataset_rows(root), root, f)]
    files = sorted(p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts))
    data = [p for p in files if has_suffix(p, JSON_SUFFIXES + PARQUET_SUFFIXES)]
    texts = [p for p in files if has_suffix(p, TEXT_SUFFIXES)]
    if data:
        if texts:
            log.warning("%s: reading %d JSONL/Parquet files; ignoring %d .txt files beside them",
                        root, len(data), len(texts))
        return [_file_reader(p, root) for p in data]
    if texts:
        return [_file_reader(p, root) for p in texts]
    raise ValueError(f"no readable files in {str(root)!r}: expected *.jsonl, *.jsonl.gz, *.json, *.parquet, "
                     f"*.txt or a folder saved by datasets.Dataset.save_to_disk")


def _file_reader(p: Path, root: Path) -> Any:
    if has_suffix(p, JSON_SUFFIXES + PARQUET_SUFFIXES):
        return lambda f: _read_rows(file_rows(p), p, f)
    if has_suffix(p, TEXT_SUFFIXES):
        return lambda f: _read_text_file(p, root)
    raise ValueError(f"unsupported corpus file {str(p)!r}: expected .jsonl, .jsonl.gz, .json, .parquet "
                     f"or .txt")


def _from_row(row: Any, source: str, default_id: str, f: _Fields) -> Document | Reject:
    """A Document from one decoded record, or a Reject saying what is wrong with it."""
    if not isinstance(row, dict):
        return _reject("not_an_object", f"{source} (doc {default_id}): expected a JSON object, got "
                       f"{type(row).__name__}", source, {"raw": row}, default_id)
    raw_id = row.get(f.id)
    doc_id = str(raw_id) if raw_id is not None and str(raw_id) != "" else default_id
    text = row.get(f.text)
    if not isinstance(text, str):
        what = "is missing" if f.text not in row else f"is a {type(text).__name__}, not a string"
        return _reject("missing_text", f"{source} (doc {doc_id}): text field {f.text!r} {what}",
                       source, dict(row), doc_id)
    if not text.strip():
        return _reject("empty_text", f"{source} (doc {doc_id}): text field {f.text!r} is empty",
                       source, dict(row), doc_id)
    lang = row.get(f.lang)
    lang = lang.strip() if isinstance(lang, str) and lang.strip() else None
    meta = {k: v for k, v in row.items() if k not in (f.text, f.id, f.lang)}
    if f.lang in row and lang is None and row[f.lang] is not None:
        meta[f.lang] = row[f.lang]  # unusable language value: keep it, not as lang
    return Document(doc_id=doc_id, text=text, lang=lang, source=source, meta=meta)


def _read_rows(rows: Iterator[Row], where: Path, f: _Fields) -> Iterator[Document | Reject]:
    """Documents from the rows of one file or saved dataset (`xinstruct.rows`). A file that breaks off (a truncated
    gzip, a corrupt Parquet file) ends in an `unreadable_file` reject: the rest of it is lost."""
    try:
        for source, row, bad in rows:
            default_id = source.rsplit("/", 1)[-1]
            if bad is None:
                yield _from_row(row, source, default_id, f)
            else:
                yield _reject(bad.reason, f"{source} (doc {default_id}): {bad.detail}", source, {"raw": bad.raw},
                              default_id)
    except (OSError, EOFError, ValueError) as e:
        yield _reject("unreadable_file", f"{where}: stopped reading: {e}", str(where), {"path": str(where)})


def _read_text_file(p: Path, root: Path) -> Iterator[Document | Reject]:
    doc_id = p.relative_to(root).as_posix()
    source = str(p)
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        yield _reject("bad_encoding", f"{source} (doc {doc_id}): file is not valid UTF-8 ({e.reason} at byte "
                      f"{e.start})", source, {"raw": raw.decode("utf-8", errors="replace")}, doc_id)
        return
    text = text.lstrip("\ufeff")
    if not text.strip():
        yield _reject("empty_text", f"{source} (doc {doc_id}): file is empty", source, {"text": text}, doc_id)
        return
    yield Document(doc_id=doc_id, text=text, lang=None, source=source, meta={})


def _unique_ids(items: Iterator[Document | Reject]) -> Iterator[Document | Reject]:
    """Appends #2, #3... to repeated doc ids, first come first kept; the original goes in meta.

    Rejected documents take part too, so that every input document has its own id.
    """
    seen: dict[str, int] = {}
    for item in items:
        doc_id = item.doc_id
        if doc_id is not None and doc_id in seen:
            k = seen[doc_id]
            while f"{doc_id}#{k + 1}" in seen:
                k += 1
            seen[doc_id] = k + 1
            new = f"{doc_id}#{k + 1}"
            if isinstance(item, Document):
                item.meta["orig_id"] = doc_id
                item.doc_id = new
            else:
                item.doc_id = item.id = new
        if item.doc_id is not None:
            seen.setdefault(item.doc_id, 1)
        yield item
