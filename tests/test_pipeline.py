"""The curate job end to end with the embedded model: accounting, bad input, kill and resume."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xinstruct.config import load_recipe
from xinstruct.io import read_jsonl
from xinstruct.pipeline import run_curate, sample_corpus

pytest.importorskip("llama_cpp")

SW = [
    "Ugali ni chakula kikuu katika nchi nyingi za Afrika Mashariki. Hupikwa kwa unga wa mahindi na maji hadi "
    "kuwa mgumu, kisha huliwa pamoja na mboga za majani, maharagwe au nyama.",
    "Mlima Kilimanjaro ndio mlima mrefu zaidi barani Afrika. Wapandaji wengi huanzia safari yao mjini Moshi, "
    "na safari ya kufika kileleni huchukua siku tano hadi saba kutegemea njia waliyochagua.",
    "Kiswahili ni lugha ya taifa nchini Tanzania na Kenya. Lugha hii ina maneno mengi yenye asili ya Kiarabu, "
    "na leo inazungumzwa na watu zaidi ya milioni mia moja katika Afrika Mashariki na Kati.",
]
EN = ("The city council met on Tuesday to discuss the new budget for public transport, and several members "
      "asked for more buses on the routes that serve the northern suburbs during the morning rush hour.")


def _write_corpus(path: Path) -> dict[str, str]:
    """A corpus with one of every problem; returns the expected reject reason by input line id."""
    lines = [json.dumps({"id": f"sw-{i}", "lang": "sw", "text": t}, ensure_ascii=False).encode()
             for i, t in enumerate(SW)]
    lines.append(b'{"id": "broken", "text": "Habari')  # malformed JSON
    lines.append(json.dumps({"id": "empty", "text": "   "}).encode())
    lines.append(b'{"id": "latin1", "text": "Caf\xe9 ya ' + b"\xff\xfe" + b' asubuhi"}')  # not UTF-8
    lines.append(json.dumps({"id": "english", "text": EN}).encode())
    lines.append(json.dumps({"id": "copy", "text": SW[0]}, ensure_ascii=False).encode())
    lines.append(json.dumps({"id": "huge", "text": ("Habari za asubuhi. " * 60_000)[:1_100_000]}).encode())
    path.write_bytes(b"\n".join(lines) + b"\n")
    # Lines that cannot be parsed get an id from their position: FILE:LINE.
    return {"corpus.jsonl:4": "malformed_json", "empty": "empty_text", "corpus.jsonl:6": "invalid_utf8",
            "english": "language_mismatch", "copy": "exact_duplicate", "huge": "too_long"}


@pytest.fixture(scope="module")
def llm():
    from xinstruct.llm import ModelConfig, load_llm

    with load_llm(ModelConfig()) as m:
        yield m


def test_every_document_is_accounted_for_once(tmp_path, llm):
    corpus = tmp_path / "corpus.jsonl"
    expected = _write_corpus(corpus)
    cfg = load_recipe(None, [f"input={corpus}", "lang=sw", f"out={tmp_path / 'run'}", "progress=false",
                             "shard_size=2"])
    m = run_curate(cfg, llm=llm)
    samples = list(read_jsonl(tmp_path / "run" / "samples.jsonl"))
    rejects = list(read_jsonl(tmp_path / "run" / "rejects.jsonl"))
    c = m["counts"]

    assert c["documents_read"] == 9
    assert c["documents_read"] == c["documents_rejected"] + c["documents_chunked"]
    assert c["chunks"] == c["samples"] + sum(c["chunks_rejected"].values())
    assert len(samples) == c["samples"]
    assert len(rejects) == c["documents_rejected"] + sum(c["chunks_rejected"].values())

    reasons = {r["doc_id"]: r["reason"] for r in rejects if r["stage"] != "generate"}
    assert reasons == expected
    for r in rejects:  # every message names its record and where it came from
        assert r["doc_id"] in r["detail"] and r["source"] in r["detail"], r["detail"]
    sw_ids = {f"sw-{i}" for i in range(3)}
    assert {s["doc_id"] for s in samples} | {r["doc_id"] for r in rejects if r["stage"] == "generate"} == sw_ids
    assert all(s["instruction"] and s["response"] for s in samples)


def _cache_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def _curate(out: Path, limit: int) -> list[str]:
    return [sys.executable, "-m", "xinstruct", "curate", "--out", str(out), "--limit", str(limit),
            "--no-progress", "--set", "shard_size=2"]


def test_sigkill_midway_then_resume_gives_the_same_result(tmp_path):
    limit = 6
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # An uninterrupted run, for reference.
    subprocess.run(_curate(tmp_path / "ref", limit), check=True, env=env, capture_output=True, timeout=600)

    # The same run, killed with SIGKILL once a few calls are cached but before it ends.
    run = tmp_path / "killed"
    cache = run / "cache" / "llm.sqlite"
    proc = subprocess.Popen(_curate(run, limit), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _cache_rows(cache) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed midway"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (run / "samples.jsonl").exists()
    before = _cache_rows(cache)
    assert 3 <= before < limit

    done = subprocess.run(_curate(run, limit), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((run / "manifest.json").read_text())
    llm = manifest["stages"]["generate"]["llm"]
    # Nothing cached was generated again: every new call added exactly one row to the cache.
    assert _cache_rows(cache) == before + llm["generated"]
    assert llm["generated"] < limit - manifest["counts"]["chunks_rejected"]["prepare"]
    assert (run / "samples.jsonl").read_bytes() == (tmp_path / "ref" / "samples.jsonl").read_bytes()
    assert (run / "rejects.jsonl").read_bytes() == (tmp_path / "ref" / "rejects.jsonl").read_bytes()

    # A third run finds every shard done and does not even load the model.
    again = subprocess.run(_curate(run, limit), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    third = json.loads((run / "manifest.json").read_text())["stages"]["generate"]
    assert third["shards_resumed"] == third["shards"] and third["llm"]["requests"] == 0


def test_sample_corpus_covers_the_paper_languages():
    rows = list(read_jsonl(sample_corpus()))
    langs = {r["lang"] for r in rows}
    assert len(rows) >= 30 and len(langs) >= 4


def test_cli_reports_a_missing_input_clearly(tmp_path):
    r = subprocess.run([sys.executable, "-m", "xinstruct", "curate", "--input", str(tmp_path / "nope.jsonl"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "input not found" in r.stderr and "nope.jsonl" in r.stderr
