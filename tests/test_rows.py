"""The one row reader: every format, its sources (path:line from 1, path:row from 0) and its four reasons."""

from __future__ import annotations

import gzip
import json

import pytest

from xinstruct.rows import BAD_REASONS, read_rows


def _read(path, **kw):
    return [(src.rsplit("/", 1)[-1], row, bad.reason if bad else None) for src, row, bad in read_rows(path, **kw)]


def test_json_lines_number_lines_from_1_and_name_each_bad_line(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"x": 1}\n\n{"x": \n[1, 2]\n{"x": "caf\xe9"}\n{"x": 3}\r\n')
    assert _read(p) == [("a.jsonl:1", {"x": 1}, None), ("a.jsonl:3", None, "malformed_json"),
                        ("a.jsonl:4", None, "not_an_object"), ("a.jsonl:5", None, "bad_encoding"),
                        ("a.jsonl:6", {"x": 3}, None)]
    bad = {b.reason: b for _, _, b in read_rows(p) if b}
    assert bad["bad_encoding"].raw == '{"x": "caf\ufffd"}' and "byte" in bad["bad_encoding"].detail
    assert bad["not_an_object"].raw == [1, 2] and "list" in bad["not_an_object"].detail
    assert "line 3" in bad["malformed_json"].detail
    assert [r for _, r, _ in read_rows(p, objects=False)][2] == [1, 2]  # any JSON value, when asked
    assert set(BAD_REASONS) >= {b.reason for _, _, b in read_rows(p) if b}


def test_arrays_parquet_and_datasets_number_rows_from_0(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [{"x": 1}, {"x": 2}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    assert _read(tmp_path / "a.json") == [("a.json:0", {"x": 1}, None), ("a.json:1", {"x": 2}, None)]
    assert _read(tmp_path / "a.parquet") == [("a.parquet:0", {"x": 1}, None), ("a.parquet:1", {"x": 2}, None)]
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:1])})
    dd.save_to_disk(str(tmp_path / "saved"))
    assert _read(tmp_path / "saved") == [("test:0", {"x": 1}, None), ("train:0", {"x": 1}, None),
                                         ("train:1", {"x": 2}, None)]  # every split, in name order
    assert _read(tmp_path / "saved", split="train") == [("train:0", {"x": 1}, None), ("train:1", {"x": 2}, None)]
    with pytest.raises(ValueError, match="no split 'dev'"):
        list(read_rows(tmp_path / "saved", split="dev"))
    (tmp_path / "broken.json").write_text('[{"x": 1},')
    assert _read(tmp_path / "broken.json") == [("broken.json", None, "malformed_json")]


def test_tables_with_a_header_and_gzipped_lines(tmp_path):
    (tmp_path / "t.tsv").write_text('id\ttext\n1\tMvua "kubwa"\n2\ttoo\tmany\n', encoding="utf-8")
    assert _read(tmp_path / "t.tsv") == [("t.tsv:2", {"id": "1", "text": 'Mvua "kubwa"'}, None),
                                         ("t.tsv:3", None, "wrong_columns")]
    (tmp_path / "t.csv").write_bytes(b'id,text\n1,"a, b"\n2,\xff\n')
    assert _read(tmp_path / "t.csv") == [("t.csv:2", {"id": "1", "text": "a, b"}, None),
                                         ("t.csv:3", None, "bad_encoding")]
    with gzip.open(tmp_path / "g.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write('{"x": 1}\n{"x": 2}\n')
    assert [r for _, r, _ in read_rows(tmp_path / "g.jsonl.gz")] == [{"x": 1}, {"x": 2}]


def test_folders_read_their_files_in_order_and_a_run_folder_its_samples(tmp_path):
    (tmp_path / "data" / "b").mkdir(parents=True)
    (tmp_path / "data" / "a.jsonl").write_text('{"x": 1}\n')
    (tmp_path / "data" / "b" / "c.jsonl").write_text('{"x": 2}\n')
    (tmp_path / "data" / ".hidden.jsonl").write_text('{"x": 0}\n')
    (tmp_path / "data" / "notes.md").write_text("not data")
    assert [r for _, r, _ in read_rows(tmp_path / "data")] == [{"x": 1}, {"x": 2}]
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples.jsonl").write_text('{"x": 3}\n')
    (run / "rejects.jsonl").write_text('{"x": 4}\n')
    assert [r for _, r, _ in read_rows(run)] == [{"x": 3}]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no data files"):
        list(read_rows(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError):
        list(read_rows(tmp_path / "nope.jsonl"))
