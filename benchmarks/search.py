"""Search speed and recall: exact (flat) versus IVF, by collection size, on clustered vectors.

Prints, for each size: build time, single-query latency p50/p99, batched queries/s, and IVF's
Recall@10 against exact search. The flat→IVF switch (``vsearch.vector_index.ANN_THRESHOLD``)
is set from these figures.

usage: python benchmarks/search.py [--sizes 20000,100000,300000] [--dim 512] [--queries 200] [--gpu]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine  # noqa: E402


def clustered(n, dim, n_clusters, seed, noise=0.8):
    """Unit vectors around random centres (cosine ≈ 0.78 to their centre), like real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # in chunks: 1M × 512 of float64 noise would be 4 GB
        m = min(100_000, n - start)
        x = centres[rng.integers(0, n_clusters, m)] + (noise / np.sqrt(dim)) * rng.normal(size=(m, dim)).astype(np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def recall_at_10(got, want):
    return float(np.mean([len(set(g) & set(w)) / want.shape[1] for g, w in zip(got, want)]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000,300000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--gpu", action="store_true", help="also time the GPU paths (torch exact, FAISS GPU IVF)")
    args = ap.parse_args(argv)

    import faiss
    import torch

    from vsearch.gpu import gpu_searcher
    from vsearch.vector_index import VectorIndex, ivf_params

    print(f"machine: {machine()}  faiss {faiss.__version__}  threads {faiss.omp_get_max_threads()}")
    print(f"{'n':>9} {'index':>6} {'build s':>8} {'p50 ms':>8} {'p99 ms':>8} {'batch q/s':>10} {'R@10':>6}")
    for n in (int(s) for s in args.sizes.split(",")):
        db = clustered(n, args.dim, max(50, n // 500), seed=1)
        q = clustered(args.queries, args.dim, max(50, n // 500), seed=2)
        ids = np.arange(n, dtype=np.int64)
        exact = None
        for kind, threshold in (("flat", n + 1), ("ivf", 0)):
            t = time.perf_counter()
            vi = VectorIndex.build(args.dim, db, ids, ann_threshold=threshold)
            build = time.perf_counter() - t
            lat = []
            for row in q:
                t = time.perf_counter()
                vi.search(row[None], args.k)
                lat.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            _, got = vi.search(q, args.k)
            qps = len(q) / (time.perf_counter() - t)
            if kind == "flat":
                exact = got
            rec = recall_at_10(got, exact)
            extra = f"  (nlist {ivf_params(n)[0]}, nprobe {vi.index.nprobe})" if kind == "ivf" else ""
            print(f"{n:>9} {kind:>6} {build:>8.2f} {np.percentile(lat, 50):>8.2f} {np.percentile(lat, 99):>8.2f} "
                  f"{qps:>10.0f} {rec:>6.3f}{extra}")
            if args.gpu and torch.cuda.is_available():
                searcher, note = gpu_searcher(vi, "cuda")
                if searcher is not vi:
                    big_q = np.repeat(q, max(1, 4096 // len(q)), axis=0)
                    searcher.search(big_q[:8], args.k)  # warm-up (kernels, allocator)
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    _, got_gpu = searcher.search(big_q, args.k)
                    torch.cuda.synchronize()
                    gqps = len(big_q) / (time.perf_counter() - t)
                    grec = recall_at_10(got_gpu[: len(q)], exact)
                    print(f"{n:>9} {kind + '-gpu':>6} {'':>8} {'':>8} {'':>8} {gqps:>10.0f} {grec:>6.3f}  ({note})")
        del db
    return 0


if __name__ == "__main__":
    sys.exit(main())
