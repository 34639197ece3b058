"""Duplicate search: at scale (FAISS range search over N image vectors, IVF versus exact), and
on crops of real photos (what `vsearch duplicates` calls redundant, and how long it takes).

``--case scale`` (the default): synthetic 512-d unit vectors in clusters (cosine ≈ 0.78 to their
centre, as in benchmarks/search.py) with planted near duplicates: copies of random photos at
cosine ≈ 0.96–0.99 to their source, some of them in bursts of 3–5. Prints, for the exact (flat) range search and
for the IVF one that `vsearch duplicates` uses above ``EXACT_RANGE_BELOW`` vectors: seconds,
pairs found, recall of the exact pairs, and the groups found.

``--case crops``: ``--crops`` (400) JPEGs cut from 5 scikit-image photos (astronaut, camera,
chelsea, coffee, rocket) at random offsets, each side 50–83 % of the photo's, indexed with the
packaged model; then `find_duplicates` with its defaults. Every crop's box is known, so each file
called redundant is checked against the truth: is its box inside the box of the copy it keeps?

usage: python benchmarks/duplicates.py [--n 100000] [--dim 512] [--threshold 0.92] [--nprobe 4] [--exact-queries 10000] [--threads 1]
       python benchmarks/duplicates.py --case crops [--crops 400] [--folder DIR]
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


CROP_SOURCES = ("astronaut", "camera", "chelsea", "coffee", "rocket")


def write_crops(folder: str, n: int, seed: int = 22) -> dict[str, tuple[str, tuple[int, int, int, int]]]:
    """``n`` JPEG crops of the five scikit-image photos (in turn), each side 50–83 % of the photo's,
    at a random offset: {file name: (source, (left, top, right, bottom))}."""
    from PIL import Image
    from skimage import data

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = {}
    for name in CROP_SOURCES:
        arr = np.asarray(getattr(data, name)())
        photos[name] = Image.fromarray(arr).convert("RGB")
    boxes = {}
    for k in range(n):
        source = CROP_SOURCES[k % len(CROP_SOURCES)]
        photo = photos[source]
        w, h = photo.size
        cw, ch = (int(round(side * rng.uniform(0.50, 0.83))) for side in (w, h))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        box = (left, top, left + cw, top + ch)
        name = f"{source}_{k:04d}.jpg"
        photo.crop(box).save(os.path.join(folder, name), quality=90)
        boxes[name] = (source, box)
    return boxes


def inside_fraction(box, keeper) -> float:
    """The share of ``box``'s area that lies inside ``keeper`` (same source photo)."""
    w = max(0, min(box[2], keeper[2]) - max(box[0], keeper[0]))
    h = max(0, min(box[3], keeper[3]) - max(box[1], keeper[1]))
    return w * h / ((box[2] - box[0]) * (box[3] - box[1]))


def crops_case(args) -> int:
    import tempfile

    import vsearch
    from vsearch.duplicates import find_duplicates

    print(f"machine: {machine()}  load average {os.getloadavg()[0]:.2f}")
    folder = args.folder or tempfile.mkdtemp(prefix="vsearch-crops-")
    photos = os.path.join(folder, "photos")
    boxes = write_crops(photos, args.crops)
    db = os.path.join(folder, "db")
    with vsearch.open(db, model="packaged") as coll:
        t = time.perf_counter()
        coll.index([photos], workers=0)
        print(f"{len(boxes)} crops indexed in {time.perf_counter() - t:.1f} s")
        t, cpu = time.perf_counter(), time.process_time()
        report = find_duplicates(coll.catalog)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    summary = report.to_json()
    kinds: dict[str, int] = {}
    # getattr: the same script measures versions from before similar shots were listed apart
    for g in (*report.groups, *getattr(report, "similar", ())):
        kinds[g.kind] = kinds.get(g.kind, 0) + 1
    print(f"find_duplicates: {seconds:.1f} s, CPU {cpu:.1f} s "
          f"({', '.join(f'{k} {v:.1f} s' for k, v in report.seconds.items())}), load average {os.getloadavg()[0]:.2f}")
    print(f"candidate pairs {report.candidate_pairs:,}, keypoint-checked {getattr(report, 'checked_pairs', None)}, "
          f"confirmed {report.confirmed_pairs:,}; groups: " + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
          + f"; redundant files {summary['redundant_files']}")
    names = sorted(boxes)
    inside_another = sum(any(n != o and boxes[o][0] == boxes[n][0] and inside_fraction(boxes[n][1], boxes[o][1]) >= 1
                             for o in names) for n in names)
    print(f"crops that lie wholly inside another crop (the most a tool may call redundant): {inside_another}")
    fractions, mixed = [], 0
    for g in report.groups:
        if g.kind == "similar":
            continue
        source, keeper = boxes[os.path.basename(g.best.path)]
        for m in g.others:
            other_source, box = boxes[os.path.basename(m.path)]
            if other_source != source:
                mixed += 1
                fractions.append(0.0)
            else:
                fractions.append(inside_fraction(box, keeper))
    f = np.asarray(fractions)
    if len(f):
        print(f"redundant files by the share of their area inside the copy kept: 100 %: {int((f >= 1).sum())}, "
              f"99–100 %: {int(((f >= 0.99) & (f < 1)).sum())}, 95–99 %: {int(((f >= 0.95) & (f < 0.99)).sum())}, "
              f"under 95 %: {int((f < 0.95).sum())} (lowest {f.min():.1%}); from another photo: {mixed}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=("scale", "crops"), default="scale")
    ap.add_argument("--crops", type=int, default=400, help="crops case: how many crops")
    ap.add_argument("--folder", default=None,
                    help="crops case: where the crops and their catalog go (default: a new temporary folder)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--copies", type=int, default=5_000)
    ap.add_argument("--threshold", type=float, default=0.92)
    ap.add_argument("--nprobe", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0: FAISS's default)")
    ap.add_argument("--exact-queries", type=int, default=10_000,
                    help="exact range search for this many random rows only (its time is scaled to all n)")
    args = ap.parse_args(argv)
    if args.case == "crops":
        return crops_case(args)

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
