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

from xinstruct.curate.config import load_recipe
from xinstruct.curate.job import run_curate
from xinstruct.data import sample_corpus
from xinstruct.io import read_jsonl

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
    return {"corpus.jsonl:4": "malformed_json", "empty": "empty_text", "corpus.jsonl:6": "bad_encoding",
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
                             "shard_size=2", "selfcheck.enabled=false"])
    m = run_curate(cfg, llm=llm)  # the gate's model is this one too, loaded without logits: it is skipped
    samples = list(read_jsonl(tmp_path / "run" / "samples.jsonl"))
    rejects = list(read_jsonl(tmp_path / "run" / "rejects.jsonl"))
    unsampled = list(read_jsonl(tmp_path / "run" / "unsampled.jsonl"))
    c = m["counts"]

    assert c["documents_read"] == 9
    assert c["documents_read"] == c["documents_rejected"] + c["documents_chunked"]
    assert c["chunks"] == c["samples"] + c["unsampled"] + sum(c["rejected"].values())
    assert len(samples) == c["samples"] and len(unsampled) == c["unsampled"]
    assert len(rejects) == c["documents_rejected"] + sum(c["rejected"].values())

    assert m["selection"]["gate"]["skipped"] is True
    model_stages = ("generate", "relevance", "refine", "decontaminate", "diversify")
    reasons = {r["doc_id"]: r["reason"] for r in rejects if r["stage"] not in model_stages}
    assert reasons == expected
    for r in rejects:  # every message names its record and where it came from
        assert r["doc_id"] in r["detail"] and r["source"] in r["detail"], r["detail"]
    # Every Swahili document is in the final set, a reject with a reason, or listed as not sampled.
    sw_ids = {f"sw-{i}" for i in range(3)}
    later = [r for r in rejects if r["stage"] in model_stages]
    assert {s["doc_id"] for s in samples + unsampled} | {r["doc_id"] for r in later} == sw_ids
    assert len(samples) + len(unsampled) + len(later) == 3
    assert all(r["reason"] for r in later)
    for s in samples:  # a final pair was judged good, and its history says how it got there
        assert s["instruction"] and s["response"] and s["cluster"] is not None
        assert s["scores"][-1]["score"] >= 4 and s["history"][-1]["verdict"] == "keep"
        assert s["scores"][-1]["method"] == "judge"
    assert (tmp_path / "run" / "README.md").is_file() and (tmp_path / "run" / "report.md").is_file()


def _cache_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def _curate(out: Path, limit: int) -> list[str]:
    # Swahili and Turkish: the other 32 sample documents are rejected at preparation (other languages); of the 8
    # left, generation keeps those whose instruction copies no seed (Turkish alone left one pair to refine on an
    # AMD EPYC, where the model's bf16 answers differ from an Intel Xeon's). The embedded judge's scores differ between
    # CPUs (one machine gives all a 1, another keeps one), so nothing rejects on a score: the gate (the embedded
    # scorer, before and after refinement) decides with a threshold no pair misses, and the judge still labels
    # and refines. Every stage has work on every machine.
    return [sys.executable, "-m", "xinstruct", "curate", "--out", str(out), "--limit", str(limit), "--lang", "sw,tr",
            "--no-progress", "--no-report", "--no-selfcheck", "--decide", "relevance", "--relevance-threshold",
            "-100", "--set", "shard_size=2", "--set", "refine.iterations=1",
            # few-shot prompting, so that no backward model is trained here; fresh shots per text: with the default
            # rotated sets the embedded model copies a set's last shot for most of these texts, and too few pairs
            # would reach refinement to kill it there
            "--num-shots", "2", "--set", "generate.shot_selection=random"]


def test_sigkill_midway_then_resume_gives_the_same_result(tmp_path):
    limit = 40
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # An uninterrupted run, for reference.
    subprocess.run(_curate(tmp_path / "ref", limit), check=True, env=env, capture_output=True, timeout=600)
    ref_manifest = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    ref = ref_manifest["stages"]
    # Calls before refinement: generation, the gate's probe and its scores before refinement (one cache row each).
    gen_calls = (ref["generate"]["llm"]["generated"] + ref_manifest["selection"]["gate"]["probe_llm"]["generated"]
                 + ref["relevance-pre"]["llm"]["generated"])
    refine_calls = ref["refine"]["llm"]["generated"]
    assert refine_calls >= 2, "too few pairs reached refinement for this test"
    assert ref["relevance-pre"]["llm"]["generated"] >= 2 and ref["relevance-post"]["llm"]["scored"] >= 2
    assert json.loads((tmp_path / "ref" / "manifest.json").read_text())["counts"]["samples"] >= 1

    # The same run, killed with SIGKILL in the middle of the refinement stage.
    run = tmp_path / "killed"
    cache = run / "cache" / "llm.sqlite"
    target = gen_calls + refine_calls // 2
    proc = subprocess.Popen(_curate(run, limit), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 400
    while _cache_rows(cache) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed midway"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (run / "samples.jsonl").exists()
    before = _cache_rows(cache)
    assert gen_calls <= before < gen_calls + refine_calls

    done = subprocess.run(_curate(run, limit), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    # Generation was finished: its shards are reused and it makes no call.
    assert stages["generate"]["shards_resumed"] == stages["generate"]["shards"]
    assert stages["generate"]["llm"]["requests"] == 0
    # Nothing cached was generated again: every new call added exactly one row to the cache.
    new = stages["refine"]["llm"]["generated"]
    assert _cache_rows(cache) == before + new + stages["relevance-post"]["llm"]["generated"] and new < refine_calls
    assert stages["relevance-pre"]["shards_resumed"] == stages["relevance-pre"]["shards"]
    for name in ("samples.jsonl", "rejects.jsonl", "unsampled.jsonl"):
        assert (run / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name

    # A third run finds every shard and the embeddings done, and does not even load the model.
    again = subprocess.run(_curate(run, limit), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    third = json.loads((run / "manifest.json").read_text())
    for stage in ("generate", "relevance-pre", "refine", "relevance-post"):
        st = third["stages"][stage]
        assert st["shards_resumed"] == st["shards"] and st["llm"]["requests"] == 0 and not st["llm"]["loaded"]
    assert third["stages"]["diversify"]["embeddings_resumed"] is True and third["models"] == []


def test_sample_corpus_covers_the_paper_languages():
    rows = list(read_jsonl(sample_corpus()))
    langs = {r["lang"] for r in rows}
    assert len(rows) >= 30 and len(langs) >= 4


def test_cli_reports_a_missing_input_clearly(tmp_path):
    r = subprocess.run([sys.executable, "-m", "xinstruct", "curate", "--input", str(tmp_path / "nope.jsonl"),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "input not found" in r.stderr and "nope.jsonl" in r.stderr


def test_a_stage_alone_needs_records_and_says_so(tmp_path):
    r = subprocess.run([sys.executable, "-m", "xinstruct", "refine", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "needs --input" in r.stderr
    r = subprocess.run([sys.executable, "-m", "xinstruct", "diversify", "--input", str(tmp_path),
                        "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "no records at" in r.stderr and "samples.jsonl" in r.stderr


def test_a_rerun_whose_calls_are_all_cached_loads_no_model(tmp_path):
    """A second run into a fresh folder with the first run's request cache (what a second `make demo` does)
    answers every call from the cache: no model's weights load (only their tokenizers), and the files are the
    same."""
    cache = tmp_path / "llm.sqlite"

    def run(name):
        # few-shot prompting (no backward model to train), fresh shots per text (see _curate)
        cfg = load_recipe(None, ["lang=sw,tr", f"out={tmp_path / name}", f"cache={cache}", "progress=false",
                                 "report=false", "shard_size=2", "generate.num_shots=2",
                                 "generate.shot_selection=random", "selfcheck.size=4", "refine.iterations=1",
                                 "relevance.threshold=-100"])
        return run_curate(cfg)

    first = run("first")
    assert first["models"] and first["counts"]["candidates"] >= 1
    second = run("second")
    assert second["models"] == []
    for name, st in second["stages"].items():
        if "llm" in st:
            assert not st["llm"]["loaded"] and st["llm"]["generated"] == 0, name
    for name in ("samples.jsonl", "rejects.jsonl", "unsampled.jsonl"):
        assert (tmp_path / "second" / name).read_bytes() == (tmp_path / "first" / name).read_bytes(), name
