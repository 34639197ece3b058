"""Retrieval and verification metrics of labelled unit-length embeddings (numpy in, floats out).

Retrieval (every image queries all the others, leave-one-out):

* Recall@K: the fraction of queries with at least one image of their class among their K nearest
  neighbours (the metric-learning convention of Song et al., 2016, not the IR recall).
* MAP@R (Musgrave et al., 2020, "A Metric Learning Reality Check"): with R the number of other
  images of the query's class, ``AP@R = 1/R * sum_{i<=R} P@i * rel_i`` over the top R neighbours.

Only images whose class has another image are queries; single-image classes still sit in the
gallery as distractors. Neighbours come from an exact FAISS inner-product search; ties between
equal scores are broken by FAISS's order.

Verification (is this pair the same class?) over all pairs ``i < j``, scored by cosine similarity:
ROC AUC, the equal error rate, and TAR at fixed FARs. Above ``max_pairs`` pairs, a seeded uniform
sample of pairs is scored instead and the report says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class RetrievalMetrics:
    recall_at: dict[int, float]
    map_at_r: float
    queries: int


@dataclass(frozen=True)
class RocCurve:
    """Operating points from the strictest threshold to the loosest; ``far[0] == tar[0] == 0``."""

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray  # accept a pair when its score >= threshold (the first is +inf)


@dataclass(frozen=True)
class VerificationMetrics:
    roc_auc: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[float, float]
    genuine_pairs: int
    impostor_pairs: int
    sampled: bool  # True when a random sample of pairs was scored, not all of them
    curve: RocCurve = field(repr=False)
    genuine_scores: np.ndarray = field(repr=False)
    impostor_scores: np.ndarray = field(repr=False)


def _as_inputs(embeddings: np.ndarray, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    lab = np.asarray(labels)
    if emb.ndim != 2 or lab.shape != (emb.shape[0],):
        raise ValueError(f"need (N, D) embeddings and N labels, got {emb.shape} and {lab.shape}")
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


def roc_curve(scores: np.ndarray, genuine: np.ndarray) -> RocCurve:
    """ROC of ``score >= threshold`` over every distinct threshold (tied scores move together)."""
    scores = np.asarray(scores, dtype=np.float64)
    genuine = np.asarray(genuine, dtype=bool)
    n_pos, n_neg = int(genuine.sum()), int((~genuine).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC needs both genuine and impostor pairs")
    order = np.argsort(-scores, kind="stable")
    s, g = scores[order], genuine[order]
    tp, fp = np.cumsum(g), np.cumsum(~g)
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # only after the last of equal scores is a threshold
    tar = np.r_[0.0, tp[last_of_tie] / n_pos]
    far = np.r_[0.0, fp[last_of_tie] / n_neg]
    thresholds = np.r_[np.inf, s[last_of_tie]]
    return RocCurve(far, tar, thresholds)


def auc(curve: RocCurve) -> float:
    """Trapezoid area under TAR(FAR): equals P(genuine score > impostor score) + 0.5 P(tie)."""
    return float(np.sum(np.diff(curve.far) * (curve.tar[1:] + curve.tar[:-1]) / 2))


def equal_error_rate(curve: RocCurve) -> tuple[float, float]:
    """(EER, threshold): where FAR meets FRR = 1 - TAR, linearly interpolated between operating points."""
    diff = curve.far - (1.0 - curve.tar)  # rises from -1 (accept nothing) to +1 (accept all)
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        return float(curve.far[i]), float(curve.thresholds[i])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    eer = curve.far[i - 1] + t * (curve.far[i] - curve.far[i - 1])
    lo = curve.thresholds[i - 1] if np.isfinite(curve.thresholds[i - 1]) else curve.thresholds[i]
    return float(eer), float(lo + t * (curve.thresholds[i] - lo))


def tar_at_far(curve: RocCurve, far: float) -> float:
    """Best TAR of an operating point whose FAR does not exceed ``far`` (no interpolation)."""
    ok = curve.far <= far + 1e-12
    return float(curve.tar[ok].max())


def pair_scores(embeddings: np.ndarray, labels: Sequence[int] | np.ndarray, max_pairs: int = 5_000_000,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, bool]:
    """(cosine scores, same-class flags, sampled) of all pairs ``i < j``, or of ``max_pairs`` random ones."""
    emb, lab = _as_inputs(embeddings, labels)
    n = len(emb)
    total = n * (n - 1) // 2
    if total <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        sampled = False
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, size=max_pairs)
        j = rng.integers(0, n - 1, size=max_pairs)
        j = np.where(j >= i, j + 1, j)  # uniform over j != i
        i, j = np.minimum(i, j), np.maximum(i, j)
        sampled = True
    scores = np.empty(len(i), dtype=np.float32)
    step = 1_000_000
    for a in range(0, len(i), step):  # bounded memory: (step, D) rows at a time
        scores[a:a + step] = np.einsum("pd,pd->p", emb[i[a:a + step]], emb[j[a:a + step]])
    return scores, lab[i] == lab[j], sampled


def verification_metrics(embeddings: np.ndarray, labels: Sequence[int] | np.ndarray,
                         fars: Sequence[float] = (1e-3, 1e-2, 1e-1), max_pairs: int = 5_000_000,
                         seed: int = 0) -> VerificationMetrics | None:
    """None when the pairs are all genuine or all impostor (one class, or all classes singletons)."""
    scores, same, sampled = pair_scores(embeddings, labels, max_pairs, seed)
    if same.all() or not same.any():
        return None
    curve = roc_curve(scores, same)
    eer, threshold = equal_error_rate(curve)
    return VerificationMetrics(
        roc_auc=auc(curve), eer=eer, eer_threshold=threshold,
        tar_at_far={f: tar_at_far(curve, f) for f in fars},
        genuine_pairs=int(same.sum()), impostor_pairs=int((~same).sum()), sampled=sampled,
        curve=curve, genuine_scores=scores[same], impostor_scores=scores[~same],
    )
