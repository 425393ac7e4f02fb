"""Streaming (`LLM.stream`): the pieces join to what `generate` answers, stop strings never leak, and closing
a stream early stops the decoding. llama.cpp runs the embedded model; transformers a tiny random model."""

from __future__ import annotations

import pytest

from xinstruct.llm import ChatRequest, Generation, GenerationParams, LLMError
from xinstruct.llm.base import LLM, cut_at_stop
from xinstruct.llm.base import read_stream as drain


def _req(text: str, max_tokens: int = 24, **kw) -> ChatRequest:
    return ChatRequest(messages=({"role": "user", "content": text},),
                       params=GenerationParams(max_tokens=max_tokens, **kw))


# --- cut_at_stop ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("pieces", "stop", "expected"), [
    (["Hello", " wor", "ld"], (), "Hello world"),
    (["Hello", " ##", "# end"], ("###",), "Hello "),  # the stop string split across pieces
    (["ab#", "#", "#cd"], ("###",), "ab"),
    (["###after"], ("###",), ""),  # stop at the very start: nothing is shown
    (["one\n\nUser", ": more"], ("User:", "\n\nUser"), "one"),  # the earliest of several stop strings
    (["a#", "#b"], ("###",), "a##b"),  # a held-back prefix that turns out not to stop is released
])
def test_cut_at_stop(pieces, stop, expected):
    out = list(cut_at_stop(iter(pieces), stop))
    assert "".join(out) == expected
    assert all(out)  # no empty pieces


def test_cut_at_stop_stops_reading_the_source():
    read = []

    def source():
        for p in ["x", "STOP", "y", "z"]:
            read.append(p)
            yield p

    assert "".join(cut_at_stop(source(), ("STOP",))) == "x"
    assert read == ["x", "STOP"]


class _Whole(LLM):
    """A backend without its own streaming: the base class yields the whole answer once."""

    backend = "whole"

    def __init__(self, answer: Generation):
        self.answer = answer

    def generate(self, requests):
        return [self.answer for _ in requests]


def test_default_stream_yields_the_whole_answer_or_raises_its_error():
    pieces, g = drain(_Whole(Generation(text="Habari yako", completion_tokens=3)).stream(_req("hi")))
    assert pieces == ["Habari yako"] and g.completion_tokens == 3
    with pytest.raises(LLMError, match="too long"):
        drain(_Whole(Generation(text="", error="prompt too long")).stream(_req("hi")))


# --- llama.cpp, the embedded model -----------------------------------------------------------------


@pytest.fixture(scope="module")
def llamacpp(embedded_gguf):
    pytest.importorskip("llama_cpp")
    from xinstruct.llm.llamacpp import LlamaCppLLM

    llm = LlamaCppLLM(embedded_gguf, n_ctx=2048, n_threads=1)
    yield llm
    llm.close()


def test_llamacpp_stream_equals_generate(llamacpp):
    req = _req("Tell me about the city of Mombasa.", max_tokens=32)
    whole = llamacpp.generate([req])[0]
    pieces, g = drain(llamacpp.stream(req))
    assert len(pieces) > 5  # token by token, not one block
    assert "".join(pieces) == g.text == whole.text
    assert g.finish_reason == whole.finish_reason
    assert abs(g.completion_tokens - whole.completion_tokens) <= 2  # re-tokenised, not counted by the engine


def test_llamacpp_closed_stream_leaves_the_engine_usable(llamacpp):
    req = _req("Name three rivers in Africa.", max_tokens=32)
    it = llamacpp.stream(req)
    first = [next(it) for _ in range(3)]
    it.close()
    whole = llamacpp.generate([req])[0]
    assert whole.text.startswith("".join(first))


def test_llamacpp_stream_prompt_too_long_raises(embedded_gguf):
    pytest.importorskip("llama_cpp")
    from xinstruct.llm.llamacpp import LlamaCppLLM

    with LlamaCppLLM(embedded_gguf, n_ctx=64, n_threads=1) as small, \
            pytest.raises(LLMError, match="does not fit the context window of 64"):
        drain(small.stream(_req("word " * 200)))


# --- transformers, a tiny random model ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory, embedded_gguf):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from xinstruct.llm.hf import TransformersLLM

    tok = transformers.AutoTokenizer.from_pretrained(embedded_gguf.parent, gguf_file=embedded_gguf.name)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("tiny-stream")
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return TransformersLLM(path, dtype="float32")


def test_hf_stream_equals_generate(tiny_hf):
    req = _req("Habari ya asubuhi", max_tokens=20)
    whole = tiny_hf.generate([req])[0]
    pieces, g = drain(tiny_hf.stream(req))
    assert len(pieces) > 1
    assert "".join(pieces) == g.text == whole.text
    assert (g.completion_tokens, g.finish_reason, g.prompt_tokens) == (
        whole.completion_tokens, whole.finish_reason, whole.prompt_tokens)


def test_hf_stream_cuts_at_a_stop_string(tiny_hf):
    full = tiny_hf.generate([_req("Hello there", max_tokens=20)])[0].text
    stop = full[5:8]
    assert len(stop) == 3
    pieces, g = drain(tiny_hf.stream(_req("Hello there", max_tokens=20, stop=(stop,))))
    text = "".join(pieces)
    assert stop not in text and full.startswith(text) and g.text == text
    assert g.finish_reason == "stop"


def test_hf_closed_stream_stops_decoding(tiny_hf):
    import threading

    calls = []
    hook = tiny_hf.model.register_forward_hook(lambda *a: calls.append(1))
    try:
        req = _req("Tell me a long story", max_tokens=300)
        _, whole = drain(tiny_hf.stream(req))
        assert whole.completion_tokens == 300 and len(calls) >= 300  # this model runs to the limit
        calls.clear()
        it = tiny_hf.stream(req)
        next(it)
        it.close()  # cancels and joins the decoding thread
        assert len(calls) < 100
        assert not [t for t in threading.enumerate() if t.name == "hf-stream"]
    finally:
        hook.remove()
