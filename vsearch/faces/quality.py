"""Is a detector's box a face? The landmark drift check.

dlib's 5-point shape predictor always returns five points inside the box it is given, so the
landmarks' shape says little on its own. What it does not do on a non-face is *lock on*: on a
real face the points stay on the eye corners and the nose when the box is moved by a tenth of its
width, while on a face-like pattern (the round mission patch on ``skimage.data.astronaut()``) they
follow the box. The drift is the mean landmark displacement along the box's shift, divided by the
shift, averaged over four shifts (left, right, up, down): about 0 on a face, up to 1 on a pattern.

Measured (``benchmarks/face_quality.py``, ``benchmarks/RESULTS.md``): the detected faces of the
LFW subset drift at most 0.04, those of the real test photos at most 0.15, the cameraman of
``skimage.data.camera()`` (one eye behind his camera) 0.20; the mission patch, found at several
photo sizes, drifts 0.26 to 0.69. :data:`MAX_DRIFT` sits half-way between 0.20 and 0.26 — a thin
margin, measured on few false faces. Cost: four more landmark predictions per face.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from vsearch.faces.types import Box

MAX_DRIFT = 0.23  # a box whose landmarks drift more than this with the box is not kept as a face
SHIFT = 0.1  # of the box's width

Landmarks = Callable[[np.ndarray, Box], np.ndarray]  # (image, box) -> (5, 2) x, y


def landmark_drift(landmarks: Landmarks, image: np.ndarray, box: Box, base: np.ndarray | None = None) -> float:
    """How far the landmarks of ``box`` move with the box, as a fraction of the box's own shift
    (see the module docstring). ``base``: the landmarks of ``box`` itself when already known."""
    x0, y0, x1, y1 = box
    step = SHIFT * (x1 - x0)
    if step <= 0:
        return 1.0
    base = landmarks(image, box) if base is None else np.asarray(base, dtype=np.float64)
    drifts = []
    for dx, dy in ((step, 0.0), (-step, 0.0), (0.0, step), (0.0, -step)):
        moved = landmarks(image, (x0 + dx, y0 + dy, x1 + dx, y1 + dy))
        mean_move = np.mean(np.asarray(moved, dtype=np.float64) - base, axis=0)
        drifts.append(float(mean_move @ np.array([dx, dy])) / (step * step))
    return float(np.mean(drifts))


def is_face(landmarks: Landmarks, image: np.ndarray, box: Box, base: np.ndarray | None = None) -> bool:
    return landmark_drift(landmarks, image, box, base) <= MAX_DRIFT
