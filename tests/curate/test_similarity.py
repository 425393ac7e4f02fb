"""Near copies of instructions: planted near copies of seed instructions are caught, distinct seeds are not."""

import itertools
import random

import numpy as np

from xinstruct.curate.diversify import DiversifyConfig, near_duplicates, sample
from xinstruct.curate.generate import GenerateConfig, InstructionGenerator
from xinstruct.curate.seeds import load_seeds
from xinstruct.curate.similarity import (
    FRAME_COPY_SHARE,
    NEAR_COPY_THRESHOLD,
    InstructionIndex,
    frame_share,
    near_duplicate_pairs,
)
from xinstruct.parsers import ParseError
from xinstruct.records import Record

CAPPADOCIA = "What should I do in a two-day visit to Cappadocia?"


def _variants(text, rng):
    """One word dropped, one inserted, the first word replaced: what a small model's copy looks like."""
    ws = text.split()
    out = []
    for _ in range(2):
        w = list(ws)
        del w[rng.randrange(1, len(w))]
        out.append(" ".join(w))
        w = list(ws)
        w.insert(rng.randrange(1, len(w)), rng.choice(["really", "exactly", "best", "main"]))
        out.append(" ".join(w))
    out.append(" ".join([rng.choice(["Please", "Explain:", "Tell me"]), *ws[1:]]))
    return out


def test_threshold_separates_planted_near_copies_from_distinct_seeds():
    seeds = [s.instruction for s in load_seeds()]
    index = InstructionIndex(seeds)
    distinct = max(index.similarity(a, b) for a, b in itertools.combinations(seeds, 2))
    rng = random.Random(0)
    copies = [index.similarity(s, v) for s in seeds for v in _variants(s, rng)]
    print(f"distinct seeds: max {distinct:.3f}; planted near copies: min {min(copies):.3f} of {len(copies)}")
    assert distinct < NEAR_COPY_THRESHOLD <= min(copies)


def test_generator_rejects_a_near_copy_of_a_seed():
    gen = InstructionGenerator(GenerateConfig(), llm=object())
    res = gen.check_copy(CAPPADOCIA)
    assert isinstance(res, ParseError) and res.reason == "copies_seed"
    assert "What should I see and do during a two-day visit to Cappadocia?" in res.detail
    own = "How do I get a criminal-record certificate through e-Devlet?"
    assert gen.check_copy(own) == own
    exact_only = InstructionGenerator(GenerateConfig(near_copy_threshold=1.01), llm=object())
    assert exact_only.check_copy(CAPPADOCIA) == CAPPADOCIA


def test_a_seed_frame_around_another_name_is_a_copy_and_distinct_seeds_share_no_frame():
    """The embedded model's copy that the weighted similarity misses (0.55): the Cappadocia seed's frame
    around another place. No two distinct seeds share a frame at the threshold."""
    seeds = [s.instruction for s in load_seeds()]
    shares = [frame_share(a, b)[0] for a, b in itertools.permutations(seeds, 2)]
    print(f"distinct seeds: max frame share {max(shares):.2f}")
    assert max(shares) < FRAME_COPY_SHARE
    frame = "What should I see and do during a two-day visit to the ancient city of Göbekli Tepe?"
    assert InstructionIndex(seeds).nearest(frame)[0] < NEAR_COPY_THRESHOLD  # the weighted measure misses it
    gen = InstructionGenerator(GenerateConfig(), llm=object())
    res = gen.check_copy(frame)
    assert isinstance(res, ParseError) and res.reason == "copies_seed" and "its frame" in res.detail
    assert "two-day visit to Cappadocia" in res.detail
    short = "Give me a recipe for mandazi."  # a seed's opening words, not its frame
    assert gen.check_copy(short) == short
    assert InstructionGenerator(GenerateConfig(frame_copy_share=1.01), llm=object()).check_copy(frame) == frame


def test_near_duplicate_pairs_finds_the_planted_pair_only():
    texts = ["Give me a recipe for chapati.", "Explain how M-Pesa transfers work.",
             "Give me a simple recipe for chapati.", "Describe the climate of Mombasa."]
    assert [(a, b) for a, b, _ in near_duplicate_pairs(texts)] == [(0, 2)]


def _rec(i, instruction, score):
    r = Record(id=f"sw-{i}", doc_id=f"sw-{i}", lang="sw", text="Habari", instruction=instruction, response="Habari")
    r.scores = [{"method": "judge", "iteration": 0, "score": score, "reason": "ok"}]
    return r


def test_diversify_never_samples_two_near_duplicates():
    recs = [_rec(0, "Give me a recipe for chapati.", 5), _rec(1, "Give me a simple recipe for chapati.", 4),
            _rec(2, "Explain how M-Pesa transfers work.", 3), _rec(3, "Describe the climate of Mombasa.", 3)]
    dups = near_duplicates(recs, NEAR_COPY_THRESHOLD)
    assert [(a, b) for a, b, _ in dups] == [(0, 1)]
    labels = np.zeros(4, dtype=int)
    for strategy in ("round_robin", "proportional"):
        kept, dropped = sample(recs, labels, np.zeros(4), DiversifyConfig(per_lang=3, strategy=strategy), dups)
        assert kept == [0, 2, 3] and dropped == [1], strategy  # the better twin, and the target still met
    kept, _ = sample(recs, labels, np.zeros(4), DiversifyConfig(per_lang=3))  # without the check: both twins
    assert kept == [0, 1, 2]
