"""The Ray executor on a local Ray runtime (2 CPUs): kills of the driver or of a Ray worker end with the same
result as the local executor, without redoing finished shards."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from ray_cli import ENV, run, same_outputs, xinstruct

pytest.importorskip("ray")
pytest.importorskip("llama_cpp")

pytestmark = pytest.mark.slow


def _generate(out: Path, *extra: str) -> list[str]:
    # Swahili and Turkish (8 of the 40 sample documents), one chunk per shard: 8 shards for the kills to fall in.
    return xinstruct("generate", "--out", str(out), "--lang", "sw,tr", "--num-shots", "2", "--set", "shard_size=1",
                     *extra)


def _shards(out: Path, stage: str = "generate") -> dict[str, tuple[int, int]]:
    """The finished shard files of a stage: name -> (inode, mtime in ns)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(out.glob(f"work/{stage}-*/shard-?????.jsonl"))}


@pytest.fixture(scope="module")
def local_generate(tmp_path_factory) -> Path:
    """The generation stage on sw,tr with the local executor: the reference of the kill tests."""
    out = tmp_path_factory.mktemp("ray") / "local"
    run(_generate(out))
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


def test_driver_sigkill_then_rerun_finishes_without_redoing_shards(tmp_path, local_generate):
    out = tmp_path / "killed"
    proc = subprocess.Popen(_generate(out, "--executor", "ray"), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    before = _wait_for_shards(proc, out, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (out / "samples.jsonl").exists()

    run(_generate(out, "--executor", "ray"))
    same_outputs(out, local_generate)
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
    same_outputs(out, local_generate)
    assert len(_shards(out)) == 8
