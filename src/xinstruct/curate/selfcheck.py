"""Self-check of the selectors: before a run trusts its judge and its relevance gate, both score a small
planted set where the right answer is known, with the run's own models.

The planted set comes from the seed pairs of the run's languages: true pairs (a seed instruction with its
own response) and shuffled ones (the same instructions with another seed's response in the same language,
a derangement, so no shuffled pair is accidentally true). A selector that cannot rank true pairs above
shuffled ones (AUC near 0.5 or below) cannot be trusted to keep the right pairs of a real corpus either.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xinstruct.curate.seeds import Seed
from xinstruct.records import Record, stable_hash

DECIDE_MODES = ("auto", "judge", "relevance", "both")


@dataclass
class SelfCheckConfig:
    enabled: bool = True
    # Planted pairs in all, half true and half shuffled, spread over the run's languages (two or more true pairs
    # per language; with many languages and a small size, some languages are left out). 24 take about 3 minutes
    # with the embedded models on 2 cores.
    size: int = 24
    seed: int = 0
    auc_floor: float = 0.6  # decide=auto: a selector below this AUC does not decide
    max_shuffled_keep: float = 0.05  # relevance.threshold=auto keeps at most this share of shuffled pairs

    def validate(self) -> None:
        if self.size < 4:
            raise ValueError("selfcheck.size must be >= 4 (two true and two shuffled pairs)")
        if not 0.0 <= self.max_shuffled_keep < 1.0:
            raise ValueError("selfcheck.max_shuffled_keep must be in [0, 1)")


def planted_pairs(seeds: Sequence[Seed], langs: Sequence[str], size: int, seed: int = 0) -> list[Record]:
    """`size` planted records (half true, half shuffled) from the seeds of `langs` (languages with fewer
    than two seeds are left out). `meta["planted"]` is "true" or "shuffled"; ids are stable."""
    by_lang: dict[str, list[Seed]] = {}
    for s in seeds:
        by_lang.setdefault(s.lang, []).append(s)
    usable = [lang for lang in sorted(set(langs)) if len(by_lang.get(lang, [])) >= 2]
    if not usable:
        return []
    # Two seeds per language first (a derangement needs two), languages in a seeded order while the budget
    # lasts, then one more per language in turn while seeds last.
    order = random.Random(stable_hash("selfcheck-langs", seed)).sample(usable, len(usable))
    want = size // 2
    per_lang = {lang: 0 for lang in usable}
    for lang in order:
        if sum(per_lang.values()) + 2 <= want:
            per_lang[lang] = 2
    grew = True
    while grew and sum(per_lang.values()) < want:
        grew = False
        for lang in order:
            if 2 <= per_lang[lang] < len(by_lang[lang]) and sum(per_lang.values()) < want:
                per_lang[lang] += 1
                grew = True
    out: list[Record] = []
    for lang in usable:
        k = per_lang[lang]
        if k < 2:  # left out: the budget ran out
            continue
        rng = random.Random(stable_hash("selfcheck", lang, seed))
        chosen = rng.sample(by_lang[lang], k)
        for i, s in enumerate(chosen):
            other = chosen[(i + 1) % k]  # a rotation of a random order: never the pair's own response
            for kind, response in (("true", s.response), ("shuffled", other.response)):
                rid = f"planted-{lang}-{kind}-{stable_hash(s.instruction, response, n=8)}"
                out.append(Record(id=rid, doc_id=rid, lang=lang, text=response, instruction=s.instruction,
                                  response=response, source=f"seeds/{lang}", meta={"planted": kind}))
    return out


def auc(true_vals: Sequence[float], shuffled_vals: Sequence[float]) -> float | None:
    """The probability that a true pair scores above a shuffled one (ties count half); None without both."""
    if not true_vals or not shuffled_vals:
        return None
    wins = sum((t > s) + 0.5 * (t == s) for t in true_vals for s in shuffled_vals)
    return wins / (len(true_vals) * len(shuffled_vals))


def auc_lower_bound(a: float, n_true: int, n_shuffled: int, z: float = 1.645) -> float:
    """A one-sided 95% lower bound of an AUC from `n_true` and `n_shuffled` pairs (Hanley and McNeil's
    standard error): on 12 + 12 planted pairs an AUC of 0.62 is 0.43 at the bound, not clearly above chance."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_true - 1) * (q1 - a * a) + (n_shuffled - 1) * (q2 - a * a)) / (n_true * n_shuffled)
    return a - z * max(var, 0.0) ** 0.5


def keep_rates(true_vals: Sequence[float], shuffled_vals: Sequence[float], threshold: float) -> dict[str, Any]:
    kt = sum(v >= threshold for v in true_vals)
    ks = sum(v >= threshold for v in shuffled_vals)
    return {"true_kept": kt, "true": len(true_vals), "shuffled_kept": ks, "shuffled": len(shuffled_vals),
            "true_keep_rate": round(kt / len(true_vals), 3) if true_vals else None,
            "shuffled_keep_rate": round(ks / len(shuffled_vals), 3) if shuffled_vals else None}


def auto_threshold(true_vals: Sequence[float], shuffled_vals: Sequence[float], max_shuffled_keep: float) -> float:
    """The threshold that keeps the most true pairs while keeping at most `max_shuffled_keep` of the
    shuffled ones: just above the highest shuffled value that must go."""
    ranked = sorted(shuffled_vals, reverse=True)
    allowed = int(max_shuffled_keep * len(ranked) + 1e-9)
    if allowed >= len(ranked):
        return min([*true_vals, *shuffled_vals])
    cut = ranked[allowed]
    above = sorted(v for v in [*true_vals, *shuffled_vals] if v > cut)
    return round((cut + above[0]) / 2, 5) if above else round(cut + 1e-4, 5)


def selector_summary(name: str, true_vals: Sequence[float], shuffled_vals: Sequence[float], threshold: float,
                     floor: float, unscored: int = 0) -> dict[str, Any]:
    a = auc(true_vals, shuffled_vals)
    low = auc_lower_bound(a, len(true_vals), len(shuffled_vals)) if a is not None else None
    out = {"selector": name, "auc": round(a, 3) if a is not None else None,
           "auc_lower_bound": round(low, 3) if low is not None else None, "threshold": threshold,
           **keep_rates(true_vals, shuffled_vals, threshold), "unscored": unscored,
           # Trusted: at the floor, and clearly better than chance on this many planted pairs.
           "trusted": a is not None and low is not None and a >= floor and low > 0.5}
    out["verdict"] = verdict_words(name, out, floor)
    return out


def verdict_words(name: str, s: dict[str, Any], floor: float) -> str:
    """The self-check of one selector in plain words, for the report and the card."""
    label = {"judge": "the judge", "relevance": "the relevance gate"}[name]
    if s["auc"] is None:
        return f"{label} could not be checked (no planted pairs scored)"
    a = s["auc"]
    if a < 0.5:
        how = f"{label} ranks shuffled pairs above right ones (worse than chance): AUC {a:.2f}"
    elif a < floor:
        how = f"{label} cannot tell right pairs from shuffled ones: AUC {a:.2f}"
    elif not s["trusted"]:
        how = (f"{label} is not clearly better than chance on {s['true']} + {s['shuffled']} planted pairs: AUC "
               f"{a:.2f}, 95% lower bound {s['auc_lower_bound']:.2f}")
    elif a < 0.85:
        how = f"{label} separates right pairs from shuffled ones somewhat: AUC {a:.2f}"
    else:
        how = f"{label} separates right pairs from shuffled ones well: AUC {a:.2f}"
    return (f"{how}; at its threshold it keeps {s['true_kept']} of {s['true']} right pairs and "
            f"{s['shuffled_kept']} of {s['shuffled']} shuffled ones")


def _figures(s: dict[str, Any] | None) -> str:
    if not s:
        return "not checked"
    low = s.get("auc_lower_bound")
    return f"AUC {s['auc']}" + (f", 95% lower bound {low}" if low is not None else "")


def decide(mode: str, judge: dict[str, Any] | None, gate: dict[str, Any] | None, gate_available: bool,
           ) -> tuple[bool, bool, str]:
    """(the judge decides, the gate decides, why) for `mode` and the self-check results (None: not run)."""
    if mode not in DECIDE_MODES:
        raise ValueError(f"decide must be one of {', '.join(DECIDE_MODES)}, not {mode!r}")
    if mode == "judge":
        return True, False, "decide=judge: the judge's verdict alone decides"
    if mode in ("relevance", "both") and not gate_available:
        return True, False, f"decide={mode}, but the relevance gate could not run here: the judge decided alone"
    if mode == "relevance":
        return False, True, "decide=relevance: the relevance gate alone decides; the judge's scores are recorded"
    if mode == "both":
        return True, True, "decide=both: a pair must pass the judge and the relevance gate"
    if judge is None and gate is None:
        return True, gate_available, ("decide=auto without a self-check: the judge decides"
                                      + (" with the relevance gate" if gate_available else ""))
    judge_ok = bool(judge and judge["trusted"])
    gate_ok = gate_available and bool(gate and gate["trusted"])
    if judge_ok and gate_ok:
        return True, True, "both selectors passed the self-check: a pair must pass both"
    if gate_ok:
        return False, True, (f"the judge failed the self-check ({_figures(judge)}): the relevance gate alone decides; "
                             "the judge's scores are recorded")
    if judge_ok:
        why = ("the relevance gate could not run here" if not gate_available else
               f"the relevance gate failed the self-check ({_figures(gate)})")
        return True, False, f"{why}: the judge alone decides"
    return True, False, ("no selector passed the self-check: the judge decided anyway; treat this selection as "
                         "unfiltered")


def run_selfcheck(planted: Sequence[Record], judge: Any, scorer: Any | None, keep_at: int, threshold: float | str,
                  cfg: SelfCheckConfig) -> dict[str, Any]:
    """Score the planted pairs with the judge (a PairJudge) and the relevance scorer (None: not available);
    returns both selectors' summaries, the threshold to use and every planted value."""
    pairs = [(r.instruction or "", r.response or r.text, r.lang) for r in planted]
    kinds = [r.meta["planted"] for r in planted]
    verdicts = judge(pairs)
    floor_score = judge.cfg.min_score - 1  # an unreadable verdict ranks below every score
    jvals = [float(v.label.score) if v.label is not None else float(floor_score) for v in verdicts]
    rows = [{"id": r.id, "lang": r.lang, "planted": k, "judge": v.label.score if v.label else None,
             "judge_reason": v.label.reason if v.label else None}
            for r, k, v in zip(planted, kinds, verdicts, strict=True)]
    split = _split_by_kind
    judge_sum = selector_summary("judge", *split(jvals, kinds), float(keep_at), cfg.auc_floor,
                                 unscored=sum(v.label is None for v in verdicts))
    out: dict[str, Any] = {"pairs": len(planted), "languages": sorted({r.lang for r in planted}),
                           "judge": judge_sum, "relevance": None, "rows": rows}
    if scorer is not None:
        gains = scorer.gains([(r.instruction or "", r.response or r.text, r.lang) for r in planted])
        gvals = [g.value for g in gains]
        for row, g in zip(rows, gains, strict=True):
            row["relevance"] = round(g.value, 5)
        t, s = split(gvals, kinds)
        chosen = auto_threshold(t, s, cfg.max_shuffled_keep) if threshold == "auto" else float(threshold)
        out["relevance"] = selector_summary("relevance", t, s, chosen, cfg.auc_floor)
        out["relevance"]["threshold_source"] = "auto" if threshold == "auto" else "setting"
        out["relevance"]["by_lang"] = keep_rates_by_lang(gvals, kinds, [r.lang for r in planted], chosen)
    return out


def keep_rates_by_lang(values: Sequence[float], kinds: Sequence[str], langs: Sequence[str],
                       threshold: float) -> dict[str, dict[str, Any]]:
    """Each language's planted keep rates at the run's one threshold. The default self-check plants two or three
    true pairs per language: enough to see a language the threshold does not suit, too few to fit one for it."""
    out = {}
    for lang in sorted(set(langs)):
        mine = [(v, k) for v, k, g in zip(values, kinds, langs, strict=True) if g == lang]
        t, s = _split_by_kind([v for v, _ in mine], [k for _, k in mine])
        out[lang] = {"threshold": threshold, **keep_rates(t, s, threshold)}
    return out


def _split_by_kind(values: Sequence[float], kinds: Sequence[str]) -> tuple[list[float], list[float]]:
    return ([v for v, k in zip(values, kinds, strict=True) if k == "true"],
            [v for v, k in zip(values, kinds, strict=True) if k == "shuffled"])
