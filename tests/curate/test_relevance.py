"""The relevance gate with a scripted scorer: the gain, the reject, the once-per-response baseline, caching."""

import pytest

from xinstruct.curate.relevance import PLAIN, RelevanceConfig, RelevanceGate, RelevanceScorer
from xinstruct.llm import LLM, CachedLLM, RequestCache, ScoringUnsupported
from xinstruct.records import Record


class TopicScorer(LLM):
    """Per-token log-probabilities: -2 per word, -1 where the context names the word's topic (its first
    four letters); logs every (context, continuation) it scores."""

    backend = "scripted"
    model_id = "topic"

    def __init__(self):
        self.scored = []

    def generate(self, requests):
        raise AssertionError("the gate never generates")

    def token_logprobs(self, pairs):
        self.scored += list(pairs)
        return [[-1.0 if w[:4].lower() in ctx.lower() else -2.0 for w in cont.split()] for ctx, cont in pairs]


def rec(i, instruction, response):
    return Record(id=i, doc_id=i, lang="sw", text=response, instruction=instruction, response=response, source="t:1")


def test_gain_is_the_mean_log_likelihood_gain_per_token():
    scorer = RelevanceScorer(RelevanceConfig(model=RelevanceConfig().model), TopicScorer())
    g = scorer.gains([("Tell me about ugali and maize.", "ugali maize beans rice", "sw")])[0]
    # with the instruction: ugali -1, maize -1, beans -2, rice -2 -> -1.5; with the generic one: -2 each -> 0.5
    assert (g.with_instruction, g.without_instruction, g.value, g.tokens) == (-1.5, -2.0, 0.5, 4)
    assert scorer.layout == "plain"
    # both contexts name the language: the gain is what the instruction says about the text
    assert scorer.contexts("Say hi.", "sw") == ("Instruction: Say hi.\nResponse in Swahili: ",
                                              "Instruction: Write a text.\nResponse in Swahili: ")
    assert PLAIN.format(instruction="x", language="Tamil").endswith("Response in Tamil: ")


def test_gate_rejects_unrelated_pairs_with_the_values_and_keeps_the_rest():
    llm = TopicScorer()
    gate = RelevanceGate(RelevanceConfig(), threshold=0.25, decides=True, phase="pre", llm=llm)
    good = rec("a", "How is ugali cooked?", "ugali hupikwa kwa unga")
    bad = rec("b", "What is the capital of Kenya?", "ugali hupikwa kwa unga")
    kept, rejects = gate([good, bad])
    assert [r.id for r in kept] == ["a"]
    assert [(r.id, r.reason, r.stage) for r in rejects] == [("b", "not_relevant", "relevance")]
    detail = rejects[0].detail
    assert "gains 0.0000" in detail and "over a generic one" in detail and "below the threshold 0.2500" in detail
    entry = good.relevance_scores()[-1]
    assert entry["value"] == pytest.approx(0.25) and entry["phase"] == "pre" and entry["model"] == "topic"
    assert good.judge_scores() == []
    # the same response's baseline is scored once for both pairs: 2 with-instruction calls + 1 baseline
    assert len(llm.scored) == 3


def test_gate_that_does_not_decide_only_records():
    gate = RelevanceGate(RelevanceConfig(), threshold=5.0, decides=False, phase="post", llm=TopicScorer())
    kept, rejects = gate([rec("b", "What is the capital of Kenya?", "ugali hupikwa")])
    assert len(kept) == 1 and rejects == [] and kept[0].relevance_scores()[0]["decides"] is False


def test_response_is_cut_to_the_token_budget():
    scorer = RelevanceScorer(RelevanceConfig(max_response_tokens=2), TopicScorer())
    g = scorer.gains([("ugali", "ugali beans beans beans", "sw")])[0]
    assert g.tokens == 2 and g.value == pytest.approx((-1.5) - (-2.0))


def test_scores_are_cached_and_unsupported_backends_say_so(tmp_path):
    inner = TopicScorer()
    cached = CachedLLM(inner, RequestCache(tmp_path / "c.sqlite"))
    pairs = [("ugali", "ugali beans"), ("rice", "ugali beans")]
    first = cached.token_logprobs(pairs)
    assert cached.token_logprobs(pairs) == first and len(inner.scored) == 2
    assert cached.hits == 2

    class Plain(LLM):
        def generate(self, requests):
            return []

    assert RelevanceScorer(RelevanceConfig(), Plain()).probe() is not None
    with pytest.raises(ScoringUnsupported):
        Plain().token_logprobs([("a", "b")])


def test_the_manifest_counts_what_each_selector_removed_by_the_stage_that_removed_it():
    """A failure (an unreadable answer, a rewrite too short) is no selector's decision; the gate's rejects count
    before or after refinement by the stage that wrote them, whatever their text says."""
    from xinstruct.curate.job import _RejectTally, _selection_counts
    from xinstruct.curate.refine import Refiner
    from xinstruct.records import Reject

    r = rec("a", "How is ugali cooked?", "ugali hupikwa")

    def rejects(stage, *reasons):
        return lambda: [Reject.of(r, stage, reason, "after refinement") for reason in reasons]

    tally = _RejectTally()
    list(tally.rejects([("relevance-pre", rejects("relevance", "not_relevant", "llm_error")),
                        ("refine", rejects("refine", "low_score", "below_threshold", "refine_too_short")),
                        ("relevance-post", rejects("relevance", "not_relevant"))]))
    decisions = {"relevance-pre": RelevanceGate.decisions, "refine": Refiner.decisions,
                 "relevance-post": RelevanceGate.decisions}
    removed = _selection_counts({"decide": "auto"}, tally, decisions)["removed"]
    assert removed == {"judge": 2, "relevance": 2, "relevance_before_refinement": 1, "relevance_after_refinement": 1}
