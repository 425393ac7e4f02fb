"""The backward model learns the generation stage's own zero-shot prompt, and generation then uses it."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from xinstruct.curate.generate import GenerateConfig, InstructionGenerator  # noqa: E402
from xinstruct.llm import ModelConfig  # noqa: E402
from xinstruct.records import Record  # noqa: E402
from xinstruct.train.backward import backward_examples, train_backward  # noqa: E402
from xinstruct.train.sft import TrainConfig  # noqa: E402


def test_examples_are_the_zero_shot_generation_prompt_with_the_seed_instruction_as_answer(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "sw.jsonl").write_text(json.dumps({"instruction": "What is Harambee?", "response": "Harambee ni ..."})
                                    + "\n", encoding="utf-8")
    (seeds / "any.jsonl").write_text("", encoding="utf-8")
    examples, rejects = backward_examples(str(seeds))
    [ex] = examples
    gen = InstructionGenerator(GenerateConfig(seeds=str(seeds), num_shots=0))
    rec = Record(id="x", doc_id="x", lang="sw", text="Harambee ni ...")
    assert ex.prompt == gen.messages(rec, [])
    assert [m["role"] for m in ex.prompt] == ["system", "user"] and "Swahili" in ex.prompt[1]["content"]
    assert ex.completion == [{"role": "assistant", "content": "What is Harambee?"}]
    assert rejects == []


def test_trained_backward_model_is_prompted_zero_shot_by_the_generation_stage(tiny_model, tmp_path):
    cfg = TrainConfig(model=str(tiny_model), out=str(tmp_path / "bw"), max_steps=1, batch_size=2, max_length=1024,
                      gguf=False)
    m = train_backward(cfg, progress=False)
    assert m["examples"] == 100  # 10 packaged seed pairs in each of the ten paper languages
    merged = tmp_path / "bw" / "merged"
    gen = InstructionGenerator(GenerateConfig(model=ModelConfig(model=str(merged), backend="transformers")))
    assert gen.cfg.num_shots == 0 and not gen.bound  # building a step loads no model
    rec = Record(id="d1", doc_id="d1", lang="ta", text="தமிழ் ஒரு மொழி.")
    with pytest.raises(RuntimeError, match="has no engine"):
        gen.request(rec)  # the prompt is fitted to the model's window: it needs the engine, and says so
    assert [m["role"] for m in gen.load().request(rec).messages] == ["system", "user"]
    gen.close()
    assert not gen.bound
    # an instruct model keeps its few-shot default
    assert InstructionGenerator(GenerateConfig()).cfg.num_shots == 2
