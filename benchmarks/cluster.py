"""Diversification-stage k-means: faiss against scikit-learn on the same synthetic embeddings.

The vectors stand in for sentence embeddings of English instructions: a Gaussian mixture of `--components`
centres on the unit sphere (default: k of them), each point its centre plus isotropic noise of norm about
`--spread`, then L2-normalised, all drawn from `--seed` so every engine and every run sees the same data.
Each engine runs `xinstruct.curate.cluster.kmeans` once (its time includes the final assignment of all rows).
The table (Markdown) goes to stdout, progress to stderr.

    .venv/bin/python benchmarks/cluster.py                              # n=100,000, dim 384, k=1,000
    .venv/bin/python benchmarks/cluster.py --n 5000 --k 50 --engines faiss,sklearn
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

import numpy as np

from xinstruct.curate.cluster import kmeans


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def mixture(n: int, dim: int, components: int, spread: float, seed: int, chunk: int = 65_536) -> np.ndarray:
    """(n, dim) float32 unit vectors from a Gaussian mixture, generated in blocks to bound memory."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((components, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.empty((n, dim), dtype=np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        block = centres[rng.integers(0, components, m)]
        block += rng.standard_normal((m, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
        x[i : i + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return x


def versions() -> str:
    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "absent"

    return ", ".join(f"{pkg} {version(pkg)}" for pkg in ("numpy", "faiss-cpu", "scikit-learn"))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="vectors")
    ap.add_argument("--dim", type=int, default=384, help="dimension (all-MiniLM-L6-v2 gives 384)")
    ap.add_argument("--k", type=int, default=1000, help="clusters")
    ap.add_argument("--niter", type=int, default=20, help="k-means iterations")
    ap.add_argument("--engines", default="faiss,sklearn", help="comma-separated: faiss, sklearn")
    ap.add_argument("--seed", type=int, default=0, help="seeds both the data and k-means")
    ap.add_argument("--components", type=int, default=0, help="mixture components (default: k)")
    ap.add_argument("--spread", type=float, default=1.0, help="noise norm around each unit-norm centre")
    args = ap.parse_args(argv)

    components = args.components or args.k
    log(f"generating {args.n:,} x {args.dim} vectors from {components:,} components (seed {args.seed})")
    x = mixture(args.n, args.dim, components, args.spread, args.seed)
    rows = []
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        log(f"{engine}: k-means, k={args.k:,}, {args.niter} iterations ...")
        try:
            res = kmeans(x, args.k, engine=engine, seed=args.seed, niter=args.niter)
        except ImportError as e:
            log(f"{engine}: skipped ({e})")
            continue
        inertia = float(np.mean(np.square(res.distances, dtype=np.float64)))
        rows.append((engine, res.seconds, inertia, len(np.unique(res.labels))))
        log(f"{engine}: {res.seconds:.2f} s")

    print(f"n={args.n:,}, dim={args.dim}, k={args.k:,}, niter={args.niter}, seed={args.seed}, "
          f"components={components:,}, spread={args.spread}; cpus={os.cpu_count()} "
          f"(affinity {len(os.sched_getaffinity(0))}); {versions()}\n")
    print("| engine | seconds | inertia / n | non-empty clusters |")
    print("|---|---:|---:|---:|")
    for engine, seconds, inertia, used in rows:
        print(f"| {engine} | {seconds:.2f} | {inertia:.4f} | {used:,} |")


if __name__ == "__main__":
    main()
