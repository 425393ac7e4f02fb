"""Several candidate instructions per text: proposed from one prompt, checked, and ranked by the relevance gate,
which keeps the one its text gains most from and records the others with their gains."""

from __future__ import annotations

import pytest

from xinstruct.curate.generate import CANDIDATES, GenerateConfig, InstructionGenerator
from xinstruct.curate.relevance import RelevanceConfig, RelevanceGate
from xinstruct.curate.seeds import load_seeds
from xinstruct.llm import LLM, Generation
from xinstruct.records import Provenance, Record


def prov() -> Provenance:
    return Provenance(model="proposer", backend="scripted", prompt="generate_instruction", prompt_version="1")


class Proposer(LLM):
    """Answers by the request's temperature and seed: greedy gets a seed copy, samples get made-up instructions,
    one of them unusable (empty)."""

    backend = "scripted"
    model_id = "proposer"

    def __init__(self):
        self.requests = []

    def generate(self, requests):
        self.requests += list(requests)
        out = []
        for r in requests:
            if r.params.temperature == 0:
                out.append(Generation(text=load_seeds()[0].instruction, finish_reason="stop"))
            elif r.params.seed % 3 == 0:
                out.append(Generation(text="", finish_reason="stop"))
            else:
                out.append(Generation(text=f"What does the text say about topic {r.params.seed % 97}?",
                                      finish_reason="stop"))
        return out


def rec(i: str, text: str = "Ugali ni chakula kikuu cha Afrika Mashariki.") -> Record:
    return Record(id=i, doc_id=i, lang="sw", text=text, source=f"t:{i}")


def test_candidates_come_from_one_prompt_and_only_usable_ones_go_on():
    llm = Proposer()
    gen = InstructionGenerator(GenerateConfig(num_shots=0, candidates=6, candidate_temperature=0.7), llm=llm)
    kept, rejects = gen([rec("a"), rec("b")])
    assert len(llm.requests) == 12
    assert all(r.messages == llm.requests[0].messages for r in llm.requests[:6])  # one prompt: a shared prefix
    temps = [r.params.temperature for r in llm.requests[:6]]
    assert temps == [0.0] + [0.7] * 5
    assert len({r.params.seed for r in llm.requests[1:6]}) == 5  # each sample its own seed
    assert rejects == []
    for r in kept:
        cands = r.meta[CANDIDATES]
        # the greedy answer copied a seed (rejected); empty ones fail the parser; duplicates collapse
        assert load_seeds()[0].instruction not in cands and "" not in cands
        assert r.instruction == cands[0] and len(cands) == len(set(cands)) >= 2
    # reproducible whatever the batch
    again = InstructionGenerator(GenerateConfig(num_shots=0, candidates=6, candidate_temperature=0.7),
                                 llm=Proposer())([rec("b")])[0]
    assert again[0].meta[CANDIDATES] == kept[1].meta[CANDIDATES]


def test_a_text_with_no_usable_candidate_is_rejected_with_the_first_reason():
    class Copier(Proposer):
        def generate(self, requests):
            return [Generation(text=load_seeds()[0].instruction, finish_reason="stop") for _ in requests]

    kept, rejects = InstructionGenerator(GenerateConfig(num_shots=0, candidates=3), llm=Copier())([rec("a")])
    assert kept == [] and [r.reason for r in rejects] == ["copies_seed"]
    assert "2 more candidates, none usable" in rejects[0].detail


class TopicScorer(LLM):
    """-1 per response word whose first four letters the context names, else -2."""

    backend = "scripted"
    model_id = "topic"

    def generate(self, requests):
        raise AssertionError("the gate never generates")

    def token_logprobs(self, pairs):
        return [[-1.0 if w[:4].lower() in ctx.lower() else -2.0 for w in cont.split()] for ctx, cont in pairs]


def test_gate_keeps_the_candidate_the_text_gains_most_from_and_records_the_others():
    """Planted: each text's true instruction among two instructions about other texts."""
    texts = {"u": ("ugali maize flour water", "How is ugali made from maize flour?"),
             "p": ("pilau rice spices beef", "How do I cook pilau rice with spices?"),
             "c": ("chapati flour dough oil", "How is chapati dough rolled with oil?")}
    batch = []
    for i, (text, true) in texts.items():
        others = [t for j, (_, t) in texts.items() if j != i]
        r = Record(id=i, doc_id=i, lang="sw", text=text, response=text, instruction=others[0], source=f"t:{i}",
                   meta={CANDIDATES: [others[0], true, others[1]]}, provenance={"instruction": prov()})
        batch.append(r)
    gate = RelevanceGate(RelevanceConfig(), threshold=0.1, decides=True, phase="pre", llm=TopicScorer())
    kept, rejects = gate(batch)
    assert rejects == [] and [r.instruction for r in kept] == [t for _, t in texts.values()]
    for r in kept:
        assert CANDIDATES not in r.meta
        ranked = r.provenance["instruction"].params["candidates"]
        assert [c["instruction"] for c in ranked][1] == r.instruction
        assert r.provenance["instruction"].params["chosen_candidate"] == 1
        assert max(c["gain"] for c in ranked) == ranked[1]["gain"] == pytest.approx(r.scores[-1]["value"], abs=1e-5)


def test_gate_rejects_when_even_the_best_candidate_is_below_the_threshold():
    r = Record(id="x", doc_id="x", lang="sw", text="ugali maize", response="ugali maize", instruction="Pilau?",
               source="t:x", meta={CANDIDATES: ["Pilau?", "Chapati?"]}, provenance={"instruction": prov()})
    kept, rejects = RelevanceGate(RelevanceConfig(), threshold=0.1, decides=True, phase="pre", llm=TopicScorer())([r])
    assert kept == [] and rejects[0].reason == "not_relevant"
    assert len(rejects[0].record["provenance"]["instruction"]["params"]["candidates"]) == 2


@pytest.mark.slow
def test_embedded_scorer_picks_the_true_instruction_among_shuffled_ones(embedded_scorer_gguf):
    """Planted, with the real scorer: each of 6 seed texts (two in each of three languages, one a non-Latin script)
    gets its own instruction among two other seeds' instructions of the same language, in varying positions.
    Measured with all six languages sw, tr, id, vi, fi, ta (2026-12-06): the true one won for 12 of 12 texts."""
    pytest.importorskip("llama_cpp")
    from xinstruct.llm import load_llm

    seeds = load_seeds()
    batch = []
    for lang in ("sw", "tr", "ta"):
        mine = [s for s in seeds if s.lang == lang][:4]
        for k in range(2):
            true, others = mine[k], [s.instruction for s in mine if s is not mine[k]][:2]
            opts = others[:k] + [true.instruction] + others[k:]  # the true one first, then second
            # the gate ranks candidates whose first is the record's instruction
            batch.append(Record(id=f"{lang}{k}", doc_id=f"{lang}{k}", lang=lang, text=true.response,
                                response=true.response, instruction=opts[0], source=f"seeds/{lang}",
                                meta={CANDIDATES: opts}, provenance={"instruction": prov()}))
    cfg = RelevanceConfig()
    with load_llm(cfg.scorer_model()) as llm:
        kept, rejects = RelevanceGate(cfg, threshold=-100.0, decides=True, phase="pre", llm=llm)(batch)
    right = sum(r.instruction == next(s.instruction for s in seeds if s.response == r.response) for r in kept)
    print(f"\nthe true instruction won among 3 candidates for {right} of {len(kept)} texts")
    assert rejects == [] and len(kept) == 6
    assert right >= 5  # chance: 2 of 6
