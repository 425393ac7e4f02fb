"""Preference pairs: the language asked for outranks the judge's score, ties are rejects, runs resume."""

from __future__ import annotations

import json
import re

from xinstruct.llm import LLM, Generation
from xinstruct.train.dpo import PreferenceConfig, build_preferences

SW_GOOD = ("Ugali ni chakula kikuu katika nchi nyingi za Afrika Mashariki. Hupikwa kwa unga wa mahindi na maji "
           "hadi kuwa mgumu, kisha huliwa pamoja na mboga za majani.")
SW_SHORT = "Ugali hupikwa kwa unga wa mahindi na maji, kisha huliwa na mboga au nyama kwa familia nzima."
EN = "Ugali is a stiff porridge made from maize flour and water, eaten across East Africa with vegetables."


class Scripted(LLM):
    """Policy: sample k answers `answers[k % len]`. Judge: the score in `scores` for the response's text."""

    backend = "scripted"

    def __init__(self, model_id, answers=(), scores=None):
        self.model_id, self.answers, self.scores, self.calls = model_id, answers, scores or {}, 0

    def generate(self, requests):
        out = []
        for r in requests:
            self.calls += 1
            if r.params.json_schema is not None:
                resp = re.search(r"<response>\n(.*?)\n</response>", r.messages[-1]["content"], re.S).group(1)
                out.append(Generation(json.dumps({"reason": "r", "score": self.scores[resp]}), "stop"))
            else:
                out.append(Generation(self.answers[r.params.seed % len(self.answers)], "stop"))
        return out


def _data(tmp_path, n=3):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"id": f"r{i}", "instruction": f"Describe ugali ({i})", "response": SW_GOOD,
                                     "lang": "sw"}) + "\n" for i in range(n)), encoding="utf-8")
    return p


def test_an_answer_in_the_wrong_language_is_rejected_even_when_the_judge_prefers_it(tmp_path):
    policy = Scripted("policy", answers=(EN, SW_SHORT))
    judge = Scripted("judge", scores={EN: 5, SW_SHORT: 3, SW_GOOD: 2})
    cfg = PreferenceConfig(data=str(_data(tmp_path)), out=str(tmp_path / "p"), samples=6, progress=False)
    m = build_preferences(cfg, policy=policy, judge=judge)
    rows = [json.loads(x) for x in (tmp_path / "p" / "preferences.jsonl").read_text().splitlines()]
    assert m["pairs"] == 3 and m["rejected_wrong_language"] == 3
    for r in rows:
        assert r["prompt"] == [{"role": "user", "content": r["prompt"][0]["content"]}]
        assert r["prompt"][0]["content"].endswith("Answer in Swahili.")
        assert r["chosen"][0]["content"] == SW_SHORT  # right language, best score among those
        assert r["rejected"][0]["content"] == EN  # the judge's favourite, but English
        assert {c["lang_ok"] for c in r["candidates"] if c["text"] == EN} == {False}


def test_prompts_whose_answers_rank_alike_are_rejects_and_a_rerun_makes_no_calls(tmp_path):
    policy = Scripted("policy", answers=(SW_SHORT,))
    judge = Scripted("judge", scores={SW_SHORT: 4, SW_GOOD: 4})
    cfg = PreferenceConfig(data=str(_data(tmp_path, 2)), out=str(tmp_path / "p"), samples=2, progress=False)
    m = build_preferences(cfg, policy=policy, judge=judge)
    assert (m["pairs"], m["rejects_by_reason"]) == (0, {"no_preference": 2})
    rejects = [json.loads(x) for x in (tmp_path / "p" / "rejects.jsonl").read_text().splitlines()]
    assert all(r["source"].endswith(f"d.jsonl:{i + 1}") for i, r in enumerate(rejects))
    calls = policy.calls + judge.calls
    again = build_preferences(cfg, policy=policy, judge=judge)
    assert again["shards_resumed"] == 1 and policy.calls + judge.calls == calls
    assert again["rejects_by_reason"] == m["rejects_by_reason"]
