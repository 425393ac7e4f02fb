"""The curate job: prepare -> generate, resumable at every point.

Layout of a run folder:

    OUT/samples.jsonl      the records (cross-lingual pairs with provenance)
    OUT/rejects.jsonl      every dropped document or chunk, with stage and reason
    OUT/manifest.json      versions, config, counts per stage, LLM call statistics
    OUT/cache/llm.sqlite   the request cache: a finished LLM call is never made twice
    OUT/work/prepare-KEY/  prepared chunks, written once (KEY hashes input + settings)
    OUT/work/generate-KEY/ one file per finished shard of generated records

A stage's folder is keyed by a hash of everything its output depends on, so changing a
setting redoes only the stages it affects. Every file is written atomically, so a run
killed at any point and started again skips finished shards, answers the unfinished
shard's finished calls from the cache, and ends with the same output.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from xinstruct import __version__
from xinstruct.config import CurateConfig, to_dict
from xinstruct.curate.generate import InstructionGenerator
from xinstruct.curate.prepare import prepare
from xinstruct.curate.readers import read_documents
from xinstruct.io import atomic_write, dumps, read_jsonl, read_records
from xinstruct.llm import LLM, CachedLLM, ModelConfig, RequestCache
from xinstruct.records import Record, Reject, stable_hash

log = logging.getLogger(__name__)

PREPARE_FORMAT = "1"  # bump when prepare's output for the same input and settings changes
GENERATE_FORMAT = "1"


def sample_corpus() -> Path:
    """The small multilingual corpus that ships in the package (40 documents, 10 languages)."""
    return Path(str(resources.files("xinstruct.data.corpus") / "sample.jsonl"))


def input_fingerprint(path: Path) -> list[Any]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(f.relative_to(path) if path.is_dir() else f.name), f.stat().st_size, f.stat().st_mtime_ns)
            for f in files]


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "xinstruct": __version__}
    for pkg in ("llama-cpp-python", "transformers", "torch", "vllm", "httpx", "py3langid", "datasketch",
                "datasets", "pyarrow"):
        with suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


@dataclass
class StageStats:
    seconds: float = 0.0
    resumed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Counting:
    """Counts the items of an iterator as they pass."""

    def __init__(self, it: Iterable[Any]):
        self.it, self.n = iter(it), 0

    def __iter__(self) -> Iterator[Any]:
        for x in self.it:
            self.n += 1
            yield x


def run_prepare(cfg: CurateConfig, src: Path, work: Path) -> tuple[Path, dict[str, Any], StageStats]:
    key = stable_hash(PREPARE_FORMAT, input_fingerprint(src), sorted(cfg.target_langs() or ["all"]),
                      to_dict(cfg.prepare), cfg.limit, cfg.text_field, cfg.id_field, cfg.lang_field)
    folder = work / f"prepare-{key}"
    done = folder / "done.json"
    if done.is_file():
        log.info("prepare: reusing %s", folder)
        return folder, json.loads(done.read_text()), StageStats(resumed=True)
    t0 = time.perf_counter()
    docs = Counting(read_documents(src, text_field=cfg.text_field, id_field=cfg.id_field,
                                   lang_field=cfg.lang_field))
    stream: Iterable[Any] = docs
    if cfg.limit is not None:
        from itertools import islice

        stream = islice(docs, cfg.limit)
    counts: Counter[str] = Counter()
    with ExitStack() as stack:
        rec_f = stack.enter_context(atomic_write(folder / "records.jsonl"))
        rej_f = stack.enter_context(atomic_write(folder / "rejects.jsonl"))
        stream = stack.enter_context(tqdm(stream, desc="prepare", unit="doc", disable=not cfg.progress))
        seen_docs: set[str] = set()
        for item in prepare(stream, cfg.target_langs(), cfg.prepare):
            if isinstance(item, Reject):
                rej_f.write(dumps(item.to_dict()) + "\n")
                counts[f"{item.unit}s_rejected"] += 1
                if item.unit == "chunk":
                    counts["chunks"] += 1
                    seen_docs.add(item.doc_id or "")
            else:
                rec_f.write(dumps(item.to_dict()) + "\n")
                counts["chunks"] += 1
                counts["records"] += 1
                seen_docs.add(item.doc_id)
    stats = {"documents_read": docs.n, "documents_rejected": counts["documents_rejected"],
             "documents_chunked": len(seen_docs), "chunks": counts["chunks"],
             "chunks_rejected": counts["chunks_rejected"], "records": counts["records"]}
    with atomic_write(done) as f:
        f.write(json.dumps(stats, indent=2))
    return folder, stats, StageStats(seconds=time.perf_counter() - t0)


def _shards(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    shard: list[Record] = []
    for r in records:
        shard.append(r)
        if len(shard) == size:
            yield shard
            shard = []
    if shard:
        yield shard


def run_generate(cfg: CurateConfig, prep: Path, n_records: int, work: Path, gen: InstructionGenerator,
                 ) -> tuple[Path, StageStats]:
    g = cfg.generate
    key = stable_hash(GENERATE_FORMAT, prep.name, to_dict(g), gen.template.id, gen.seeds_fingerprint(),
                      cfg.shard_size)
    folder = work / f"generate-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stats = StageStats()
    n_shards = resumed = 0
    with tqdm(total=n_records, desc="generate", unit="rec", disable=not cfg.progress) as bar:
        for i, shard in enumerate(_shards(read_records(prep / "records.jsonl"), cfg.shard_size)):
            n_shards += 1
            path = folder / f"shard-{i:05d}.jsonl"
            if path.is_file():
                resumed += 1
                bar.update(len(shard))
                continue
            lines: list[str] = []
            for b in range(0, len(shard), g.batch_size):
                kept, rejects = gen(shard[b : b + g.batch_size])
                lines += [dumps({"record": r.to_dict()}) for r in kept]
                lines += [dumps({"reject": r.to_dict()}) for r in rejects]
                bar.update(len(shard[b : b + g.batch_size]))
            with atomic_write(path) as f:
                f.write("".join(line + "\n" for line in lines))
    stats.seconds = time.perf_counter() - t0
    stats.resumed = resumed > 0
    stats.extra = {"shards": n_shards, "shards_resumed": resumed}
    return folder, stats


def _generated(folder: Path) -> Iterator[Record | Reject]:
    """Shard contents in order: records in input order, with each shard's rejects after them."""
    for path in sorted(folder.glob("shard-*.jsonl")):
        for row in read_jsonl(path):
            yield Record.from_dict(row["record"]) if "record" in row else Reject(**row["reject"])


def run_curate(cfg: CurateConfig, llm: LLM | None = None) -> dict[str, Any]:
    """Run (or resume) the curate job described by `cfg`; returns the manifest."""
    out = Path(cfg.out)
    work = out / "work"
    src = Path(cfg.input) if cfg.input else sample_corpus()
    if not src.exists():
        raise FileNotFoundError(f"input not found: {src}")
    t_start = time.perf_counter()

    prep, prep_counts, prep_stats = run_prepare(cfg, src, work)

    cache = RequestCache(cfg.cache or out / "cache" / "llm.sqlite")
    lazy = _LazyCached(cfg.generate.model, llm, cache)  # the model loads only if a shard still needs it
    gen = InstructionGenerator(cfg.generate, llm=lazy)
    try:
        gen_dir, gen_stats = run_generate(cfg, prep, prep_counts["records"], work, gen)
    finally:
        gen.close()
        cache.close()

    samples: list[Record] = []
    rejects = [Reject(**r) for r in read_jsonl(prep / "rejects.jsonl")]
    for item in _generated(gen_dir):
        (samples if isinstance(item, Record) else rejects).append(item)
    with atomic_write(out / "samples.jsonl") as f:
        f.writelines(dumps(r.to_dict()) + "\n" for r in samples)
    with atomic_write(out / "rejects.jsonl") as f:
        f.writelines(dumps(r.to_dict()) + "\n" for r in rejects)

    by_reason = Counter(f"{r.stage}/{r.reason}" for r in rejects)
    gen_rejects = sum(1 for r in rejects if r.stage == "generate")
    manifest = {
        "xinstruct": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "input": {"path": str(src), "sample_corpus": cfg.input is None},
        "config": to_dict(cfg),
        "versions": versions(),
        "model": lazy.identity(),
        "prompt": gen.template.id,
        "counts": {
            **{k: prep_counts[k] for k in ("documents_read", "documents_rejected", "documents_chunked", "chunks")},
            "chunks_rejected": {"prepare": prep_counts["chunks_rejected"], "generate": gen_rejects},
            "samples": len(samples),
            "samples_by_lang": dict(sorted(Counter(r.lang for r in samples).items())),
        },
        "rejects_by_reason": dict(sorted(by_reason.items())),
        "stages": {
            "prepare": {"seconds": round(prep_stats.seconds, 2), "resumed": prep_stats.resumed,
                        "folder": str(prep.relative_to(out))},
            "generate": {"seconds": round(gen_stats.seconds, 2), "resumed": gen_stats.resumed,
                         "folder": str(gen_dir.relative_to(out)), **gen_stats.extra, "llm": lazy.stats()},
        },
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    with atomic_write(out / "manifest.json") as f:
        f.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


class _LazyCached(LLM):
    """The generator's LLM: the cache in front, the model loaded on the first cache miss."""

    def __init__(self, model: ModelConfig, llm: LLM | None, cache: RequestCache):
        self._inner = llm
        self._cfg = model
        self._cache = cache
        self._cached: CachedLLM | None = None
        self.requests = self.prompt_tokens = self.completion_tokens = 0

    def _get(self) -> CachedLLM:
        if self._cached is None:
            from xinstruct.llm import load_llm

            self._cached = CachedLLM(self._inner or load_llm(self._cfg), self._cache)
            self.backend, self.model_id = self._cached.backend, self._cached.model_id
        return self._cached

    def generate(self, requests):  # type: ignore[no-untyped-def]
        gens = self._get().generate(requests)
        self.requests += len(requests)
        for g in gens:
            self.prompt_tokens += g.prompt_tokens
            self.completion_tokens += g.completion_tokens
        return gens

    def count_prompt_tokens(self, messages):  # type: ignore[no-untyped-def]
        return self._get().count_prompt_tokens(messages)

    @property
    def context_window(self) -> int | None:  # type: ignore[override]
        return self._get().context_window

    def identity(self) -> dict[str, Any]:
        if self._cached is None:
            return {"backend": "not loaded (every shard was already done)", "config": to_dict(self._cfg)}
        return {"backend": self.backend, "model_id": self.model_id, "config": to_dict(self._cfg)}

    def stats(self) -> dict[str, Any]:
        c = self._cached
        return {"requests": self.requests, "cache_hits": c.hits if c else 0, "generated": c.misses if c else 0,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    def close(self) -> None:
        if self._cached is not None:
            self._cached.close()
