"""The transformers backend: batched generation equals one-by-one, stop strings, and GGUF loading.

A tiny randomly initialised Llama (built here) with the embedded model's tokenizer keeps it fast.
"""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from xinstruct.llm import ChatRequest, GenerationParams  # noqa: E402
from xinstruct.llm.embedded import smollm2_gguf  # noqa: E402
from xinstruct.llm.hf import TransformersLLM, load_causal_lm  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    gguf = smollm2_gguf()
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    path = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _req(text, **kw):
    return ChatRequest(messages=({"role": "user", "content": text},), params=GenerationParams(max_tokens=12, **kw))


def test_batched_generation_equals_one_by_one(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir, dtype="float32", batch_size=4)
    prompts = ["Hi", "Tell me about ugali, the staple food of East Africa.", "Habari", "Explain Thai curry."]
    batched = llm.generate([_req(p) for p in prompts])
    single = [llm.generate([_req(p)])[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in single]
    assert len({g.prompt_tokens for g in batched}) > 1  # padding really was exercised
    assert all(0 < g.completion_tokens <= 12 for g in batched)


def test_stop_string_cuts_the_answer(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir, dtype="float32")
    full = llm.generate([_req("Hello there")])[0].text
    assert len(full) > 4
    stop = full[2:4]
    cut = llm.generate([_req("Hello there", stop=(stop,))])[0]
    assert stop not in cut.text
    assert full.startswith(cut.text)
    assert cut.finish_reason == "stop"


def test_gguf_loads_as_a_plain_trainable_model(tmp_path):
    model, tok, device = load_causal_lm(smollm2_gguf(), dtype="float32")
    assert getattr(model, "hf_quantizer", None) is None
    assert not getattr(model.config, "quantization_config", None)
    model.save_pretrained(tmp_path / "plain")  # refused for a model still flagged as GGUF-quantized
    assert (tmp_path / "plain" / "config.json").is_file()
    ids = tok("Habari", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert torch.isfinite(logits).all()


def test_a_gguf_that_train_writes_loads_with_its_chat_template(tmp_path, monkeypatch):
    """A GGUF that xinstruct writes beside its tokenizer files (the backward model `curate` trains is one) keeps its
    chat template on transformers, the engine that decodes batches on GPUs and CPUs with native bf16. transformers
    reads such a folder's tokenizer_config.json, which has no chat template (it is in chat_template.jinja), and
    `make demo` stopped on an AVX512-BF16 CPU with "tokenizer.chat_template is not set"."""
    pytest.importorskip("gguf")
    from xinstruct.train.gguf import export_gguf

    model, tok, _ = load_causal_lm(smollm2_gguf(), dtype="float32")
    folder = tmp_path / "trained"
    tok.save_pretrained(folder)
    template = "{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
    out = export_gguf(model, smollm2_gguf(), folder / "model.gguf", chat_template=template)
    del model
    monkeypatch.setenv("XINSTRUCT_CACHE", str(tmp_path / "cache"))  # converted here, not taken from the cache
    llm = TransformersLLM(out, dtype="float32")
    assert llm.chat_prompt([{"role": "user", "content": "Habari"}]) == "<<Habari>>A:"


def test_json_schema_starts_the_answer_for_the_model(tiny_model_dir):
    from xinstruct.curate.refine import label_schema
    from xinstruct.llm.base import json_prefix

    schema = label_schema(1, 5)
    assert json_prefix(schema) == '{"reason": "'
    assert json_prefix({"type": "object", "properties": {"n": {"type": "integer"}}}) == '{"n": '
    assert json_prefix({"type": "string"}) == ""
    llm = TransformersLLM(tiny_model_dir, dtype="float32")
    plain = llm.generate([_req("Rate this pair.")])[0]
    constrained = llm.generate([_req("Rate this pair.", json_schema=schema)])[0]
    # The answer is the started object and its continuation; the prompt the model saw ended with the prefix.
    assert constrained.text.startswith('{"reason": "') and not plain.text.startswith('{"reason": "')
    prompt = llm.prompt_text([{"role": "user", "content": "Rate this pair."}])
    ids = llm.tokenizer(prompt + '{"reason": "', add_special_tokens=False)["input_ids"]
    assert constrained.prompt_tokens == len(ids)


def test_shared_prefixes_are_computed_once_and_change_no_answer(tiny_model_dir):
    """Prompts in groups that share long prefixes (few-shot examples), a singleton among them, in one call:
    each group's prefix is run once, and greedy answers equal those of each prompt run alone."""
    shots_a = "Example: Ugali ni chakula kikuu. Instruction: Describe ugali. " * 6
    shots_b = "Mfano: Phở là món ăn truyền thống. Instruction: Describe pho. " * 6
    prompts = [shots_a + "Text: Chapati ni mkate.", shots_b + "Text: Bánh mì là bánh.", shots_a + "Text: Wali.",
               "Hello, who are you?", shots_b + "Text: Cơm tấm."]
    llm = TransformersLLM(tiny_model_dir, dtype="float32", batch_size=5)
    together = llm.generate([_req(p) for p in prompts])
    d = llm.decoder
    assert d.prompt_tokens_evaluated < 0.75 * d.prompt_tokens_total  # the two long prefixes ran once each
    alone = []
    for p in prompts:
        single = TransformersLLM(tiny_model_dir, dtype="float32", batch_size=1)
        alone.append(single.generate([_req(p)])[0])
        assert single.decoder.prompt_tokens_evaluated == single.decoder.prompt_tokens_total  # nothing to share
    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.prompt_tokens for g in together] == [g.prompt_tokens for g in alone]


def test_sampling_does_not_depend_on_the_batch(tiny_model_dir):
    llm = TransformersLLM(tiny_model_dir, dtype="float32", batch_size=4)
    reqs = [_req(p, temperature=1.0, seed=s) for p, s in (("Hi", 1), ("Habari", 2), ("Hi", 3), ("Explain curry.", 4))]
    together = [g.text for g in llm.generate(reqs)]
    alone = [llm.generate([r])[0].text for r in reqs]
    assert together == alone
    assert together[0] != together[2] or len(set(together)) > 1  # seeds matter


def test_loading_a_model_prints_no_weight_loading_bar(tiny_model_dir, capsys):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    load_causal_lm(tiny_model_dir, dtype="float32", device="cpu")
    assert "Loading weights" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the setting is restored for the caller
