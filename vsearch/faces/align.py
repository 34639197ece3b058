"""Alignment: five landmarks (eye corners and nose base) and an upright, scaled face chip.

dlib's 5-point ``shape_predictor`` (CC0) places the landmarks inside a detector's box;
``get_face_chip`` rotates and scales the face so that the eyes land where the embedding network
expects them. The embedder decides the chip size and padding it was trained with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from vsearch.faces.models import SHAPE_5, dlib_model_path, import_dlib
from vsearch.faces.types import Box


@dataclass(frozen=True)
class AlignedFace:
    landmarks: np.ndarray  # (5, 2) float32 x, y in the pixels of the image given to align()
    chip: np.ndarray  # (size, size, 3) uint8 RGB, upright


@runtime_checkable
class FaceAligner(Protocol):
    name: str

    def align(self, image: np.ndarray, box: Box, size: int, padding: float) -> AlignedFace:
        """Landmarks and a ``size`` x ``size`` chip of the face in ``box`` of ``image`` (H, W, 3 uint8)."""

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(5, 2) landmarks inside ``box`` of ``image``, as :meth:`align` places them."""


class DlibFivePointAligner:
    name = "dlib-5pt"

    def __init__(self):
        self._dlib = import_dlib()
        self._predictor = self._dlib.shape_predictor(dlib_model_path(SHAPE_5))

    def _shape(self, image: np.ndarray, box: Box):
        rect = self._dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])) - 1,
                                    int(round(box[3])) - 1)
        return self._predictor(image, rect)

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(5, 2) float32 landmarks placed inside ``box`` (no chip)."""
        shape = self._shape(np.ascontiguousarray(image), box)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    def align(self, image: np.ndarray, box: Box, size: int = 150, padding: float = 0.25) -> AlignedFace:
        dlib = self._dlib
        image = np.ascontiguousarray(image)
        shape = self._shape(image, box)
        landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
        chip = dlib.get_face_chip(image, shape, size=size, padding=padding)
        return AlignedFace(landmarks, np.asarray(chip, dtype=np.uint8))
