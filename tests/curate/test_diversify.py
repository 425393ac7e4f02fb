"""Diversification: sampling across clusters (exact, on given labels) and the real stage (MiniLM + k-means)."""

import json

import numpy as np
import pytest

from xinstruct.curate.config import load_recipe
from xinstruct.curate.diversify import DiversifyConfig, default_clusters, sample
from xinstruct.curate.job import run_pipeline
from xinstruct.io import read_jsonl, write_jsonl
from xinstruct.records import Record


def rec(i, lang="sw", score=4, instruction="Explain this."):
    r = Record(id=f"{lang}-{i}", doc_id=f"{lang}-{i}", lang=lang, text="Habari", instruction=instruction,
               response="Habari ya leo ni nzuri sana.")
    r.scores = [{"iteration": 0, "score": score, "reason": "ok"}]
    return r


def test_round_robin_takes_one_per_cluster_before_a_second():
    recs = [rec(i) for i in range(7)]
    labels = np.array([0, 0, 0, 0, 1, 1, 2])
    dist = np.array([0.3, 0.1, 0.2, 0.4, 0.5, 0.2, 0.9])
    kept, dropped = sample(recs, labels, dist, DiversifyConfig(per_lang=4))
    # Round 1: the closest of clusters 0, 1, 2 (biggest cluster first); round 2: cluster 0's next closest.
    assert kept == [1, 2, 5, 6] and dropped == [0, 3, 4]


def test_higher_scores_win_before_distance():
    recs = [rec(0, score=3), rec(1, score=5), rec(2, score=4)]
    kept, _ = sample(recs, np.zeros(3, dtype=int), np.array([0.0, 0.9, 0.5]), DiversifyConfig(per_lang=1))
    assert kept == [1]


def test_proportional_follows_cluster_shares_per_language():
    recs = [rec(i) for i in range(10)] + [rec(i, lang="ta") for i in range(4)]
    labels = np.array([0] * 6 + [1] * 3 + [2] + [0, 0, 1, 1])
    kept, dropped = sample(recs, labels, np.zeros(14), DiversifyConfig(per_lang=5, strategy="proportional"))
    sw = [i for i in kept if i < 10]
    ta = [i for i in kept if i >= 10]
    assert len(sw) == 5 and len(ta) == 4  # ta has only 4: all of them
    assert [int(labels[i]) for i in sw].count(0) == 3 and [int(labels[i]) for i in sw].count(1) == 2
    assert sorted(kept + dropped) == list(range(14))


def test_no_target_keeps_everything():
    recs = [rec(i) for i in range(5)]
    kept, dropped = sample(recs, np.array([0, 1, 0, 1, 2]), np.zeros(5), DiversifyConfig())
    assert kept == [0, 1, 2, 3, 4] and dropped == []
    assert default_clusters(1) == 1 and default_clusters(200) == 10


TASKS = {
    "translate": ["Translate this paragraph about the market into French.",
                  "Translate the following news report into German.",
                  "Translate this sentence into Spanish.",
                  "Translate this letter into Italian."],
    "poem": ["Write a poem about the rainy season on the coast.", "Write a short poem about a mother's love.",
             "Compose a poem celebrating the harvest festival.", "Write a poem about the mountains at dawn."],
    "cook": ["Explain how to cook rice with coconut milk.", "Describe how to prepare a fish stew at home.",
             "Explain the steps to bake bread in a clay oven.", "How do you cook beans so they are soft?"],
}


@pytest.fixture(scope="module")
def st_available():
    pytest.importorskip("sentence_transformers")
    from xinstruct.llm.embedded import minilm_dir

    try:
        minilm_dir()
    except FileNotFoundError as e:
        pytest.skip(f"the embedded embedder is not installed: {e}")


@pytest.mark.parametrize("engine", ["faiss", "sklearn"])
def test_stage_alone_clusters_real_embeddings_and_samples_across_tasks(tmp_path, st_available, engine):
    pytest.importorskip(engine)
    records = []
    for lang in ("sw", "ta"):
        for task, insts in TASKS.items():
            for j, inst in enumerate(insts):
                records.append(rec(f"{task}{j}", lang=lang, instruction=inst))
    write_jsonl(tmp_path / "in.jsonl", records)
    cfg = load_recipe(None, [f"input={tmp_path / 'in.jsonl'}", f"out={tmp_path / 'out'}", "progress=false",
                             "diversify.n_clusters=3", "diversify.per_lang=3", f"diversify.engine={engine}"])
    m = run_pipeline(cfg, ["diversify"])
    out = list(read_jsonl(tmp_path / "out" / "samples.jsonl"))
    unsampled = list(read_jsonl(tmp_path / "out" / "unsampled.jsonl"))
    assert m["stages"]["diversify"]["engine"] == engine and m["stages"]["diversify"]["k"] == 3
    assert len(out) == 6 and len(unsampled) == 18
    assert {r["id"] for r in out} | {r["id"] for r in unsampled} == {r.id for r in records}
    # The embeddings put each kind of task in its own cluster...
    cluster_of_task = {}
    for r in out + unsampled:
        cluster_of_task.setdefault(r["id"].split("-")[1][:-1], set()).add(r["cluster"]["id"])
    assert all(len(c) == 1 for c in cluster_of_task.values()) and len(set.union(*cluster_of_task.values())) == 3
    # ... so three per language covers all three kinds.
    for lang in ("sw", "ta"):
        kinds = {r["id"].split("-")[1][:-1] for r in out if r["lang"] == lang}
        assert kinds == set(TASKS)
    assert all(r["cluster"]["distance"] >= 0 and r["cluster"]["k"] == 3 for r in out)

    # Rerun: embeddings come from the stage folder, the result is the same.
    again = run_pipeline(cfg, ["diversify"])
    assert again["stages"]["diversify"]["embeddings_resumed"] is True
    assert [r["id"] for r in read_jsonl(tmp_path / "out" / "samples.jsonl")] == [r["id"] for r in out]
    # The report drew the cluster map from those embeddings.
    assert (tmp_path / "out" / "plots" / "clusters.png").stat().st_size > 5000
    assert json.loads((tmp_path / "out" / "report.json").read_text())["counts"]["unsampled"] == 18


def test_stage_alone_rejects_records_that_are_not_pairs(tmp_path, st_available):
    good = rec(0, instruction="Explain how to cook rice.")
    bad = rec(1, instruction="")
    write_jsonl(tmp_path / "in.jsonl", [good, bad])
    cfg = load_recipe(None, [f"input={tmp_path / 'in.jsonl'}", f"out={tmp_path / 'out'}", "progress=false",
                             "report=false"])
    m = run_pipeline(cfg, ["diversify"])
    rejects = list(read_jsonl(tmp_path / "out" / "rejects.jsonl"))
    assert m["counts"]["samples"] == 1 and [(r["id"], r["reason"]) for r in rejects] == [("sw-1", "not_a_pair")]
    assert "in.jsonl:2" in rejects[0]["detail"]
