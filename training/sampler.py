"""P x K batch sampling: each batch holds P classes with K images each.

pytorch-metric-learning's ``MPerClassSampler`` draws from numpy's global RNG, which makes a run
depend on whatever else touched that RNG and cannot be restored mid-epoch. This sampler instead
derives one explicit ``torch.Generator`` per epoch from ``(seed, epoch)``: epoch ``e``'s batches are
a pure function of the seed, so a resumed run regenerates exactly the batches it would have seen.

Classes are visited in shuffled rounds (every eligible class once per round) and each class's
images in shuffled rounds too, so an epoch covers the data evenly instead of re-drawing the same
images at random. A class with fewer than K images contributes all of them (no duplicates:
a duplicate would be a zero-distance "positive" that teaches nothing).
"""
from __future__ import annotations

from typing import Sequence

import torch

from training.errors import TrainingConfigError

_EPOCH_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: neighbouring (seed, epoch) pairs get unrelated streams


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * _EPOCH_MIX + epoch) % (2**63 - 1))


class PKSampler:
    """``epoch(e)`` -> ``batches_per_epoch`` lists of dataset indices, P classes x K images each."""

    def __init__(self, targets: Sequence[int] | torch.Tensor, classes_per_batch: int, samples_per_class: int,
                 batches_per_epoch: int | None = None, seed: int = 0):
        targets = torch.as_tensor(targets, dtype=torch.long)
        if samples_per_class < 2:
            raise TrainingConfigError(f"samples per class (K) must be at least 2 to form positives, got {samples_per_class}")
        if classes_per_batch < 2:
            raise TrainingConfigError(f"classes per batch (P) must be at least 2 to form negatives, got {classes_per_batch}")
        members: dict[int, list[int]] = {}
        for i, t in enumerate(targets.tolist()):
            members.setdefault(t, []).append(i)
        # a class with one image can never supply a positive: it is not sampled (data.py warns)
        self.members = {c: torch.tensor(ix) for c, ix in sorted(members.items()) if len(ix) >= 2}
        if len(self.members) < 2:
            raise TrainingConfigError("P x K sampling needs at least 2 classes with 2+ images each")
        self.p = min(classes_per_batch, len(self.members))
        self.k = samples_per_class
        n_eligible = sum(len(ix) for ix in self.members.values())
        self.batches_per_epoch = batches_per_epoch or max(1, -(-n_eligible // (self.p * self.k)))
        self.seed = seed

    def __len__(self) -> int:
        return self.batches_per_epoch

    def epoch(self, epoch: int) -> list[list[int]]:
        g = epoch_generator(self.seed, epoch)
        classes = list(self.members)
        class_stream: list[int] = []
        cursor = {c: len(ix) for c, ix in self.members.items()}  # position in that class's order
        order = {c: ix for c, ix in self.members.items()}
        batches = []
        for _ in range(self.batches_per_epoch):
            picked: list[int] = []
            while len(picked) < self.p:
                free = [j for j, c in enumerate(class_stream) if c not in picked]
                if not free:  # next round; a class already in this batch waits for the next batch
                    class_stream += [classes[i] for i in torch.randperm(len(classes), generator=g).tolist()]
                    continue
                picked.append(class_stream.pop(free[0]))
            batch: list[int] = []
            for c in picked:
                ix = self.members[c]
                if len(ix) <= self.k:
                    batch.extend(ix[torch.randperm(len(ix), generator=g)].tolist())
                    continue
                chosen: list[int] = []
                while len(chosen) < self.k:
                    if cursor[c] >= len(ix):
                        order[c] = ix[torch.randperm(len(ix), generator=g)]
                        cursor[c] = 0
                    candidate = int(order[c][cursor[c]])
                    cursor[c] += 1
                    if candidate not in chosen:
                        chosen.append(candidate)
                batch.extend(chosen)
            batches.append(batch)
        return batches
