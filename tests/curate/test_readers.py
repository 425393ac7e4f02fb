"""Reading corpora: every format, and every bad record becomes a Reject that names it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from xinstruct.curate.readers import Document, read_documents
from xinstruct.records import Reject


def _docs(items: list) -> list[Document]:
    return [x for x in items if isinstance(x, Document)]


def _rejects(items: list) -> list[Reject]:
    return [x for x in items if isinstance(x, Reject)]


def _write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_jsonl_bad_lines_become_rejects_and_reading_goes_on(tmp_path: Path) -> None:
    p = _write_lines(tmp_path / "c.jsonl", [
        json.dumps({"id": "a", "text": "Habari ya asubuhi", "lang": "sw", "url": "http://x"}).encode(),
        b'{"id": "b", "text": "unterminated',
        b"",
        b"[1, 2, 3]",
        json.dumps({"id": "d", "body": "no text field"}).encode(),
        json.dumps({"id": "e", "text": "   "}).encode(),
        b'{"id": "f", "text": "caf\xe9 latin-1 bytes"}',
        json.dumps({"id": "g", "text": 42}).encode(),
        json.dumps({"text": "Hakuna id hapa"}).encode(),
    ])
    items = list(read_documents(p))
    docs, rejects = _docs(items), _rejects(items)
    assert [d.doc_id for d in docs] == ["a", "c.jsonl:9"]
    a = docs[0]
    assert (a.text, a.lang, a.source, a.meta) == ("Habari ya asubuhi", "sw", f"{p}:1", {"url": "http://x"})
    assert docs[1].source == f"{p}:9" and docs[1].lang is None

    by_reason = {r.reason: r for r in rejects}
    assert sorted(by_reason) == ["bad_encoding", "empty_text", "malformed_json", "missing_text",
                                 "not_an_object"]
    assert len(rejects) == 6  # missing_text twice: no field, and a number
    for r in rejects:
        assert r.stage == "read" and r.unit == "document"
        assert r.source is not None and r.source in r.detail  # names file and line
    bad = by_reason["malformed_json"]
    assert bad.source == f"{p}:2" and "line 2" in bad.detail and "Unterminated string" in bad.detail
    assert bad.record == {"raw": '{"id": "b", "text": "unterminated'}
    utf = by_reason["bad_encoding"]
    assert utf.source == f"{p}:7" and "caf\ufffd latin-1" in utf.record["raw"]
    assert by_reason["not_an_object"].source == f"{p}:4" and "list" in by_reason["not_an_object"].detail
    missing = [r for r in rejects if r.reason == "missing_text"]
    assert [r.doc_id for r in missing] == ["d", "g"]
    assert "is missing" in missing[0].detail and "is a int" in missing[1].detail
    assert missing[0].record == {"id": "d", "body": "no text field"}  # nothing lost
    assert by_reason["empty_text"].doc_id == "e" and "doc e" in by_reason["empty_text"].detail


def test_custom_field_names_and_non_string_lang(tmp_path: Path) -> None:
    p = _write_lines(tmp_path / "c.jsonl", [json.dumps({"uid": 7, "content": "Moi", "language": 3}).encode()])
    [d] = read_documents(p, text_field="content", id_field="uid", lang_field="language")
    assert (d.doc_id, d.text, d.lang, d.meta) == ("7", "Moi", None, {"language": 3})


def test_duplicate_ids_are_made_unique_in_order(tmp_path: Path) -> None:
    rows = [{"id": "x", "text": f"teksti {i}"} for i in range(3)] + [{"id": "x#2", "text": "oma"}]
    p = _write_lines(tmp_path / "c.jsonl", [json.dumps(r).encode() for r in rows])
    docs = _docs(list(read_documents(p)))
    assert [d.doc_id for d in docs] == ["x", "x#2", "x#3", "x#2#2"]
    assert [d.meta.get("orig_id") for d in docs] == [None, "x", "x", "x#2"]
    assert [d.text for d in docs] == ["teksti 0", "teksti 1", "teksti 2", "oma"]


def test_gzipped_jsonl_and_truncated_gzip(tmp_path: Path) -> None:
    good = tmp_path / "a.jsonl.gz"
    with gzip.open(good, "wt", encoding="utf-8") as f:
        for i in range(50):
            f.write(json.dumps({"id": f"g{i}", "text": f"Rivi numero {i}"}) + "\n")
    assert [d.doc_id for d in read_documents(good)] == [f"g{i}" for i in range(50)]
    cut = tmp_path / "b.jsonl.gz"
    cut.write_bytes(good.read_bytes()[:-30])
    items = list(read_documents(cut))
    assert items and isinstance(items[-1], Reject) and items[-1].reason == "unreadable_file"
    assert str(cut) in items[-1].detail


def test_json_array_file(tmp_path: Path) -> None:
    p = tmp_path / "c.json"
    p.write_text(json.dumps([{"id": "a", "text": "Yksi"}, {"text": ""}]), encoding="utf-8")
    items = list(read_documents(p))
    assert items[0].doc_id == "a" and items[0].source == f"{p}:0"
    assert isinstance(items[1], Reject) and items[1].reason == "empty_text" and items[1].doc_id == "c.json:1"


def test_parquet_rows(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a", None, "c"], "text": ["Moi maailma", "Hei", None],
                             "score": [0.5, 0.7, 0.1]}), p)
    items = list(read_documents(p))
    assert [type(x).__name__ for x in items] == ["Document", "Document", "Reject"]
    assert items[0].source == f"{p}:0" and items[0].meta == {"score": 0.5}
    assert items[1].doc_id == "c.parquet:1"
    assert items[2].reason == "missing_text" and items[2].doc_id == "c" and f"{p}:2" in items[2].detail


def test_saved_dataset_folder(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"id": "a", "text": "Jambo", "lang": "sw"}, {"id": "b", "text": ""}])
    ds.save_to_disk(str(tmp_path / "ds"))
    items = list(read_documents(tmp_path / "ds"))
    assert isinstance(items[0], Document) and (items[0].doc_id, items[0].lang) == ("a", "sw")
    assert items[0].source.endswith("ds:0")
    assert isinstance(items[1], Reject) and items[1].reason == "empty_text" and items[1].doc_id == "b"


def test_text_folder_recursive_sorted(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("Toinen\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("\ufeffEnsimmäinen", encoding="utf-8")
    (tmp_path / "b" / "bad.txt").write_bytes(b"ok \xff\xfe not utf-8")
    (tmp_path / "b" / "empty.txt").write_text("  \n", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("ignored", encoding="utf-8")
    items = list(read_documents(tmp_path))
    assert [x.doc_id for x in items] == ["a.txt", "b/bad.txt", "b/empty.txt", "b/z.txt"]
    assert items[0].text == "Ensimmäinen" and items[0].source == str(tmp_path / "a.txt")
    assert items[1].reason == "bad_encoding" and "b/bad.txt" in items[1].detail
    assert items[2].reason == "empty_text"


def test_folder_of_data_files_in_sorted_order(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"id": ["p0"], "text": ["parquet"]}), tmp_path / "b.parquet")
    _write_lines(tmp_path / "a.jsonl", [json.dumps({"id": "j0", "text": "jsonl"}).encode()])
    _write_lines(tmp_path / "c.jsonl", [json.dumps({"id": "j1", "text": "more"}).encode()])
    (tmp_path / "README.txt").write_text("not a document", encoding="utf-8")
    assert [d.doc_id for d in read_documents(tmp_path)] == ["j0", "p0", "j1"]


def test_user_errors_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_documents(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="no readable files"):
        read_documents(tmp_path)
    (tmp_path / "x.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported corpus file"):
        read_documents(tmp_path / "x.csv")
