"""Face detectors behind one protocol: an RGB uint8 array in, face boxes with scores out.

* ``hog``  dlib's HOG + linear SVM frontal detector: fast on a CPU, finds faces of about 80 px and
  more (40 px with one upsampling), frontal and slightly turned.
* ``cnn``  dlib's MMOD CNN detector: more poses and smaller faces, seconds per photo on a CPU.
* ``haar`` OpenCV's Viola-Jones cascade: an independent second detector (other failure modes).

Scores are each detector's own confidence and are not comparable across detectors.
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import numpy as np

from vsearch.faces.errors import FaceError
from vsearch.faces.models import MMOD, dlib_model_path, haar_cascade_path, import_dlib
from vsearch.faces.types import Detection
from vsearch.registry import Registry


@runtime_checkable
class FaceDetector(Protocol):
    name: str
    min_size: int  # about the smallest face (pixels) found without upsampling

    def detect(self, image: np.ndarray, upsample: int = 0) -> list[Detection]:
        """(H, W, 3) uint8 RGB -> boxes in the same pixels. ``upsample`` > 0 looks for smaller faces."""


def _rect_box(rect) -> tuple[float, float, float, float]:
    return (float(rect.left()), float(rect.top()), float(rect.right() + 1), float(rect.bottom() + 1))


class DlibHogDetector:
    name = "hog"
    min_size = 80  # its 80x80 sliding window

    def __init__(self, adjust_threshold: float = 0.0):
        dlib = import_dlib()
        self._detector = dlib.get_frontal_face_detector()
        self.adjust_threshold = adjust_threshold

    def detect(self, image: np.ndarray, upsample: int = 0) -> list[Detection]:
        rects, scores, _kinds = self._detector.run(np.ascontiguousarray(image), upsample, self.adjust_threshold)
        return [Detection(_rect_box(r), float(s)) for r, s in zip(rects, scores)]


class DlibCnnDetector:
    name = "cnn"
    min_size = 40  # the MMOD model's window is about 40 px

    def __init__(self):
        dlib = import_dlib()
        self._detector = dlib.cnn_face_detection_model_v1(dlib_model_path(MMOD))

    def detect(self, image: np.ndarray, upsample: int = 0) -> list[Detection]:
        found = self._detector(np.ascontiguousarray(image), upsample)
        return [Detection(_rect_box(d.rect), float(d.confidence)) for d in found]


class HaarDetector:
    """OpenCV's frontal-face cascade. The score is the cascade's last-stage weight
    (``detectMultiScale3`` level weight); boxes overlapping by min_neighbors are merged."""

    name = "haar"

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", min_neighbors: int = 5,
                 scale_factor: float = 1.1, min_size: int = 24):
        import cv2

        self._cv2 = cv2
        self._cascade = cv2.CascadeClassifier(haar_cascade_path(cascade))
        self.min_neighbors, self.scale_factor, self.min_size = min_neighbors, scale_factor, min_size

    def detect(self, image: np.ndarray, upsample: int = 0) -> list[Detection]:
        cv2 = self._cv2
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        factor = 2 ** upsample
        if factor > 1:
            gray = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
        gray = cv2.equalizeHist(gray)
        boxes, _levels, weights = self._cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True,
        )
        out = []
        for (x, y, w, h), wt in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).ravel()):
            out.append(Detection((x / factor, y / factor, (x + w) / factor, (y + h) / factor), float(wt)))
        return out


DETECTORS: Registry[Callable[[], FaceDetector]] = Registry("face detector", FaceError)
DETECTORS.register("hog")(DlibHogDetector)
DETECTORS.register("cnn")(DlibCnnDetector)
DETECTORS.register("haar")(HaarDetector)


def build_detector(name: str = "hog") -> FaceDetector:
    return DETECTORS.get(name)()
