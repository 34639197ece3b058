"""Face clustering at library scale: time and peak memory at 10k / 100k / 1M synthetic faces,
purity and ARI on real face photos, and the complete-linkage N x N baseline it replaced.

Synthetic faces imitate dlib's score distribution: unit vectors ``a m + b c_person + s noise``
(128-d) with a common direction ``m``, so different people score about 0.80 and photos of one
person about 0.93, as dlib's embeddings do on real photos; 2-18 faces per person, and faces
grouped 1-3 per photo (never one person twice in a photo). Every size runs in its own process,
so the peak RSS printed is that size's alone.

    python benchmarks/face_cluster.py [--sizes 10000 100000 1000000] [--baseline 10000]
                                      [--images DIR]

``--images``: the face_recognition sdist's ``tests/test_images`` (Obama x5, Biden), joined by
matplotlib's Grace Hopper and scikit-image's astronaut (Eileen Collins).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DIM = 128
COMMON, PERSON, NOISE = 0.80, 0.13, 0.07  # squared weights: impostor cos ~0.80, genuine ~0.93
THRESHOLD = 0.915  # the dlib embedder's default


def synthetic_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings (n, 128) float32, person per face, photo per face)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 19, size=n // 2 + 1)
    person = np.repeat(np.arange(sizes.size), sizes)[:n]
    n_people = int(person.max()) + 1
    common = rng.normal(size=DIM).astype(np.float32)
    common /= np.linalg.norm(common)
    centres = rng.normal(size=(n_people, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):  # float32 chunks: 1M faces without a float64 copy
        stop = min(n, start + 100_000)
        noise = rng.standard_normal(size=(stop - start, DIM), dtype=np.float32) / np.sqrt(DIM)
        emb[start:stop] = (np.sqrt(COMMON) * common + np.sqrt(PERSON) * centres[person[start:stop]]
                           + np.sqrt(NOISE) * noise)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # photos of 1-3 faces of different people
    order = rng.permutation(n)
    photo = np.empty(n, np.int64)
    photo[order] = np.arange(n) // 3
    slot_person = person[order]
    clash = np.r_[False, (slot_person[1:] == slot_person[:-1]) & (photo[order][1:] == photo[order][:-1])]
    clash |= np.r_[False, False, (slot_person[2:] == slot_person[:-2]) & (photo[order][2:] == photo[order][:-2])]
    photo[order[clash]] = n + np.arange(int(clash.sum()))  # a photo of its own
    return emb, person, photo


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(n: int, method: str) -> dict:
    import faiss  # noqa: F401  (imports before the baseline, so that the figure is the work's own)
    from sklearn.cluster import AgglomerativeClustering  # noqa: F401
    from sklearn.metrics import adjusted_rand_score

    from vsearch.faces.cluster import cluster_graph, knn_graph
    from vsearch.faces.models import import_dlib

    import_dlib()
    emb, person, photo = synthetic_faces(n)
    base_mb = rss_mb()  # code and the faces themselves
    t0 = time.perf_counter()
    if method == "knn":
        scores, ids = knn_graph(emb)
        t1 = time.perf_counter()
        labels = cluster_graph(scores, ids, photo, THRESHOLD, min_size=1)
    else:
        labels = complete_linkage(emb, photo, THRESHOLD)
        t1 = time.perf_counter()
    t2 = time.perf_counter()
    return {"faces": n, "method": method, "people": int(person.max()) + 1,
            "knn_s": round(t1 - t0, 2) if method == "knn" else None,
            "cluster_s": round(t2 - t1, 2) if method == "knn" else None, "total_s": round(t2 - t0, 2),
            "peak_rss_mb": round(peak_rss_mb()), "rss_before_mb": round(base_mb),
            "ari": round(float(adjusted_rand_score(person, labels)), 4),
            "purity": round(purity(person, labels), 4), "clusters": int(labels.max()) + 1}


def complete_linkage(emb: np.ndarray, photo: np.ndarray, threshold: float) -> np.ndarray:
    """The clustering this replaced: complete linkage on an N x N distance matrix."""
    from sklearn.cluster import AgglomerativeClustering

    dist = np.clip(1.0 - emb.astype(np.float64) @ emb.T.astype(np.float64), 0.0, 2.0)
    same = photo[:, None] == photo[None, :]
    np.fill_diagonal(same, False)
    dist[same] = 4.0
    np.fill_diagonal(dist, 0.0)
    return AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="complete",
                                   distance_threshold=1.0 - threshold + 1e-9).fit_predict(dist)


def purity(truth: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of faces whose cluster's most common person is their own."""
    pairs = np.stack([labels, truth], axis=1)
    _, counts = np.unique(pairs, axis=0, return_counts=True)
    keys = np.unique(pairs, axis=0)[:, 0]
    best = {}
    for k, c in zip(keys.tolist(), counts.tolist()):
        best[k] = max(best.get(k, 0), c)
    return sum(best.values()) / len(truth)


def real_faces(images: str) -> dict:
    import shutil
    import tempfile

    import matplotlib.cbook as cbook
    from PIL import Image
    from skimage import data
    from sklearn.metrics import adjusted_rand_score

    from vsearch.faces.cluster import cluster_faces
    from vsearch.faces.pipeline import ENROLL_CONFIG, load_pipeline

    tmp = tempfile.mkdtemp()
    Image.fromarray(data.astronaut()).save(os.path.join(tmp, "collins.jpg"), quality=92)
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), os.path.join(tmp, "hopper.jpg"))
    photos = [(os.path.join(images, f), "obama") for f in
              ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"]]
    photos += [(os.path.join(images, "biden.jpg"), "biden"), (os.path.join(tmp, "hopper.jpg"), "hopper"),
               (os.path.join(tmp, "collins.jpg"), "collins")]
    pipe = load_pipeline()
    emb = np.stack([pipe.analyze(p, ENROLL_CONFIG).faces[0].embedding for p, _ in photos])
    truth = np.unique([w for _, w in photos], return_inverse=True)[1]
    labels = cluster_faces(emb, list(range(len(photos))), THRESHOLD, min_size=1)
    return {"faces": len(photos), "people": int(truth.max()) + 1, "clusters": int(labels.max()) + 1,
            "ari": round(float(adjusted_rand_score(truth, labels)), 4), "purity": round(purity(truth, labels), 4)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--baseline", type=int, nargs="*", default=[10_000], help="sizes for complete linkage")
    ap.add_argument("--images", help="the face_recognition sdist's tests/test_images")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--method", default="knn", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.method)))
        return
    from benchmarks.common import machine

    print(f"# {machine()}, load average {os.getloadavg()[0]:.1f}")
    runs = [(n, "complete-linkage") for n in args.baseline] + [(n, "knn") for n in args.sizes]
    for n, method in runs:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--method", method],
                             capture_output=True, text=True)
        print(out.stdout.strip() or f'{{"faces": {n}, "method": "{method}", "failed": {out.stderr[-300:]!r}}}',
              flush=True)
    if args.images:
        print(json.dumps({"real": real_faces(args.images)}))


if __name__ == "__main__":
    main()
