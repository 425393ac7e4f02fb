"""What the Ray executor's tests share (tests/execution/test_ray_*.py): the CLI they run on a local Ray runtime
(2 CPUs) and the checks that its files equal the local executor's. The tests are split over several files so that
make test's two workers (`--dist loadfile`) can run them side by side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
OUTPUTS = ("samples.jsonl", "rejects.jsonl", "unsampled.jsonl")


def xinstruct(*args: str) -> list[str]:
    return [sys.executable, "-m", "xinstruct", *args, "--no-progress"] + (["--no-report"] if args[0] != "infer" else [])


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def same_outputs(a: Path, b: Path, names: tuple[str, ...] = OUTPUTS) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
