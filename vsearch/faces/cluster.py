"""Grouping unlabelled faces into people.

Complete-linkage agglomerative clustering on cosine distance (1 - score), stopped at the
verification threshold: every two faces in a cluster are at least as alike as a verify match.
The constraint "two faces in one photo are two different people" is exact, not a heuristic:
pairs from the same photo get a distance above any threshold, and under complete linkage a cluster
can only absorb another if *all* its cross pairs are below the threshold, so such a pair can never
end up in one cluster.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

CANNOT_LINK = 4.0  # larger than any cosine distance (at most 2)


def cluster_faces(embeddings: np.ndarray, photo_ids: Sequence[int], threshold: float,
                  min_size: int = 2) -> np.ndarray:
    """Cluster labels per face: 0, 1, ... by decreasing cluster size, -1 for faces in clusters
    smaller than ``min_size``. ``threshold`` is the similarity score a pair must reach.

    Memory is O(N^2) (a full distance matrix), fine for tens of thousands of faces."""
    n = len(photo_ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.array([0 if min_size <= 1 else -1])
    from sklearn.cluster import AgglomerativeClustering

    emb = np.asarray(embeddings, dtype=np.float64)
    dist = np.clip(1.0 - emb @ emb.T, 0.0, 2.0)
    photos = np.asarray(photo_ids)
    same_photo = photos[:, None] == photos[None, :]
    np.fill_diagonal(same_photo, False)
    dist[same_photo] = CANNOT_LINK
    np.fill_diagonal(dist, 0.0)
    # merge while the farthest pair of the merged cluster is still within the threshold distance
    model = AgglomerativeClustering(n_clusters=None, metric="precomputed", linkage="complete",
                                    distance_threshold=1.0 - threshold + 1e-9)
    raw = model.fit_predict(dist)
    sizes = np.bincount(raw)
    order = sorted(range(len(sizes)), key=lambda c: (-sizes[c], np.nonzero(raw == c)[0][0]))
    labels = np.full(n, -1, dtype=np.int64)
    next_id = 0
    for c in order:
        if sizes[c] >= min_size:
            labels[raw == c] = next_id
            next_id += 1
    return labels
