"""The embedded SmolLM2-135M trained for real: LoRA SFT from the CLI gives a merged model that the
transformers and llama.cpp backends both run, and DPO on pairs the tool builds moves the model."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("llama_cpp")

from xinstruct.cli import main  # noqa: E402
from xinstruct.curate.seeds import load_seeds  # noqa: E402
from xinstruct.records import Record  # noqa: E402

pytestmark = pytest.mark.slow


def _run_folder(tmp_path, langs=("sw", "fi", "tr", "id"), per_lang=2, chars=300):
    """A folder shaped like a curate run: samples.jsonl of records (here from the packaged seed pairs)."""
    seeds = [s for s in load_seeds() if s.lang in langs]
    recs = []
    for lang in langs:
        for i, s in enumerate([s for s in seeds if s.lang == lang][:per_lang]):
            recs.append(Record(id=f"{lang}{i}", doc_id=f"{lang}{i}", lang=lang, text=s.response[:chars],
                               instruction=s.instruction, response=s.response[:chars], source=f"seeds:{lang}:{i}"))
    run = tmp_path / "curated"
    run.mkdir()
    (run / "samples.jsonl").write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in recs),
                                       encoding="utf-8")
    return run


def test_lora_sft_cli_writes_a_merged_model_that_both_backends_run(embedded_gguf, tmp_path, capsys):
    from xinstruct.llm.hf import load_causal_lm

    run = _run_folder(tmp_path)
    out = tmp_path / "sft"
    assert main(["train", "sft", "--data", str(run), "--out", str(out), "--max-steps", "2", "--batch-size", "2",
                 "--max-length", "256", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "trained lora (sft) on 8 examples (0 rejected): 2 steps" in said
    assert (out / "adapter" / "adapter_config.json").is_file()
    merged, gguf = out / "merged", out / "merged" / "model.gguf"
    assert (merged / "config.json").is_file() and gguf.is_file()
    # the weights' hash sits in the part of the file the llama.cpp backend fingerprints for its cache key
    with open(gguf, "rb") as f:
        assert b"xinstruct.weights_sha256" in f.read(4 << 20)

    # The GGUF holds the merged weights: transformers reads it back (undoing llama.cpp's q/k row order)
    # to the same tensors, within float16 rounding.
    ref, _, _ = load_causal_lm(merged, dtype="float32", device="cpu")
    back, _, _ = load_causal_lm(gguf, dtype="float32", device="cpu")
    want, got = ref.state_dict(), back.state_dict()
    for k in want:
        assert torch.allclose(want[k], got[k], atol=2e-3, rtol=1e-2), k
    base, _, _ = load_causal_lm(embedded_gguf, dtype="float32", device="cpu")
    moved = [k for k, v in base.state_dict().items() if "proj" in k and not torch.allclose(v, want[k], atol=1e-6)]
    assert moved  # LoRA changed the projection weights it was attached to

    # Generation runs with the merged model through both backends.
    for model, backend in ((str(merged), "transformers"), (str(gguf), "llama.cpp")):
        gen_out = tmp_path / f"gen-{backend}"
        assert main(["generate", "--model", model, "--backend", backend, "--lang", "sw",
                     "--out", str(gen_out), "--no-progress", "--no-report"]) == 0
        manifest = json.loads((gen_out / "manifest.json").read_text())
        assert manifest["counts"]["chunks"] >= 1
        assert manifest["stages"]["generate"]["llm"]["generated"] >= 1
        assert [m["backend"] for m in manifest["models"]] == [backend]


def test_dpo_on_tool_built_preference_pairs_raises_chosen_over_rejected(embedded_gguf, tmp_path):
    from xinstruct.llm.hf import load_causal_lm
    from xinstruct.train.dpo import DPOTrainConfig, PreferenceConfig, build_preferences, train_dpo
    from xinstruct.train.model import completion_logprob

    run = _run_folder(tmp_path, langs=("sw", "fi", "tr", "id", "vi", "hi"), per_lang=1, chars=200)
    prefs = tmp_path / "prefs"
    m = build_preferences(PreferenceConfig(data=str(run), out=str(prefs), samples=2, max_tokens=48,
                                           progress=False))
    rows = [json.loads(x) for x in (prefs / "preferences.jsonl").read_text().splitlines()]
    rejects = (prefs / "rejects.jsonl").read_text().splitlines()
    assert m["prompts"] == 6 and len(rows) + len(rejects) == 6 and len(rows) >= 3
    for r in rows:
        ranks = {c["text"]: c["rank"] for c in r["candidates"]}
        assert ranks[r["chosen"][0]["content"]] > ranks[r["rejected"][0]["content"]]
        assert r["prompt"][-1]["content"].endswith(".")  # "... Answer in <Language>."
        assert "Answer in" in r["prompt"][-1]["content"]

    def margins(model, tok):
        return [completion_logprob(model, tok, r["prompt"], r["chosen"])
                - completion_logprob(model, tok, r["prompt"], r["rejected"]) for r in rows]

    base, tok, _ = load_causal_lm(embedded_gguf, dtype="float32", device="cpu")
    before = margins(base, tok)
    cfg = DPOTrainConfig(data=str(prefs), out=str(tmp_path / "dpo"), max_steps=4, batch_size=2, lr=1e-3,
                         warmup_ratio=0.0, max_length=384, gguf=False, logging_steps=1)
    result = train_dpo(cfg, progress=False)
    assert result["global_step"] == 4
    tuned, tok2, _ = load_causal_lm(tmp_path / "dpo" / "merged", dtype="float32", device="cpu")
    after = margins(tuned, tok2)
    print(f"pairs {len(rows)}: mean chosen-rejected log-prob {sum(before) / len(before):.2f} -> "
          f"{sum(after) / len(after):.2f}")
    assert sum(after) / len(after) > sum(before) / len(before) + 1.0, (before, after)
