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
(the Flickr30k/COCO protocol), :func:`topk_accuracy`, a confusion matrix. Both rank with
scikit-learn's rule for equal scores (``top_k_accuracy_score``): of two items or classes with the
same score, the one with the *higher* index ranks first.

Empty input, NaN and infinite values are refused; a figure without any query is NaN
(:mod:`vsearch.metrics.inputs`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vsearch.metrics.inputs import MetricsInputError, check_embeddings, check_ks, check_matrix


@dataclass(frozen=True)
class RetrievalMetrics:
    recall_at: dict[int, float]
    map_at_r: float
    queries: int


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
    emb, lab = check_embeddings(embeddings, labels)
    ks = check_ks(ks)
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


def _descending(scores: np.ndarray) -> np.ndarray:
    """Column indices of each row from the highest score to the lowest; of equal scores the higher
    index first (a stable ascending sort reversed: scikit-learn's ``top_k_accuracy_score``)."""
    return np.argsort(scores, axis=1, kind="stable")[:, ::-1]


def recall_at_k(similarity: np.ndarray, relevant: Sequence[set[int]], ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Fraction of queries (rows) with at least one relevant item (column) in their top k.

    The standard Flickr30k/COCO protocol: image→text counts an image as found when any of its
    captions is in the top k; text→image, each caption has exactly one relevant image. A query
    with no relevant item is not a query (as in :func:`retrieval_metrics`); without any query
    each figure is NaN. Equal scores: see the module docstring.
    """
    sim = check_matrix(similarity, "similarity scores")
    ks = check_ks(ks)
    if len(relevant) != sim.shape[0]:
        raise MetricsInputError(f"{sim.shape[0]} queries (rows) but {len(relevant)} sets of relevant items")
    order = _descending(sim)
    first_hit = []  # (Q,) rank of each query's best-ranked relevant item
    for q, (row, rel) in enumerate(zip(order, relevant)):
        rel = set(rel)
        if not rel:
            continue
        if not all(isinstance(j, (int, np.integer)) and 0 <= j < sim.shape[1] for j in rel):
            raise MetricsInputError(f"query {q}: relevant items {sorted(rel)} are not all columns 0..{sim.shape[1] - 1}")
        first_hit.append(int(np.flatnonzero(np.isin(row, list(rel)))[0]))
    if not first_hit:
        return {k: float("nan") for k in ks}
    ranks = np.asarray(first_hit)
    return {k: float(np.mean(ranks < k)) for k in ks}


def predicted_classes(probs: np.ndarray) -> np.ndarray:
    """``(N,)`` top-1 class of each row, with the tie rule of :func:`topk_accuracy` (so that a
    confusion matrix of these predictions agrees with its top-1 accuracy)."""
    p = check_matrix(probs, "class probabilities")
    return _descending(p)[:, 0]


def topk_accuracy(probs: np.ndarray, targets: Sequence[int], ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose target class is among their k most probable classes.

    Equal probabilities are ordered as scikit-learn's ``top_k_accuracy_score`` orders them: the
    class with the higher index first. A row whose target ties for the k-th place therefore counts
    as a hit when the target has the higher index and as a miss otherwise, and the figure equals
    scikit-learn's for any input (with ``labels=range(C)``, C >= 3 classes).
    """
    p = check_matrix(probs, "class probabilities")
    ks = check_ks(ks)
    t = np.asarray(targets)
    if t.shape != (p.shape[0],):
        raise MetricsInputError(f"{p.shape[0]} rows of probabilities but targets of shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer) or t.min() < 0 or t.max() >= p.shape[1]:
        raise MetricsInputError(f"targets must be class indices 0..{p.shape[1] - 1}")
    rank = np.argmax(_descending(p) == t[:, None], axis=1)  # (N,) position of each target
    return {k: float(np.mean(rank < k)) for k in ks}


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
