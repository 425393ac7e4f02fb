"""Hugging Face `transformers`: any local checkpoint folder (or a GGUF file), CPU or GPU.

Requests are generated in batches that compute their shared prompt prefix once (`hf_decode`), grouped
by their parameters. Sampling with `temperature > 0` draws each request from its own generator seeded by
its `seed`, so sampled outputs do not depend on how requests were batched. dtype "auto" is bf16 on GPUs and
on CPUs that compute bf16 natively, fp32 on other CPUs (where bf16 is several times slower).
"""

from __future__ import annotations

import functools
import inspect
import os
import shutil
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from xinstruct.llm.artifacts import weights_fingerprint
from xinstruct.llm.backends import BackendSpec
from xinstruct.llm.base import LLM, ChatRequest, Generation, GenerationParams, LLMError, cut_at_stop, json_prefix
from xinstruct.llm.embedded import cache_dir
from xinstruct.llm.hf_decode import forward
from xinstruct.records import stable_hash


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). Without it torch emulates bf16 matrix
    products: measured on an AVX2-only AMD EPYC, a 576x1536 bf16 product ran at 16 GFLOP/s against 119 in fp32,
    and SmolLM2-135M evaluated prompts at 52 tokens/s in bf16 against 334 in fp32."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


@functools.cache
def batches_faster_than_llamacpp() -> bool:
    """Whether batched decoding here beats llama.cpp: on a GPU, or on a CPU with native bf16 (see
    `ModelConfig.for_batches`). Asked once per process."""
    if cpu_has_bf16():
        return True
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@functools.cache
def transformers_options() -> frozenset[str]:
    """The settings `TransformersLLM` takes (`ModelConfig.options` keys)."""
    return frozenset(inspect.signature(TransformersLLM).parameters) - {"model"}


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        # bf16 evaluates prompts about 2x faster than fp32 on CPUs with AVX512-BF16 and is what GPUs want;
        # on other CPUs it is several times slower, so fp32 there.
        if str(device).startswith("cpu"):
            return torch.bfloat16 if cpu_has_bf16() else torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[dtype]


def first_tokens(tokenizer: Any, text: str, n: int) -> str:
    """`text` cut to its first `n` tokens of `tokenizer` (whole when shorter; a character split by the cut is
    dropped)."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) <= n:
        return text
    return tokenizer.decode(ids[:n], skip_special_tokens=True).rstrip("\ufffd")


def checkpoint_folder(model: str | Path, gguf_file: str | None = None) -> Path:
    """The plain checkpoint folder transformers loads for `model`: the folder itself, or a GGUF's dequantised copy
    (made once, cached)."""
    path = Path(model)
    if path.suffix == ".gguf" and gguf_file is None:
        path, gguf_file = path.parent, path.name
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path} (xinstruct never downloads models; give a local folder)")
    return dequantized_gguf(path / gguf_file) if gguf_file else path


def load_causal_lm(model: str | Path, *, gguf_file: str | None = None, dtype: str = "auto",
                   device: str | None = None) -> tuple[Any, Any, str]:
    """Load a local model and its tokenizer; a `.gguf` path is dequantised into a plain model (cached)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = checkpoint_folder(model, gguf_file)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = resolve_dtype(dtype, device)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with quiet_loading():
        lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch_dtype)
    lm.to(device).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return lm, tok, device


@contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' "Loading weights" progress bars off while a model loads (a run's own bars stay readable);
    the setting is restored after."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def dequantized_gguf(gguf: Path) -> Path:
    """A plain float32 checkpoint folder (model + tokenizer) made from a GGUF file, once per file.

    transformers flags a model loaded from GGUF as quantized, which blocks training and
    saving; rebuilding it from its config and loading the state dict gives a plain one.
    Converting takes ~30 s for SmolLM2-135M (mostly the tokenizer); loading the cached
    folder takes under a second. The GGUF's chat template is carried over when transformers' tokenizer
    conversion drops it (it did for GGUF files that `train` exports, on transformers 5.25).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    st = gguf.stat()
    # "2": folders converted before the chat template was carried over are converted again
    key = stable_hash(str(gguf.resolve()), st.st_size, st.st_mtime_ns, 2)
    folder = cache_dir() / "dequantized" / f"{gguf.stem}-{key}"
    if (folder / "config.json").is_file():
        return folder
    kw: dict[str, Any] = {"gguf_file": gguf.name, "local_files_only": True}
    tok = AutoTokenizer.from_pretrained(gguf.parent, **kw)
    if not getattr(tok, "chat_template", None):
        tok.chat_template = gguf_chat_template(gguf)
    with quiet_loading():
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


def gguf_chat_template(gguf: Path) -> str | None:
    """The chat template a GGUF file carries in its metadata (`tokenizer.chat_template`), or None."""
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("tokenizer.chat_template")
    return bytes(field.parts[field.data[0]]).decode("utf-8") if field is not None and field.data else None


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


def length_batches(lengths: Sequence[int], budget: int, *, max_items: int | None = None,
                   full: int = 128) -> list[list[int]]:
    """Indexes into `lengths`, longest first, cut into batches of at most `budget` padded tokens and
    `max_items` items (a longer item goes alone). A batch that holds `full` padded tokens already ends
    before an item more than 10% shorter than its first: padding stays small while each pass is still
    large enough for the matrix products to run at speed (on a CPU, from about 128 rows)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    cap = max_items or len(order)
    out, start = [], 0
    while start < len(order):
        top, end = lengths[order[start]], start + 1
        while (end < len(order) and end - start < cap and (end - start + 1) * top <= budget
               and ((end - start) * top < full or 10 * lengths[order[end]] >= 9 * top)):
            end += 1
        out.append(order[start:end])
        start = end
    return out


@dataclass
class _Row:
    """One (context, continuation) to score: `prefix` is the tokens before its first scored position
    (what its sibling choices share), `suffix` the scored positions' inputs, `targets` the continuation."""

    index: int
    prefix: tuple[int, ...]
    suffix: list[int]
    targets: list[int]
    offset: int = 0  # where the prefix's keys and values start in the shared store


class TransformersLLM(LLM):
    backend = "transformers"

    def __init__(self, model: str | Path, *, gguf_file: str | None = None, dtype: str = "auto",
                 device: str | None = None, batch_size: int = 16, tokenizer_only: bool = False):
        """`tokenizer_only`: the tokenizer, the config and the identity without the weights (what a run whose calls
        are all in the request cache needs); generating or scoring then fails."""
        if tokenizer_only:
            import torch
            from transformers import AutoConfig, AutoTokenizer

            folder = checkpoint_folder(model, gguf_file)
            self.model, self.device = None, device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            if self.tokenizer.pad_token is None:
                self.tokenizer.pad_token = self.tokenizer.eos_token
            self._config = AutoConfig.from_pretrained(folder, local_files_only=True)
            torch_dtype = resolve_dtype(dtype, self.device)
        else:
            self.model, self.tokenizer, self.device = load_causal_lm(model, gguf_file=gguf_file, dtype=dtype,
                                                                     device=device)
            self._config = self.model.config
            torch_dtype = self.model.dtype
        self._decoder: Any = None
        self.tokenizer.padding_side = "left"
        self.batch_size = batch_size
        name = Path(model).name + (f"/{gguf_file}" if gguf_file else "")
        self.model_id = f"{name}:{weights_fingerprint(Path(model))}:{str(torch_dtype).removeprefix('torch.')}"

    @property
    def context_window(self) -> int | None:  # type: ignore[override]
        return getattr(self._config, "max_position_embeddings", None)

    def _encode(self, text: str, add_special: bool) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=add_special)

    def first_tokens(self, text: str, n: int) -> str | None:
        return first_tokens(self.tokenizer, text, n)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        return encode_pair(self._encode, prefix, tok.bos_token, context, continuation)

    # Scoring passes hold up to this many padded tokens (`length_batches`), whatever `batch_size` says: one
    # pass's logits (tokens x vocabulary, float32) stay near 0.6 GB for a 150k vocabulary. Prefixes' keys and
    # values are kept for 4x as many tokens at once.
    score_tokens = 1024

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return [ll for ll, _ in self.loglikelihood_details(pairs)]

    def loglikelihood_details(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(sum of the continuation's token log-probabilities, whether greedy decoding yields it) per
        (context, continuation), as lm-eval's HF model computes them: the same tokens and window, the
        log-softmax in float32. Pairs that share the tokens before their first scored position (the choices
        of one question) run them once: their keys and values then serve each continuation's pass, which
        computes logits only where they are scored. Passes are sorted by length across all `pairs`, so give
        many at once (measured on 2 AVX2 cores, SmolLM2-135M, fp32: the packaged XCOPA fixture, 84 pairs,
        scored 1.5x faster than lm-eval 0.4.13's HF model; 3-shot, 2.2x). An empty continuation scores (0.0, True)."""
        return [(float(sum(lp)), greedy) for lp, greedy in self._scored(pairs)]

    def token_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[list[float]]:
        return [lp for lp, _ in self._scored(pairs)]

    def _scored(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[float], bool]]:
        out: list[tuple[list[float], bool]] = [([], True)] * len(pairs)
        rows = []
        for i, (ctx, cont) in enumerate(self.encode_pair(c, x) for c, x in pairs):
            if cont:
                window = model_window((ctx, cont), self.context_window or 2048)
                cut = len(window) - len(cont)  # the last context token predicts the first continuation token
                rows.append(_Row(i, tuple(window[:cut]), window[cut:], cont))
        for part in self._prefix_parts(rows):
            for row, res in self._score_part(part):
                out[row.index] = res
        return out

    def _prefix_parts(self, rows: list[_Row]) -> Iterator[list[_Row]]:
        """Rows cut into parts whose distinct prefixes hold at most 4 * score_tokens tokens, longest
        prefixes first; the rows of one prefix stay together."""
        groups: dict[tuple[int, ...], list[_Row]] = {}
        for row in rows:
            groups.setdefault(row.prefix, []).append(row)
        part: list[_Row] = []
        held = 0
        for prefix in sorted(groups, key=len, reverse=True):
            if part and held + len(prefix) > 4 * self.score_tokens:
                yield part
                part, held = [], 0
            part += groups[prefix]
            held += len(prefix)
        if part:
            yield part

    def _score_part(self, rows: list[_Row]) -> Iterator[tuple[_Row, tuple[list[float], bool]]]:
        import torch

        prefixes = list(dict.fromkeys(r.prefix for r in rows if r.prefix))
        with torch.inference_mode():
            store = self._prefix_store(prefixes) if prefixes else ([], {})
            if store is None:  # the model's cache is not plain keys and values: score whole rows
                rows = [_Row(r.index, (), [*r.prefix, *r.suffix], r.targets) for r in rows]
                store = ([], {})
            layers, offsets = store
            for r in rows:
                r.offset = offsets.get(r.prefix, 0)
            widest = max(len(r.prefix) for r in rows)
            batches = length_batches([len(r.suffix) for r in rows], self.score_tokens,
                                     max_items=max(1, 4 * self.score_tokens // max(widest, 1)))
            for batch in batches:
                part = [rows[k] for k in batch]
                yield from zip(part, self._score_suffixes(part, layers), strict=True)

    def _prefix_store(self, prefixes: list[tuple[int, ...]]) -> tuple[list[tuple[Any, Any]], dict[Any, int]] | None:
        """Run each prefix once, in right-padded batches through the model body (no logits). Returns, per
        layer, keys and values of all batches flattened to [slot, head, dim], and each prefix's first slot;
        None where the cache holds other than one key and value per token and layer (sliding windows that
        crop, recurrent layers)."""
        import torch

        pad = self.tokenizer.pad_token_id or 0
        keys: list[list[Any]] = []  # per layer, per batch: [slot, head, dim]
        values: list[list[Any]] = []
        offsets: dict[tuple[int, ...], int] = {}
        slots = 0
        for batch in length_batches([len(p) for p in prefixes], self.score_tokens):
            width = len(prefixes[batch[0]])
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            for r, k in enumerate(batch):
                ids[r, : len(prefixes[k])] = torch.tensor(prefixes[k], dtype=torch.long)
                offsets[prefixes[k]] = slots + r * width
            slots += len(batch) * width
            _, cache = forward(self.model.base_model, None, input_ids=ids.to(self.device))
            kv = [(getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in cache.layers]
            if any(not torch.is_tensor(k) or k.dim() != 4 or k.shape[2] != width for k, _ in kv):
                return None
            keys, values = keys or [[] for _ in kv], values or [[] for _ in kv]
            for n, (k, v) in enumerate(kv):
                keys[n].append(k.transpose(1, 2).flatten(0, 1))
                values[n].append(v.transpose(1, 2).flatten(0, 1))
        return [(torch.cat(k), torch.cat(v)) for k, v in zip(keys, values, strict=True)], offsets

    def _score_suffixes(self, rows: list[_Row], layers: list[tuple[Any, Any]]) -> list[tuple[list[float], bool]]:
        """One pass over the rows' suffixes after their prefixes' keys and values, gathered from `layers`
        left-padded (positions are counted from each prefix's length, the padding masked out), suffixes
        right-padded; the log-softmax in float32 only at the scored positions."""
        import torch
        from transformers import DynamicCache

        pad = self.tokenizer.pad_token_id or 0
        past, width = max(len(r.prefix) for r in rows), max(len(r.suffix) for r in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        scored = torch.zeros((len(rows), width), dtype=torch.bool)
        for r, row in enumerate(rows):
            ids[r, : len(row.suffix)] = torch.tensor(row.suffix, dtype=torch.long)
            scored[r, len(row.suffix) - len(row.targets) : len(row.suffix)] = True
        kw: dict[str, Any] = {"input_ids": ids.to(self.device)}
        if past:
            slot = torch.zeros((len(rows), past), dtype=torch.long)
            mask = torch.zeros((len(rows), past + width), dtype=torch.long)
            for r, row in enumerate(rows):
                n = len(row.prefix)
                slot[r, past - n :] = torch.arange(row.offset, row.offset + n)
                mask[r, past - n : past + len(row.suffix)] = 1
            slot = slot.flatten().to(self.device)
            kv = [(k.index_select(0, slot).unflatten(0, (len(rows), past)).transpose(1, 2),
                   v.index_select(0, slot).unflatten(0, (len(rows), past)).transpose(1, 2)) for k, v in layers]
            positions = torch.tensor([len(r.prefix) for r in rows])[:, None] + torch.arange(width)
            kw.update(attention_mask=mask.to(self.device), position_ids=positions.to(self.device),
                      cache=DynamicCache(kv, config=self.model.config))
        logits = forward(self.model, kw.pop("cache", None), **kw)[0].logits
        # [scored positions, vocabulary]; log_softmax as lm-eval (logsumexp rounds differently, by ~3e-5)
        logp = torch.log_softmax(logits[scored.to(logits.device)].float(), dim=-1)
        target = torch.tensor([t for r in rows for t in r.targets], device=logp.device)
        hits = (logp.argmax(-1) == target).tolist()
        lps, results, start = logp.gather(-1, target[:, None])[:, 0].tolist(), [], 0
        for row in rows:
            end = start + len(row.targets)
            results.append((lps[start:end], all(hits[start:end])))
            start = end
        return results

    def chat_prompt(self, messages):  # type: ignore[no-untyped-def]
        return self.prompt_text(messages)

    def count_prompt_tokens(self, messages):  # type: ignore[no-untyped-def]
        return len(self.tokenizer(self.prompt_text(messages), add_special_tokens=False)["input_ids"])

    def prompt_text(self, messages: Sequence[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        """All of `requests` through the prefix-sharing batched decoder (`hf_decode.PrefixDecoder`): prompts are
        sorted by their tokens and decoded `batch_size` at a time, each batch's shared prefix computed once.
        Requests that differ only in their seed share batches: each sampled row has its own generator."""
        out: list[Generation | None] = [None] * len(requests)
        groups: dict[GenerationParams, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(r.params.replace(seed=0), []).append(i)
        for p, idx in groups.items():
            prefix = json_prefix(p.json_schema) if p.json_schema is not None else ""
            prompts = [self.tokenizer(self.prompt_text(requests[i].messages) + prefix,
                                      add_special_tokens=False)["input_ids"] for i in idx]
            decoded = self.decoder.decode(prompts, max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p,
                                          seeds=[requests[i].params.seed for i in idx], stop=p.stop)
            for i, ids, d in zip(idx, prompts, decoded, strict=True):
                out[i] = Generation(text=prefix + d.text, finish_reason=d.finish_reason, prompt_tokens=len(ids),
                                    completion_tokens=len(d.ids))
        return [g for g in out if g is not None]

    @property
    def decoder(self) -> Any:
        if self._decoder is None:
            from xinstruct.llm.hf_decode import PrefixDecoder

            self._decoder = PrefixDecoder(self.model, self.tokenizer, self.device, batch_size=self.batch_size)
        return self._decoder

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


SPEC = BackendSpec(
    "transformers", load=lambda model, cfg: TransformersLLM(model, **cfg.options), shard_size=256, judge_batch=64,
    load_tokenizer=lambda model, cfg: TransformersLLM(model, **{**cfg.options, "tokenizer_only": True}),
    # float32 for exact scores: "auto" is bf16 on CPUs that compute it natively, which flips close choices
    exact_scoring_options=MappingProxyType({"dtype": "float32"}), gpu=True, runs_gguf=True)
