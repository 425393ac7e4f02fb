"""loglikelihood in the transformers and llama.cpp backends: lm-eval's tokenisation rules, an independent
computation on a tiny random model, and the two backends on the embedded model."""

from __future__ import annotations

import pytest

from xinstruct.llm.base import LLMError
from xinstruct.llm.hf import encode_pair, model_window, split_pair

PAIRS = [("The cat sat on the", " mat"), ("Mtoto alilia sana kwa sababu", " alikuwa na njaa."),
         ("Hello", " world, again"), ("நான் வீட்டுக்குப் போனேன்", " எனவே"), ("", " Çocuk ağladı.")]


def test_trailing_whitespace_moves_to_the_continuation():
    assert split_pair("a b ", "c") == ("a b", " c")
    assert split_pair("a\n\n", "b") == ("a", "\n\nb")
    assert split_pair("a", " b") == ("a", " b")


def _chars(text: str, add_special: bool) -> list[int]:
    """A character tokenizer that adds BOS (1) when asked and merges "ab" into one token (0)."""
    ids = [0 if text[i : i + 2] == "ab" else ord(text[i]) for i in range(len(text)) if text[i - 1 : i + 1] != "ab"]
    return ([1] if add_special else []) + ids


def test_encode_pair_follows_lm_eval():
    assert encode_pair(_chars, 1, None, "xy ", "z") == ([1, ord("x"), ord("y")], [ord(" "), ord("z")])
    # the continuation is what the whole has beyond the context's length: whole "xab" = [1, x, ab] has
    # nothing beyond 3 tokens, so a token merged across the boundary leaves no continuation (as in lm-eval)
    assert encode_pair(_chars, 1, None, "xa", "b") == ([1, ord("x"), ord("a")], [])
    assert encode_pair(_chars, 1, None, "x", "ab") == ([1, ord("x")], [0])
    assert encode_pair(_chars, 1, None, "", " q") == ([1], [ord(" "), ord("q")])  # empty context: BOS, no specials
    assert encode_pair(_chars, 1, None, "  ", "q") == ([1], [ord(" "), ord(" "), ord("q")])
    assert encode_pair(_chars, 1, "<s>", "<s>x", "y")[0] == [ord(c) for c in "<s>x"]  # no second BOS


def test_model_window_truncates_from_the_left():
    assert model_window(([1, 2, 3, 4], [5, 6]), 4) == [2, 3, 4, 5]
    assert model_window(([1, 2], [3]), 8) == [1, 2]
    with pytest.raises(ValueError, match="exceeds the context window"):
        model_window(([1], [2, 3, 4]), 2)


# ------------------------------------------------------------------ a tiny random Llama, computed by hand

@pytest.fixture(scope="module")
def tiny(embedded_gguf, tmp_path_factory):
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from xinstruct.llm.hf import TransformersLLM, dequantized_gguf

    tok = AutoTokenizer.from_pretrained(dequantized_gguf(embedded_gguf))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return TransformersLLM(folder, dtype="float32", device="cpu", batch_size=3)


def _logprob(llm, ids: list[int]) -> float:
    """log p(ids[1:] | ids[0]) by one forward pass, in float64."""
    import torch

    with torch.inference_mode():
        logp = torch.log_softmax(llm.model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    return float(sum(logp[t - 1, ids[t]] for t in range(1, len(ids))))


def _by_hand(llm, context: str, continuation: str) -> float:
    """log p(context + continuation) - log p(context), each by its own forward pass (the first token,
    unscored in both, cancels); an empty context is BOS. SmolLM2's tokenizer adds no BOS itself."""
    tok = llm.tokenizer
    ctx, whole = tok.encode(context), tok.encode(context + continuation)
    assert whole[: len(ctx)] == ctx
    return _logprob(llm, whole) - _logprob(llm, ctx) if ctx else _logprob(llm, [tok.bos_token_id] + whole)


def test_transformers_matches_a_computation_by_hand(tiny):
    got = tiny.loglikelihood(PAIRS)
    assert got == pytest.approx([_by_hand(tiny, c, x) for c, x in PAIRS], abs=1e-3)
    tiny.score_tokens = 1
    try:
        assert tiny.loglikelihood(PAIRS) == pytest.approx(got, abs=1e-4)  # one row per pass: no padding
    finally:
        del tiny.score_tokens


# With SmolLM2's tokenizer: contexts of 1 to 41 tokens (an empty one is BOS alone, "Hello" one token: nothing
# to share), continuations of 1 to 35
SHARED = [("Mtoto alilia sana kwa sababu", [" alikuwa na njaa.", " a", " mama yake alikuwa ameondoka nyumbani jana."]),
          ("The sun rose over the quiet hills of the valley and the farmers, who had waited all night, said",
           [" nothing.", " that the rain would come back before the harvest."]),
          ("Hello", [" world", " there, again and again"]),
          ("", [" Çocuk ağladı.", " Çocuk güldü çünkü"]),
          ("நான் வீட்டுக்குப் போனேன்", [" எனவே", " ஏனெனில் மழை பெய்தது"])]


def _alone(llm, context: str, continuation: str) -> list[float]:
    """Per-token log-probabilities of one pair from one forward pass over its whole window."""
    import torch

    ctx, cont = llm.encode_pair(context, continuation)
    with torch.inference_mode():
        logits = llm.model(input_ids=torch.tensor([(ctx + cont)[:-1]])).logits[0, -len(cont) :].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(cont)[:, None])[:, 0].tolist()


def test_shared_context_scores_each_token_as_the_pair_alone(tiny, monkeypatch):
    """Choices are scored after their context's keys and values, computed once per context; one pass mixes
    rows of different context and continuation lengths (left-padded past, right-padded suffixes) and rows
    with no past at all. Every token's log-probability equals that of one forward pass over the pair alone."""
    pairs = [(c, x) for c, xs in SHARED for x in xs]
    cls = type(tiny)
    prefixes, passes = [], []
    monkeypatch.setattr(tiny, "_prefix_store", lambda ps: prefixes.extend(ps) or cls._prefix_store(tiny, ps))
    monkeypatch.setattr(tiny, "_score_suffixes", lambda rows, layers: passes.append(
        [(len(r.prefix), len(r.suffix)) for r in rows]) or cls._score_suffixes(tiny, rows, layers))
    for tokens in (1024, 40, 1):  # a few passes, more, one row per pass
        monkeypatch.setattr(tiny, "score_tokens", tokens)
        prefixes.clear()
        passes.clear()
        got = tiny.token_logprobs(pairs)
        assert [len(t) for t in got] == [len(tiny.encode_pair(c, x)[1]) for c, x in pairs]
        for (c, x), lp in zip(pairs, got, strict=True):
            assert lp == pytest.approx(_alone(tiny, c, x), abs=1e-4), (tokens, c, x)
        want = {tuple(tiny.encode_pair(c, xs[0])[0][:-1]) for c, xs in SHARED} - {()}
        assert len(prefixes) == len(set(prefixes)) and set(prefixes) == want  # each context once, but its last token
        assert sum(map(len, passes)) == len(pairs)
        if tokens == 1024:
            assert any(len({s for _, s in p}) > 1 and len({n for n, _ in p}) > 2 and min(p)[0] == 0 for p in passes)
        if tokens == 1:
            assert all(len(p) == 1 for p in passes)


def test_length_batches_cut_longest_first_within_the_budget():
    from xinstruct.llm.hf import length_batches

    lengths = [3, 10, 9, 1, 10, 4, 30]
    batches = length_batches(lengths, 30, full=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert batches[0] == [6]  # the longest first, alone at the budget
    assert all(len(b) * lengths[b[0]] <= 30 or len(b) == 1 for b in batches)
    assert all(lengths[b[0]] == max(lengths[i] for i in b) for b in batches)
    assert length_batches(lengths, 30, full=0)[1] == [1, 4, 2]  # 9 is within 10% of 10; 4 is not
    assert length_batches(lengths, 1000, full=1000) == [[6, 1, 4, 2, 5, 0, 3]]  # small passes pad more
    assert max(map(len, length_batches(lengths, 1000, max_items=2, full=1000))) == 2


def test_transformers_trailing_space_and_greedy(tiny):
    assert tiny.loglikelihood([("The cat sat on the ", "mat")]) == tiny.loglikelihood([("The cat sat on the", " mat")])
    import torch

    found = False
    for context in ("The cat", "Hello", "Mtoto alilia", "One two three"):
        ids = tiny.tokenizer.encode(context)
        with torch.inference_mode():
            top = tiny.model(input_ids=torch.tensor([ids])).logits[0, -1].argsort(descending=True)[:2].tolist()
        texts = [tiny.tokenizer.decode([t]) for t in top]
        if all(tiny.encode_pair(context, t)[1] == [i] for t, i in zip(texts, top, strict=True)):
            assert tiny.loglikelihood_details([(context, texts[0]), (context, texts[1])])[0][1] is True
            assert tiny.loglikelihood_details([(context, texts[1])])[0][1] is False
            found = True
            break
    assert found, "no context whose two likeliest next tokens round-trip through the tokenizer"


def test_transformers_truncates_long_contexts_from_the_left(tiny):
    context, continuation = "one two three four five six seven eight nine ten eleven twelve", " thirteen"
    ctx, cont = tiny.encode_pair(context, continuation)
    window = 8
    tiny.model.config.max_position_embeddings = window
    try:
        (got,) = tiny.loglikelihood([(context, continuation)])
    finally:
        tiny.model.config.max_position_embeddings = 512
    kept = (ctx + cont)[-(window + 1) :]
    want = _logprob(tiny, kept) - _logprob(tiny, kept[: -len(cont)])
    assert got == pytest.approx(want, abs=1e-3)


# ------------------------------------------------------------------ the embedded model in both backends

@pytest.fixture(scope="module")
def backends(embedded_gguf):
    pytest.importorskip("transformers")
    pytest.importorskip("llama_cpp")
    from xinstruct.llm.hf import TransformersLLM, dequantized_gguf
    from xinstruct.llm.llamacpp import LlamaCppLLM

    hf = TransformersLLM(dequantized_gguf(embedded_gguf), dtype="float32", device="cpu")
    cpp = LlamaCppLLM(embedded_gguf, n_ctx=512, logits_all=True)
    yield hf, cpp
    cpp.close()


CHOICES = [("Mtoto alilia sana kwa sababu", [" alikuwa na njaa.", " alicheza mpira."]),
           ("The sun rose, therefore", [" the sky became bright.", " the cat purple seven."]),
           ("Saya lupa membawa payung maka", [" baju saya basah kena hujan.", " saya membeli mobil baru."])]


@pytest.mark.slow
def test_llamacpp_tokenises_as_the_hf_tokenizer(backends):
    hf, cpp = backends
    for context, continuation in [*PAIRS, ("Çocuk ağladı çünkü ", "düştü."), ("因为", "所以"), ("<|im_end|> x", " y")]:
        assert cpp.encode_pair(context, continuation) == hf.encode_pair(context, continuation)


@pytest.mark.slow
def test_llamacpp_and_transformers_agree_on_the_embedded_model(backends):
    """Same weights (Q4_1, dequantised for transformers) but llama.cpp multiplies with activations
    quantised to 8 bits: close, not equal."""
    hf, cpp = backends
    pairs = [(c, x) for c, xs in CHOICES for x in xs]
    a, b = hf.loglikelihood(pairs), cpp.loglikelihood(pairs)
    for x, y in zip(a, b, strict=True):
        assert abs(x - y) < 0.5 + 0.05 * abs(x), (a, b)
    for k in range(0, len(pairs), 2):
        if abs(a[k] - a[k + 1]) > 2.0:
            assert (a[k] > a[k + 1]) == (b[k] > b[k + 1]), (a, b)


@pytest.mark.slow
def test_llamacpp_reuses_the_shared_prefix_without_changing_scores(backends):
    _, cpp = backends
    pairs = [(c, x) for c, xs in CHOICES for x in xs]
    together = cpp.loglikelihood(pairs)
    alone = []
    for p in pairs:
        cpp._llm.reset()
        alone += cpp.loglikelihood([p])
    assert together == pytest.approx(alone, abs=1e-2)
    assert cpp.loglikelihood([pairs[3], pairs[0]]) == pytest.approx([together[3], together[0]], abs=1e-2)


def test_llamacpp_without_logits_all_says_how_to_load_it(embedded_gguf):
    pytest.importorskip("llama_cpp")
    from xinstruct.llm.llamacpp import LlamaCppLLM

    with LlamaCppLLM(embedded_gguf, n_ctx=256) as llm, pytest.raises(LLMError, match="logits_all=True"):
        llm.loglikelihood([("a", " b")])


@pytest.mark.slow
def test_token_logprobs_sum_to_the_loglikelihood_and_gains_agree_across_engines(backends):
    """The relevance gate's input: per-token log-probabilities of the continuation, in both in-process
    engines, summing to `loglikelihood`; and a chat-layout gain computed with each engine's own template."""
    from xinstruct.curate.relevance import RelevanceConfig, RelevanceScorer

    hf, cpp = backends
    pairs = [(c, x) for c, xs in CHOICES for x in xs]
    for llm in (hf, cpp):
        per_token = llm.token_logprobs(pairs)
        assert [len(t) for t in per_token] == [len(llm.encode_pair(c, x)[1]) for c, x in pairs]
        # llama.cpp reuses the KV cache of the previous call's prefix, which moves its sums by up to ~0.05%
        assert [sum(t) for t in per_token] == pytest.approx(llm.loglikelihood(pairs), rel=2e-3, abs=1e-3)
    assert hf.chat_prompt([{"role": "user", "content": "Hi"}]) == cpp.chat_prompt([{"role": "user", "content": "Hi"}])
    pair = ("How is ugali cooked?", "Ugali hupikwa kwa unga wa mahindi na maji hadi uwe mgumu.", "sw")
    gains = [RelevanceScorer(RelevanceConfig(layout="chat"), llm).gains([pair])[0].value for llm in (hf, cpp)]
    assert gains[0] == pytest.approx(gains[1], abs=0.1)
