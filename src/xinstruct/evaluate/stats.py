"""Win rates from pairwise verdicts: plain (ties count half), a bootstrap confidence interval, and a
length-controlled variant, because LLM judges favour longer answers.

A verdict is a score for the candidate: 1 (win), 0.5 (tie) or 0 (loss). All rates are in percent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def win_rate(scores: Sequence[float]) -> float | None:
    return round(100 * float(np.mean(scores)), 2) if len(scores) else None


def bootstrap_ci(scores: Sequence[float], n: int = 1000, seed: int = 0, level: float = 0.95
                 ) -> tuple[float, float] | tuple[None, None]:
    """Percentile bootstrap over questions: resample the verdicts with replacement `n` times."""
    if not len(scores) or n <= 0:
        return None, None
    rng = np.random.default_rng(seed)
    x = np.asarray(scores, dtype=float)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return round(100 * float(lo), 2), round(100 * float(hi), 2)


def wilson_ci(k: int, n: int, z: float = 1.96) -> tuple[float, float] | tuple[None, None]:
    """The 95% Wilson score interval of k successes in n, in percent (shares and accuracies, where a bootstrap
    over a few dozen items would be coarse)."""
    if n <= 0:
        return None, None
    p = k / n
    d = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return round(100 * max(0.0, mid - half), 2), round(100 * min(1.0, mid + half), 2)


def length_feature(len_candidate: Sequence[float], len_reference: Sequence[float]) -> np.ndarray:
    """tanh of the length difference over its standard deviation (not centred, so that equal lengths map to
    0 and a difference and its opposite map to opposite values), as AlpacaEval's length control does."""
    d = np.asarray(len_candidate, dtype=float) - np.asarray(len_reference, dtype=float)
    sd = float(d.std())
    return np.tanh(d / sd) if sd > 0 else np.zeros_like(d)


def length_controlled_win_rate(scores: Sequence[float], len_candidate: Sequence[float],
                               len_reference: Sequence[float], l2: float = 1e-4) -> float | None:
    """The win rate a logistic model of verdict ~ intercept + slope * length_feature predicts when both
    answers have the same length: 100 * sigmoid(intercept).

    Fitted by Newton's method on the soft labels (ties are 0.5). A tiny L2 penalty on the slope keeps the
    fit finite when length separates wins from losses perfectly; it moves the intercept by well under 0.1
    points otherwise. With no length differences it is the plain win rate."""
    if not len(scores):
        return None
    y = np.asarray(scores, dtype=float)
    x = length_feature(len_candidate, len_reference)
    X = np.column_stack([np.ones_like(x), x])
    w = np.zeros(2)
    penalty = np.diag([0.0, l2 * len(y)])
    for _ in range(100):
        p = 1 / (1 + np.exp(-(X @ w)))
        grad = X.T @ (p - y) + penalty @ w
        hess = X.T @ (X * (p * (1 - p))[:, None]) + penalty + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    if not math.isfinite(w[0]):
        return None
    return round(100 / (1 + math.exp(-w[0])), 2)
