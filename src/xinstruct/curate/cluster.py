"""k-means over instruction embeddings, for the diversification stage (cluster, then sample across clusters).

Two engines, chosen by what is installed:
  faiss    (`pip install faiss-cpu`) BLAS-backed assignment and OpenMP centroid updates; far faster for the k
           the stage needs (hundreds to thousands of clusters over up to ~1e6 vectors), so it is the default.
  sklearn  (`pip install scikit-learn`) the fallback: k-means++ initialisation, slower as k grows.
faiss's default initialisation (k random rows) often starts two centroids in one natural cluster and never
separates them; where the installed faiss has it, AFK-MC² seeding (a fast approximation of k-means++, cost
independent of n) is used instead. faiss trains on a seeded subsample of at most 256 rows per centroid (its
`max_points_per_centroid`), which is much of its speed. Either way every row is then assigned to its nearest
final centroid, so labels and distances cover all rows. Results are deterministic for a given seed on a given
machine and thread count (faiss takes a negative seed to mean "seed from the clock", so seeds must be >= 0).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass

import numpy as np

# engine -> (module it needs, imported before the clock starts; pip package that provides it), in preference order
ENGINES = {"faiss": ("faiss", "faiss-cpu"), "sklearn": ("sklearn.cluster", "scikit-learn")}
_CHUNK = 65_536  # rows per block when computing distances, to bound temporary memory


@dataclass
class KMeansResult:
    labels: np.ndarray  # (n,) int64 cluster id per row
    distances: np.ndarray  # (n,) float32 Euclidean (not squared) distance of each row to its centroid
    centroids: np.ndarray  # (k, d) float32
    engine: str  # "faiss" or "sklearn"
    seconds: float  # wall time of training plus the final assignment of every row


def _imports(engine: str) -> bool:
    try:
        importlib.import_module(ENGINES[engine][0])
    except ImportError:
        return False
    return True


def available_engines() -> list[str]:
    """The engines whose library imports, in order of preference."""
    return [engine for engine in ENGINES if _imports(engine)]


def _resolve(engine: str) -> str:
    if engine == "auto":
        found = available_engines()
        if not found:
            raise ImportError("k-means needs faiss or scikit-learn: pip install faiss-cpu (or scikit-learn)")
        return found[0]
    if engine not in ENGINES:
        raise ValueError(f"unknown k-means engine {engine!r}; choose one of: auto, {', '.join(ENGINES)}")
    if not _imports(engine):
        raise ImportError(f"k-means engine {engine!r} is not installed: pip install {ENGINES[engine][1]}")
    return engine


def _faiss(x: np.ndarray, k: int, seed: int, niter: int, n_init: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    # min_points_per_centroid=1 only silences faiss's stderr warning about small clusters (it changes nothing
    # else); the seed drives both the training subsample and the initial centroids.
    init = getattr(faiss, "ClusteringInitMethod_AFK_MC2", None)  # recent faiss only; else k random rows
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, nredo=n_init, verbose=False, min_points_per_centroid=1,
                      **({} if init is None else {"init_method": init}))
    km.train(x)
    _, labels = km.assign(x)  # index.search against the final centroids, all rows
    return km.centroids, labels


def _sklearn(x: np.ndarray, k: int, seed: int, niter: int, n_init: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=n_init, max_iter=niter, random_state=seed).fit(x)
    centroids = np.ascontiguousarray(km.cluster_centers_, dtype=np.float32)
    return centroids, km.predict(x)


def _distances(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Exact ||x_i - c_{label_i}||, row by row (not the ||x||² + ||c||² - 2x·c expansion, which loses precision)."""
    out = np.empty(len(x), dtype=np.float32)
    for i in range(0, len(x), _CHUNK):
        diff = x[i : i + _CHUNK] - centroids[labels[i : i + _CHUNK]]
        out[i : i + _CHUNK] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def kmeans(x: np.ndarray, k: int, *, engine: str = "auto", seed: int = 0, niter: int = 25, n_init: int = 1,
           ) -> KMeansResult:
    """Cluster the rows of `x` (n, d) into min(k, n) clusters with the given engine ("auto", "faiss", "sklearn").

    `n_init` runs k-means that many times from different starts and keeps the lowest-inertia result: a
    single start can settle in a poor local optimum when clusters are few and overlapping."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("no vectors to cluster")
    if not 0 <= seed < 2**31:
        raise ValueError(f"seed must be in [0, 2**31), got {seed}")
    name = _resolve(engine)
    k = max(1, min(int(k), len(x)))
    t0 = time.perf_counter()
    centroids, labels = (_faiss if name == "faiss" else _sklearn)(x, k, seed, niter, max(1, n_init))
    labels = np.asarray(labels, dtype=np.int64).ravel()
    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    distances = _distances(x, centroids, labels)
    return KMeansResult(labels, distances, centroids, name, time.perf_counter() - t0)


def project_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, 2) float32 coordinates on the first two principal axes, for a 2-D map of the clusters.

    The axes come from an SVD of at most 20,000 rows drawn with `seed` (so a million rows cost the same as
    twenty thousand); each axis's sign is fixed so that its largest loading is positive, so maps do not flip.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {x.shape}")
    if len(x) == 0:
        return np.zeros((0, 2), dtype=np.float32)
    mean = x.mean(axis=0, dtype=np.float64)
    rows = np.random.default_rng(seed).choice(len(x), 20_000, replace=False) if len(x) > 20_000 else slice(None)
    _, _, vt = np.linalg.svd(x[rows] - mean, full_matrices=False)
    axes = vt[:2]
    axes *= np.where(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    out = np.zeros((len(x), 2), dtype=np.float32)
    out[:, : len(axes)] = x @ axes.T.astype(np.float32) - (mean @ axes.T).astype(np.float32)  # no (n, d) copy
    return out
