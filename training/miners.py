"""Which tuples of a batch the loss sees.

In-batch miners are pytorch-metric-learning's, chosen by name:

* ``batch-hard``: per anchor, its farthest positive and nearest negative (Hermans et al., 2017);
* ``semi-hard``: every triplet whose negative is farther than the positive but inside the margin
  (Schroff et al., 2015, FaceNet);
* ``all``: every valid triplet (or pair) of the batch, unselected. With the plain mean the
  criterion applies, its loss is the expected loss of a uniformly random triplet of the batch:
  the random-triplet baseline, without the sampling noise;
* ``random``: one uniformly random positive and negative per anchor (:class:`RandomTripletMiner`,
  seeded generator): as many triplets per step as ``batch-hard`` takes, chosen without looking at
  the embeddings, which isolates what choosing the *hard* one adds.

:class:`FaissHardNegatives` adds hard negatives from *outside* the batch: a FAISS index of the
whole training set's embeddings (refreshed every so many steps) supplies, for each anchor, its
nearest images of other classes, which are appended to the batch before in-batch mining.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import BaseDistance
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from training.errors import TrainingConfigError

MINERS = ("batch-hard", "semi-hard", "all", "random")


class AllTuplesMiner(pml_miners.BaseMiner):
    """Every (anchor, positive, negative) triplet, or every positive and negative pair, of the batch.

    Triplets: ``(a, p, n)`` with ``a != p``, ``label[a] == label[p] != label[n]``.
    Pairs: ``(a1, p, a2, n)``: ordered positive pairs ``a1 != p`` and ordered negative pairs.
    """

    def __init__(self, pairs: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.pairs = pairs

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        if self.pairs:
            return lmu.get_all_pairs_indices(labels)
        return lmu.get_all_triplets_indices(labels)


class RandomTripletMiner(pml_miners.BaseMiner):
    """Per anchor with a positive and a negative in the batch: one positive and one negative drawn
    uniformly from an explicit ``torch.Generator`` (PML's random triplets use torch's global RNG).

    For each anchor two uniform draws ``u_p, u_n`` in [0, 1) pick the ``floor(u * count)``-th
    positive / negative in index order (vectorised here; tests compare with a Python loop).
    """

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.generator = torch.Generator().manual_seed(seed)

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        labels = labels.cpu()
        b = len(labels)
        same = labels[:, None] == labels[None, :]
        pos = same & ~torch.eye(b, dtype=torch.bool)  # (B, B)
        neg = ~same
        u = torch.rand(2, b, generator=self.generator)  # drawn for every row: the stream is batch-size only
        anchors = torch.nonzero(pos.any(1) & neg.any(1)).flatten()
        device = embeddings.device
        if len(anchors) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return empty, empty.clone(), empty.clone()
        chosen = []
        for mask, draw in ((pos[anchors], u[0, anchors]), (neg[anchors], u[1, anchors])):
            rank = (draw * mask.sum(1)).long()  # (A,) which candidate, 0-based
            # the candidate whose running count (1-based) equals rank + 1
            hit = mask & (mask.cumsum(1) == (rank + 1)[:, None])
            chosen.append(hit.float().argmax(1))
        return anchors.to(device), chosen[0].to(device), chosen[1].to(device)

    def rng_state(self) -> torch.Tensor:  # the generator position, for exact resumption
        return self.generator.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def build_miner(name: str, distance: BaseDistance, margin: float, pairs: bool = False,
                seed: int = 0) -> pml_miners.BaseMiner:
    """The miner called ``name``, measuring with the same ``distance`` as the loss.

    ``pairs``: the loss consumes pairs (contrastive); triplet miners' output is converted to pairs
    by the loss (each triplet gives its positive and its negative pair), ``all`` mines pairs directly.
    """
    if name == "batch-hard":
        return pml_miners.BatchHardMiner(distance=distance)
    if name == "semi-hard":
        return pml_miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=distance)
    if name == "all":
        return AllTuplesMiner(pairs=pairs, distance=distance)
    if name == "random":
        return RandomTripletMiner(seed=seed, distance=distance)
    raise TrainingConfigError(f"unknown miner {name!r}: choose one of {', '.join(MINERS)}")


class FaissHardNegatives:
    """Cross-batch hard negatives from a FAISS inner-product index of all training embeddings.

    ``refresh(embeddings)`` rebuilds the index from ``(N, D)`` unit vectors of the training set
    (row ``i`` is dataset index ``i``); ``extra(batch)`` returns, for each anchor of ``batch``, its
    ``per_anchor`` nearest images of another class not already in the batch, nearest first. The
    embeddings are those of the last refresh: between refreshes the index is as stale as
    ``refresh_every`` allows, the usual trade-off (re-embedding the set every step would cost an
    epoch per step).
    """

    def __init__(self, targets: Sequence[int] | torch.Tensor, per_anchor: int = 1, candidates: int = 64):
        if per_anchor < 1:
            raise TrainingConfigError(f"cross-batch negatives per anchor must be positive, got {per_anchor}")
        self.targets = np.asarray(torch.as_tensor(targets).tolist(), dtype=np.int64)
        self.per_anchor = per_anchor
        # how far down each anchor's neighbour list to look; same-class neighbours come first when
        # training works, so this must exceed a class's size to be sure to reach other classes
        counts = np.bincount(self.targets) if len(self.targets) else np.zeros(1, np.int64)
        self.candidates = min(len(self.targets), max(candidates, int(counts.max()) + per_anchor + 1))
        self.embeddings: np.ndarray | None = None
        self._index = None

    def refresh(self, embeddings: np.ndarray) -> None:
        import faiss

        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.shape[0] != len(self.targets):
            raise ValueError(f"{embeddings.shape[0]} embeddings for {len(self.targets)} training images")
        index = faiss.IndexFlatIP(embeddings.shape[1])  # exact: unit vectors, so IP ranks like L2
        index.add(embeddings)
        self.embeddings, self._index = embeddings, index

    @property
    def ready(self) -> bool:
        return self._index is not None

    def extra(self, batch: Sequence[int]) -> list[int]:
        if self._index is None:
            raise RuntimeError("FaissHardNegatives.extra() before refresh()")
        batch = [int(i) for i in batch]
        _, neighbours = self._index.search(self.embeddings[batch], self.candidates)  # (B, C), nearest first
        taken: set[int] = set(batch)
        out: list[int] = []
        for anchor, row in zip(batch, neighbours):
            found = 0
            for j in row:
                if j < 0 or found == self.per_anchor:
                    break
                j = int(j)
                if self.targets[j] != self.targets[anchor] and j not in taken:
                    taken.add(j)
                    out.append(j)
                    found += 1
        return out

    def state_dict(self) -> dict:
        return {"embeddings": None if self.embeddings is None else torch.from_numpy(self.embeddings.copy())}

    def load_state_dict(self, state: dict) -> None:
        if state.get("embeddings") is not None:
            self.refresh(state["embeddings"].numpy())
