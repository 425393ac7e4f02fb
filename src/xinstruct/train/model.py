"""Loading a base model for training, saving a standalone merged model, and scoring completions.

The base is any local Hugging Face causal LM folder, a `.gguf` file (dequantised into a
plain model that trains and saves), or "embedded" (SmolLM2-135M-Instruct from its GGUF).
A saved model folder carries `xinstruct_model.json` (see `xinstruct.llm.artifacts`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def resolve_base(model: str) -> Path:
    from xinstruct.llm.embedded import EMBEDDED_LLM, smollm2_gguf

    return smollm2_gguf() if model == EMBEDDED_LLM else Path(model).expanduser()


def train_dtype(dtype: str, device: str) -> str:
    """Weights stay float32 on CPU (bf16 mixed precision is a TrainingArguments switch); GPUs load bf16."""
    if dtype != "auto":
        return dtype
    if device == "cpu":
        return "float32"
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"


def load_for_training(model: str, dtype: str = "auto") -> tuple[Any, Any, Path]:
    """(model, tokenizer, base path): a plain trainable model on CPU (or the GPU `accelerate` gives)."""
    import torch

    from xinstruct.llm.hf import load_causal_lm

    base = resolve_base(model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lm, tok, _ = load_causal_lm(base, dtype=train_dtype(dtype, device), device="cpu")
    plain_layout_for_base_models(tok)
    lm.train()
    return lm, tok, base


def load_tokenizer(model: str) -> Any:
    """The tokenizer training would use for `model` (as `load_for_training` sets it up), without the weights."""
    from transformers import AutoTokenizer

    from xinstruct.llm.hf import dequantized_gguf

    base = resolve_base(model)
    folder = dequantized_gguf(base) if base.suffix == ".gguf" else base
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    plain_layout_for_base_models(tok)
    return tok


def plain_layout_for_base_models(tokenizer: Any) -> None:
    """A base model has no chat template: it gets the plain one (saved with the trained model, so every backend
    prompts it as it learned)."""
    from xinstruct.train.formats import PLAIN_CHAT_TEMPLATE

    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE


def render_text(tokenizer: Any, prompt: list[dict[str, str]] | str,
                completion: list[dict[str, str]] | str) -> tuple[str, str]:
    """(prompt text, prompt + completion text) as training lays them out: the chat template for chat
    messages, plain text plus EOS for string prompts (the Alpaca format)."""
    if isinstance(prompt, str):
        return prompt, prompt + str(completion) + (tokenizer.eos_token or "")
    return (tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
            tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=False))


def completion_logprob(model: Any, tokenizer: Any, prompt: list[dict[str, str]] | str,
                       completion: list[dict[str, str]] | str) -> float:
    """Sum of log-probabilities of the completion's tokens given the prompt, as the chat template
    (or plain text, for string prompts) lays them out; the measure DPO moves."""
    import torch

    prefix, full = render_text(tokenizer, prompt, completion)
    if not full.startswith(prefix):
        raise ValueError("the chat template does not extend the prompt with the answer; cannot score completions")
    n = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    with torch.no_grad():
        logits = model(x).logits[0, :-1].float()
    logp = torch.log_softmax(logits, -1)
    targets = x[0, 1:]
    token_lp = logp.gather(-1, targets[:, None])[:, 0]
    return float(token_lp[n - 1 :].sum())
