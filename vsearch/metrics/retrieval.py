"""Retrieval and classification metrics of embeddings (numpy in, floats out).

Labelled embeddings (every image queries all the others, leave-one-out):

* Recall@K: the fraction of queries with at least one image of their class among their K nearest
  neighbours (the metric-learning convention of Song et al., 2016, not the IR recall).
* MAP@R (Musgrave et al., 2020, "A Metric Learning Reality Check"): with R the number of other
  images of the query's class, ``AP@R = 1/R * sum_{i<=R} P@i * rel_i`` over the top R neighbours.

Only images whose class has another image are queries; single-image classes still sit in the
gallery as distractors. Neighbours come from an exact FAISS inner-product search; ties between
equal scores are broken by FAISS's order. (pytorch-metric-learning's ``AccuracyCalculator``
computes the same two figures; the tests check that they agree.)

Image-text retrieval and zero-shot classification: :func:`recall_at_k` over a similarity matrix
(the Flickr30k/COCO protocol), :func:`topk_accuracy`, a confusion matrix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vsearch.metrics.verification import MetricsInputError


@dataclass(frozen=True)
class RetrievalMetrics:
    recall_at: dict[int, float]
    map_at_r: float
    queries: int


def _as_inputs(embeddings: np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    lab = np.asarray(labels)
    if emb.ndim != 2 or lab.shape != (emb.shape[0],):
        raise MetricsInputError(f"need (N, D) embeddings and N labels, got {emb.shape} and {lab.shape}")
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise MetricsInputError(f"{int(bad.sum())} of {len(emb)} embeddings hold NaN or infinite values")
    return emb, lab


def neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """``(N, k)`` indices of each row's k most similar other rows (inner product), best first."""
    import faiss

    n = embeddings.shape[0]
    k = min(k, n - 1)
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(embeddings)
    _, found = index.search(embeddings, k + 1)  # (N, k+1): usually self first, unless tied with a duplicate
    out = np.empty((n, k), dtype=np.int64)
    for i, row in enumerate(found):
        row = row[row != i]
        out[i] = row[:k]
    return out


def retrieval_metrics(embeddings: np.ndarray, labels: Sequence[int] | np.ndarray,
                      ks: Sequence[int] = (1, 5)) -> RetrievalMetrics:
    emb, lab = _as_inputs(embeddings, labels)
    classes, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    r = counts[inverse] - 1  # (N,) other images of each image's class
    queries = np.flatnonzero(r > 0)
    if len(queries) == 0 or len(emb) < 2:
        return RetrievalMetrics({k: float("nan") for k in ks}, float("nan"), 0)
    k_max = min(len(emb) - 1, max(max(ks), int(r.max())))
    nn_idx = neighbours(emb, k_max)[queries]  # (Q, k_max)
    relevant = lab[nn_idx] == lab[queries][:, None]  # (Q, k_max) bool
    recall = {k: float(relevant[:, :k].any(axis=1).mean()) for k in ks}
    rq = r[queries]
    ranks = np.arange(1, k_max + 1)
    precision_at_i = np.cumsum(relevant, axis=1) / ranks  # (Q, k_max)
    within_r = ranks[None, :] <= rq[:, None]
    ap_at_r = (precision_at_i * relevant * within_r).sum(axis=1) / rq
    return RetrievalMetrics(recall, float(ap_at_r.mean()), int(len(queries)))



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
