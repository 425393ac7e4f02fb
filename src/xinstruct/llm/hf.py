"""Hugging Face `transformers`: any local checkpoint folder (or a GGUF file), CPU or GPU.

Requests are generated in padded batches (left padding) grouped by their parameters.
Sampling with `temperature > 0` seeds torch once per batch, so sampled outputs depend
on how requests were batched; greedy decoding (the default) does not.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

from xinstruct.llm.base import LLM, ChatRequest, Generation, GenerationParams, LLMError, cut_at_stop, json_prefix
from xinstruct.llm.embedded import cache_dir
from xinstruct.records import stable_hash


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        # bf16 generates about 2x faster than fp32 on the CPUs we measured, and is what GPUs want.
        return torch.bfloat16 if device == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[dtype]


def load_causal_lm(model: str | Path, *, gguf_file: str | None = None, dtype: str = "auto",
                   device: str | None = None) -> tuple[Any, Any, str]:
    """Load a local model and its tokenizer; a `.gguf` path is dequantised into a plain model (cached)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model)
    if path.suffix == ".gguf" and gguf_file is None:
        path, gguf_file = path.parent, path.name
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path} (xinstruct never downloads models; give a local folder)")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = resolve_dtype(dtype, device)
    if gguf_file:
        path = dequantized_gguf(path / gguf_file)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch_dtype)
    lm.to(device).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return lm, tok, device


def weights_fingerprint(path: Path) -> str:
    """What tells this checkpoint's weights from another's with the same folder name (e.g. two runs'
    `merged/`), for the request cache: the content hash `xinstruct train` records, or else the weight
    files' names, sizes and modification times (a re-saved model is then a cache miss, never a wrong hit)."""
    from xinstruct.train.model import read_model_meta

    recorded = read_model_meta(path).get("weights_sha256") if path.is_dir() else None
    if recorded:
        return str(recorded)[:12]
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
    return stable_hash([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files], n=12)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def dequantized_gguf(gguf: Path) -> Path:
    """A plain float32 checkpoint folder (model + tokenizer) made from a GGUF file, once per file.

    transformers flags a model loaded from GGUF as quantized, which blocks training and
    saving; rebuilding it from its config and loading the state dict gives a plain one.
    Converting takes ~30 s for SmolLM2-135M (mostly the tokenizer); loading the cached
    folder takes under a second.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    st = gguf.stat()
    folder = cache_dir() / "dequantized" / f"{gguf.stem}-{stable_hash(str(gguf.resolve()), st.st_size, st.st_mtime_ns)}"
    if (folder / "config.json").is_file():
        return folder
    kw: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
    tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, **kw)
    config = AutoConfig.from_pretrained(gguf.parent, **kw)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    lm = AutoModelForCausalLM.from_config(config)
    lm.load_state_dict(loaded.state_dict())
    del loaded
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    lm.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


Encoder = Callable[[str, bool], list[int]]  # (text, add the tokenizer's special tokens) -> token ids


def split_pair(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace onto the continuation, as lm-evaluation-harness does: BPE
    tokenizers attach a space to the word after it, so "... because" + " x" must score the token " x"."""
    n = len(context) - len(context.rstrip())
    return (context[:-n], context[-n:] + continuation) if n else (context, continuation)


def encode_pair(encode: Encoder, prefix_id: int, bos_text: str | None, context: str,
                continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) exactly as lm-eval's HF model makes them (`_encode_pair`, v0.4):
    the whole text and the context are encoded separately and the continuation is what the whole has
    beyond the context's length (exact when the continuation starts a token, as " word" does). Special
    tokens are added as the tokenizer does by default, unless the text already starts with BOS. An empty
    context (or one of whitespace only, where lm-eval fails) is the BOS token (EOS where there is none)."""
    context, continuation = split_pair(context, continuation)
    if context == "":
        cont = encode(continuation, False)
        return ([prefix_id], cont) if not cont or cont[0] != prefix_id else (cont[:1], cont[1:])
    add = not (bos_text and context.startswith(bos_text))
    whole, ctx = encode(context + continuation, add), encode(context, add)
    return ctx, whole[len(ctx) :]


def model_window(enc: tuple[list[int], list[int]], limit: int) -> list[int]:
    """The tokens fed to the model for one pair: all but the last, cut from the left to `limit`."""
    ctx, cont = enc
    if len(cont) > limit:
        raise ValueError(f"continuation of {len(cont)} tokens exceeds the context window ({limit})")
    return (ctx + cont)[-(limit + 1) :][:-1]


class TransformersLLM(LLM):
    backend = "transformers"

    def __init__(self, model: str | Path, *, gguf_file: str | None = None, dtype: str = "auto",
                 device: str | None = None, batch_size: int = 8):
        self.model, self.tokenizer, self.device = load_causal_lm(model, gguf_file=gguf_file, dtype=dtype,
                                                                 device=device)
        self.tokenizer.padding_side = "left"
        self.batch_size = batch_size
        name = Path(model).name + (f"/{gguf_file}" if gguf_file else "")
        self.model_id = f"{name}:{weights_fingerprint(Path(model))}:{str(self.model.dtype).removeprefix('torch.')}"

    @property
    def context_window(self) -> int | None:  # type: ignore[override]
        return getattr(self.model.config, "max_position_embeddings", None)

    def _encode(self, text: str, add_special: bool) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        return encode_pair(self._encode, prefix, tok.bos_token, context, continuation)

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return [ll for ll, _ in self.loglikelihood_details(pairs)]

    def loglikelihood_details(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(sum of the continuation's token log-probabilities, whether greedy decoding yields it) per
        (context, continuation), as lm-eval's HF model computes them: the same tokens, longest first in
        right-padded batches (no mask needed: padding only follows), log-softmax in float32. An empty
        continuation scores (0.0, True)."""
        return [(float(sum(lp)), greedy) for lp, greedy in self._scored(pairs)]

    def token_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[list[float]]:
        return [lp for lp, _ in self._scored(pairs)]

    def _scored(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[float], bool]]:
        enc = [self.encode_pair(c, x) for c, x in pairs]
        out: list[tuple[list[float], bool]] = [([], True)] * len(pairs)
        todo = sorted((i for i, e in enumerate(enc) if e[1]), key=lambda i: -len(enc[i][0]) - len(enc[i][1]))
        for s in range(0, len(todo), self.batch_size):
            part = todo[s : s + self.batch_size]
            for i, res in zip(part, self._score_batch([enc[i] for i in part]), strict=True):
                out[i] = res
        return out

    def _score_batch(self, enc: list[tuple[list[int], list[int]]]) -> list[tuple[list[float], bool]]:
        import torch

        rows = [model_window(e, self.context_window or 2048) for e in enc]
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(self.device)).logits
            results = []
            for r, (_, cont) in enumerate(enc):
                end = len(rows[r])
                logp = torch.log_softmax(logits[r, end - len(cont) : end].float(), dim=-1)
                target = torch.tensor(cont, device=logp.device)
                lps = logp.gather(-1, target[:, None])[:, 0].tolist()
                results.append((lps, bool((logp.argmax(-1) == target).all())))
        return results

    def chat_prompt(self, messages):  # type: ignore[no-untyped-def]
        return self.prompt_text(messages)

    def count_prompt_tokens(self, messages):  # type: ignore[no-untyped-def]
        return len(self.tokenizer(self.prompt_text(messages), add_special_tokens=False)["input_ids"])

    def prompt_text(self, messages: Sequence[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        out: list[Generation | None] = [None] * len(requests)
        groups: dict[GenerationParams, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.params, []).append(i)
        for params, idx in groups.items():
            for s in range(0, len(idx), self.batch_size):
                part = idx[s : s + self.batch_size]
                for i, g in zip(part, self._batch([requests[i] for i in part], params), strict=False):
                    out[i] = g
        return [g for g in out if g is not None]

    def _generate_kwargs(self, p: GenerationParams) -> dict[str, Any]:
        """`model.generate` settings for `p`; seeds torch when sampling."""
        import torch

        kw: dict[str, Any] = {"max_new_tokens": p.max_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if p.temperature > 0:
            torch.manual_seed(p.seed)
            kw.update(do_sample=True, temperature=p.temperature, top_p=p.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if p.stop:
            kw.update(stop_strings=list(p.stop), tokenizer=self.tokenizer)
        return kw

    def stream(self, request: ChatRequest) -> Generator[str, None, Generation]:
        """`model.generate` in a thread feeding a `TextIteratorStreamer`; the same decoding as a batch of
        one, so greedy answers equal `generate`'s. Closing the generator stops the decoding at the next
        token. Stop strings are cut from the stream even when they arrive split across pieces."""
        import threading

        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        p = request.params
        prefix = json_prefix(p.json_schema) if p.json_schema is not None else ""
        enc = self.tokenizer([self.prompt_text(request.messages) + prefix], return_tensors="pt",
                             add_special_tokens=False).to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel = threading.Event()

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):  # type: ignore[no-untyped-def]
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    result["ids"] = self.model.generate(**enc, **self._generate_kwargs(p), streamer=streamer,
                                                        stopping_criteria=StoppingCriteriaList([Cancelled()]))
            except Exception as e:  # noqa: BLE001 - reported to the caller below
                result["error"] = e
                streamer.end()

        worker = threading.Thread(target=run, name="hf-stream", daemon=True)
        worker.start()
        raw: list[str] = []

        def pieces() -> Iterator[str]:
            for piece in streamer:
                raw.append(piece)
                yield piece

        out: list[str] = []
        try:
            if prefix:
                out.append(prefix)
                yield prefix
            for piece in cut_at_stop(pieces(), p.stop):
                if piece:
                    out.append(piece)
                    yield piece
        finally:
            cancel.set()
            worker.join()
        if "error" in result:
            raise LLMError(f"transformers: {result['error']}") from result["error"]
        ids = result["ids"][0, enc["input_ids"].shape[1] :].tolist()
        eos = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        n = next((k for k, t in enumerate(ids) if t in eos), len(ids))
        stopped = any(s in "".join(raw) for s in p.stop)
        return Generation(text="".join(out), finish_reason="stop" if stopped or n < len(ids) else "length",
                          prompt_tokens=int(enc["input_ids"].shape[1]), completion_tokens=n)

    def _batch(self, reqs: list[ChatRequest], p: GenerationParams) -> list[Generation]:
        import torch

        prefix = json_prefix(p.json_schema) if p.json_schema is not None else ""
        texts = [self.prompt_text(r.messages) + prefix for r in reqs]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            gen = self.model.generate(**enc, **self._generate_kwargs(p))
        new = gen[:, enc["input_ids"].shape[1] :]
        results = []
        for row, mask in zip(new, enc["attention_mask"], strict=False):
            ids = row.tolist()
            eos = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
            n = next((k for k, t in enumerate(ids) if t in eos), len(ids))
            text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
            finish = "stop" if n < len(ids) else "length"
            for s in p.stop:  # stop strings are matched on tokens; cut at the string itself
                if s in text:
                    text, finish = text[: text.index(s)], "stop"
            results.append(Generation(text=prefix + text, finish_reason=finish, prompt_tokens=int(mask.sum()),
                                      completion_tokens=n))
        return results
