"""The self-check's parts: planted pairs, AUC, the automatic threshold and the decision rule."""

import pytest

from xinstruct.curate.seeds import load_seeds
from xinstruct.curate.selfcheck import auc, auto_threshold, decide, keep_rates, planted_pairs


def test_planted_pairs_are_balanced_and_shuffled_within_a_language():
    seeds = load_seeds()
    own = {(s.instruction, s.response) for s in seeds}
    planted = planted_pairs(seeds, ["sw", "ta", "th", "xx"], 24, seed=3)
    assert len(planted) == 24  # 4 true + 4 shuffled per language; xx has no seeds
    assert {r.lang for r in planted} == {"sw", "ta", "th"}
    for r in planted:
        is_own = (r.instruction, r.response) in own
        assert is_own == (r.meta["planted"] == "true"), r.id
        if r.meta["planted"] == "shuffled":  # another seed's response of the same language
            assert any(s.response == r.response and s.lang == r.lang for s in seeds)
    assert [r.id for r in planted] == [r.id for r in planted_pairs(seeds, ["sw", "ta", "th"], 24, seed=3)]
    assert len({r.id for r in planted}) == 24


def test_auc_counts_ties_half():
    assert auc([3, 4], [1, 2]) == 1.0
    assert auc([1, 2], [3, 4]) == 0.0
    assert auc([5, 5], [5, 5]) == 0.5  # a judge that always answers 5
    assert auc([2, 4], [1, 4]) == pytest.approx((1 + 0 + 1 + 0.5) / 4)  # 2>1, 2<4, 4>1, 4=4
    assert auc([], [1]) is None


def test_auto_threshold_keeps_most_true_pairs_within_the_shuffled_budget():
    true = [0.30, 0.25, 0.20, 0.10, 0.02]
    shuffled = [0.15, 0.05, 0.01, -0.02, -0.05] * 4  # 20 values: 5% allows one
    t = auto_threshold(true, shuffled, 0.05)
    r = keep_rates(true, shuffled, t)
    assert r["shuffled_kept"] <= 1 and r["true_kept"] == 3  # 0.30, 0.25, 0.20 (0.15 x4 must go)
    assert 0.15 < t <= 0.20
    t0 = auto_threshold(true, shuffled, 0.0)
    assert keep_rates(true, shuffled, t0)["shuffled_kept"] == 0


def _sel(a, floor=0.6):
    return {"auc": a, "trusted": a >= floor}


def test_decide_auto_uses_what_passed_the_self_check():
    assert decide("auto", _sel(0.4), _sel(0.9), True)[:2] == (False, True)
    assert decide("auto", _sel(0.8), _sel(0.9), True)[:2] == (True, True)
    assert decide("auto", _sel(0.8), _sel(0.5), True)[:2] == (True, False)
    j, g, why = decide("auto", _sel(0.4), _sel(0.5), True)
    assert (j, g) == (True, False) and "unfiltered" in why
    assert decide("auto", _sel(0.4), None, False)[:2] == (True, False)
    assert decide("both", _sel(0.4), _sel(0.9), True)[:2] == (True, True)
    assert decide("relevance", None, None, True)[:2] == (False, True)
    assert decide("relevance", None, None, False)[:2] == (True, False)  # no gate here: the judge
    assert decide("judge", _sel(0.4), _sel(0.9), True)[:2] == (True, False)
    with pytest.raises(ValueError, match="decide must be one of"):
        decide("vote", None, None, True)


def test_a_lucky_auc_on_few_pairs_is_not_trusted():
    from xinstruct.curate.selfcheck import selector_summary

    # A 1-5 judge that happens to rank 12 true pairs a little above 12 shuffled ones: AUC 0.62 passes the 0.6
    # floor, but its lower bound is below chance, so it does not decide.
    true, shuffled = [1] * 8 + [2, 3, 4, 5], [1] * 10 + [2, 2]
    s = selector_summary("judge", true, shuffled, 4.0, floor=0.6)
    assert s["auc"] >= 0.6 and s["auc_lower_bound"] < 0.5 and not s["trusted"]
    assert "not clearly better than chance" in s["verdict"]
    good = selector_summary("relevance", [0.1] * 12, [0.0] * 12, 0.05, floor=0.6)
    assert good["trusted"] and good["true_kept"] == 12 and good["shuffled_kept"] == 0


def test_the_report_shows_each_languages_planted_keep_rates():
    from xinstruct.curate.report import selection_md
    from xinstruct.curate.selfcheck import keep_rates_by_lang, selector_summary

    # sw's true pairs sit below the shared threshold, ta's above: one threshold does not suit both, and the
    # per-language rows show it where the pooled figures (2 of 4 true kept) do not say which language lost.
    vals = [0.01, 0.02, 0.0, -0.1, 0.2, 0.3, 0.0, 0.1]
    kinds = ["true", "true", "shuffled", "shuffled"] * 2
    langs = ["sw"] * 4 + ["ta"] * 4
    by = keep_rates_by_lang(vals, kinds, langs, 0.05)
    assert by["sw"] == {"threshold": 0.05, "true_kept": 0, "true": 2, "shuffled_kept": 0, "shuffled": 2,
                        "true_keep_rate": 0.0, "shuffled_keep_rate": 0.0}
    assert (by["ta"]["true_kept"], by["ta"]["shuffled_kept"]) == (2, 1)
    gate = selector_summary("relevance", [0.01, 0.02, 0.2, 0.3], [0.0, -0.1, 0.0, 0.1], 0.05, floor=0.6)
    md = "\n".join(selection_md({"selfcheck": {"pairs": 8, "languages": ["sw", "ta"], "relevance": {**gate,
                                                                                                  "by_lang": by}},
                                 "gate": {"threshold": 0.05}}))
    assert "| sw | 0.05 | 0 / 2 | 0 / 2 |" in md and "| ta | 0.05 | 2 / 2 | 1 / 2 |" in md
