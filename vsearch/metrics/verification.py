"""Verification metrics on similarity scores: higher = more alike, a pair is accepted when
``score >= threshold``. One implementation, used by ``faces calibrate`` and ``eval embeddings``.

Definitions (empirical, no smoothing):

* FAR(t) = fraction of impostor pairs with score >= t; TAR(t) = fraction of genuine pairs with
  score >= t; FRR(t) = 1 - TAR(t). The ROC is scikit-learn's ``roc_curve`` with every distinct
  score as a threshold (tied scores move together); its first point (0, 0) is at +inf.
* ROC AUC = P(genuine > impostor) + P(tie) / 2, scikit-learn's ``roc_auc_score``.
* EER: where FAR meets FRR on the ROC, linearly interpolated between the two operating points
  that straddle FAR = FRR (the threshold interpolated the same way).
* TAR at FAR f: the best TAR of an operating point whose FAR does not exceed f. Its threshold is
  the smallest one with FAR(t) <= f (just above the impostor score that would be one false accept
  too many). With N impostor pairs the smallest non-zero FAR measurable is 1/N, so a target below
  that is reported as not *resolved*.
* An upper confidence bound for a FAR measured as k false accepts in n impostor pairs is the
  one-sided Clopper–Pearson bound (exact binomial; with k = 0 and 95% it is about 3/n).
* Pairs are not independent: every photo of one person takes part in many pairs, and a few
  look-alike people dominate the false accepts. :func:`identity_bootstrap` resamples *people*
  (with their pairs), not pairs, so its interval shows how much the figure depends on who happened
  to be in the calibration set.

NaN or infinite scores and empty sets raise :class:`MetricsInputError` (the rule of every metric:
:mod:`vsearch.metrics.inputs`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vsearch.metrics.inputs import MetricsInputError, check_embeddings, check_scores

CONFIDENCE = 0.95  # of every bound and interval reported by default


def _pair_arrays(genuine, impostor) -> tuple[np.ndarray, np.ndarray]:
    g, i = check_scores(genuine, "genuine scores"), check_scores(impostor, "impostor scores")
    if g.size == 0 or i.size == 0:
        raise MetricsInputError("need at least one genuine and one impostor score")
    return g, i


@dataclass(frozen=True)
class RocCurve:
    """Operating points from the strictest threshold to the loosest; ``far[0] == tar[0] == 0``
    at ``thresholds[0] == inf`` and the last point accepts every pair (1, 1)."""

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray  # accept a pair when its score >= threshold


def roc(genuine, impostor) -> RocCurve:
    from sklearn.metrics import roc_curve

    g, i = _pair_arrays(genuine, impostor)
    far, tar, thr = roc_curve(np.r_[np.ones(g.size), np.zeros(i.size)], np.r_[g, i], drop_intermediate=False)
    thr = thr.astype(np.float64)
    thr[0] = np.inf  # scikit-learn >= 1.3 already says inf; older ones say max + 1
    return RocCurve(far, tar, thr)


def roc_auc(genuine, impostor) -> float:
    from sklearn.metrics import roc_auc_score

    g, i = _pair_arrays(genuine, impostor)
    return float(roc_auc_score(np.r_[np.ones(g.size), np.zeros(i.size)], np.r_[g, i]))


def equal_error_rate(curve: RocCurve) -> tuple[float, float]:
    """(EER, threshold) as defined in the module docstring."""
    diff = curve.far - (1.0 - curve.tar)  # rises from -1 (accept nothing) to +1 (accept all)
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        return float(curve.far[i]), float(curve.thresholds[i])
    t = -diff[i - 1] / (diff[i] - diff[i - 1])
    eer = curve.far[i - 1] + t * (curve.far[i] - curve.far[i - 1])
    lo = curve.thresholds[i - 1] if np.isfinite(curve.thresholds[i - 1]) else curve.thresholds[i]
    return float(eer), float(lo + t * (curve.thresholds[i] - lo))


def rates_at(genuine, impostor, threshold: float) -> tuple[float, float]:
    """(TAR, FAR) when accepting ``score >= threshold``."""
    g, i = _pair_arrays(genuine, impostor)
    return float(np.mean(g >= threshold)), float(np.mean(i >= threshold))


def far_at(impostor, threshold: float) -> tuple[int, int]:
    """(false accepts, impostor pairs) at ``threshold``."""
    i = check_scores(impostor, "impostor scores")
    return int(np.count_nonzero(i >= threshold)), int(i.size)


def threshold_at_far(impostor, target_far: float) -> float:
    """Smallest threshold t with FAR(t) <= target_far; -inf when the target allows every pair."""
    i = np.sort(check_scores(impostor, "impostor scores"))[::-1]
    if i.size == 0:
        raise MetricsInputError("no impostor scores")
    if not 0 <= target_far <= 1:
        raise MetricsInputError(f"a false accept rate is between 0 and 1, not {target_far:g}")
    allowed = int(math.floor(target_far * i.size + 1e-9))  # false accepts we may have
    if allowed >= i.size:
        return -math.inf
    # accepting i[allowed] (the allowed+1-th highest) would be one false accept too many
    return float(np.nextafter(i[allowed], np.inf))


@dataclass(frozen=True)
class TarAtFar:
    target_far: float
    threshold: float  # the lowest score accepted (every score when the target is 1)
    tar: float
    far: float  # achieved on the data (<= target_far)
    resolved: bool  # False when 1/N impostor pairs > target_far: the figure is not measurable


def tar_at_far(genuine, impostor, target_far: float) -> TarAtFar:
    g, i = _pair_arrays(genuine, impostor)
    t = threshold_at_far(i, target_far)
    if t == -math.inf:
        t = float(min(g.min(), i.min()))
    tar, far = rates_at(g, i, t)
    return TarAtFar(target_far, t, tar, far, resolved=i.size * target_far >= 1.0 - 1e-9)


def clopper_pearson_upper(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided upper confidence bound of a binomial rate seen as ``k`` of ``n``."""
    from scipy.stats import beta

    if n <= 0 or not 0 <= k <= n:
        raise MetricsInputError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    if k >= n:
        return 1.0
    return float(beta.ppf(confidence, k + 1, n - k))


@dataclass(frozen=True)
class BootstrapInterval:
    """Percentile intervals at one threshold over resampled identities."""

    threshold: float
    far_low: float
    far_high: float
    tar_low: float
    tar_high: float
    identities: int
    replicates: int
    confidence: float

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "far": [self.far_low, self.far_high],
                "tar": [self.tar_low, self.tar_high], "identities": self.identities,
                "replicates": self.replicates, "confidence": self.confidence,
                "resampled": "identities"}


def identity_bootstrap(scores, id_a, id_b, threshold: float, replicates: int = 1000,
                       confidence: float = CONFIDENCE, seed: int = 0) -> BootstrapInterval:
    """FAR and TAR intervals at ``threshold`` by resampling identities with replacement.

    ``scores[p]`` is pair p's score and ``id_a[p]``, ``id_b[p]`` its two identities (integer codes;
    equal = a genuine pair). A replicate draws as many identities as there are, with replacement;
    an identity drawn w times weighs w, so its genuine pairs count w times and an impostor pair
    of identities drawn w and v times counts w * v times (a person is never paired with their own
    copy as an impostor). Computed on per-identity-pair counts, so its cost does not grow with the
    number of pairs: (replicates x identities^2)."""
    s = check_scores(scores)
    a, b = np.asarray(id_a).ravel(), np.asarray(id_b).ravel()
    if not (a.shape == b.shape == s.shape):
        raise MetricsInputError("scores and both identity arrays must have one entry per pair")
    if s.size == 0:
        raise MetricsInputError("no pairs to resample")
    codes, inv = np.unique(np.r_[a, b], return_inverse=True)
    a, b = inv[:s.size], inv[s.size:]
    n_id = codes.size
    accepted = s >= threshold
    genuine = a == b
    g_tot = np.bincount(a[genuine], minlength=n_id).astype(np.float64)
    g_acc = np.bincount(a[genuine & accepted], minlength=n_id).astype(np.float64)
    imp = ~genuine
    lo, hi = np.minimum(a[imp], b[imp]), np.maximum(a[imp], b[imp])
    flat = lo * n_id + hi
    i_tot = np.bincount(flat, minlength=n_id * n_id).astype(np.float64).reshape(n_id, n_id)
    i_acc = np.bincount(flat[accepted[imp]], minlength=n_id * n_id).astype(np.float64).reshape(n_id, n_id)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_id, np.full(n_id, 1.0 / n_id), size=replicates).astype(np.float64)  # (B, P)
    with np.errstate(invalid="ignore", divide="ignore"):
        # w^T M w per replicate, as one matrix product and a row-wise dot
        far = ((weights @ i_acc) * weights).sum(axis=1) / ((weights @ i_tot) * weights).sum(axis=1)
        tar = (weights @ g_acc) / (weights @ g_tot)
    q = [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100]
    far, tar = far[np.isfinite(far)], tar[np.isfinite(tar)]  # replicates without any pair of a kind
    f_lo, f_hi = np.percentile(far, q) if far.size else (math.nan, math.nan)
    t_lo, t_hi = np.percentile(tar, q) if tar.size else (math.nan, math.nan)
    return BootstrapInterval(float(threshold), float(f_lo), float(f_hi), float(t_lo), float(t_hi),
                             int(n_id), int(replicates), confidence)


def all_pairs(embeddings: np.ndarray, labels: Sequence | np.ndarray, max_pairs: int = 5_000_000,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(cosine scores, identity code of the first face, of the second, sampled) of all pairs
    ``i < j`` of unit-length ``embeddings``, or of ``max_pairs`` seeded random pairs (i != j)."""
    emb, lab = check_embeddings(embeddings, labels)
    codes = np.unique(lab, return_inverse=True)[1].ravel()
    n = len(emb)
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        sampled = False
    else:
        rng = np.random.default_rng(seed)
        i = rng.integers(0, n, size=max_pairs)
        j = rng.integers(0, n - 1, size=max_pairs)
        j = np.where(j >= i, j + 1, j)  # uniform over j != i
        i, j = np.minimum(i, j), np.maximum(i, j)
        sampled = True
    scores = np.empty(len(i), dtype=np.float64)
    step = 1_000_000
    for start in range(0, len(i), step):  # bounded memory: (step, D) rows at a time
        scores[start:start + step] = np.einsum("pd,pd->p", emb[i[start:start + step]], emb[j[start:start + step]])
    return check_scores(scores, "pair scores"), codes[i], codes[j], sampled


@dataclass(frozen=True)
class VerificationMetrics:
    roc_auc: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[float, float]
    genuine_pairs: int
    impostor_pairs: int
    sampled: bool  # True when a random sample of pairs was scored, not all of them
    curve: RocCurve
    genuine_scores: np.ndarray
    impostor_scores: np.ndarray


def verification_metrics(embeddings: np.ndarray, labels: Sequence | np.ndarray,
                         fars: Sequence[float] = (1e-3, 1e-2, 1e-1), max_pairs: int = 5_000_000,
                         seed: int = 0) -> VerificationMetrics | None:
    """All-pairs verification figures of labelled embeddings; None when the pairs are all genuine
    or all impostor (one class, or every class a single image)."""
    scores, a, b, sampled = all_pairs(embeddings, labels, max_pairs, seed)
    same = a == b
    if same.all() or not same.any():
        return None
    g, i = scores[same], scores[~same]
    curve = roc(g, i)
    eer, threshold = equal_error_rate(curve)
    return VerificationMetrics(
        roc_auc=roc_auc(g, i), eer=eer, eer_threshold=threshold,
        tar_at_far={f: tar_at_far(g, i, f).tar for f in fars},
        genuine_pairs=int(g.size), impostor_pairs=int(i.size), sampled=sampled,
        curve=curve, genuine_scores=g, impostor_scores=i,
    )
