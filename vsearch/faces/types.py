"""Small value types passed between the face pipeline's parts."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Box = tuple[float, float, float, float]  # (left, top, right, bottom) in pixels
Progress = Callable[[int, int], None]  # (done, total) of a long step, called as it advances


@dataclass(frozen=True)
class Detection:
    """A face box from a detector, in the pixels of the image the detector was given."""

    box: Box
    score: float  # detector confidence; scales differ between detectors

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def scaled(self, factor: float) -> "Detection":
        return Detection(tuple(float(v) * factor for v in self.box), self.score)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FoundFace:
    """One face of an image: where it is (original-image pixels), and its embedding."""

    box: Box
    score: float
    landmarks: np.ndarray  # (5, 2) x, y in original-image pixels (dlib's 5-point order)
    embedding: np.ndarray  # (D,) float32, unit length
    detector: str

    @property
    def size(self) -> float:
        """The shorter side of the box, in original pixels: what decides whether a face is usable."""
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def box_list(self, ndigits: int = 1) -> list[float]:
        return [round(float(v), ndigits) for v in self.box]


@dataclass
class FaceResult:
    """Every usable face found in one image, largest first, and where the time went."""

    faces: list[FoundFace]
    image_size: tuple[int, int]  # original (width, height)
    timings_ms: dict[str, float] = field(default_factory=dict)
    too_small: int = 0  # faces found but smaller than the pipeline's minimum size
    min_detectable: float = 0.0  # about the smallest face (original pixels) the scan that ran could find
    not_faces: int = 0  # boxes the detector found that failed the landmark check (vsearch.faces.quality)

    @property
    def largest(self) -> FoundFace | None:
        return self.faces[0] if self.faces else None
