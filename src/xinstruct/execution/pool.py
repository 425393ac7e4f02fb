"""The model pool: each distinct model loaded once (its weights on its first cache miss), behind the request cache, and
shared by the stages of a run; each stage sees it through a `StageLLM` that counts the stage's own calls.
Every stage family opens its models this way (`ModelPool.open`), so one place sets up and tears down the
request cache and the engines."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from xinstruct.config import to_dict
from xinstruct.llm import LLM, CachedLLM, ModelConfig, RequestCache
from xinstruct.llm.cache import Cache
from xinstruct.records import stable_hash


class ModelPool:
    """Loads each distinct model once (on its first cache miss) and shares it between stages."""

    def __init__(self, cache: Cache, llm: LLM | None = None, by_role: dict[str, LLM | None] | None = None):
        """`llm` replaces loading any model, `by_role` the model of a role (tests, or engines built elsewhere)."""
        self.cache, self.llm = cache, llm
        self.by_role = {k: v for k, v in (by_role or {}).items() if v is not None}
        self._loaded: dict[str, CachedLLM] = {}
        self._identities: list[dict[str, Any]] = []  # of the models loaded, in load order (kept after close)
        self._owns_cache = False

    @classmethod
    def open(cls, cache: str | Path | None, out: str | Path, llm: LLM | None = None,
             by_role: dict[str, LLM | None] | None = None) -> ModelPool:
        """A pool over the request cache file `cache` (None: OUT/cache/llm.sqlite), closed with the pool."""
        pool = cls(RequestCache(cache or Path(out) / "cache" / "llm.sqlite"), llm, by_role)
        pool._owns_cache = True
        return pool

    def __enter__(self) -> ModelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def use_cache(self, cache: Cache) -> None:
        """Answer every call from now on through `cache` (the Ray executor's per-shard cache files): the engines
        already loaded stay loaded. The caller closes the cache it replaces, unless `open` made it."""
        if self._owns_cache:
            self.cache.close()
            self._owns_cache = False
        self.cache = cache
        for m in self._loaded.values():
            m.cache = cache

    def given(self, role: str | None) -> LLM | None:
        """The engine given for `role` (or for every role), if any: it replaces loading the model."""
        return self.by_role.get(role or "") or self.llm

    def get(self, cfg: ModelConfig, role: str | None = None) -> CachedLLM:
        """The model of `cfg` behind the request cache. Where its backend can load a tokenizer alone, its weights
        load on the first call the cache cannot answer (`LazyLLM`), so a run whose calls are all cached loads none;
        `identities` lists the models whose weights loaded."""
        key = stable_hash(to_dict(cfg), role if role in self.by_role else None)
        if key not in self._loaded:
            from xinstruct.llm import LazyLLM, load_llm, load_tokenizer

            def loaded(engine: LLM) -> None:
                self._identities.append({"backend": engine.backend, "model_id": engine.model_id,
                                         "config": to_dict(cfg)})

            given = self.given(role)
            light = load_tokenizer(cfg) if given is None else None
            engine: LLM
            if light is not None:
                engine = LazyLLM(light, lambda: load_llm(cfg), on_load=loaded)
            else:
                engine = given or load_llm(cfg)
                loaded(engine)
            self._loaded[key] = CachedLLM(engine, self.cache)
        return self._loaded[key]

    def stage_llm(self, cfg: ModelConfig, role: str | None = None) -> StageLLM:
        return StageLLM(self, cfg, role)

    def identities(self) -> list[dict[str, Any]]:
        """The models loaded (also after `close`, which releases them)."""
        return list(self._identities)

    def close(self) -> None:
        """Release every loaded engine (and the request cache, if `open` made it)."""
        try:
            for m in self._loaded.values():
                m.close()
        finally:
            self._loaded.clear()
            if self._owns_cache:
                self.cache.close()


class StageLLM(LLM):
    """A stage's view of a pooled model: loaded on the first cache miss, with the stage's own call counts."""

    COUNTS = ("requests", "scored", "cache_hits", "generated", "prompt_tokens", "completion_tokens")  # of `stats`

    def __init__(self, pool: ModelPool, cfg: ModelConfig, role: str | None = None):
        self._pool, self._cfg, self._role = pool, cfg, role
        self._m: CachedLLM | None = None
        self._lock = threading.Lock()  # stages may call from several threads (refinement's overlapping rounds)
        self.requests = self.cache_hits = self.prompt_tokens = self.completion_tokens = self.scored = 0

    @property  # type: ignore[override]
    def max_batch(self) -> int | None:
        """The backend's, known from the setting before the model loads (a resumed run may never load it)."""
        if self._m is not None:
            return self._m.max_batch
        given = self._pool.given(self._role)
        if given is not None:
            return given.max_batch
        from xinstruct.llm.backends import spec

        return spec(self._cfg.resolved_backend()).max_batch(self._cfg.options)

    def _get(self) -> CachedLLM:
        with self._lock:
            return self._load()

    def _load(self) -> CachedLLM:
        if self._m is None:
            self._m = self._pool.get(self._cfg, self._role)
            self.backend, self.model_id = self._m.backend, self._m.model_id
            self.supports_json_schema = self._m.supports_json_schema
        return self._m

    def generate(self, requests):  # type: ignore[no-untyped-def]
        gens = self._get().generate(requests) if requests else []
        with self._lock:
            self.requests += len(requests)
            for g in gens:
                self.cache_hits += g.cached
                self.prompt_tokens += g.prompt_tokens
                self.completion_tokens += g.completion_tokens
        return gens

    def count_prompt_tokens(self, messages):  # type: ignore[no-untyped-def]
        return self._get().count_prompt_tokens(messages)

    def first_tokens(self, text: str, n: int) -> str | None:
        return self._get().first_tokens(text, n)

    def token_logprobs(self, pairs):  # type: ignore[no-untyped-def]
        return self._score(self._get().token_logprobs, pairs)

    def loglikelihood(self, pairs):  # type: ignore[no-untyped-def]
        return self._score(self._get().loglikelihood, pairs)

    def _score(self, score, pairs):  # type: ignore[no-untyped-def]
        """A cached scoring call, counted as scored pairs and cache hits."""
        m = self._get()
        hits = m.hits
        out = score(pairs)
        self.scored += len(pairs)
        self.cache_hits += m.hits - hits
        return out

    def chat_prompt(self, messages):  # type: ignore[no-untyped-def]
        return self._get().chat_prompt(messages)

    @property
    def context_window(self) -> int | None:  # type: ignore[override]
        return self._get().context_window

    def stats(self) -> dict[str, Any]:
        return {"loaded": self._m is not None and getattr(self._m.llm, "loaded", True), "requests": self.requests,
                "scored": self.scored,
                "cache_hits": self.cache_hits,
                "generated": self.requests + self.scored - self.cache_hits, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}
