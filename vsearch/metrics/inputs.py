"""What every metric checks before it measures: one rule for retrieval, classification,
verification and detection figures alike.

* **Values that cannot be ranked are refused.** NaN or infinite scores, similarities,
  probabilities, embeddings or box coordinates raise :class:`MetricsInputError` naming how many
  there are; they are never sorted first or last (where NaN lands depends on the sort, and on
  the input order).
* **Empty input is refused**: no queries, no scores, no ground truth (as in scikit-learn, whose
  metrics raise on an empty array).
* **A figure that non-empty input leaves undefined is NaN**, JSON null, never 0: Recall@K and
  MAP@R when no query has a relevant item (such a query is left out), the mAP when every
  ground-truth box is difficult (the AP of a class without a box that is not difficult is None);
  ``verification_metrics`` is None when every pair is of one kind.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vsearch.errors import VSearchError


class MetricsInputError(VSearchError, ValueError):
    """Input that cannot be measured: empty, NaN or infinite values, shapes that do not match."""


def check_scores(scores, what: str = "scores") -> np.ndarray:
    """A float64 1-d copy of ``scores``; NaN or infinite values are an error naming how many."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    bad = ~np.isfinite(s)
    if bad.any():
        raise MetricsInputError(f"{int(bad.sum())} of {s.size} {what} are NaN or infinite "
                                "(embeddings with NaN values, or a model that diverged)")
    return s


def check_matrix(values, what: str) -> np.ndarray:
    """A float64 ``(queries, items)`` copy of ``values`` with at least one query and one item,
    every value finite."""
    m = np.asarray(values, dtype=np.float64)
    if m.ndim != 2:
        raise MetricsInputError(f"{what} must be a (queries, items) matrix, got shape {m.shape}")
    if m.size == 0:
        raise MetricsInputError(f"no {what} to measure (shape {m.shape})")
    check_scores(m, what)
    return m


def check_embeddings(embeddings, labels) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(N, D)`` embeddings and their N labels; N >= 1 and every value finite."""
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    lab = np.asarray(labels)
    if emb.ndim != 2 or lab.shape != (emb.shape[0],):
        raise MetricsInputError(f"need (N, D) embeddings and N labels, got {emb.shape} and {lab.shape}")
    if emb.shape[0] == 0:
        raise MetricsInputError("no embeddings to measure")
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise MetricsInputError(f"{int(bad.sum())} of {len(emb)} embeddings hold NaN or infinite values")
    return emb, lab


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """The cut-offs K of Recall@K or top-k accuracy: positive integers."""
    out = tuple(ks)
    if not out or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in out):
        raise MetricsInputError(f"k must be one or more positive integers, got {list(out)}")
    return tuple(int(k) for k in out)


__all__ = ["MetricsInputError", "check_scores", "check_matrix", "check_embeddings", "check_ks"]
