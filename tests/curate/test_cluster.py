"""k-means for the diversification stage: real faiss and real scikit-learn on planted blobs, and the 2-D map."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from xinstruct.curate.cluster import available_engines, kmeans, project_2d

HAS = {name: importlib.util.find_spec(name) is not None for name in ("faiss", "sklearn")}
needs_faiss = pytest.mark.skipif(not HAS["faiss"], reason="faiss not installed (pip install faiss-cpu)")
needs_sklearn = pytest.mark.skipif(not HAS["sklearn"], reason="scikit-learn not installed (pip install scikit-learn)")
ENGINES = [pytest.param("faiss", marks=needs_faiss), pytest.param("sklearn", marks=needs_sklearn)]


def blobs(n_blobs: int = 6, per_blob: int = 50, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs: centres ~N(0, 10²) per axis (pairwise ~56 apart), points within ~1 of them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=10.0, size=(n_blobs, dim))
    truth = np.repeat(np.arange(n_blobs), per_blob)
    x = centres[truth] + rng.normal(scale=0.25, size=(len(truth), dim))
    order = rng.permutation(len(truth))  # so that blob membership is not given away by row order
    return x[order].astype(np.float32), truth[order]


def test_available_engines_lists_what_imports():
    assert available_engines() == [name for name in ("faiss", "sklearn") if HAS[name]]


@needs_sklearn
@pytest.mark.parametrize("engine", ENGINES)
def test_recovers_planted_blobs(engine: str):
    from sklearn.metrics import adjusted_rand_score

    for seed in range(3):  # a few seeds: a bad initialisation (two centroids in one blob) would show up
        x, truth = blobs(seed=seed)
        res = kmeans(x, 6, engine=engine, seed=seed)
        assert res.engine == engine and res.seconds >= 0
        assert res.labels.shape == (300,) and res.labels.dtype == np.int64
        assert res.distances.shape == (300,) and res.distances.dtype == np.float32
        assert res.centroids.shape == (6, 16) and res.centroids.dtype == np.float32
        assert adjusted_rand_score(truth, res.labels) >= 0.95


@pytest.mark.parametrize("engine", ENGINES)
def test_labels_are_nearest_centroid_and_distances_exact(engine: str):
    x, _ = blobs(seed=1)
    res = kmeans(x, 6, engine=engine, seed=3)
    all_d = np.linalg.norm(x[:, None, :].astype(np.float64) - res.centroids[None].astype(np.float64), axis=2)
    assert np.array_equal(res.labels, all_d.argmin(axis=1))
    expected = np.linalg.norm(x.astype(np.float64) - res.centroids[res.labels], axis=1)
    np.testing.assert_allclose(res.distances, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("engine", ENGINES)
def test_same_seed_same_labels(engine: str):
    x, _ = blobs(n_blobs=8, per_blob=40, seed=2)
    first, second = (kmeans(x, 5, engine=engine, seed=7, niter=10) for _ in range(2))  # k != blobs: seed matters
    assert np.array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.centroids, second.centroids)


@pytest.mark.parametrize("engine", ENGINES)
def test_k_larger_than_n_is_clamped(engine: str):
    x, _ = blobs(n_blobs=2, per_blob=3, dim=4)
    res = kmeans(x.astype(np.float64), 50, engine=engine)  # float64 in: converted
    assert res.centroids.shape == (6, 4)
    assert sorted(res.labels.tolist()) == list(range(6))  # every point its own cluster
    np.testing.assert_allclose(res.distances, 0.0, atol=1e-5)


@needs_faiss
def test_auto_prefers_faiss():
    x, _ = blobs(n_blobs=2, per_blob=5, dim=4)
    assert kmeans(x, 2).engine == "faiss"


def test_errors():
    with pytest.raises(ValueError, match="no vectors to cluster"):
        kmeans(np.zeros((0, 8), dtype=np.float32), 3)
    with pytest.raises(ValueError, match="faiss.*sklearn"):
        kmeans(np.ones((4, 2), dtype=np.float32), 2, engine="torch")
    with pytest.raises(ValueError, match="seed"):  # faiss would read a negative seed as "seed from the clock"
        kmeans(np.ones((4, 2), dtype=np.float32), 2, seed=-1)


def test_project_2d_separates_far_blobs():
    rng = np.random.default_rng(0)
    direction = rng.normal(size=32)
    x = np.concatenate([rng.normal(size=(40, 32)) + 20 * direction, rng.normal(size=(60, 32)) - 20 * direction])
    xy = project_2d(x.astype(np.float32))
    assert xy.shape == (100, 2) and xy.dtype == np.float32
    a, b = xy[:40, 0], xy[40:, 0]
    assert a.min() > b.max() or b.min() > a.max()  # the blobs fall apart on the first axis
    np.testing.assert_array_equal(xy, project_2d(x, seed=0))  # deterministic, float64 input accepted
    assert project_2d(np.zeros((0, 5))).shape == (0, 2)


@pytest.mark.parametrize("engine, package", [("faiss", "faiss-cpu"), ("sklearn", "scikit-learn")])
def test_missing_engine_says_what_to_install(engine: str, package: str):
    if HAS[engine]:
        pytest.skip(f"{engine} is installed; the error only shows without it")
    with pytest.raises(ImportError, match=f"pip install {package}"):
        kmeans(np.ones((4, 2), dtype=np.float32), 2, engine=engine)
