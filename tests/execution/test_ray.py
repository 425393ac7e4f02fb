"""The Ray executor on a local Ray runtime (2 CPUs): the same output files as the local executor, and kills of
the driver or of a Ray worker end with the same result, without redoing finished shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytest.importorskip("llama_cpp")

pytestmark = pytest.mark.slow

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
OUTPUTS = ("samples.jsonl", "rejects.jsonl", "unsampled.jsonl")


def _xinstruct(*args: str) -> list[str]:
    return [sys.executable, "-m", "xinstruct", *args, "--no-progress"] + (["--no-report"] if args[0] != "infer" else [])


def _generate(out: Path, *extra: str) -> list[str]:
    # Swahili and Turkish (8 of the 40 sample documents), one chunk per shard: 8 shards for the kills to fall in.
    return _xinstruct("generate", "--out", str(out), "--lang", "sw,tr", "--num-shots", "2", "--set", "shard_size=1",
                      *extra)


def _run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def _shards(out: Path, stage: str = "generate") -> dict[str, tuple[int, int]]:
    """The finished shard files of a stage: name -> (inode, mtime in ns)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(out.glob(f"work/{stage}-*/shard-?????.jsonl"))}


def _same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def local_generate(tmp_path_factory) -> Path:
    """The generation stage on sw,tr with the local executor: the reference of the kill tests."""
    out = tmp_path_factory.mktemp("ray") / "local"
    _run(_generate(out))
    assert len(_shards(out)) == 8
    assert json.loads((out / "manifest.json").read_text())["counts"]["candidates"] >= 1
    return out


def _wait_for_shards(proc: subprocess.Popen, out: Path, n: int, deadline_s: float = 400) -> dict[str, tuple[int, int]]:
    deadline = time.monotonic() + deadline_s
    while len(_shards(out)) < n and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    done = _shards(out)
    assert proc.poll() is None, f"the run ended before it could be killed ({proc.stderr.read()[-2000:]})"
    assert n <= len(done) < 8, f"{len(done)} shards finished before the kill"
    return done


# Two whole curate runs (local, then on Ray): over pytest's 600 s when another test file runs beside it (make test's
# two workers; 600 s hit on 2 EPYC cores, 2026-12-06).
@pytest.mark.timeout(2400)
def test_ray_curate_gives_the_local_executors_files(tmp_path):
    """The whole job (the self-check, generation, the relevance gate before and after refinement, refinement,
    diversification) with --executor ray writes byte-identical samples, rejects and unsampled files, and the
    driver loads no model: the gate's probe and the self-check ran as a Ray task."""
    common = ("--lang", "sw,tr", "--num-shots", "2", "--set", "shard_size=2", "--selfcheck-size", "8", "--decide",
              "relevance", "--relevance-threshold", "-100", "--set", "refine.iterations=1")
    _run(_xinstruct("curate", "--out", str(tmp_path / "local"), *common))
    r = _run(_xinstruct("curate", "--out", str(tmp_path / "ray"), "--executor", "ray", *common), timeout=1200)
    _same_outputs(tmp_path / "local", tmp_path / "ray")
    m = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    local = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert m["counts"]["candidates"] >= 1 and "LLM calls" in r.stdout
    assert m["models"] == [] and len(local["models"]) >= 2  # the local driver loaded its engines, Ray's none
    for name in ("judge", "relevance"):
        assert m["selection"]["selfcheck"][name]["auc"] == local["selection"]["selfcheck"][name]["auc"], name
    for stage in ("generate", "relevance-pre", "refine", "relevance-post"):
        st = m["stages"][stage]
        assert st["executor"] == "ray" and st["shards_resumed"] == 0, stage
        # every shard's calls went through its own request cache, beside its output
        folder = tmp_path / "ray" / st["folder"]
        assert sorted(p.name.split(".")[0] for p in folder.glob("shard-*.cache.jsonl")) == \
            sorted(p.stem for p in folder.glob("shard-?????.jsonl")), stage
        assert not list(folder.glob("input-*")), f"{stage}: shard inputs left behind"
    assert m["stages"]["generate"]["llm"]["generated"] == 8


def test_driver_sigkill_then_rerun_finishes_without_redoing_shards(tmp_path, local_generate):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_generate(out, "--executor", "ray"), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    before = _wait_for_shards(proc, out, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (out / "samples.jsonl").exists()

    _run(_generate(out, "--executor", "ray"))
    _same_outputs(out, local_generate)
    after = _shards(out)
    assert len(after) == 8
    assert {k: after[k] for k in before} == before, "a shard finished before the kill was written again"
    st = json.loads((out / "manifest.json").read_text())["stages"]["generate"]
    assert st["shards_resumed"] >= len(before)


def test_a_killed_ray_worker_is_restarted_and_the_stage_ends_the_same(tmp_path, local_generate):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "worker-killed"
    proc = subprocess.Popen(_generate(out, "--executor", "ray"), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_shards(proc, out, 1)
    workers = [p for p in psutil.process_iter(["cmdline"])
               if any("MapWorker" in part for part in (p.info["cmdline"] or []))]
    assert workers, "no Ray Data actor process found to kill"
    workers[0].send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-4000:]
    _same_outputs(out, local_generate)
    assert len(_shards(out)) == 8


def test_a_bad_record_inside_a_ray_batch_ends_in_rejects_as_locally(tmp_path):
    """`xinstruct infer` on Ray actors (llama.cpp): a question longer than the model's context window fails its
    call inside its shard; it ends in rejects.jsonl with its reason, and the other answers are written."""
    questions = tmp_path / "q.jsonl"
    rows = [{"question_id": "q1", "text": "Habari gani?"}, {"question_id": "q2", "text": "ndefu " * 30_000},
            {"question_id": "q3", "text": "Jina lako ni nani?"}]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    common = ("--questions", str(questions), "--question-lang", "sw", "--backend", "llama.cpp", "--max-tokens", "8",
              "--set", "shard_size=2")
    _run(_xinstruct("infer", "--out", str(tmp_path / "local"), *common))
    _run(_xinstruct("infer", "--out", str(tmp_path / "ray"), "--executor", "ray", *common))
    for name in ("answers.jsonl", "rejects.jsonl"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    rejects = [json.loads(line) for line in (tmp_path / "ray" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects] == [("q2", "llm_error")]
    assert "q2" in rejects[0]["detail"] or rejects[0]["source"]
    answers = [json.loads(line) for line in (tmp_path / "ray" / "answers.jsonl").read_text().splitlines()]
    assert [a["question_id"] for a in answers] == ["q1", "q3"] and all(a["answer"] for a in answers)
