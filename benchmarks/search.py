"""Search speed and recall: exact (flat) versus IVF, by collection size, on clustered vectors.

Prints, for each size: build time, single-query latency p50/p99, batched queries/s, and IVF's
Recall@10 against exact search. The flat→IVF switch (``vsearch.vector_index.ANN_THRESHOLD``)
is set from these figures. Queries are held-out points of the database's clusters.

With ``--gpu`` (and CUDA), also: exact search as a torch fp16 matrix product on the GPU, FAISS's
``GpuIndexFlatIP`` when a FAISS GPU build is installed, and IVF on the GPU through FAISS, each
over ``--gpu-queries`` queries in one batch.

usage: python benchmarks/search.py [--sizes 20000,100000,300000] [--dim 512] [--queries 200]
       [--kinds flat,ivf] [--gpu [--device cuda|cpu]] [--gpu-queries 4096] [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import clustered_with_queries, machine  # noqa: E402


def recall_at_10(got, want):
    return float(np.mean([len(set(g) & set(w)) / want.shape[1] for g, w in zip(got, want)]))


def _time_batch(searcher, queries, k, sync):
    """(queries/s, ids) for one batched search after a warm-up call (kernels, allocator)."""
    searcher.search(queries[:8], k)
    sync()
    t = time.perf_counter()
    _, got = searcher.search(queries, k)
    sync()
    return len(queries) / (time.perf_counter() - t), got


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000,300000")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--kinds", default="flat,ivf", help="index kinds to build: flat, ivf or both")
    ap.add_argument("--gpu", action="store_true", help="also time the GPU paths (torch exact, FAISS GPU)")
    ap.add_argument("--gpu-queries", type=int, default=4096, help="batch size of the GPU timings")
    ap.add_argument("--device", default="cuda", help="where --gpu runs torch exact search (cpu: a dry run)")
    ap.add_argument("--json", help="also write every row to this JSON file")
    args = ap.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]

    import faiss
    import torch

    from vsearch.gpu import TorchExactSearch, faiss_gpu_count, faiss_to_gpu, gpu_searcher
    from vsearch.vector_index import VectorIndex, ivf_params

    cuda = args.gpu and args.device == "cuda" and torch.cuda.is_available()
    # --gpu --device cpu runs the torch exact path on the CPU: a dry run of the GPU code
    torch_device = ("cuda" if cuda else "cpu" if args.gpu and args.device == "cpu" else None)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    header = f"machine: {machine()}  faiss {faiss.__version__}  threads {faiss.omp_get_max_threads()}"
    if args.gpu:
        header += f"  FAISS GPUs {faiss_gpu_count()}" + ("" if cuda else "  (no CUDA: only the torch rows, on the CPU)")
    print(header)
    print(f"{'n':>9} {'index':>10} {'build s':>8} {'p50 ms':>8} {'p99 ms':>8} {'batch q/s':>10} {'R@10':>6}")
    rows = []

    def report(n, kind, build, lat, qps, rec, note=""):
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if lat else (None, None)
        cells = [f"{n:>9}", f"{kind:>10}", f"{build:>8.2f}" if build is not None else f"{'':>8}",
                 f"{p50:>8.2f}" if lat else f"{'':>8}", f"{p99:>8.2f}" if lat else f"{'':>8}", f"{qps:>10.0f}", f"{rec:>6.3f}"]
        print(" ".join(cells) + (f"  ({note})" if note else ""), flush=True)
        rows.append({"n": n, "index": kind, "build_s": build, "p50_ms": p50, "p99_ms": p99, "qps": qps,
                     "recall_at_10": rec, "note": note})

    for n in (int(s) for s in args.sizes.split(",")):
        db, q = clustered_with_queries(n, args.queries, args.dim, max(50, n // 500), seed=1)
        ids = np.arange(n, dtype=np.int64)
        exact = faiss.IndexFlatIP(args.dim)  # ground truth, whatever kinds are timed
        exact.add(db)
        truth = exact.search(q, args.k)[1]
        del exact
        big_q = np.resize(q, (max(args.gpu_queries, len(q)), args.dim))  # repeats q; rows [:len(q)] are q
        for kind in kinds:
            t = time.perf_counter()
            vi = VectorIndex.build(args.dim, db, ids, ann_threshold=n + 1 if kind == "flat" else 0)
            build = time.perf_counter() - t
            lat = []
            for row in q:
                t = time.perf_counter()
                vi.search(row[None], args.k)
                lat.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            _, got = vi.search(q, args.k)
            qps = len(q) / (time.perf_counter() - t)
            note = f"nlist {ivf_params(n)[0]}, nprobe {vi.index.nprobe}" if kind == "ivf" else "FAISS CPU"
            report(n, kind, build, lat, qps, recall_at_10(got, truth), note)
            if cuda and kind == "ivf":
                searcher, note = gpu_searcher(vi, "cuda")
                if searcher is not vi:
                    gqps, got_gpu = _time_batch(searcher, big_q, args.k, sync)
                    report(n, "ivf-gpu", None, [], gqps, recall_at_10(got_gpu[: len(q)], truth), note)
                else:
                    print(f"{n:>9} {'ivf-gpu':>10}  skipped: {note}")
            del vi
        if torch_device:  # exact search as one matrix product, the catalog's GPU path for flat indexes
            searcher = TorchExactSearch(db, ids, torch_device)
            tqps, got_t = _time_batch(searcher, big_q, args.k, sync)
            report(n, f"torch-{torch_device}", None, [], tqps, recall_at_10(got_t[: len(q)], truth),
                   f"{'fp16' if searcher.dtype == torch.float16 else 'fp32'} matmul + top-k")
            del searcher
        if cuda and faiss_gpu_count() > 0:  # FAISS's own exact GPU index, for comparison
            for fp16 in (False, True):
                flat = faiss.IndexFlatIP(args.dim)
                flat.add(db)
                gpu_index, note = faiss_to_gpu(flat, fp16=fp16)
                if gpu_index is flat:
                    print(f"{n:>9} {'faiss-gpu':>10}  skipped: {note}")
                    break
                fqps, got_f = _time_batch(gpu_index, big_q, args.k, sync)
                report(n, "faiss-gpu", None, [], fqps, recall_at_10(got_f[: len(q)], truth),
                       f"GpuIndexFlatIP, {'fp16' if fp16 else 'fp32'} storage")
                del gpu_index, flat
        del db
        if args.json:  # after every size, so a run cut short keeps what it measured
            with open(args.json, "w") as fh:
                json.dump({"machine": machine(), "k": args.k, "queries": args.queries,
                           "gpu_queries": args.gpu_queries, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
