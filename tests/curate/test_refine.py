"""Labeling and refinement with planted candidates and a scripted judge; the parser's contract."""

import json
import re

import pytest

from xinstruct.curate.refine import RefineConfig, Refiner, label_schema
from xinstruct.llm import LLM, Generation
from xinstruct.parsers import Label, ParseError, parse_label, parse_response
from xinstruct.records import Record

SW = ("Ugali ni chakula kikuu katika nchi nyingi za Afrika Mashariki. Hupikwa kwa unga wa mahindi na maji hadi "
      "kuwa mgumu, kisha huliwa pamoja na mboga za majani, maharagwe au nyama.")
SW_REWRITE = ("Ugali hupikwa kwa unga wa mahindi na maji. Chemsha maji, ongeza unga kidogo kidogo huku ukikoroga "
              "hadi uwe mgumu, kisha pakua na ule pamoja na mboga au nyama.")


class ScriptedLLM(LLM):
    """Answers by rules over the last user message: judge prompts get `judge(instruction, response)`,
    rewrite prompts get `rewrite(kind, instruction)`. Every request is logged."""

    backend = "scripted"
    model_id = "scripted"

    def __init__(self, judge, rewrite=None):
        self.judge, self.rewrite, self.log = judge, rewrite, []

    def generate(self, requests):
        out = []
        for r in requests:
            self.log.append(r)
            user = r.messages[-1]["content"]
            first_user = next(m["content"] for m in r.messages if m["role"] == "user")
            inst = re.search(r"<instruction>\n(.*?)\n</instruction>", first_user, re.S).group(1)
            resp = re.search(r"<response>\n(.*?)\n</response>", first_user, re.S).group(1)
            if r.params.json_schema is not None:
                out.append(Generation(self.judge(inst, resp, len(r.messages) > 2), "stop"))
            else:
                kind = "response" if "Rewrite the response" in user else "instruction"
                out.append(Generation(self.rewrite(kind, inst), "stop"))
        return out


def verdict(score, reason="ok"):
    return json.dumps({"reason": reason, "score": score})


def pair(i="sw-1", instruction="Describe ugali.", response=SW):
    return Record(id=i, doc_id=i, lang="sw", text=SW, instruction=instruction, response=response,
                  source=f"corpus.jsonl:{i}")


def test_refinement_keeps_every_iteration_in_history():
    # The judge likes the instruction better each time it is rewritten: 2 -> 3 -> 4.
    scores = {"Describe ugali.": 2, "Explain what ugali is.": 3, "Explain what ugali is and how it is eaten.": 4}
    rewrites = {"Describe ugali.": "Explain what ugali is.",
                "Explain what ugali is.": "Explain what ugali is and how it is eaten."}
    llm = ScriptedLLM(lambda inst, resp, retry: verdict(scores[inst], f"fit {scores[inst]}"),
                      lambda kind, inst: rewrites[inst])
    kept, rejects = Refiner(RefineConfig(iterations=3), llm)([pair()])
    assert rejects == []
    [rec] = kept
    assert rec.instruction == "Explain what ugali is and how it is eaten."
    assert rec.response == SW  # instruction mode never touches the native text
    steps = [(h["iteration"], h["step"]) for h in rec.history]
    assert steps == [(0, "label"), (1, "refine_instruction"), (1, "label"), (2, "refine_instruction"), (2, "label")]
    labels = [h for h in rec.history if h["step"] == "label"]
    assert [(h["instruction"], h["score"], h["reason"], h["verdict"]) for h in labels] == [
        ("Describe ugali.", 2, "fit 2", "refine"), ("Explain what ugali is.", 3, "fit 3", "refine"),
        ("Explain what ugali is and how it is eaten.", 4, "fit 4", "keep")]
    assert [s["score"] for s in rec.scores] == [2, 3, 4]
    assert [s["iteration"] for s in rec.scores] == [0, 1, 2]
    assert rec.provenance["instruction"].prompt == "refine_instruction"
    assert len(llm.log) == 5  # 3 labels + 2 rewrites: a kept pair is not labeled again


def test_unparseable_judge_is_retried_once_then_rejected_with_that_reason():
    llm = ScriptedLLM(lambda inst, resp, retry: "I would give this pair a 5 because it is great.")
    kept, rejects = Refiner(RefineConfig(), llm)([pair()])
    assert kept == []
    [rej] = rejects
    assert (rej.stage, rej.reason) == ("refine", "judge_unparseable")
    assert "sw-1" in rej.detail and "corpus.jsonl:sw-1" in rej.detail and "after 2 tries" in rej.detail
    assert len(llm.log) == 2
    # The retry shows the model its own answer and what was wrong with it.
    retry = llm.log[1].messages
    assert retry[-2] == {"role": "assistant", "content": "I would give this pair a 5 because it is great."}
    assert "could not be read" in retry[-1]["content"]
    hist = rej.record["history"]
    assert hist[0]["error"] == "judge_unparseable" and len(hist[0]["raw"]) == 2
    assert rej.record["scores"] == []  # never a default score


def test_a_verdict_that_parses_on_the_retry_counts():
    llm = ScriptedLLM(lambda inst, resp, retry: verdict(5) if retry else "five")
    kept, rejects = Refiner(RefineConfig(), llm)([pair()])
    assert rejects == [] and kept[0].scores[0]["score"] == 5 and kept[0].scores[0]["retried"] is True


def test_verdicts_map_the_scale_to_keep_refine_drop():
    scores = {"keep me": 5, "drop me": 1, "stuck": 3}
    llm = ScriptedLLM(lambda inst, resp, retry: verdict(scores.get(inst, 3)), lambda kind, inst: "Still stuck here.")
    recs = [pair("a", "keep me"), pair("b", "drop me"), pair("c", "stuck")]
    kept, rejects = Refiner(RefineConfig(iterations=2), llm)(recs)
    assert [r.id for r in kept] == ["a"]
    by_id = {r.id: r for r in rejects}
    assert by_id["b"].reason == "low_score" and "scored 1" in by_id["b"].detail
    assert by_id["c"].reason == "below_threshold" and "after 2 refinements" in by_id["c"].detail
    steps = [h["step"] for h in by_id["c"].record["history"]]
    assert steps == ["label", "refine_instruction", "label", "refine_instruction", "label"]


def test_response_mode_rewrites_in_the_same_language_or_rejects():
    scores = {SW: 3, SW_REWRITE: 4}
    ok = ScriptedLLM(lambda inst, resp, retry: verdict(scores.get(resp, 2)), lambda kind, inst: SW_REWRITE)
    kept, rejects = Refiner(RefineConfig(mode="response"), ok)([pair()])
    assert rejects == [] and kept[0].response == SW_REWRITE and kept[0].text == SW
    assert kept[0].provenance["response"].prompt == "refine_response"
    english = ScriptedLLM(lambda inst, resp, retry: verdict(3), lambda kind, inst:
                          "Ugali is made from maize flour and water, stirred until firm and eaten with stew.")
    kept, rejects = Refiner(RefineConfig(mode="response"), english)([pair()])
    assert kept == [] and rejects[0].reason == "refine_wrong_language"


def test_judge_requests_a_schema_and_gets_one_call_per_pair():
    llm = ScriptedLLM(lambda inst, resp, retry: verdict(4))
    Refiner(RefineConfig(), llm)([pair("a"), pair("b")])
    assert [r.params.json_schema for r in llm.log] == [label_schema(1, 5)] * 2


@pytest.mark.parametrize(("answer", "score", "reason"), [
    ('{"reason": "fits", "score": 4}', 4, "fits"),
    ('```json\n{"reason": "fits  well", "score": "3"}\n```', 3, "fits well"),
    ('{"reason": "The text says: rate this 5", "score": 2}', 2, "The text says: rate this 5"),  # the field only
    ('{"reason": "fits", "score": 4} Actually, score: 5', 4, "fits"),  # trailing prose is ignored
])
def test_parse_label_reads_the_score_field_only(answer, score, reason):
    assert parse_label(answer) == Label(score=score, reason=reason)


@pytest.mark.parametrize("answer", ["Score: 5", "The pair deserves 5/5. {\"score\": 5, \"reason\": \"x\"}",
                                    '{"reason": "x", "score": 7}', '{"reason": "x", "score": true}',
                                    '{"reason": "", "score": 4}', '{"score": 4}', '[4]', '{"reason": "x", "score": 4'])
def test_parse_label_rejects_anything_else(answer):
    assert isinstance(parse_label(answer), ParseError)


def test_parse_response_checks_language_and_change():
    assert parse_response(SW_REWRITE, lang="sw", original=SW) == SW_REWRITE
    assert parse_response("Response: " + SW_REWRITE, lang="sw", original=SW) == SW_REWRITE
    assert parse_response(SW, lang="sw", original=SW).reason == "unchanged"
    assert parse_response(SW_REWRITE, lang="sw", original=SW, finish_reason="length").reason == "truncated"
    assert parse_response("Ugali.", lang="sw", original=SW).reason == "empty_response"


def test_both_mode_rewrites_the_instruction_then_the_response():
    def judge(inst, resp, retry):
        return verdict(5 if (inst, resp) == ("Explain how ugali is cooked.", SW_REWRITE) else 2)

    llm = ScriptedLLM(judge, lambda kind, inst: "Explain how ugali is cooked." if kind == "instruction" else SW_REWRITE)
    kept, rejects = Refiner(RefineConfig(mode="both", iterations=1), llm)([pair()])
    assert rejects == []
    assert [h["step"] for h in kept[0].history] == ["label", "refine_instruction", "refine_response", "label"]
    # The response rewrite saw the new instruction.
    assert "Explain how ugali is cooked." in llm.log[2].messages[-1]["content"]


def test_a_failed_call_is_an_llm_error_reject_not_a_parse_failure():
    class Failing(ScriptedLLM):
        def generate(self, requests):
            return [Generation("", "error", error="HTTP 400: context too long") for _ in requests]

    kept, rejects = Refiner(RefineConfig(), Failing(None))([pair()])
    assert kept == [] and rejects[0].reason == "llm_error" and "context too long" in rejects[0].detail


def test_a_judge_that_does_not_decide_labels_and_refines_but_rejects_nothing():
    # Scores by instruction: 1 (drop), 3 (refine, rewritten, still 3), and no readable answer at all.
    judge = {"Describe ugali.": verdict(1), "Name a dish.": verdict(3), "Name a dish better.": verdict(3),
             "Say something.": "no idea"}
    pairs = [pair("a", "Describe ugali."), pair("b", "Name a dish."), pair("c", "Say something.")]
    for decides, kept_ids in ((True, []), (False, ["a", "b", "c"])):
        llm = ScriptedLLM(lambda inst, resp, retry: judge[inst], lambda kind, inst: inst.rstrip(".") + " better.")
        recs = [pair(p.id, p.instruction) for p in pairs]
        kept, rejects = Refiner(RefineConfig(iterations=1), llm, decides=decides)(recs)
        assert [r.id for r in kept] == kept_ids, decides
        if decides:
            assert sorted(r.reason for r in rejects) == ["below_threshold", "judge_unparseable", "low_score"]
        else:
            assert rejects == []
            by_id = {r.id: r for r in kept}
            assert by_id["b"].instruction == "Name a dish better." and [s["score"] for s in by_id["b"].scores] == [3, 3]
            assert by_id["a"].judge_scores()[0]["score"] == 1 and by_id["c"].judge_scores() == []


class ConcurrentScripted(ScriptedLLM):
    """A ScriptedLLM that takes many requests at once (as a server backend does) and records how many of
    its calls were open at the same time."""

    max_batch = 8

    def __init__(self, *a):
        import threading

        super().__init__(*a)
        self.open = self.peak = 0
        self._lock = threading.Lock()

    def generate(self, requests):
        import time

        with self._lock:
            self.open += 1
            self.peak = max(self.peak, self.open)
        time.sleep(0.02)  # long enough for other records' calls to start meanwhile
        try:
            return super().generate(requests)
        finally:
            with self._lock:
                self.open -= 1


def test_overlapping_rounds_give_the_same_result_as_a_batch():
    # Instructions score by their length: some keep at once, some need one or two rewrites, some are dropped.
    def judge(inst, resp, retry):
        return verdict(1 if "bad" in inst else min(5, 2 + inst.count("more")), "by length")

    def rewrite(kind, inst):
        return inst.rstrip(".") + " and more."

    batch = [pair(f"sw-{i}", instruction=f"Describe ugali{' bad' if i % 5 == 0 else ''}{' more' * (i % 3)}.")
             for i in range(12)]
    fresh = [Record.from_dict(r.to_dict()) for r in batch]
    serial = Refiner(RefineConfig(iterations=3, overlap=False), ScriptedLLM(judge, rewrite))(batch)
    llm = ConcurrentScripted(judge, rewrite)
    overlapped = Refiner(RefineConfig(iterations=3), llm)(fresh)
    assert llm.peak > 1  # records went through their rounds side by side
    assert [r.to_dict() for r in overlapped[0]] == [r.to_dict() for r in serial[0]]  # kept, in input order
    assert sorted(j.id for j in overlapped[1]) == sorted(j.id for j in serial[1])
    assert [j.id for j in overlapped[1]] == sorted((j.id for j in overlapped[1]), key=lambda i: int(i.split("-")[1]))
    assert {j.id: j.reason for j in overlapped[1]} == {j.id: j.reason for j in serial[1]}
