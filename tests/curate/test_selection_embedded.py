"""The issue's planted check, with the embedded models: true seed pairs against shuffled ones (another seed's
response, same language) over all ten paper languages, five of them in non-Latin scripts. At the default
selection settings the run keeps few shuffled pairs and most true ones, and the relevance gate separates them;
a judge that always answers 5 lets shuffled pairs through only when the gate is off."""

import json

import pytest

from xinstruct.curate.config import load_recipe
from xinstruct.curate.job import run_pipeline
from xinstruct.curate.seeds import load_seeds
from xinstruct.curate.selfcheck import auc, planted_pairs
from xinstruct.io import read_jsonl, write_jsonl
from xinstruct.llm import LLM, Generation
from xinstruct.records import Record

pytest.importorskip("llama_cpp")
# 40 judge labels and 60 scorings with the embedded models: minutes on 2 cores.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

LANGS = ["fi", "id", "th", "tr", "vi", "bn", "hi", "sw", "ta", "ur"]  # th, bn, hi, ta, ur: non-Latin scripts
SIZE = 40  # 20 true + 20 shuffled, 2 + 2 per language


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    pairs = planted_pairs(load_seeds(), LANGS, SIZE)
    write_jsonl(folder / "pairs.jsonl", pairs)
    return folder, pairs


def _config(folder, name, *extra):
    # The self-check plants its own 24 pairs from the same seeds (some of its true pairs are among the 20). The shared
    # cache lets the second test reuse the relevance scores. Both models decode with 2 threads (the default on 2
    # cores is 1, for machines where another process is busy): speed only, the selection settings are the defaults.
    return load_recipe(None, [f"input={folder / 'pairs.jsonl'}", f"out={folder / name}", f"cache={folder / 'c.sqlite'}",
                              "progress=false", "refine.iterations=0", "refine.model.options.n_threads=2",
                              "relevance.model.options.n_threads=2", *extra])


def _kept(folder, name):
    rows = list(read_jsonl(folder / name / "samples.jsonl"))
    return (sum(r["meta"]["planted"] == "true" for r in rows), sum(r["meta"]["planted"] == "shuffled" for r in rows))


def _gains(folder, name):
    """The pre-refinement relevance gain of every planted pair, kept or rejected, by kind."""
    recs = [Record.from_dict(r) for r in read_jsonl(folder / name / "samples.jsonl")]
    recs += [Record.from_dict(r["record"]) for r in read_jsonl(folder / name / "rejects.jsonl")]
    out = {"true": [], "shuffled": []}
    for r in recs:
        pre = [s for s in r.relevance_scores() if s["phase"] == "pre"]
        out[r.meta["planted"]].append(pre[0]["value"])
    return out


def test_default_selection_keeps_true_pairs_and_drops_shuffled_ones(planted):
    folder, pairs = planted
    assert len(pairs) == SIZE and len({r.lang for r in pairs}) == 10
    m = run_pipeline(_config(folder, "default"), ("refine",))
    true_kept, shuffled_kept = _kept(folder, "default")
    gains = _gains(folder, "default")
    gate_auc = auc(gains["true"], gains["shuffled"])
    sel, check = m["selection"], m["selection"]["selfcheck"]
    print(f"\nkept {true_kept}/20 true and {shuffled_kept}/20 shuffled pairs; relevance gate AUC {gate_auc:.3f} "
          f"(threshold {sel['gate']['threshold']}); self-check: judge AUC {check['judge']['auc']}, gate AUC "
          f"{check['relevance']['auc']}; decided by judge={sel['judge_decides']} gate={sel['gate_decides']} "
          f"({sel['why']}); removed: {sel['removed']}")
    assert len(gains["true"]) == len(gains["shuffled"]) == 20  # every pair was scored, and is kept or a reject
    assert gate_auc >= 0.85
    assert shuffled_kept <= 2  # at most 10% of the shuffled pairs
    assert true_kept >= 12  # at least 60% of the true ones
    card = (folder / "default" / "README.md").read_text()
    assert "relevance gate separates right pairs from shuffled ones" in card
    assert (folder / "default" / "plots" / "relevance.png").is_file()


class AlwaysFive(LLM):
    """A judge that gives every pair the top score, whatever it is shown."""

    backend = "scripted"
    model_id = "always-five"

    def generate(self, requests):
        return [Generation(json.dumps({"reason": "A perfect answer.", "score": 5}), "stop") for _ in requests]


def test_a_judge_that_always_answers_five_no_longer_lets_shuffled_pairs_through(planted):
    folder, _ = planted
    m = run_pipeline(_config(folder, "five"), ("refine",), models={"refine": AlwaysFive()})
    true_kept, shuffled_kept = _kept(folder, "five")
    off = run_pipeline(_config(folder, "five-judge-only", "relevance.enabled=false"), ("refine",),
                       models={"refine": AlwaysFive()})
    off_true, off_shuffled = _kept(folder, "five-judge-only")
    print(f"\nalways-5 judge with the gate: {true_kept}/20 true, {shuffled_kept}/20 shuffled kept; without it: "
          f"{off_true}/20, {off_shuffled}/20; self-check judge AUC {m['selection']['selfcheck']['judge']['auc']}")
    assert m["selection"]["selfcheck"]["judge"]["auc"] == 0.5 and not m["selection"]["judge_decides"]
    assert m["selection"]["gate_decides"]
    assert shuffled_kept <= 2
    assert (off_true, off_shuffled) == (20, 20) and off["selection"]["why"].startswith("no selector")
