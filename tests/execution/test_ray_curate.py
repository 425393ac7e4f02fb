"""The whole curate job with --executor ray on a local Ray runtime (2 CPUs) writes the local executor's files."""

from __future__ import annotations

import json

import pytest
from ray_cli import run, same_outputs, xinstruct

pytest.importorskip("ray")
pytest.importorskip("llama_cpp")

pytestmark = pytest.mark.slow


# Two whole curate runs (local, then on Ray): over pytest's 600 s when another test file runs beside it (make test's
# two workers; 600 s hit on 2 AMD EPYC cores, 2026-12-06), and the Ray run alone took up to 971 s there; then a
# rerun from the warm cache.
@pytest.mark.timeout(3000)
def test_ray_curate_gives_the_local_executors_files(tmp_path):
    """The whole job (the self-check, generation, the relevance gate before and after refinement, refinement,
    diversification) with --executor ray writes byte-identical samples, rejects and unsampled files, and the
    driver loads no model: the gate's probe and the self-check ran as a Ray task."""
    common = ("--lang", "sw,tr", "--num-shots", "2", "--set", "shard_size=2", "--selfcheck-size", "8", "--decide",
              "relevance", "--relevance-threshold", "-100", "--set", "refine.iterations=1")
    run(xinstruct("curate", "--out", str(tmp_path / "local"), *common))
    r = run(xinstruct("curate", "--out", str(tmp_path / "ray"), "--executor", "ray", *common), timeout=1200)
    same_outputs(tmp_path / "local", tmp_path / "ray")
    m = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    local = json.loads((tmp_path / "local" / "manifest.json").read_text())
    assert m["counts"]["candidates"] >= 1 and "LLM calls" in r.stdout
    assert m["models"] == [] and len(local["models"]) >= 2  # the local driver loaded its engines, Ray's none
    for name in ("judge", "relevance"):
        assert m["selection"]["selfcheck"][name]["auc"] == local["selection"]["selfcheck"][name]["auc"], name
    for stage in ("generate", "relevance-pre", "refine", "relevance-post"):
        st = m["stages"][stage]
        assert st["executor"] == "ray" and st["shards_resumed"] == 0, stage
        # every shard's calls went through its own request cache, beside its output
        folder = tmp_path / "ray" / st["folder"]
        assert sorted(p.name.split(".")[0] for p in folder.glob("shard-*.cache.jsonl")) == \
            sorted(p.stem for p in folder.glob("shard-?????.jsonl")), stage
        assert not list(folder.glob("input-*")), f"{stage}: shard inputs left behind"
    gen = m["stages"]["generate"]["llm"]
    assert gen["generated"] == 8 and gen["loaded"] and gen["loads"] >= 1

    # A rerun whose calls are all in the shards' request caches loads no model: generation's shard outputs are
    # deleted (their caches kept), so its shards run again, every call answered by the cache.
    folder = tmp_path / "ray" / m["stages"]["generate"]["folder"]
    for p in folder.glob("shard-?????.jsonl"):
        p.unlink()
    run(xinstruct("curate", "--out", str(tmp_path / "ray"), "--executor", "ray", *common), timeout=900)
    again = json.loads((tmp_path / "ray" / "manifest.json").read_text())["stages"]["generate"]
    assert again["shards_resumed"] == 0
    assert again["llm"]["cache_hits"] == gen["requests"] and again["llm"]["generated"] == 0
    assert again["llm"]["loads"] == 0 and not again["llm"]["loaded"]
    same_outputs(tmp_path / "local", tmp_path / "ray")
