"""What a calibration keeps of its impostor scores, so that ``verify`` can bound the false accept
rate of any score without the calibration photos.

Every impostor score of a small set is kept; for a big one, the top ``tail`` exactly plus
quantiles of the bulk (the tail is where thresholds live). The figure ``verify`` reports is an
*upper* confidence bound, one-sided Clopper–Pearson on "k of the N calibration impostor pairs
score at least this high": with k = 0 it is about 3/N at 95%, not the 0 (or 1/N) the data alone
would suggest. It still describes only the people of the calibration set: a look-alike pair
outside it can be accepted far more often (see the README's Faces section).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vsearch.metrics.verification import CONFIDENCE, check_scores, clopper_pearson_upper

FAR_BASIS = "clopper-pearson upper bound"


@dataclass(frozen=True)
class ImpostorModel:
    n: int
    mean: float
    std: float
    scores: tuple[float, ...]  # descending
    counts: tuple[int, ...]  # counts[j] = number of impostor scores >= scores[j]
    identities: int = 0  # people the impostor pairs were drawn from (0: not recorded)
    confidence: float = CONFIDENCE

    @classmethod
    def from_scores(cls, impostor, tail: int = 2000, bulk_points: int = 1000, identities: int = 0,
                    confidence: float = CONFIDENCE) -> "ImpostorModel":
        i = np.sort(check_scores(impostor, "impostor scores"))[::-1]
        n = i.size
        if n <= tail + bulk_points:
            picks = np.arange(n)
        else:
            picks = np.unique(np.concatenate([np.arange(tail), np.linspace(tail, n - 1, bulk_points).astype(int)]))
        # with ties, the count at a score includes every equal score
        counts = n - np.searchsorted(i[::-1], i[picks], side="left")
        return cls(n, float(i.mean()), float(i.std()), tuple(float(v) for v in i[picks]),
                   tuple(int(c) for c in counts), int(identities), float(confidence))

    def false_accepts(self, score: float) -> int:
        """Calibration impostor pairs scoring >= ``score`` (exact in the stored tail, a lower
        bound within one quantile step in the bulk of big sets)."""
        above = np.nonzero(np.asarray(self.scores) >= score)[0]
        return int(self.counts[above[-1]]) if above.size else 0

    def far(self, score: float) -> float:
        """The upper confidence bound of the false accept rate at ``score``."""
        return clopper_pearson_upper(self.false_accepts(score), self.n, self.confidence)

    def far_basis(self, score: float) -> dict:
        """How :meth:`far` was obtained, for ``--json``."""
        return {"method": FAR_BASIS, "confidence": self.confidence,
                "false_accepts": self.false_accepts(score), "impostor_pairs": self.n,
                "identities": self.identities or None}

    def gaussian_threshold(self, target_far: float) -> float:
        """Score whose normal-tail probability is ``target_far`` (for targets below 1/N)."""
        from statistics import NormalDist

        return self.mean + self.std * NormalDist().inv_cdf(1.0 - target_far)

    def to_json(self) -> dict:
        return {"n": self.n, "mean": self.mean, "std": self.std, "scores": list(self.scores),
                "counts": list(self.counts), "identities": self.identities, "confidence": self.confidence}

    @classmethod
    def from_json(cls, d: dict) -> "ImpostorModel":
        return cls(int(d["n"]), float(d["mean"]), float(d["std"]), tuple(d["scores"]), tuple(d["counts"]),
                   int(d.get("identities", 0)), float(d.get("confidence", CONFIDENCE)))
