"""Scale: shard embedding with the local loop vs Ray, and IVF-PQ built part by part.

embed: synthetic 640x480 JPEGs into shards, with the local loop (with and without decode
threads) and with Ray Data actors on a local Ray instance. For each: wall time including model
load / Ray start / actor start, and the busy span (first shard start to last shard end, from
the shard files' own timestamps), which is the steady-state rate.

index: clustered 512-d unit vectors (benchmarks/common.py's generator; queries are held-out
points of the same clusters); IVF-PQ trained on a sample,
filled in parts, merged in memory and on disk; index bytes, peak RSS, and Recall@10 against
exact search for PQ codes alone and with the exact re-ranking the catalog does.

usage: python benchmarks/scale.py [--part embed|index|all] [--images 256] [--model tiny|packaged]
       [--sizes 100000,1000000] [--m 64,128] [--nlist-1m 1024] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine, synthetic_jpegs  # noqa: E402
from benchmarks.common import clustered_with_queries  # noqa: E402
from benchmarks.search import recall_at_10  # noqa: E402


def tiny_clip_spec(folder: str) -> str:
    """The test suite's seeded tiny CLIP (32-px input, 1 layer): cost is decoding, not the model."""
    import open_clip
    import torch

    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    os.makedirs(folder, exist_ok=True)
    cfg_path, weights = os.path.join(folder, "vsearch-bench-tiny.json"), os.path.join(folder, "tiny.pt")
    with open(cfg_path, "w") as fh:
        json.dump(cfg, fh)
    if not os.path.exists(weights):
        open_clip.add_model_config(cfg_path)
        torch.manual_seed(0)
        torch.save(open_clip.create_model("vsearch-bench-tiny", pretrained=None).state_dict(), weights)
    return f"clip:{cfg_path}@{weights}"


def shard_times(out_dir: str) -> tuple[float, float, float, float]:
    """(busy span: first shard start to last shard end, from the shard files' own timestamps;
    summed seconds the encoder waited for decoded images; summed encode seconds; summed CPU
    seconds of the processes that made the shards)."""
    from indexer.shards import read_shard_meta, shard_paths

    metas = [read_shard_meta(p) for p in shard_paths(out_dir)]
    span = max(m["created"] for m in metas) - min(m["created"] - m["seconds"] for m in metas)
    return (span, *(sum(m["timings"][k] for m in metas) for k in ("decode_wait", "encode", "cpu")))


def bench_embed(args) -> None:
    import logging

    from indexer import manifest as mf
    from indexer.distributed import RayExecutor
    from indexer.embed import LocalExecutor, embed_shards

    work = tempfile.mkdtemp(prefix="vsearch-bench-scale-")
    folder = os.path.join(tempfile.gettempdir(), "vsearch-bench-jpegs", "set")
    synthetic_jpegs(folder, args.images)
    entries = mf.from_paths([folder]).entries[: args.images]
    spec = tiny_clip_spec(os.path.join(tempfile.gettempdir(), "vsearch-bench-tiny")) if args.model == "tiny" else "packaged"
    shard_size = max(1, len(entries) // 8)
    import torch

    torch.set_num_threads(args.torch_threads)  # the local loop's; Ray gives each actor its own CPUs' worth
    print(f"\n## embed: {len(entries)} JPEGs 640x480, model {args.model}, shards of {shard_size}, batch "
          f"{args.batch_size}, torch threads in this process {torch.get_num_threads()}")
    print(f"{'executor':<34} {'wall s':>7} {'img/s wall':>10} {'busy s':>7} {'img/s busy':>10} {'decode wait s':>13} "
          f"{'encode s':>8} {'img/CPU-s':>9}")

    def run(name, executor, setup_s=0.0):
        out = os.path.join(work, name.replace(" ", "_"))
        t = time.perf_counter()
        report = embed_shards(entries, out, spec, shard_size, executor)
        wall = time.perf_counter() - t + setup_s
        span, wait, enc, cpu = shard_times(out)
        print(f"{name:<34} {wall:>7.1f} {report.embedded / wall:>10.1f} {span:>7.1f} {report.embedded / span:>10.1f} "
              f"{wait:>13.2f} {enc:>8.2f} {report.embedded / cpu:>9.1f}", flush=True)

    try:
        # warm-up: the local loop's model is loaded once per process (and its first batches are
        # slow); Ray actors load theirs inside the measured rows, as they would on a cluster
        embed_shards(entries[: args.batch_size], os.path.join(work, "warm-up"), spec, shard_size,
                     LocalExecutor(batch_size=args.batch_size))
        run("local, decode inline", LocalExecutor(batch_size=args.batch_size))
        run("local, 2 decode threads", LocalExecutor(batch_size=args.batch_size, decode_threads=2))
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
        ray_start = time.perf_counter() - t
        print(f"(ray.init of a local instance: {ray_start:.1f}s, counted in each Ray row's wall time)")
        run("ray, 1 actor x 2 CPUs (2 threads)", RayExecutor(actors=1, cpus_per_actor=2, batch_size=args.batch_size), ray_start)
        run("ray, 2 actors x 1 CPU", RayExecutor(actors=2, cpus_per_actor=1, batch_size=args.batch_size), ray_start)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def bench_index(args) -> None:
    import faiss

    from vsearch import ivfpq

    dim, k = 512, 10
    print(f"\n## IVF-PQ, {dim}-d clustered unit vectors, {args.queries} queries, k={k}, faiss threads "
          f"{faiss.omp_get_max_threads()}")
    for n in (int(s) for s in args.sizes.split(",")):
        # queries are held-out points of the database's own clusters (one draw, split): queries
        # drawn with another seed would sit around other centres, with nearest neighbours at
        # cosine ~0.2, i.e. no better than random directions
        x, q = clustered_with_queries(n, args.queries, dim, max(50, n // 500), seed=1)
        ids = np.arange(n, dtype=np.int64) * 2 + 7  # like catalog ids: not 0..n-1
        t = time.perf_counter()
        exact = faiss.IndexFlatIP(dim)
        exact.add(x)
        gt_scores, gt = exact.search(q, k)
        print(f"\nn={n:,}: mean cosine of the exact 1st / 10th neighbour {gt_scores[:, 0].mean():.3f} / "
              f"{gt_scores[:, -1].mean():.3f}; exact search (flat, build + {len(q)} queries) {time.perf_counter() - t:.1f}s")
        del exact
        nlist = args.nlist_1m if n >= 1_000_000 and args.nlist_1m else None
        for m in (int(v) for v in args.m.split(",")):
            params = ivfpq.IvfPqParams.for_size(n, dim, m=m, nlist=nlist)
            bench_one(args, x, q, ids, ids[gt], gt_scores, params, args.part_size or -(-n // 4))
        del x


def bench_one(args, x, q, ids, gt, gt_scores, params, part: int) -> None:
    """Build one IVF-PQ (in-memory merge), merge the same parts on disk, measure recall."""
    import faiss

    from vsearch import ivfpq
    from vsearch.vector_index import VectorIndex

    (n, dim), k = x.shape, gt.shape[1]

    def chunks():
        return ((ids[s : s + part], x[s : s + part]) for s in range(0, n, part))

    def fetch(wanted):  # ids are 2 * row + 7
        wanted = np.asarray(wanted)
        return wanted, x[(wanted - 7) // 2]

    work = tempfile.mkdtemp(prefix="vsearch-bench-ivfpq-")
    try:
        parts_dir = os.path.join(work, "parts")
        rep = ivfpq.build_ivfpq(chunks, n, dim, params, sample_size=args.sample or None, workdir=parts_dir)
        mem_path = os.path.join(work, "mem.faiss")
        faiss.write_index(rep.index, mem_path)
        mem_bytes = os.path.getsize(mem_path)
        trained = faiss.clone_index(rep.index)  # the same parts, merged into one memory-mapped file
        trained.reset()
        t = time.perf_counter()
        ivfpq.merge_parts(trained, sorted(os.path.join(parts_dir, f) for f in os.listdir(parts_dir)),
                          os.path.join(work, "disk.faiss"))
        disk_s = time.perf_counter() - t
        disk_files = {f: os.path.getsize(os.path.join(work, f)) for f in os.listdir(work) if f.startswith("disk")}

        t = time.perf_counter()
        _, pq_only = rep.index.search(q, k)
        pq_qps = len(q) / (time.perf_counter() - t)
        vi = VectorIndex(dim, rep.index)
        reranked = []
        for factor in sorted({10, ivfpq.RERANK_FACTOR}):
            t = time.perf_counter()
            scores, got = ivfpq.search_reranked(vi, q, k, fetch, rerank_factor=factor)
            # misses among near-ties cost little: the 10th result's exact cosine against the true 10th's
            reranked.append(f"shortlist {k * factor}: {recall_at_10(got, gt):.3f} "
                            f"({len(q) / (time.perf_counter() - t):,.0f} q/s, 10th cosine {scores[:, -1].mean():.3f} "
                            f"vs exact {gt_scores[:, -1].mean():.3f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p = params
    print(f"  m {p.m} x {p.nbits} bits, nlist {p.nlist}, nprobe {p.nprobe}, trained on {rep.sample_size:,}, "
          f"{rep.parts} parts of {part:,}")
    print("    build: " + ", ".join(f"{name} {v:.1f}s" for name, v in rep.timings.items())
          + f" (in-memory merge) = {sum(rep.timings.values()):.1f}s; on-disk merge of the same parts {disk_s:.1f}s")
    print(f"    index: in memory {mem_bytes / 2**20:.1f} MiB ({mem_bytes / n:.0f} B/vector; flat float32 would be "
          f"{n * (dim * 4 + 8) / 2**20:.0f} MiB); on disk: "
          + ", ".join(f"{name.split('.')[-1]} {size / 2**20:.1f} MiB" for name, size in sorted(disk_files.items()))
          + f"; peak RSS so far {peak_rss_gib():.2f} GiB (the source array is {n * dim * 4 / 2**30:.2f} GiB)")
    print(f"    Recall@10 vs exact: PQ codes alone {recall_at_10(pq_only, gt):.3f} ({pq_qps:,.0f} q/s); re-ranked "
          "with vectors from RAM: " + "; ".join(reranked), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all", choices=["embed", "index", "all"])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--model", default="tiny", choices=["tiny", "packaged"])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch threads of the local loop (on the shared 2-core machine, 2 OpenMP threads "
                         "spin against other jobs: the tiny model encoded 80x slower)")
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--part-size", type=int, default=0, help="vectors per part (default: n/4)")
    ap.add_argument("--sample", type=int, default=0, help="training sample (default: the library's)")
    ap.add_argument("--nlist-1m", type=int, default=1024,
                    help="nlist at >= 1M vectors (0: the library's 4*sqrt(n), which trains for long on 2 cores)")
    ap.add_argument("--m", default="64,128", help="PQ sub-quantisers (bytes per vector) to compare")
    ap.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: FAISS's default)")
    args = ap.parse_args(argv)
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    print(f"machine: {machine()}  load average {os.getloadavg()[0]:.1f}")
    if args.part in ("embed", "all"):
        bench_embed(args)
    if args.part in ("index", "all"):
        bench_index(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
