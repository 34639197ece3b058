"""Random shifts of training batches: the same image a few pixels off is still the same class.

Small translations are the augmentation that holds for every kind of image this trainer sees
(digits, products, faces, textures): flips would change a 2 into something else and colour jitter
would change what a product looks like. Each batch's offsets come from a generator seeded with
``(seed, step)``, so a resumed run shifts exactly as the uninterrupted one would have.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_STEP_MIX = 0x2545F4914F6CDD1D  # neighbouring (seed, step) pairs get unrelated streams


def random_shift(pixels: torch.Tensor, max_shift: int, seed: int, step: int) -> torch.Tensor:
    """``(B, C, S, S)`` -> the same shape, each image moved by up to ``max_shift`` pixels in x and
    y (edges replicated into the gap). ``max_shift`` 0 returns the batch unchanged."""
    if max_shift <= 0:
        return pixels
    b, _, h, w = pixels.shape
    gen = torch.Generator().manual_seed((seed * _STEP_MIX + step) % (2**63 - 1))
    offsets = torch.randint(0, 2 * max_shift + 1, (b, 2), generator=gen).tolist()
    padded = F.pad(pixels, (max_shift,) * 4, mode="replicate")  # (B, C, S + 2m, S + 2m)
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])
