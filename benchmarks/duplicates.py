"""Duplicate search at scale: FAISS range search over N image vectors, IVF versus exact.

Synthetic 512-d unit vectors in clusters (cosine ≈ 0.78 to their centre, as in
benchmarks/search.py) with planted near duplicates: copies of random photos at cosine ≈ 0.96–0.99
to their source, some of them in bursts of 3–5. Prints, for the exact (flat) range search and
for the IVF one that `vsearch duplicates` uses above ``EXACT_RANGE_BELOW`` vectors: seconds,
pairs found, recall of the exact pairs, and the groups found.

usage: python benchmarks/duplicates.py [--n 100000] [--dim 512] [--threshold 0.92] [--nprobe 4] [--exact-queries 10000] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import clustered, machine  # noqa: E402


def with_planted_duplicates(n: int, dim: int, copies: int, seed: int = 3) -> tuple[np.ndarray, int]:
    """(n, dim) vectors whose last ``copies`` rows are noisy copies of earlier rows."""
    rng = np.random.default_rng(seed)
    base = clustered(n - copies, dim, max(50, n // 500), seed=seed)
    sources = rng.integers(0, n - copies, copies)
    noise = rng.uniform(0.1, 0.25, (copies, 1)).astype(np.float32) / np.sqrt(dim)
    dup = base[sources] + noise * rng.normal(size=(copies, dim)).astype(np.float32)
    dup /= np.linalg.norm(dup, axis=1, keepdims=True)
    return np.concatenate([base, dup]), copies


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--copies", type=int, default=5_000)
    ap.add_argument("--threshold", type=float, default=0.92)
    ap.add_argument("--nprobe", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: FAISS's default)")
    ap.add_argument("--exact-queries", type=int, default=10_000,
                    help="exact range search for this many random rows only (its time is scaled to all n)")
    args = ap.parse_args(argv)

    import faiss

    from vsearch.duplicates import connected_groups, similar_pairs

    if args.threads:
        faiss.omp_set_num_threads(args.threads)

    print(f"machine: {machine()}  faiss {faiss.__version__}  threads {faiss.omp_get_max_threads()}")
    x, _ = with_planted_duplicates(args.n, args.dim, args.copies)
    print(f"n={args.n} dim={args.dim} planted copies={args.copies} threshold={args.threshold}")
    t = time.perf_counter()
    i, j, _ = similar_pairs(x, args.threshold, exact_below=0, nprobe=args.nprobe)
    ivf_s = time.perf_counter() - t
    t = time.perf_counter()
    groups = connected_groups(len(x), i, j)
    group_s = time.perf_counter() - t
    print(f"IVF nprobe {args.nprobe}: range search {ivf_s:.1f} s (training included), grouping {group_s:.2f} s, "
          f"pairs {len(i):,}, groups {len(groups):,}, files in groups {sum(len(g) for g in groups):,}")
    # exact baseline on a random subset of query rows, in the same run
    rng = np.random.default_rng(7)
    sample = np.sort(rng.choice(len(x), size=min(args.exact_queries, len(x)), replace=False))
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    t = time.perf_counter()
    radius = float(np.nextafter(np.float32(args.threshold), np.float32(-np.inf)))
    lims, _, labels = flat.range_search(x[sample], radius)
    exact_s = time.perf_counter() - t
    q = np.repeat(sample, np.diff(lims.astype(np.int64)))
    keep = labels != q
    exact = {(min(a, b), max(a, b)) for a, b in zip(q[keep].tolist(), labels[keep].tolist())}
    in_sample = np.zeros(len(x), bool)
    in_sample[sample] = True
    ivf = {(a, b) for a, b in zip(i.tolist(), j.tolist()) if in_sample[a] or in_sample[b]}
    scaled = exact_s * len(x) / len(sample)
    print(f"exact flat range search: {exact_s:.1f} s for {len(sample):,} query rows -> {scaled:.0f} s for all "
          f"{len(x):,} (scaled); IVF is {scaled / ivf_s:.1f}x faster")
    print(f"pairs touching the sampled rows: exact {len(exact):,}, IVF found {len(ivf & exact):,} "
          f"(recall {len(ivf & exact) / max(1, len(exact)):.4f}), IVF-only {len(ivf - exact)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
