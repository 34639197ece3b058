"""``trained:FILE``: a model written by ``vsearch train`` served through vsearch's encoder registry.

``vsearch index --model trained:model.pt`` and ``vsearch.open(db, model="trained:model.pt")``
find it because :mod:`vsearch.encoders` imports this module when it looks up a prefix.
It embeds images only: metric learning on labelled images gives no text tower, so text queries
raise :class:`~training.errors.NoTextSideError` (search such a catalog with ``--image``).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from training.errors import NoTextSideError
from vsearch.encoders import register_encoder
from vsearch.encoders.base import EncoderInfo, l2_normalize


class TrainedEncoder:
    """The :class:`vsearch.encoders.base.ImageEncoder` contract over an exported embedding model."""

    def __init__(self, path: str, device: str = "cpu"):
        from training.export import load_model  # timm and the model code load only when used

        self.path = os.path.abspath(os.path.expanduser(path))
        self.device = torch.device(device)
        self.model, self.spec, self.meta = load_model(self.path, str(self.device))
        # the name must equal vsearch.encoders.canonical_spec("trained:" + path): the catalog
        # records it and compares it with the --model of later runs
        self.info = EncoderInfo(f"trained:{self.path}", self.spec.embedding_dim, self.path,
                                self.spec.preprocessing.image_size)
        # a plain picklable object (not a bound method): indexer workers receive it without the model
        self.preprocess = self.spec.preprocessing

    def untrained(self) -> "TrainedEncoder | None":
        """The same network before its first training step (the run's seed and initial weights,
        from the file's record); ``None`` when the file does not say, or those weights are gone."""
        from training.errors import TrainingConfigError
        from training.model import initial_model

        if "weights_init" not in self.meta or "seed" not in self.meta:
            return None
        try:
            model = initial_model(self.spec, str(self.meta["weights_init"]), int(self.meta["seed"]))
        except (TrainingConfigError, OSError):
            return None
        other = object.__new__(TrainedEncoder)
        other.__dict__.update(self.__dict__, model=model.to(self.device))
        return other

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        return l2_normalize(self.model(pixels.to(self.device)))

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        raise NoTextSideError(
            f"{self.info.name} is an image-only embedding model (trained by `vsearch train`): it cannot embed "
            "text. Search its catalog with --image, or index with a CLIP or packaged model for text queries"
        )


@register_encoder("trained")
def _trained(rest: str, device: str) -> TrainedEncoder:
    if not rest:
        from vsearch.errors import UnknownModelError

        raise UnknownModelError("trained: needs a file, e.g. --model trained:model.pt")
    return TrainedEncoder(rest, device=device)
