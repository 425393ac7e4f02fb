"""Batched decoding for `transformers` models that computes a shared prompt prefix once.

Prompts built for prefix reuse (system prompt and few-shot examples first, the document last) share
most of their tokens. `PrefixDecoder` finds the shared prefixes among a call's prompts sorted by their
tokens, then cuts batches from the prompts sorted by length (so the rows of a batch pad their keys and
values, read at every decoding step, little). In a batch, the rows of one prefix take its KV cache from a
small LRU of recent prefixes (computed once), repeat it, and run their suffixes after it in passes of
similar lengths, right-padded (no padding between a prefix and its suffix); each row's keys and values
are then laid right-aligned into one cache, and all rows decode together, finished rows dropping out.

Greedy decoding picks the same tokens as running each prompt alone, up to float rounding in the batched
matrix products. Sampling draws each row from its own generator seeded by its request's seed, so a
sampled answer does not depend on which other requests shared its batch.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Decoded:
    ids: list[int]  # the new tokens, without the end-of-sequence token
    finish_reason: str  # "stop" (end of sequence or a stop string) | "length"
    text: str


def common_prefix_len(rows: Sequence[Sequence[int]]) -> int:
    """The number of leading tokens all rows share."""
    if not rows:
        return 0
    first, n = rows[0], min(map(len, rows))
    for row in rows[1:]:
        k = 0
        while k < n and row[k] == first[k]:
            k += 1
        n = k
    return n


def forward(model: Any, cache: Any, **kw: Any) -> tuple[Any, Any]:
    """`model(**kw)` on new tokens after `cache` (None: none), the cache passed and read back under the name this
    transformers version uses (`cache` since 5.2x, `past_key_values` before); returns the output and its cache."""
    out = model(**kw, **{_cache_argument(type(model)): cache}, use_cache=True)
    new = getattr(out, "cache", None)
    return out, new if new is not None else out.past_key_values


@functools.cache
def _cache_argument(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def _preallocate(cache: Any, capacity: int) -> Any:
    """`cache` with each plain layer writing new tokens in place into a buffer of `capacity` positions.

    A DynamicCache concatenates every new token onto all of its keys and values, so each decoding step copies
    the whole cache: with eight rows of 1,600 tokens that is most of a CPU step's time. Layers of other kinds
    (sliding windows) and caches of transformers 4.x are left as they are."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:
        return cache
    if cache is None or not hasattr(cache, "layers"):
        return cache
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer and getattr(layer, "is_initialized", False):
            cache.layers[i] = _in_place_layer(DynamicLayer)(layer, capacity)
    return cache


_IN_PLACE: dict[type, type] = {}


def _in_place_layer(base: type) -> type:
    """A subclass of transformers' DynamicLayer (made once) whose keys/values are views into a preallocated buffer."""
    if base in _IN_PLACE:
        return _IN_PLACE[base]

    class InPlaceLayer(base):  # type: ignore[misc, valid-type]
        def __init__(self, layer: Any, capacity: int):
            self.__dict__.update(layer.__dict__)
            self._n = layer.keys.shape[-2]
            self._grow(max(capacity, self._n), layer.keys, layer.values)

        def _grow(self, capacity: int, keys: Any, values: Any) -> None:
            b, h, n, _ = keys.shape
            self._k = keys.new_empty((b, h, capacity, keys.shape[-1]))
            self._v = values.new_empty((b, h, capacity, values.shape[-1]))
            self._k[:, :, :n] = keys
            self._v[:, :, :n] = values
            self._n = n
            self.keys, self.values = self._k[:, :, :n], self._v[:, :, :n]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            n, k = self._n, key_states.shape[-2]
            if n + k > self._k.shape[2]:
                self._grow(2 * (n + k), self.keys, self.values)
            self._k[:, :, n : n + k] = key_states
            self._v[:, :, n : n + k] = value_states
            self._n = n + k
            self.keys, self.values = self._k[:, :, : n + k], self._v[:, :, : n + k]
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            self._k, self._v = self._k[indices], self._v[indices]
            self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]

        def batch_repeat_interleave(self, repeats: int) -> None:
            self._k = self._k.repeat_interleave(repeats, dim=0)
            self._v = self._v.repeat_interleave(repeats, dim=0)
            self.keys, self.values = self._k[:, :, : self._n], self._v[:, :, : self._n]

    _IN_PLACE[base] = InPlaceLayer
    return InPlaceLayer


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    """(keys, values) per layer of a DynamicCache, in transformers 4.x and 5.x."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))


class PrefixDecoder:
    """Decodes batches of token-id prompts on one causal LM, reusing shared prefixes' KV caches."""

    def __init__(self, model: Any, tokenizer: Any, device: str, *, batch_size: int = 16, min_prefix: int = 32,
                 cached_prefixes: int = 32, prefill_tokens: int = 8192):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.batch_size, self.min_prefix = max(1, batch_size), min_prefix
        self.prefill_tokens = prefill_tokens
        self._prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._max_prefixes = cached_prefixes
        eos = tokenizer.eos_token_id
        self.eos = {t for t in ([eos] if isinstance(eos, int) else list(eos or [])) if t is not None}
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self.eos |= set([gen_eos] if isinstance(gen_eos, int) else (gen_eos or []))
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos), 0)
        self.prompt_tokens_evaluated = 0  # prompt positions run through the model (after prefix reuse)
        self.prompt_tokens_total = 0  # prompt tokens of all requests

    def decode(self, prompts: Sequence[Sequence[int]], *, max_tokens: int, temperature: float = 0.0,
               top_p: float = 1.0, seeds: Sequence[int] | None = None, stop: Sequence[str] = ()) -> list[Decoded]:
        """One `Decoded` per prompt, in order."""
        # Shared prefixes are found among the prompts sorted by their tokens; batches are then cut from the
        # prompts sorted by length, so a batch's rows pad their keys and values (read at every step) little.
        # Rows of one prefix in a batch run their suffixes together after it; the LRU holds prefixes across batches.
        lists = [list(p) for p in prompts]
        by_tokens = sorted(range(len(lists)), key=lambda i: (lists[i], i))
        plen = dict(zip(by_tokens, self.prefix_lengths([lists[i] for i in by_tokens]), strict=True))
        order = sorted(range(len(lists)), key=lambda i: (len(lists[i]), lists[i], i))
        rows = [lists[i] for i in order]
        plens = [plen[i] for i in order]
        out: list[Decoded | None] = [None] * len(prompts)
        for s in range(0, len(order), self.batch_size):
            part = slice(s, s + self.batch_size)
            row_seeds = [seeds[i] if seeds is not None else 0 for i in order[part]]
            done = self._batch(rows[part], plens[part], max_tokens, temperature, top_p, row_seeds, stop)
            for i, d in zip(order[part], done, strict=True):
                out[i] = d
        return [d for d in out if d is not None]

    def prefix_lengths(self, rows: Sequence[Sequence[int]]) -> list[int]:
        """For rows sorted by their tokens: how many leading tokens of each come from a shared prefix (0: none).
        Consecutive rows form a group while they share at least 90% of the group's common prefix with its
        first row (and `min_prefix` tokens); a group of two or more shares its common prefix, computed once."""
        out = [0] * len(rows)
        i = 0
        while i < len(rows):
            j, shared = i + 1, None
            while j < len(rows):
                n = common_prefix_len([rows[i], rows[j]])
                if n < self.min_prefix or (shared is not None and n < 0.9 * shared):
                    break
                shared = n if shared is None else min(shared, n)
                j += 1
            if shared is not None:
                for r in range(i, j):
                    out[r] = min(shared, len(rows[r]) - 1)  # every row keeps a token to feed
            i = j
        return out

    # -- the prefix ------------------------------------------------------------------------------------------

    def _prefix_cache(self, prefix: list[int]) -> Any:
        """A KV cache (batch of one) holding `prefix`, from the LRU where a cached prefix covers part of it."""
        import torch

        key = tuple(prefix)
        if key in self._prefixes:
            self._prefixes.move_to_end(key)
            return self._prefixes[key]
        best: tuple[int, ...] = ()
        for k in self._prefixes:
            if len(best) < len(k) <= len(key) and key[: len(k)] == k:
                best = k
        cache = copy.deepcopy(self._prefixes[best]) if best else None
        rest = prefix[len(best) :]
        with torch.inference_mode():
            out = self._forward(input_ids=torch.tensor([rest], device=self.device), cache=cache)
        self.prompt_tokens_evaluated += len(rest)
        self._prefixes[key] = out
        while len(self._prefixes) > self._max_prefixes:
            self._prefixes.popitem(last=False)
        return out

    def _prefill(self, prefix: list[int], suffixes: list[list[int]]) -> list[list[tuple[Any, Any]]]:
        """Keys and values of `prefix + suffix` for each suffix, per layer (views of shape (1, heads, tokens, dim)):
        the prefix from the LRU, the suffixes in one pass after it, right-padded (real tokens never attend to
        the padding after them, and its positions are dropped)."""
        import torch

        base = self._prefix_cache(prefix) if prefix else None
        p, width = len(prefix), max(map(len, suffixes))
        if width == 0:
            return [[(k[:1, :, :p], v[:1, :, :p]) for k, v in _layers(base)] for _ in suffixes]
        cache = copy.deepcopy(base) if base is not None else None
        if cache is not None and len(suffixes) > 1:
            cache.batch_repeat_interleave(len(suffixes))
        ids = torch.full((len(suffixes), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(suffixes), p + width), dtype=torch.long)
        mask[:, :p] = 1
        for j, suf in enumerate(suffixes):
            ids[j, : len(suf)] = torch.tensor(suf, dtype=torch.long)
            mask[j, p : p + len(suf)] = 1
        pos = torch.arange(p, p + width).expand(len(suffixes), width)
        with torch.inference_mode():
            cache = self._forward(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                  position_ids=pos.to(self.device), cache=cache)
        self.prompt_tokens_evaluated += sum(map(len, suffixes))
        layers = _layers(cache)
        return [[(k[j : j + 1, :, : p + len(suf)], v[j : j + 1, :, : p + len(suf)]) for k, v in layers]
                for j, suf in enumerate(suffixes)]

    def _chunks(self, lengths: dict[int, int]) -> list[list[int]]:
        """Rows (keys of `lengths`: row -> suffix tokens) cut into prefill passes of similar lengths: a pass
        holds at most `prefill_tokens` padded tokens (or one row) and pads at most a fifth of them."""
        order = sorted(lengths, key=lambda r: lengths[r])
        out: list[list[int]] = []
        for r in order:
            cur = out[-1] if out else None
            if cur is not None:
                padded = (len(cur) + 1) * lengths[r]
                if padded <= self.prefill_tokens and padded <= 1.25 * (sum(lengths[x] for x in cur) + lengths[r]) + 8:
                    cur.append(r)
                    continue
            out.append([r])
        return out

    def _batch_cache(self, rows: list[list[int]], plens: list[int]) -> tuple[Any, int]:
        """A KV cache for the batch holding every prompt token but the last of each row, right-aligned to the
        longest (the gap on the left masked), and its width. Rows that share a prefix run their suffixes in
        passes of similar lengths after it (no padding between a prefix and its suffix)."""
        heads = [len(r) - 1 for r in rows]
        width = max(heads)
        if width == 0:
            return None, 0
        groups: dict[tuple[int, ...], list[int]] = {}
        for r, (row, p) in enumerate(zip(rows, plens, strict=True)):
            if heads[r]:
                groups.setdefault(tuple(row[:p]), []).append(r)
        kv: dict[int, list[tuple[Any, Any]]] = {}
        for prefix, members in groups.items():
            for chunk in self._chunks({r: heads[r] - len(prefix) for r in members}):
                got = self._prefill(list(prefix), [rows[r][len(prefix) : -1] for r in chunk])
                kv.update(zip(chunk, got, strict=True))
        from transformers import DynamicCache

        like = next(iter(kv.values()))
        cache = DynamicCache()
        for layer, (k0, v0) in enumerate(like):
            keys = k0.new_zeros((len(rows), k0.shape[1], width, k0.shape[3]))
            values = v0.new_zeros((len(rows), v0.shape[1], width, v0.shape[3]))
            for r, layers in kv.items():
                k, v = layers[layer]
                keys[r, :, width - k.shape[2] :] = k[0]
                values[r, :, width - v.shape[2] :] = v[0]
            cache.update(keys, values, layer)
        return cache, width

    # -- one batch -------------------------------------------------------------------------------------------

    def _batch(self, rows: list[list[int]], plens: list[int], max_tokens: int, temperature: float, top_p: float,
               seeds: list[int], stop: Sequence[str]) -> list[Decoded]:
        import torch

        n = len(rows)
        self.prompt_tokens_total += sum(map(len, rows))
        cache, width = self._batch_cache(rows, plens)
        # The first step feeds each row's last prompt token after the cache of the others.
        ids = torch.tensor([[r[-1]] for r in rows], dtype=torch.long)
        mask = torch.zeros((n, width + 1), dtype=torch.long)
        for r, row in enumerate(rows):
            mask[r, width - (len(row) - 1) :] = 1
        pos = torch.tensor([[len(r) - 1] for r in rows], dtype=torch.long)
        self.prompt_tokens_evaluated += n
        if cache is not None:
            cache = _preallocate(cache, width + 1 + max_tokens)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds] if temperature > 0 else None
        new: list[list[int]] = [[] for _ in range(n)]
        finish = ["length"] * n
        live = list(range(n))  # original row of each row still in the batch
        ids, mask, pos = ids.to(self.device), mask.to(self.device), pos.to(self.device)
        with torch.inference_mode():
            for step in range(max_tokens):
                logits, cache = self._forward(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache,
                                              logits=True)
                if step == 0 and width == 0:  # no prompt cache to preallocate before: from here on, in place
                    cache = _preallocate(cache, 1 + max_tokens)
                logits = logits[:, -1, :].float()
                chosen = self._choose(logits, temperature, top_p, [gens[r] for r in live] if gens else None)
                keep = []
                for j, (r, tok) in enumerate(zip(live, chosen, strict=True)):
                    if tok in self.eos:
                        finish[r] = "stop"
                        continue
                    new[r].append(tok)
                    if stop and self._hit_stop(new[r], stop):
                        finish[r] = "stop"
                        continue
                    keep.append(j)
                if not keep or step == max_tokens - 1:
                    break
                last = torch.tensor([chosen[j] for j in keep], dtype=torch.long, device=self.device)[:, None]
                if len(keep) < len(live):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    mask, pos = mask[index], pos[index]
                    live = [live[j] for j in keep]
                ids = last
                mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=self.device)], dim=1)
                pos = pos[:, -1:] + 1
        results = []
        for r in range(n):
            text = self.tokenizer.decode(new[r], skip_special_tokens=True)
            for s in stop:  # stop strings are matched on decoded text; cut at the string itself
                if s in text:
                    text, finish[r] = text[: text.index(s)], "stop"
            results.append(Decoded(ids=new[r], finish_reason=finish[r], text=text))
        return results

    def _forward(self, *, cache: Any, logits: bool = False, **kw: Any) -> Any:
        """Run the model on new tokens after `cache`; returns the new cache (and the last position's logits)."""
        out, new = forward(self.model, cache, **kw, logits_to_keep=1)
        return (out.logits, new) if logits else new

    def _hit_stop(self, ids: list[int], stop: Sequence[str]) -> bool:
        tail = self.tokenizer.decode(ids[-16:], skip_special_tokens=True)
        return any(s in tail for s in stop)

    @staticmethod
    def _choose(logits: Any, temperature: float, top_p: float, gens: list[Any] | None) -> list[int]:
        import torch

        if temperature <= 0 or gens is None:
            return logits.argmax(-1).tolist()
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1.0:
            sorted_p, idx = probs.sort(-1, descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p > top_p
            sorted_p[drop] = 0.0
            probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
        return [int(torch.multinomial(probs[j].cpu(), 1, generator=g)) for j, g in enumerate(gens)]
