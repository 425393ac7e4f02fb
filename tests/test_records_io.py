"""Records round-trip through JSONL and Parquet, and export to formats `datasets` loads."""

import json

import pytest

from xinstruct.io import atomic_write, export, read_records, write_records
from xinstruct.records import Provenance, Record


def _records():
    r1 = Record(id="d1#0", doc_id="d1", lang="sw", text="Habari ya asubuhi.", instruction="Greet me in the morning.",
                response="Habari ya asubuhi.", source="c.jsonl:1", chunk=0, n_chunks=2, meta={"url": "x"})
    r1.provenance["instruction"] = Provenance(model="m", backend="llama.cpp", prompt="generate_instruction",
                                              prompt_version="1", params={"temperature": 0.0, "stop": []}, raw="r")
    r2 = Record(id="d2", doc_id="d2", lang="ta", text="வணக்கம்", instruction="Say hello.", response="வணக்கம்")
    return [r1, r2]


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_roundtrip_is_lossless(tmp_path, suffix):
    recs = _records()
    path = tmp_path / f"r{suffix}"
    assert write_records(path, recs) == 2
    back = list(read_records(path))
    assert [r.to_dict() for r in back] == [r.to_dict() for r in recs]
    assert back[0].provenance["instruction"].prompt_version == "1"


def test_read_records_names_the_bad_record(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_records()[0].to_dict()) + "\n" + json.dumps({"id": "x", "bogus": 1}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: record 2 .*bogus"):
        list(read_records(path))


@pytest.mark.parametrize("fmt, suffix", [("messages", ".jsonl"), ("alpaca", ".jsonl"), ("messages", ".parquet"),
                                         ("alpaca", ".parquet")])
def test_exports_load_in_datasets(tmp_path, fmt, suffix):
    from datasets import load_dataset

    path = tmp_path / f"out{suffix}"
    export(_records(), path, fmt)
    ds = load_dataset("json" if suffix == ".jsonl" else "parquet", data_files=str(path), split="train")
    assert len(ds) == 2
    if fmt == "messages":
        assert ds[0]["messages"] == [{"role": "user", "content": "Greet me in the morning."},
                                     {"role": "assistant", "content": "Habari ya asubuhi."}]
    else:
        assert (ds[1]["instruction"], ds[1]["input"], ds[1]["output"]) == ("Say hello.", "", "வணக்கம்")


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path) as f:
        f.write("half of the new")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
