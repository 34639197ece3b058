"""Verification metrics on similarity scores (higher = more alike; a pair is accepted when
``score >= threshold``).

Definitions (all empirical, no smoothing):

* FAR(t) = fraction of impostor pairs with score >= t; TAR(t) = fraction of genuine pairs with
  score >= t; FRR(t) = 1 - TAR(t).
* ROC AUC = P(genuine score > impostor score) + P(equal) / 2 (the Mann-Whitney statistic).
* EER: over all thresholds at which the curves change, the one where |FAR - FRR| is smallest;
  the EER is the mean of FAR and FRR there.
* TAR at FAR f: the smallest threshold t with FAR(t) <= f, and TAR there. With N impostor pairs
  the smallest non-zero FAR measurable is 1/N, so a target below that is *not resolved*.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def _arrays(genuine, impostor) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(genuine, dtype=np.float64).ravel()
    i = np.asarray(impostor, dtype=np.float64).ravel()
    if g.size == 0 or i.size == 0:
        raise ValueError("need at least one genuine and one impostor score")
    if not (np.isfinite(g).all() and np.isfinite(i).all()):
        raise ValueError("scores must be finite")
    return g, i


def rates_at(genuine, impostor, threshold: float) -> tuple[float, float]:
    """(TAR, FAR) when accepting ``score >= threshold``."""
    g, i = _arrays(genuine, impostor)
    return float(np.mean(g >= threshold)), float(np.mean(i >= threshold))


def roc_curve(genuine, impostor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds), thresholds descending; the first point is (0, 0) at +inf and the
    last accepts every pair (1, 1)."""
    g, i = _arrays(genuine, impostor)
    thresholds = np.unique(np.concatenate([g, i]))[::-1]
    g_sorted, i_sorted = np.sort(g), np.sort(i)
    # number of scores >= t = n - (number < t)
    tar = (g.size - np.searchsorted(g_sorted, thresholds, side="left")) / g.size
    far = (i.size - np.searchsorted(i_sorted, thresholds, side="left")) / i.size
    return (np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]),
            np.concatenate([[np.inf], thresholds]))


def roc_auc(genuine, impostor) -> float:
    """Mann-Whitney AUC with ties counted half (equals the trapezoidal area under roc_curve)."""
    g, i = _arrays(genuine, impostor)
    i_sorted = np.sort(i)
    below = np.searchsorted(i_sorted, g, side="left")  # impostors strictly lower, per genuine
    equal = np.searchsorted(i_sorted, g, side="right") - below
    return float((below.sum() + 0.5 * equal.sum()) / (g.size * i.size))


def equal_error_rate(genuine, impostor) -> tuple[float, float]:
    """(EER, threshold) as defined in the module docstring."""
    far, tar, thr = roc_curve(genuine, impostor)
    frr = 1.0 - tar
    k = int(np.argmin(np.abs(far - frr)))
    return float((far[k] + frr[k]) / 2), float(thr[k])


def threshold_at_far(impostor, target_far: float) -> float:
    """Smallest threshold t with FAR(t) <= target_far (empirical)."""
    i = np.sort(np.asarray(impostor, dtype=np.float64).ravel())[::-1]
    if i.size == 0:
        raise ValueError("no impostor scores")
    allowed = int(math.floor(target_far * i.size + 1e-9))  # false accepts we may have
    if allowed >= i.size:
        return float(i[-1])
    # accepting i[allowed] (the allowed+1-th highest) would be one false accept too many
    return float(np.nextafter(i[allowed], np.inf))


@dataclass(frozen=True)
class TarAtFar:
    target_far: float
    threshold: float
    tar: float
    far: float  # achieved on the data (<= target_far)
    resolved: bool  # False when 1/N impostor pairs > target_far: the figure is not measurable


def tar_at_far(genuine, impostor, target_far: float) -> TarAtFar:
    g, i = _arrays(genuine, impostor)
    t = threshold_at_far(i, target_far)
    tar, far = rates_at(g, i, t)
    return TarAtFar(target_far, t, tar, far, resolved=i.size * target_far >= 1.0 - 1e-9)


@dataclass(frozen=True)
class ImpostorModel:
    """What verify needs to turn a score into a FAR estimate: the impostor scores of the
    calibration set (every one for small sets; the top ``tail`` exactly plus quantiles for the
    bulk of big ones) and a normal fit for scores above all of them.

    ``far(s)`` is the empirical fraction of impostor pairs scoring >= s. Above the highest impostor
    score the data only say "below 1/N", so 1/N is reported: an upper estimate that never claims
    more than the calibration set can show (a normal fit would happily say 1e-17)."""

    n: int
    mean: float
    std: float
    scores: tuple[float, ...]  # descending
    counts: tuple[int, ...]  # counts[j] = number of impostor scores >= scores[j]

    @classmethod
    def from_scores(cls, impostor, tail: int = 2000, bulk_points: int = 1000) -> "ImpostorModel":
        i = np.sort(np.asarray(impostor, dtype=np.float64).ravel())[::-1]
        n = i.size
        if n <= tail + bulk_points:
            picks = np.arange(n)
        else:
            picks = np.unique(np.concatenate([np.arange(tail), np.linspace(tail, n - 1, bulk_points).astype(int)]))
        # with ties, the count at a score includes every equal score
        counts = n - np.searchsorted(i[::-1], i[picks], side="left")
        return cls(n, float(i.mean()), float(i.std()), tuple(float(v) for v in i[picks]),
                   tuple(int(c) for c in counts))

    def far(self, score: float) -> float:
        scores = np.asarray(self.scores)
        above = np.nonzero(scores >= score)[0]
        if above.size:
            # the lowest stored score still >= score: its count is a lower bound for big sets
            return float(self.counts[above[-1]]) / self.n
        return 1.0 / self.n

    def gaussian_threshold(self, target_far: float) -> float:
        """Score whose normal-tail probability is ``target_far`` (for targets below 1/N)."""
        from statistics import NormalDist

        return self.mean + self.std * NormalDist().inv_cdf(1.0 - target_far)

    def to_json(self) -> dict:
        return {"n": self.n, "mean": self.mean, "std": self.std, "scores": list(self.scores),
                "counts": list(self.counts)}

    @classmethod
    def from_json(cls, d: dict) -> "ImpostorModel":
        return cls(int(d["n"]), float(d["mean"]), float(d["std"]), tuple(d["scores"]), tuple(d["counts"]))
