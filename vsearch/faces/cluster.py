"""Grouping unlabelled faces into people, through a k-nearest-neighbour graph.

1. Each face's ``k`` most similar faces come from FAISS: an exact inner-product search up to
   :data:`EXACT_UP_TO` faces, an inverted-file index (``IVF``, ``nprobe`` lists) above, so memory
   stays O(N k) instead of the O(N^2) of a distance matrix.
2. Edges join two faces whose score reaches the verification threshold, except faces of one photo
   (two faces in one photo are two people).
3. dlib's Chinese whispers (the algorithm of dlib's own face clustering, deterministic) splits the
   graph into groups; unlike connected components it does not merge two people through one
   look-alike pair of faces.
4. Cannot-link is then made exact: where a group still holds several faces of one photo, the one
   with most edges inside the group stays, and the others form groups of their own (one face per
   photo each).

Timings, memory and purity/ARI at 10k-1M faces: ``benchmarks/face_cluster.py`` and
``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vsearch.faces.types import Progress

EXACT_UP_TO = 50_000  # faces; above, the neighbours come from an IVF index
NEIGHBOURS = 32  # per face, itself included
SEARCH_CHUNK = 4096  # faces searched per FAISS call, so that progress can be shown


def knn_graph(embeddings: np.ndarray, k: int = NEIGHBOURS, nprobe: int = 16,
              seed: int = 0, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), both (N, k'): each row's k' = min(k, N) most similar rows (itself
    included), best first; ids are -1 where an approximate search found fewer.
    ``progress(done, N)`` after each chunk of searched faces."""
    import faiss

    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = emb.shape
    k = min(k, n)
    if n <= EXACT_UP_TO:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))  # FAISS wants 39+ training points per list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        # k-means on 39 points per list and 10 rounds: training cost 2.5x lower than FAISS's
        # defaults, and coarse cells are enough when nprobe lists are searched
        index.cp.niter = 10
        sample = np.random.default_rng(seed).choice(n, min(n, 39 * nlist), replace=False)
        index.train(emb[np.sort(sample)])
        index.nprobe = nprobe
    index.add(emb)
    scores = np.empty((n, k), np.float32)
    ids = np.empty((n, k), np.int64)
    for start in range(0, n, SEARCH_CHUNK):
        stop = min(n, start + SEARCH_CHUNK)
        scores[start:stop], ids[start:stop] = index.search(emb[start:stop], k)
        if progress is not None:
            progress(stop, n)
    return scores, ids


def cluster_faces(embeddings: np.ndarray, photo_ids: Sequence[int], threshold: float,
                  min_size: int = 2, k: int = NEIGHBOURS, progress: Progress | None = None) -> np.ndarray:
    """Cluster labels per face: 0, 1, ... by decreasing cluster size, -1 for faces in clusters
    smaller than ``min_size``. ``threshold`` is the similarity score an edge must reach.
    ``progress``: see :func:`knn_graph` (the neighbour search is most of the time)."""
    if len(photo_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    scores, ids = knn_graph(embeddings, k, progress=progress)
    return cluster_graph(scores, ids, photo_ids, threshold, min_size)


def cluster_graph(scores: np.ndarray, ids: np.ndarray, photo_ids: Sequence[int], threshold: float,
                  min_size: int = 2) -> np.ndarray:
    """Steps 2-4 of the module docstring on a graph from :func:`knn_graph`."""
    photos = np.asarray(photo_ids)
    n = len(photos)
    rows = np.repeat(np.arange(n), ids.shape[1])
    cols, sims = ids.ravel(), scores.ravel()
    keep = (cols >= 0) & (sims >= threshold) & (rows != cols)
    rows, cols = np.minimum(rows[keep], cols[keep]), np.maximum(rows[keep], cols[keep])
    key = np.unique(rows.astype(np.int64) * n + cols)  # an edge found from both ends counts once
    rows, cols = key // n, key % n
    keep = photos[rows] != photos[cols]  # cannot-link: faces of one photo
    rows, cols = rows[keep], cols[keep]
    raw = _chinese_whispers(n, rows, cols)
    raw = _separate_faces_of_one_photo(raw, photos, rows, cols)
    return _number_by_size(raw, min_size)


def _chinese_whispers(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """dlib's Chinese whispers on an undirected graph; every vertex gets a label (the self-loops
    make isolated faces vertices of their own, as dlib's ``chinese_whispers_clustering`` does)."""
    from vsearch.faces.models import import_dlib

    dlib = import_dlib()
    self_loops = np.arange(n)
    edges = list(zip(np.r_[self_loops, rows].tolist(), np.r_[self_loops, cols].tolist()))
    return np.asarray(dlib.chinese_whispers(edges), dtype=np.int64)


def _separate_faces_of_one_photo(labels: np.ndarray, photos: np.ndarray, rows: np.ndarray,
                                 cols: np.ndarray) -> np.ndarray:
    """Where a cluster holds several faces of one photo, the best-connected one of them stays; the
    second of each such photo forms a new group with the seconds of the cluster's other photos
    (the third with the thirds, ...), split where its faces share no edge. No group can then hold
    two faces of one photo."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(labels)
    inside = labels[rows] == labels[cols]
    degree = np.bincount(rows[inside], minlength=n) + np.bincount(cols[inside], minlength=n)
    # rank of each face among the faces of its (cluster, photo): 0 for the best connected
    order = np.lexsort((np.arange(n), -degree, photos, labels))
    lab_s, pho_s = labels[order], photos[order]
    starts = np.r_[True, (lab_s[1:] != lab_s[:-1]) | (pho_s[1:] != pho_s[:-1])]
    first = np.flatnonzero(starts)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - first[np.cumsum(starts) - 1]
    movers = rank > 0
    if not movers.any():
        return labels
    key = labels.astype(np.int64) * (int(rank.max()) + 1) + rank  # (cluster, rank): one face per photo
    same = movers[rows] & movers[cols] & (key[rows] == key[cols])
    graph = coo_matrix((np.ones(int(same.sum())), (rows[same], cols[same])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    out = labels.copy()
    out[movers] = labels.max() + 1 + component[movers]
    return out


def _number_by_size(raw: np.ndarray, min_size: int) -> np.ndarray:
    """Labels 0, 1, ... by decreasing size (ties: the cluster whose first face comes first)."""
    _, first, inverse, sizes = np.unique(raw, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -sizes))  # cluster positions, biggest first
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    labels = rank[inverse.ravel()].astype(np.int64)
    labels[sizes[inverse.ravel()] < min_size] = -1
    # numbering skips nothing: every cluster of min_size or more comes before every smaller one
    return labels
