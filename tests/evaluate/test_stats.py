"""Win rate, bootstrap CI and length-controlled win rate against values worked out by hand."""

import math

import pytest

from xinstruct.evaluate.stats import bootstrap_ci, length_controlled_win_rate, length_feature, win_rate


def test_win_rate_counts_ties_as_half():
    # 2 wins + 1 tie + 1 loss: (2 + 0.5) / 4 = 62.5 %
    assert win_rate([1, 1, 0.5, 0]) == 62.5
    assert win_rate([]) is None


def test_bootstrap_ci_is_degenerate_for_identical_verdicts_and_brackets_the_mean():
    # every resample of four wins has mean 1
    assert bootstrap_ci([1, 1, 1, 1], n=200) == (100.0, 100.0)
    lo, hi = bootstrap_ci([1, 0] * 20, n=2000, seed=1)
    # mean 0.5, standard error sqrt(0.25/40) = 0.079: the 95 % interval is about 0.5 +- 0.155
    assert lo < 50 < hi
    assert 30 < lo < 40 and 60 < hi < 70
    assert bootstrap_ci([1, 0] * 20, n=2000, seed=1) == (lo, hi)  # seeded


def test_length_feature_is_odd_and_scaled_by_the_spread():
    # differences +1, -1: std 1 -> tanh(1), tanh(-1)
    f = length_feature([2, 0], [1, 1])
    assert f == pytest.approx([math.tanh(1), -math.tanh(1)])
    assert list(length_feature([3, 3], [3, 3])) == [0, 0]


def test_length_controlled_equals_plain_when_lengths_are_equal():
    # intercept-only logistic fit: sigmoid(b) = mean(y) = 62.5 %
    assert length_controlled_win_rate([1, 0.5, 0, 1], [5] * 4, [5] * 4) == 62.5


def test_length_controlled_removes_the_advantage_of_longer_answers():
    # Candidate longer on 4 questions (3 wins, 1 loss), shorter on 2 (1 win, 1 loss): raw 4/6 = 66.7 %.
    # Two feature values +-t, so the logistic fit is saturated: sigmoid(a + b t) = 3/4 and sigmoid(a - b t) = 1/2,
    # hence a + b t = ln 3 and a - b t = 0, a = ln(3) / 2, and LC = sigmoid(ln(3)/2) = sqrt(3) / (1 + sqrt(3)).
    y = [1, 1, 1, 0, 1, 0]
    lc = length_controlled_win_rate(y, [2, 2, 2, 2, 0, 0], [1] * 6)
    assert win_rate(y) == pytest.approx(66.67)
    assert lc == pytest.approx(100 * math.sqrt(3) / (1 + math.sqrt(3)), abs=0.05)  # 63.40


def test_length_controlled_stays_finite_when_length_decides_everything():
    # the longer answer always wins; by symmetry the equal-length prediction is 50 %
    assert length_controlled_win_rate([1, 1, 0, 0], [5, 5, 1, 1], [1, 1, 5, 5]) == pytest.approx(50.0)
