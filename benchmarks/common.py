"""Helpers shared by the benchmark scripts and tests: machine description, synthetic photo
folders and synthetic embeddings."""
from __future__ import annotations

import os
import platform

import numpy as np
from PIL import Image, ImageDraw


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, Python {platform.python_version()}, torch {torch.__version__}"


def synthetic_jpegs(folder: str, n: int, size=(640, 480), seed: int = 0, start: int = 0) -> list[str]:
    """Photo-like JPEGs (smooth gradients with shapes and mild noise, ~60–100 KB at q=90), so that
    decode cost resembles camera pictures more than random noise (which compresses terribly).
    Files ``img_{start:06d}.jpg`` … ``img_{n-1:06d}.jpg``; existing ones are kept."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed if start == 0 else (seed, start))
    w, h = size
    yy, xx = (a.astype(np.float32) for a in np.mgrid[0:h, 0:w])
    paths = []
    for i in range(start, n):
        path = os.path.join(folder, f"img_{i:06d}.jpg")
        paths.append(path)
        if os.path.exists(path):
            continue
        c0, c1 = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
        t = (xx * np.float32(rng.uniform(0.3, 1) / w) + yy * np.float32(rng.uniform(0.3, 1) / h))[..., None] / 2
        c0, c1 = c0.astype(np.float32), c1.astype(np.float32)
        noise = rng.standard_normal((h, w, 3), dtype=np.float32) * 6  # float32: twice as fast as float64
        arr = (c0 + (c1 - c0) * t + noise).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = rng.integers(0, w - 50), rng.integers(0, h - 50)
            box = [int(x0), int(y0), int(x0 + rng.integers(30, 250)), int(y0 + rng.integers(30, 200))]
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=color)
        img.save(path, quality=90)
    return paths


def synthetic_jpegs_parallel(folder: str, n: int, processes: int | None = None, chunk: int = 250) -> int:
    """:func:`synthetic_jpegs` in ``processes`` worker processes (one chunk of files each at a
    time); returns how many files the folder holds."""
    from multiprocessing import Pool

    starts = range(0, n, chunk)
    with Pool(processes or os.cpu_count()) as pool:
        pool.starmap(synthetic_jpegs, [(folder, min(n, s + chunk), (640, 480), 0, s) for s in starts])
    return sum(1 for name in os.listdir(folder) if name.endswith(".jpg"))


def clustered(n: int, dim: int, n_clusters: int, seed: int, noise: float = 0.8) -> np.ndarray:
    """(n, dim) unit vectors around ``n_clusters`` random centres: :func:`labelled_clusters`
    without the labels."""
    return labelled_clusters(n, dim, n_clusters, seed, noise)[0]


def clustered_with_queries(n: int, n_queries: int, dim: int, n_clusters: int, seed: int,
                           noise: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(database (n, dim), queries (n_queries, dim)) drawn around the *same* centres: queries are
    held-out points of the database's clusters, as a photo query is like some photos in the
    collection. (Queries from another seed would sit around other centres, with nearest
    neighbours at cosine ≈ 0.2, and recall figures would describe near-random queries.)"""
    both = labelled_clusters(n + n_queries, dim, n_clusters, seed, noise)[0]
    return both[:n], both[n:]


def labelled_clusters(n: int, dim: int, n_clusters: int, seed: int, noise: float = 0.8,
                      balanced: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The one generator of synthetic embeddings, for benchmarks and tests: (``(n, dim)`` float32
    unit vectors, ``(n,)`` int64 index of the centre each was drawn around).

    Centres are random unit vectors; a point is its centre plus isotropic Gaussian noise of norm
    about ``noise``, renormalised, so its cosine to the centre is about ``1 / sqrt(1 + noise²)``
    (0.78 at the default 0.8), like real embeddings; uniform random vectors are the worst case
    for IVF and unlike photos. The noise is isotropic, which makes neighbours within a cluster
    near-ties: a hard case for PQ. Centres are drawn at random per point, or with ``balanced``
    ``n // n_clusters`` points per centre in centre order (labelled identities, e.g. faces).
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_clusters), n // n_clusters) if balanced else np.empty(n, np.int64)
    n = len(labels)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # in chunks: 1M × 512 of float64 noise would be 4 GB
        m = min(100_000, n - start)
        if not balanced:
            labels[start : start + m] = rng.integers(0, n_clusters, m)
        x = centres[labels[start : start + m]] + (noise / np.sqrt(dim)) * rng.normal(size=(m, dim)).astype(np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out, labels.astype(np.int64)
