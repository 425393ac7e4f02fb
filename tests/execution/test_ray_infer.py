"""`xinstruct infer` on Ray actors (a local Ray runtime, 2 CPUs): a failing call ends in rejects as locally."""

from __future__ import annotations

import json

import pytest
from ray_cli import run, xinstruct

pytest.importorskip("ray")
pytest.importorskip("llama_cpp")

pytestmark = pytest.mark.slow


def test_a_bad_record_inside_a_ray_batch_ends_in_rejects_as_locally(tmp_path):
    """`xinstruct infer` on Ray actors (llama.cpp): a question longer than the model's context window fails its
    call inside its shard; it ends in rejects.jsonl with its reason, and the other answers are written."""
    questions = tmp_path / "q.jsonl"
    rows = [{"question_id": "q1", "text": "Habari gani?"}, {"question_id": "q2", "text": "ndefu " * 30_000},
            {"question_id": "q3", "text": "Jina lako ni nani?"}]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    common = ("--questions", str(questions), "--question-lang", "sw", "--backend", "llama.cpp", "--max-tokens", "8",
              "--set", "shard_size=2")
    run(xinstruct("infer", "--out", str(tmp_path / "local"), *common))
    run(xinstruct("infer", "--out", str(tmp_path / "ray"), "--executor", "ray", *common))
    for name in ("answers.jsonl", "rejects.jsonl"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    rejects = [json.loads(line) for line in (tmp_path / "ray" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reason"]) for r in rejects] == [("q2", "llm_error")]
    assert "q2" in rejects[0]["detail"] or rejects[0]["source"]
    answers = [json.loads(line) for line in (tmp_path / "ray" / "answers.jsonl").read_text().splitlines()]
    assert [a["question_id"] for a in answers] == ["q1", "q3"] and all(a["answer"] for a in answers)
