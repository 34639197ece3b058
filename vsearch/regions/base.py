"""The one contract every crop supplier follows: an image in, boxes out (+ optional masks, labels,
scores). Proposals, learned detectors and segmenters (and faces, once they implement it) all
return :class:`Regions`, so indexing, search and ``vsearch detect`` never care which one ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from vsearch.errors import VSearchError


class RegionError(VSearchError):
    """Bad input to the regions feature: a region spec, a detector checkpoint, a box file."""


@dataclass(frozen=True)
class Regions:
    """Regions found in one image, in that image's pixel coordinates.

    ``boxes`` is ``(N, 4)`` float32 ``[x1, y1, x2, y2]`` (x2/y2 exclusive, continuous pixel
    coordinates, the convention of ``torchvision.ops``); ``scores`` ``(N,)`` float32, higher is
    better; ``labels`` one class name per box, or None for class-agnostic suppliers; ``masks``
    ``(N, H, W)`` bool over the whole image, or None when the supplier only gives boxes.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...] | None = None
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        if len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))
            if len(self.labels) != len(boxes):
                raise ValueError(f"{len(boxes)} boxes but {len(self.labels)} labels")
        if self.masks is not None:
            masks = np.asarray(self.masks, dtype=bool)
            if masks.ndim != 3 or len(masks) != len(boxes):
                raise ValueError(f"masks must be (N, H, W) with N={len(boxes)}, got {masks.shape}")
            object.__setattr__(self, "masks", masks)

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> "Regions":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def select(self, index: Sequence[int] | np.ndarray) -> "Regions":
        """The regions at ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        return Regions(
            self.boxes[index],
            self.scores[index],
            None if self.labels is None else tuple(self.labels[i] for i in index),
            None if self.masks is None else self.masks[index],
        )

    def top(self, n: int) -> "Regions":
        """The ``n`` best-scoring regions, best first (stable for equal scores)."""
        order = np.argsort(-self.scores, kind="stable")[: max(0, n)]
        return self.select(order)


@runtime_checkable
class RegionSource(Protocol):
    """Something that finds regions in an image: ``source(image) -> Regions``.

    ``name`` says which kind of supplier it is (``proposals``, ``detector:ARCH``); ``settings`` is
    everything that changes its output (parameters, weights), so the catalog can tell whether a
    photo's stored regions were made with the same settings.
    """

    name: str
    settings: str

    def __call__(self, image: Image.Image) -> Regions: ...


__all__ = ["Regions", "RegionSource", "RegionError"]
