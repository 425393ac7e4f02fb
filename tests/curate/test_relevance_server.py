"""Relevance scoring through a real llama_cpp.server on 127.0.0.1 (/v1/completions with echo + logprobs), and
the skip path with a server that gives no log-probabilities: the run goes on and says the gate was skipped."""

import json

import pytest

from xinstruct.curate.config import load_recipe
from xinstruct.curate.job import run_pipeline
from xinstruct.curate.relevance import RelevanceConfig, RelevanceScorer
from xinstruct.curate.seeds import load_seeds
from xinstruct.curate.selfcheck import planted_pairs
from xinstruct.io import read_jsonl, write_jsonl
from xinstruct.llm import LLM, Generation, ModelConfig, ScoringUnsupported
from xinstruct.llm.openai_compat import OpenAICompatLLM

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow

PAIRS = [("Instruction: How is ugali cooked?\nResponse: ", "Ugali hupikwa kwa unga wa mahindi na maji."),
         ("Instruction: Write a text in Swahili.\nResponse: ", "Ugali hupikwa kwa unga wa mahindi na maji."),
         ("Instruction: Name a Tamil festival.\nResponse: ", "பொங்கல் தமிழர்களின் அறுவடைத் திருநாள்.")]


def test_server_log_probabilities_equal_in_process_ones(embedded_scorer_gguf, gguf_server, tmp_path):
    from xinstruct.llm.llamacpp import LlamaCppLLM

    with LlamaCppLLM(embedded_scorer_gguf, logits_all=True, n_ctx=1024) as local:
        want = local.token_logprobs(PAIRS)
        scorer_local = RelevanceScorer(RelevanceConfig(), local)
        gains_local = scorer_local.gains([("How is ugali cooked?", PAIRS[0][1], "sw")])
    with gguf_server(embedded_scorer_gguf, tmp_path, "--n_ctx", "1024", "--logits_all", "true") as server:
        remote = OpenAICompatLLM(server.base_url, server.model, max_retries=1)
        got = remote.token_logprobs(PAIRS)
        cfg = RelevanceConfig(model=ModelConfig(model=server.model, base_url=server.base_url))
        gains_remote = RelevanceScorer(cfg, remote).gains([("How is ugali cooked?", PAIRS[0][1], "sw")])
    assert [len(x) for x in got] == [len(x) for x in want] and all(len(x) > 5 for x in got)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, abs=1e-3)
    assert gains_remote[0].value == pytest.approx(gains_local[0].value, abs=1e-3)
    print(f"gain through the server {gains_remote[0].value:.4f}, in process {gains_local[0].value:.4f}")


class AlwaysFive(LLM):
    """A judge that gives every pair the top score."""

    backend = "scripted"
    model_id = "always-five"

    def generate(self, requests):
        return [Generation(json.dumps({"reason": "Excellent.", "score": 5}), "stop") for _ in requests]


def test_a_server_without_logprobs_skips_the_gate_and_the_run_goes_on(embedded_gguf, gguf_server, tmp_path, caplog):
    planted = planted_pairs(load_seeds(), ["sw"], 4)
    write_jsonl(tmp_path / "pairs.jsonl", planted)
    with gguf_server(embedded_gguf, tmp_path, "--n_ctx", "1024", "--logits_all", "false") as server:
        with pytest.raises(ScoringUnsupported, match="logits_all"):
            OpenAICompatLLM(server.base_url, server.model, max_retries=1).token_logprobs(PAIRS[:1])
        cfg = load_recipe(None, [f"input={tmp_path / 'pairs.jsonl'}", f"out={tmp_path / 'run'}", "progress=false",
                                 "refine.iterations=0", f"relevance.model.model={server.model}",
                                 f"relevance.model.base_url={server.base_url}",
                                 "relevance.model.options={max_retries: 1}"])
        with caplog.at_level("WARNING"):
            m = run_pipeline(cfg, ("refine",), models={"refine": AlwaysFive()})
    gate = m["selection"]["gate"]
    assert gate["skipped"] is True and "logprobs" in gate["reason"]
    assert m["selection"]["judge_decides"] and not m["selection"]["gate_decides"]
    assert "relevance-pre" not in m["stages"]
    assert len(list(read_jsonl(tmp_path / "run" / "samples.jsonl"))) == 4  # the always-5 judge keeps them all
    skipped = [r for r in caplog.records if "relevance gate is skipped" in r.getMessage()]
    assert len(skipped) == 1
    card = (tmp_path / "run" / "README.md").read_text()
    assert "The relevance gate was skipped" in card and "logits_all" in card
