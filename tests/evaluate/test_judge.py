"""Pairwise judging with scripted judges: both orders, position bias, unparsed verdicts, x-LLM's language
rule, pairing, resume, and the verdict parsers."""

import json
import re

import pytest

from xinstruct.evaluate.judge import JudgeConfig, combine, run_judge
from xinstruct.io import read_jsonl, write_jsonl
from xinstruct.llm import LLM, Generation
from xinstruct.parsers import PairwiseVerdict, ParseError, parse_pairwise, parse_pairwise_scores

SW_GOOD = "Weka bajeti ya kila mwezi, punguza matumizi yasiyo ya lazima na weka akiba kidogo kila wiki."
SW_OTHER = "Nunua chakula kwa jumla sokoni na epuka mikopo yenye riba kubwa ili uweze kuweka akiba."
EN = "Make a monthly budget, cut spending you do not need and save a little every week."


class ScriptedJudge(LLM):
    """Reads answer A and B from the prompt and answers with `decide(a, b, attempt)` (a JSON string)."""

    backend = "scripted"
    model_id = "scripted-judge"

    def __init__(self, decide):
        self.decide, self.calls = decide, 0

    def generate(self, requests):
        out = []
        for r in requests:
            self.calls += 1
            first = next(m["content"] for m in r.messages if m["role"] == "user")
            a = re.search(r"<answer_a>\n(.*?)\n</answer_a>", first, re.S).group(1)
            b = re.search(r"<answer_b>\n(.*?)\n</answer_b>", first, re.S).group(1)
            out.append(Generation(self.decide(a, b, len(r.messages) > 2), "stop"))
        return out


def winner(w):
    return json.dumps({"reason": "because", "winner": w})


def answers(path, texts, lang="sw", label="m"):
    rows = [{"question_id": str(i), "lang": lang, "question": f"Swali {i}?", "answer": t,
             "model": {"label": label, "model_id": label}} for i, t in enumerate(texts, 1)]
    write_jsonl(path / "answers.jsonl", rows)
    return path


@pytest.fixture
def pair(tmp_path):
    cand = answers(tmp_path / "cand", [SW_GOOD, SW_GOOD, SW_GOOD], label="tuned")
    ref = answers(tmp_path / "ref", [SW_OTHER, SW_OTHER, SW_OTHER], label="base")
    return cand, ref


def cfg(tmp_path, cand, ref, **kw):
    return JudgeConfig(candidate=str(cand), reference=str(ref), out=str(tmp_path / "judge"), progress=False,
                       bootstrap=200, **kw)


def test_a_judge_that_always_picks_the_first_answer_gives_ties_in_both_orders(tmp_path, pair):
    res = run_judge(cfg(tmp_path, *pair), llm=ScriptedJudge(lambda a, b, retry: winner("A")))
    o = res["overall"]
    assert (o["win"], o["tie"], o["loss"], o["unparsed"]) == (0, 3, 0, 0)
    assert o["win_rate"] == 50.0 and o["consistency"] == 0.0
    rows = list(read_jsonl(tmp_path / "judge" / "judgments.jsonl"))
    assert [[x["outcome"] for x in r["orders"]] for r in rows] == [["win", "loss"]] * 3


def test_one_order_keeps_the_position_bias(tmp_path, pair):
    res = run_judge(cfg(tmp_path, *pair, orders=1), llm=ScriptedJudge(lambda a, b, retry: winner("A")))
    assert res["overall"]["win"] == 3 and res["overall"]["win_rate"] == 100.0


def test_a_judge_that_prefers_the_candidate_gives_wins(tmp_path, pair):
    judge = ScriptedJudge(lambda a, b, retry: winner("A" if a == SW_GOOD else "B"))
    res = run_judge(cfg(tmp_path, *pair), llm=judge)
    assert res["overall"]["win"] == 3 and res["overall"]["consistency"] == 100.0
    assert judge.calls == 6  # three questions, two orders
    assert res["metrics"]["sw"]["win_rate"] == 100.0
    assert res["judge"]["prompt"] == "judge_pairwise@1"
    assert res["model"]["label"] == "tuned" and res["reference"]["label"] == "base"


def test_unreadable_verdicts_are_counted_apart_not_guessed(tmp_path, pair):
    # In the reference-first order the judge answers in prose, even when re-asked.
    def decide(a, b, retry):
        if b == SW_GOOD:
            return "Assistant B is clearly better."  # prose: never read as a verdict
        return winner("A")

    res = run_judge(cfg(tmp_path, *pair), llm=ScriptedJudge(decide))
    o = res["overall"]
    assert o["unparsed"] == 3 and o["win_rate"] is None and (o["win"], o["tie"], o["loss"]) == (0, 0, 0)
    row = next(read_jsonl(tmp_path / "judge" / "judgments.jsonl"))
    second = next(x for x in row["orders"] if x["order"] == "reference_first")
    assert second["outcome"] == "unparsed" and len(second["raw"]) == 2  # asked once more, with a correction


def test_a_corrected_retry_is_read(tmp_path, pair):
    judge = ScriptedJudge(lambda a, b, retry: winner("A" if a == SW_GOOD else "B") if retry else "A")
    res = run_judge(cfg(tmp_path, *pair), llm=judge)
    assert res["overall"]["win"] == 3 and judge.calls == 12


def test_x_llm_rule_an_answer_in_the_wrong_language_loses_without_a_judge(tmp_path):
    cand = answers(tmp_path / "cand", [EN, SW_GOOD])
    ref = answers(tmp_path / "ref", [SW_OTHER, SW_OTHER])
    judge = ScriptedJudge(lambda a, b, retry: winner("tie"))
    res = run_judge(cfg(tmp_path, cand, ref, off_language="lose"), llm=judge)
    rows = {r["question_id"]: r for r in read_jsonl(tmp_path / "judge" / "judgments.jsonl")}
    assert rows["1"]["verdict"] == "loss" and rows["1"]["decided_by"] == "off_language"
    assert rows["2"]["verdict"] == "tie" and rows["2"]["decided_by"] == "judge"
    assert judge.calls == 2 and res["overall"]["decided_by_language"] == 1


def test_answers_without_a_partner_are_rejects(tmp_path):
    cand = answers(tmp_path / "cand", [SW_GOOD, SW_GOOD, SW_GOOD])
    ref = answers(tmp_path / "ref", [SW_OTHER])
    with open(ref / "answers.jsonl", "a") as f:
        f.write(json.dumps({"question_id": "9", "lang": "sw"}) + "\n")  # no answer
    res = run_judge(cfg(tmp_path, cand, ref), llm=ScriptedJudge(lambda a, b, retry: winner("tie")))
    assert res["overall"]["n"] == 1
    rejects = list(read_jsonl(tmp_path / "judge" / "rejects.jsonl"))
    assert sorted(r["reason"] for r in rejects) == ["missing_field", "no_reference", "no_reference"]
    assert all(":" in r["source"] for r in rejects)  # file:line


def test_a_rerun_resumes_without_calls_and_gives_the_same_result(tmp_path, pair):
    decide = lambda a, b, retry: winner("A" if a == SW_GOOD else "B")  # noqa: E731
    first = run_judge(cfg(tmp_path, *pair), llm=ScriptedJudge(decide))
    again = ScriptedJudge(decide)
    second = run_judge(cfg(tmp_path, *pair), llm=again)
    assert again.calls == 0 and second["overall"] == first["overall"]


def test_judge_scores_template_compares_the_two_scores(tmp_path, pair):
    def decide(a, b, retry):
        return json.dumps({"reason": "r", "score_a": 8 if a == SW_GOOD else 6, "score_b": 8 if b == SW_GOOD else 6})

    res = run_judge(cfg(tmp_path, *pair, template="judge_scores"), llm=ScriptedJudge(decide))
    assert res["overall"]["win"] == 3


@pytest.mark.parametrize("outcomes,expected", [
    (["win", "win"], ("win", True)), (["win", "loss"], ("tie", False)), (["win", "tie"], ("win", False)),
    (["tie", "loss"], ("loss", False)), (["tie", "tie"], ("tie", True)), (["win", "unparsed"], ("unparsed", None)),
    (["loss"], ("loss", None)),
])
def test_combining_the_two_orders(outcomes, expected):
    assert combine(outcomes) == expected


def test_pairwise_parser_reads_only_the_json_winner():
    assert parse_pairwise('{"reason": "x", "winner": "B"}') == PairwiseVerdict("B", "x")
    assert parse_pairwise('```json\n{"reason": "x", "winner": "tie"}\n```').winner == "tie"
    assert isinstance(parse_pairwise("A is better"), ParseError)
    assert isinstance(parse_pairwise('{"reason": "x", "winner": "both"}'), ParseError)
    v = parse_pairwise_scores('{"reason": "x", "score_a": 3, "score_b": "7"}')
    assert (v.winner, v.score_a, v.score_b) == ("B", 3.0, 7.0)
    assert isinstance(parse_pairwise_scores('{"reason": "x", "score_a": 11, "score_b": 2}'), ParseError)
