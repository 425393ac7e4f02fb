"""End to end with the embedded model: answers from `xinstruct infer`, judged by the same model through
llama.cpp in-process and through a real OpenAI-compatible server on 127.0.0.1; `xinstruct eval run`."""

import json
from pathlib import Path

import pytest

from xinstruct.cli import main
from xinstruct.evaluate.infer import InferConfig, run_infer
from xinstruct.evaluate.judge import JudgeConfig, run_judge
from xinstruct.io import read_jsonl
from xinstruct.llm import ModelConfig
from xinstruct.parsers import parse_pairwise

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_answer_sets(embedded_gguf, tmp_path_factory):
    """The embedded model's answers to 2 packaged questions in sw and id, asked plainly (reference) and with
    "Answer in LANGUAGE." appended (candidate)."""
    root = tmp_path_factory.mktemp("answers")
    common = dict(lang="sw,id", limit=2, max_tokens=48, progress=False, model=ModelConfig(str(embedded_gguf)))
    run_infer(InferConfig(out=str(root / "plain"), label="plain", **common))
    run_infer(InferConfig(out=str(root / "answer_in"), label="answer-in", prompt="{question}\n\nAnswer in {language}.",
                          **common))
    return root / "answer_in", root / "plain"


def check_judged(res, out: Path, backend: str):
    o = res["overall"]
    assert o["n"] == 4 and o["win"] + o["tie"] + o["loss"] + o["unparsed"] == 4
    # Both engines constrain the verdict to the JSON schema, so every verdict is readable.
    assert o["unparsed"] == 0 and o["win_rate"] is not None and o["ci_low"] <= o["win_rate"] <= o["ci_high"]
    rows = list(read_jsonl(out / "judgments.jsonl"))
    assert {(r["lang"], r["question_id"]) for r in rows} == {("sw", "1"), ("sw", "2"), ("id", "1"), ("id", "2")}
    for r in rows:
        assert [x["order"] for x in r["orders"]] == ["candidate_first", "reference_first"]
        for x in r["orders"]:
            assert parse_pairwise(x["raw"][-1]).winner == x["winner"]
        assert r["judge"]["backend"] == backend
    assert res["calls"]["generated"] >= 8  # 4 questions x 2 orders, plus any re-asks
    assert res["model"]["label"] == "answer-in" and res["reference"]["label"] == "plain"


def test_embedded_model_judges_embedded_answers_in_process(two_answer_sets, embedded_gguf, tmp_path):
    cand, ref = two_answer_sets
    cfg = JudgeConfig(candidate=str(cand), reference=str(ref), out=str(tmp_path / "judge"), progress=False,
                      judge=ModelConfig(str(embedded_gguf)))
    check_judged(run_judge(cfg), tmp_path / "judge", "llama.cpp")


def test_embedded_model_judges_through_an_openai_compatible_server(two_answer_sets, llama_server, tmp_path):
    cand, ref = two_answer_sets
    cfg = JudgeConfig(candidate=str(cand), reference=str(ref), out=str(tmp_path / "judge"), progress=False,
                      judge=ModelConfig(llama_server.model, backend="openai", base_url=llama_server.base_url))
    check_judged(run_judge(cfg), tmp_path / "judge", "openai")


def test_eval_run_and_report_from_the_command_line(embedded_gguf, tmp_path, capsys):
    out = tmp_path / "eval"
    args = ["eval", "run", "--model", str(embedded_gguf), "--label", "base", "--lang", "sw,ta", "--limit", "1",
            "--max-tokens", "32", "--out", str(out / "base"), "--no-progress"]
    assert main(args) == 0
    assert "language fidelity of base" in capsys.readouterr().out
    res = json.loads((out / "base" / "fidelity" / "result.json").read_text())
    assert set(res["metrics"]) == {"sw", "ta"} and res["overall"]["n"] == 2
    assert main(["eval", "report", str(out)]) == 0
    assert "Language fidelity" in (out / "report.md").read_text()
    assert (out / "plots" / "fidelity_questions_fidelity.png").stat().st_size > 1000
