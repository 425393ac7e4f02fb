"""Near copies of instructions: IDF-weighted word-set Jaccard similarity.

Two instructions that share their rare words (names, places, the task's own nouns) are the same
task, however the common words around them change; two that share only common words ("Compare
living in ... in terms of cost of living") are not. Weighting each word by its inverse document
frequency over a reference set of instructions says exactly that.

Measured on the 100 packaged seed instructions (IDF over them): distinct seeds reach at most 0.49
(the two "Compare living in X and Y in terms of ..." seeds); 700 planted near copies (one word
dropped, one inserted, the first word replaced) score at least 0.68; "What should I do in a two-day
visit to Cappadocia?" against the seed "What should I see and do during a two-day visit to
Cappadocia?" scores 0.76. The default threshold, 0.6, sits in that gap.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher

NEAR_COPY_THRESHOLD = 0.6
# A seed's frame with another name in it ("What should I see and do during a two-day visit to Göbekli Tepe?"
# from "... to Cappadocia?") shares few rare words with the seed, so its weighted similarity stays low (0.55),
# but it repeats the seed's words in one run: 11 of its 12. Distinct packaged seeds share at most half of the
# shorter one's words in a run ("Give me a recipe for ...", "Write a short story about a ..."). An instruction
# that repeats at least this share of a seed's words, and `FRAME_MIN_WORDS` of them, in one run copies its frame.
FRAME_COPY_SHARE = 0.7
FRAME_MIN_WORDS = 6
_WORD = re.compile(r"\w+(?:[-']\w+)*")
# Lookups first rank the candidates by a cheap form of the similarity (the union's weight as the sum of the two
# sets' weights minus the common part's), which differs from the exact sum by rounding alone (relative error
# ~1e-15); only candidates within this margin of the best (or of the threshold) get the exact value, so results,
# ties included, are those of comparing every candidate exactly.
_MARGIN = 1e-9


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


class InstructionIndex:
    """Instructions to compare new ones against, with word weights from `reference` (default: the
    instructions themselves). Lookups only compare instructions that share a word, so it scales to a
    dataset's worth of instructions."""

    def __init__(self, instructions: Sequence[str], reference: Iterable[str] | None = None):
        self.instructions = list(instructions)
        self.sets = [words(s) for s in self.instructions]
        ref = [words(s) for s in reference] if reference is not None else self.sets
        self._df = Counter(w for s in ref for w in s)
        self._n = len(ref)
        self._postings: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.sets):
            for w in s:
                self._postings[w].append(i)
        # Candidates come from the words that are not everywhere: two instructions that share only words
        # found in more than 5% of them ("what", "the") cannot reach the threshold unless both are a few
        # words long, and skipping those lists keeps a lookup far below comparing with everything.
        self._cap = max(200, len(self.sets) // 20)
        # Each word's weight, computed once: those of the reference and of the indexed instructions (a word
        # that neither holds weighs `_unknown`, as one of no document does).
        self._unknown = math.log((self._n + 1) / 0.5)
        self._w = {w: math.log((self._n + 1) / (df + 0.5)) for w, df in self._df.items()}
        for st in self.sets:
            for w in st:
                self._w.setdefault(w, self._unknown)
        self._totals = [sum(map(self._w.__getitem__, st)) for st in self.sets]

    def candidates(self, s: frozenset[str]) -> set[int]:
        lists = [self._postings.get(w, []) for w in s]
        rare = [p for p in lists if len(p) <= self._cap]
        return set().union(*(rare or lists))

    def weight(self, word: str) -> float:
        return self._w.get(word, self._unknown)

    def similarity(self, a: str | frozenset[str], b: str | frozenset[str]) -> float:
        """Weighted Jaccard of the two word sets, in [0, 1]."""
        wa = words(a) if isinstance(a, str) else a
        wb = words(b) if isinstance(b, str) else b
        get, unknown = self._w.get, self._unknown
        union = sum(get(w, unknown) for w in wa | wb)
        return sum(get(w, unknown) for w in wa & wb) / union if union else 0.0

    def _estimates(self, s: frozenset[str], candidates: Iterable[int]) -> dict[int, float]:
        """The cheap similarity of `s` to each candidate (see `_MARGIN`)."""
        get, unknown, common = self._w.__getitem__, self._unknown, self._w.get
        total = sum(common(w, unknown) for w in s)
        sets, totals = self.sets, self._totals
        out = {}
        for i in candidates:
            inter = sum(map(get, s & sets[i]))  # words of an indexed set all have a weight
            union = total + totals[i] - inter
            out[i] = inter / union if union > 0 else 0.0
        return out

    def nearest(self, text: str, exclude: int | None = None) -> tuple[float, int | None]:
        """(similarity, index) of the most similar indexed instruction (0.0, None when none shares a word)."""
        s = words(text)
        candidates = self.candidates(s) - {exclude}
        estimates = self._estimates(s, candidates)
        floor = max(estimates.values(), default=0.0) * (1 - _MARGIN) - _MARGIN
        best: tuple[float, int | None] = (0.0, None)
        for i in sorted(i for i, e in estimates.items() if e >= floor):
            sim = self.similarity(s, self.sets[i])
            if sim > best[0]:
                best = (sim, i)
        return best


def near_duplicate_pairs(instructions: Sequence[str], threshold: float = NEAR_COPY_THRESHOLD,
                         reference: Iterable[str] | None = None) -> list[tuple[int, int, float]]:
    """Every (i, j, similarity) with i < j whose instructions are near duplicates of each other."""
    index = InstructionIndex(instructions, reference)
    out = []
    floor = threshold * (1 - _MARGIN) - _MARGIN
    for i, s in enumerate(index.sets):
        estimates = index._estimates(s, [j for j in index.candidates(s) if j > i])
        for j in sorted(j for j, e in estimates.items() if e >= floor):
            sim = index.similarity(s, index.sets[j])
            if sim >= threshold:
                out.append((i, j, round(sim, 4)))
    return out


def word_list(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def frame_share(text: str | list[str], seed: str | list[str]) -> tuple[float, int]:
    """(share of `seed`'s words that `text` repeats in one contiguous run, the run's length in words)."""
    a = word_list(text) if isinstance(text, str) else text
    b = word_list(seed) if isinstance(seed, str) else seed
    if not a or not b:
        return 0.0, 0
    m = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return m.size / len(b), m.size
