"""Losses over unit-length embeddings, built from pytorch-metric-learning parts.

* ``triplet``: ``max(0, d(a,p) - d(a,n) + margin)`` with Euclidean ``d`` on the unit sphere.
* ``contrastive``: ``d(a,p)`` for positive pairs, ``max(0, margin - d(a,n))`` for negative pairs.
* ``ranking``: the pairwise hinge ranking loss of image search (query, good, bad):
  ``max(0, margin - s(q,good) + s(q,bad))`` with cosine similarity ``s`` (Wang et al., 2014,
  "Learning Fine-grained Image Similarity with Deep Ranking"; Chechik et al., 2010, OASIS). It is
  PML's triplet loss with a similarity instead of a distance; with labels, query/good/bad are the
  anchor/positive/negative of the mined triplets, and :func:`ranking_hinge_loss` takes explicit
  (query, good, bad) embeddings.

:class:`MetricCriterion` joins a miner and a loss and reduces with a plain mean over the mined
tuples (PML's default, ``AvgNonZeroReducer``, averages over *active* tuples only, which is itself a
form of hard mining and would blur the comparison of miners). It also reports how many tuples
were mined and how many were active (non-zero loss), which the progress bar shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning.distances import BaseDistance, CosineSimilarity, LpDistance
from pytorch_metric_learning.reducers import DoNothingReducer, MeanReducer
from torch import nn

from training.errors import TrainingConfigError
from training.miners import build_miner

LOSSES = ("triplet", "contrastive", "ranking")
DEFAULT_MARGINS = {
    "triplet": 0.2,  # FaceNet's margin on unit vectors (Euclidean distances lie in [0, 2])
    "contrastive": 1.0,  # negatives pushed to distance 1 (orthogonal unit vectors are at 1.41)
    "ranking": 0.2,  # in cosine similarity
}


@dataclass(frozen=True)
class LossStats:
    tuples: int  # triplets (or pairs) the miner produced
    active: int  # of those, how many had a non-zero loss

    @property
    def active_fraction(self) -> float:
        return self.active / self.tuples if self.tuples else 0.0


def loss_distance(loss: str) -> BaseDistance:
    # ``normalize_embeddings=True`` is PML's default; the model already normalises, it is harmless
    return CosineSimilarity() if loss == "ranking" else LpDistance(p=2, normalize_embeddings=True)


def build_loss(name: str, margin: float | None = None, reducer=None) -> pml_losses.BaseMetricLossFunction:
    if name not in LOSSES:
        raise TrainingConfigError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    margin = DEFAULT_MARGINS[name] if margin is None else margin
    if margin < 0:
        raise TrainingConfigError(f"margin must be non-negative, got {margin}")
    kwargs = {"distance": loss_distance(name), "reducer": reducer}
    if name == "contrastive":
        return pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=margin, **kwargs)
    return pml_losses.TripletMarginLoss(margin=margin, **kwargs)


class MetricCriterion(nn.Module):
    """``(embeddings (B, D), labels (B,)) -> (mean loss over mined tuples, LossStats)``.

    A batch where the miner finds nothing (e.g. every image of a different class) gives a zero
    loss that is still connected to the graph, and ``tuples == 0`` so the trainer can count it.
    """

    def __init__(self, loss: str = "triplet", miner: str = "batch-hard", margin: float | None = None, seed: int = 0):
        super().__init__()
        self.loss_name, self.miner_name = loss, miner
        self.margin = DEFAULT_MARGINS.get(loss, 0.0) if margin is None else margin
        # per-tuple losses come back unreduced so they can be counted, then averaged here
        self.loss = build_loss(loss, self.margin, reducer=DoNothingReducer())
        self.miner = build_miner(miner, loss_distance(loss), self.margin, pairs=(loss == "contrastive"),
                                 seed=seed)

    def rng_state(self) -> dict:
        """Random state of the parts that draw random numbers (the ``random`` miner), for checkpoints."""
        return {"miner": self.miner.rng_state()} if hasattr(self.miner, "rng_state") else {}

    def set_rng_state(self, state: dict) -> None:
        if "miner" in state and hasattr(self.miner, "set_rng_state"):
            self.miner.set_rng_state(state["miner"])

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, LossStats]:
        indices = self.miner(embeddings, labels)
        parts = self.loss(embeddings, labels, indices)  # {sub-loss: {"losses": (T,) or 0, ...}}
        total = embeddings.sum() * 0.0  # keeps the graph (and the device) when nothing was mined
        tuples = active = 0
        for part in parts.values():
            losses = part["losses"]
            if torch.is_tensor(losses) and losses.numel() > 0:
                total = total + losses.mean()
                tuples += losses.numel()
                active += int((losses.detach() > 0).sum())
        return total, LossStats(tuples, active)


def ranking_hinge_loss(query: torch.Tensor, good: torch.Tensor, bad: torch.Tensor, margin: float = DEFAULT_MARGINS["ranking"]) -> torch.Tensor:
    """Mean over rows of ``max(0, margin - cos(query, good) + cos(query, bad))``; inputs ``(T, D)``.

    For relevance judgements given as explicit triplets (a query image, a result rated good, one
    rated bad) rather than class labels.
    """
    if not (query.shape == good.shape == bad.shape) or query.ndim != 2:
        raise ValueError(f"query, good and bad must be (T, D) of one shape, got {tuple(query.shape)}, "
                         f"{tuple(good.shape)}, {tuple(bad.shape)}")
    t = query.shape[0]
    if t == 0:
        return query.sum() * 0.0
    stacked = torch.cat([query, good, bad])  # (3T, D)
    idx = torch.arange(t, device=query.device)
    loss = pml_losses.TripletMarginLoss(margin=margin, distance=CosineSimilarity(), reducer=MeanReducer())
    return loss(stacked, indices_tuple=(idx, idx + t, idx + 2 * t))
