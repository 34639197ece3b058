"""Retrieval and classification metrics (pure numpy, tested against hand-computed values)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def recall_at_k(similarity: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries (rows) with at least one relevant item (column) in their top k.

    The standard Flickr30k/COCO protocol: image→text counts an image as found when any of its
    captions is in the top k; text→image, each caption has exactly one relevant image.
    """
    order = np.argsort(-similarity, axis=1, kind="stable")
    out = {}
    for k in ks:
        top = order[:, :k]
        hits = [bool(rel & set(row.tolist())) for row, rel in zip(top, relevant)]
        out[k] = float(np.mean(hits)) if hits else 0.0
    return out


def topk_accuracy(probs: np.ndarray, targets: Sequence[int], ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    order = np.argsort(-probs, axis=1, kind="stable")
    targets = np.asarray(targets)
    return {k: float(np.mean([t in row[:k] for row, t in zip(order, targets)])) for k in ks}


def confusion_matrix(targets: Sequence[int], predictions: Sequence[int], n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    for t, p in zip(targets, predictions):
        m[t, p] += 1
    return m


def most_confused(matrix: np.ndarray, labels: Sequence[str], n: int = 5) -> list[tuple[str, str, int]]:
    """(true, predicted, count) for the largest off-diagonal cells."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:n]
    out = []
    for idx in flat:
        t, p = np.unravel_index(idx, off.shape)
        if off[t, p] > 0:
            out.append((labels[t], labels[p], int(off[t, p])))
    return out
