"""The curate job's generator: a backward model trained on the seeds once, cached by base, seeds and settings, and
written to the cache whole or not at all; seed texts cut by tokens so that long ones still teach."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("trl")

from xinstruct.curate.generate import BackwardConfig, GenerateConfig, InstructionGenerator  # noqa: E402
from xinstruct.llm import ModelConfig  # noqa: E402
from xinstruct.records import Record  # noqa: E402
from xinstruct.train import backward  # noqa: E402
from xinstruct.train.backward import (  # noqa: E402
    backward_examples,
    backward_key,
    cached_backward_model,
    train_backward,
    use_backward_model,
)
from xinstruct.train.sft import TrainConfig  # noqa: E402

LONG_TAMIL = "தமிழ் மொழி உலகின் மிகப் பழமையான மொழிகளில் ஒன்றாகும். " * 60  # ~3,000 characters


def seeds_dir(tmp_path, extra: str = ""):
    d = tmp_path / f"seeds{len(extra)}"
    d.mkdir(exist_ok=True)
    (d / "sw.jsonl").write_text("\n".join(json.dumps({"instruction": f"What is dish number {i}?",
                                                      "response": f"Chakula nambari {i} ni ugali na samaki."})
                                          for i in range(3)) + "\n", encoding="utf-8")
    (d / "ta.jsonl").write_text(json.dumps({"instruction": "Describe the history of the Tamil language." + extra,
                                            "response": LONG_TAMIL}) + "\n", encoding="utf-8")
    return str(d)


def tiny_backward(tiny_model, **kw) -> BackwardConfig:
    return BackwardConfig(base=str(tiny_model), max_steps=1, batch_size=2, **{"text_max_tokens": 32, **kw})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "xcache"
    monkeypatch.setenv("XINSTRUCT_CACHE", str(folder))
    return folder


def test_long_seed_text_is_cut_by_tokens_and_still_teaches(tiny_model, tmp_path):
    cfg = TrainConfig(model=str(tiny_model), out=str(tmp_path / "bw"), max_steps=1, batch_size=2,
                      max_length=32 + 160, gguf=False)
    m = train_backward(cfg, seeds=seeds_dir(tmp_path), text_max_tokens=32, progress=False)
    # the 3,000-character Tamil text (over 1,000 tokens whole) fits once cut: no seed is rejected as too long
    assert (m["examples"], m["rejected"]) == (4, 0)
    rows = [json.loads(x) for x in (tmp_path / "bw" / "data" / "train.jsonl").read_text().splitlines()]
    ta = next(r for r in rows if r["lang"] == "ta")
    shown = ta["prompt"][-1]["content"]
    assert shown.endswith("…\n\nEnglish instruction:") and len(shown) < 400
    meta = json.loads((tmp_path / "bw" / "merged" / "xinstruct_model.json").read_text())
    assert (meta["task"], meta["text_max_tokens"]) == ("backward", 32)
    # the generation stage cuts corpus texts as the model learned: by its tokens, read from its metadata
    gen = InstructionGenerator(GenerateConfig(model=ModelConfig(model=str(tmp_path / "bw" / "merged"))))
    assert (gen.cfg.num_shots, gen.cfg.text_max_tokens) == (0, 32)


def test_examples_cut_by_tokens_match_the_generation_prompt(tiny_model):
    from xinstruct.llm.hf import first_tokens
    from xinstruct.train.model import load_tokenizer

    tok = load_tokenizer(str(tiny_model))
    cut = lambda t, n: first_tokens(tok, t, n)  # noqa: E731
    examples, _ = backward_examples(text_max_tokens=40, first_tokens=cut)
    assert len(examples) == 100
    gen = InstructionGenerator(GenerateConfig(num_shots=0, text_max_tokens=40))
    for e in examples[::10]:
        text = e.prompt[-1]["content"].split(":\n", 1)[1].removesuffix("\n\nEnglish instruction:")
        assert len(tok.encode(text.removesuffix(" …"), add_special_tokens=False)) <= 41
        rec = Record(id="x", doc_id="x", lang=e.lang, text=text.removesuffix(" …"))
        assert gen.messages(rec, [], cut)[-1]["content"].startswith(e.prompt[-1]["content"].split(":\n")[0])


def test_backward_model_is_trained_once_and_reused(tiny_model, tmp_path, cache, monkeypatch):
    seeds = seeds_dir(tmp_path)
    b = tiny_backward(tiny_model)
    first = cached_backward_model(b, seeds, progress=False)
    assert first["cached"] is False and first["backward"]["examples"] == 4
    folder = cache / "backward" / first["backward"]["key"]
    assert first["folder"] == str(folder) and (folder / "config.json").is_file()
    assert not list((cache / "backward").glob(".*.partial"))  # the training folder is gone

    def no_training(*a, **kw):
        raise AssertionError("a cached backward model was trained again")

    monkeypatch.setattr(backward, "train_backward", no_training)
    again = cached_backward_model(tiny_backward(tiny_model), seeds, progress=False)
    assert again["cached"] is True and again["folder"] == first["folder"]
    # the curate job's generator points at it and prompts it zero-shot, texts cut as it learned
    gen = GenerateConfig(seeds=seeds, backward=BackwardConfig(**{**vars(b), "train": "on"}))
    meta = use_backward_model(gen, progress=False)
    assert meta is not None and gen.model.model == first["path"] and gen.num_shots == 0
    assert gen.text_max_tokens == 32
    # other seeds or other settings are another model
    assert backward_key(b, seeds_dir(tmp_path, extra=" In detail."), "generate_instruction") != first["backward"]["key"]
    assert backward_key(tiny_backward(tiny_model, lr=1e-3), seeds, "generate_instruction") != first["backward"]["key"]
    assert backward_key(BackwardConfig(**{**vars(b), "train": "auto"}), seeds, "generate_instruction") \
        == first["backward"]["key"]  # whether to use one is not part of the model


def test_auto_trains_only_for_the_embedded_default_without_shots():
    from xinstruct.train.backward import wants_backward_model

    assert wants_backward_model(GenerateConfig())
    assert not wants_backward_model(GenerateConfig(num_shots=2))  # few-shot asked for
    assert not wants_backward_model(GenerateConfig(model=ModelConfig(model="/models/qwen")))
    assert not wants_backward_model(GenerateConfig(backward=BackwardConfig(train="off")))
    assert wants_backward_model(GenerateConfig(model=ModelConfig(model="/m/qwen"), backward=BackwardConfig(train="on")))
    with pytest.raises(ValueError, match="generate.backward.train"):
        wants_backward_model(GenerateConfig(backward=BackwardConfig(train="yes")))


def test_a_training_killed_midway_leaves_no_cache_entry(tiny_model, tmp_path, cache):
    """SIGKILL while the merged model is being written: no entry, and the next call trains and caches it whole."""
    seeds = seeds_dir(tmp_path)
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from xinstruct.curate.generate import BackwardConfig
        from xinstruct.train import backward, sft

        real = sft.save_merged

        def dying(trained, tok, folder, **kw):
            real(trained, tok, folder, **kw)
            (Path(folder) / "config.json").write_text("{{half")  # a half-written file, then the kill
            os.kill(os.getpid(), signal.SIGKILL)

        sft.save_merged = dying
        backward.cached_backward_model(BackwardConfig(base={str(tiny_model)!r}, max_steps=1, batch_size=2,
                                                      text_max_tokens=32), {seeds!r}, progress=False)
    """)
    r = subprocess.run([sys.executable, "-c", script], env={**os.environ, "XINSTRUCT_CACHE": str(cache)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == -9, r.stderr[-2000:]
    root = cache / "backward"
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == []  # no entry
    assert list(root.glob(".*.partial"))  # only the dead process's training folder
    m = cached_backward_model(tiny_backward(tiny_model), seeds, progress=False)
    assert m["cached"] is False and json.loads((root / m["backward"]["key"] / "config.json").read_text())
    assert not list(root.glob(".*.partial"))  # the abandoned one was cleared
