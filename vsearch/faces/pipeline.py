"""The face pipeline: decode → downscale → detect → align → embed, with models kept loaded.

Speed comes from two choices. The detector sees a copy of the image whose long side is at most
``detect_side`` pixels (HOG cost grows with the pixel count, and a face-unlock probe shows a big
face); only when it finds nothing there does it look again with one upsampling, for smaller faces.
Landmarks and chips are then taken from the sharper working image; a box whose landmarks do not
lock on to eyes and nose is dropped (:mod:`vsearch.faces.quality`), and all chips of an image go to
the embedder in one batch.
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from typing import Union

import numpy as np
from PIL import Image

from vsearch.errors import ImageDecodeError
from vsearch.faces.align import DlibFivePointAligner, FaceAligner
from vsearch.faces.detectors import FaceDetector, build_detector
from vsearch.faces.embedders import FaceEmbedder, build_embedder
from vsearch.faces.quality import is_face
from vsearch.faces.types import Detection, FaceResult, FoundFace
from vsearch.images import decode_image, to_rgb

ImageSource = Union[str, bytes, Image.Image, np.ndarray]


@dataclass(frozen=True)
class PipelineConfig:
    detect_side: int = 400  # long side of the copy the detector scans (probe default)
    upsample_fallback: bool = True  # nothing found: scan once more at 2x for smaller faces
    min_face: int = 40  # shorter box side in original pixels; smaller faces embed unreliably
    work_side: int = 1600  # long side of the image landmarks and chips are taken from
    check_landmarks: bool = True  # drop boxes whose landmarks do not lock on (vsearch.faces.quality)


PROBE_CONFIG = PipelineConfig()
# Enrollment and calibration photos are not latency-bound: look harder for the face.
ENROLL_CONFIG = PipelineConfig(detect_side=1024)
# While indexing a collection: look at more pixels (group photos have small faces) and do not pay
# for an upsampled second pass on every photo without a face.
INDEX_CONFIG = PipelineConfig(detect_side=1280, upsample_fallback=False)


def _resize(array: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    h, w = array.shape[:2]
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    return cv2.resize(array, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or an (H, W) / (H, W, 3|4) array -> contiguous (H, W, 3) uint8 RGB."""
    if isinstance(image, Image.Image):
        return np.asarray(to_rgb(image), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ImageDecodeError(f"expected 8-bit pixels, got {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ImageDecodeError(f"expected an RGB image array, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


class FacePipeline:
    """Detector + aligner + embedder, loaded once. ``analyze`` is serialised by a lock because
    dlib's models are not safe to call from several threads at once."""

    def __init__(self, detector: FaceDetector | None = None, aligner: FaceAligner | None = None,
                 embedder: FaceEmbedder | None = None, config: PipelineConfig = PROBE_CONFIG):
        self.detector = detector or build_detector("hog")
        self.aligner = aligner or DlibFivePointAligner()
        self.embedder = embedder or build_embedder("dlib")
        self.config = config
        self._lock = threading.Lock()

    # -- input -------------------------------------------------------------------------------
    def load(self, source: ImageSource, config: PipelineConfig | None = None) -> tuple[np.ndarray, tuple[int, int]]:
        """(working RGB array, original (width, height)). Files and bytes go through vsearch's
        safe decoder (bombs, truncation, odd modes, EXIF rotation); big JPEGs decode at reduced
        scale straight away."""
        cfg = config or self.config
        # a missing file or a folder gets its own message from decode_image ("not found: PATH")
        if isinstance(source, (str, bytes, bytearray)):
            decoded = decode_image(source, draft_size=cfg.work_side // 2)
            array, original = np.asarray(decoded.image, dtype=np.uint8), (decoded.width, decoded.height)
        else:
            array = as_rgb_array(source)
            original = (array.shape[1], array.shape[0])
        long_side = max(array.shape[:2])
        if long_side > cfg.work_side:
            array = _resize(array, cfg.work_side / long_side)
        return np.ascontiguousarray(array), original

    # -- the pipeline ----------------------------------------------------------------------------
    def analyze(self, source: ImageSource, config: PipelineConfig | None = None) -> FaceResult:
        """Every usable face of an image, largest first, with boxes in original pixels.
        ``config`` overrides the pipeline's own settings for this call."""
        t0 = time.perf_counter()
        work, original = self.load(source, config)
        decode_ms = (time.perf_counter() - t0) * 1000
        result = self.analyze_array(work, original, config)
        result.timings_ms = {"decode": decode_ms, **result.timings_ms}
        return result

    def analyze_array(self, work: np.ndarray, original_size: tuple[int, int] | None = None,
                      config: PipelineConfig | None = None) -> FaceResult:
        """Like :meth:`analyze` for an already decoded (H, W, 3) uint8 RGB array; ``original_size``
        (width, height) is the size boxes are reported in (default: the array's own)."""
        cfg = config or self.config
        height, width = work.shape[:2]
        original_size = original_size or (width, height)
        to_original = original_size[0] / width
        timings: dict[str, float] = {}
        with self._lock:
            t = time.perf_counter()
            shrink = min(1.0, cfg.detect_side / max(height, width))
            small = _resize(work, shrink) if shrink < 1.0 else work
            detections = self.detector.detect(small, 0)
            passes = 0
            if not detections and cfg.upsample_fallback:
                detections = self.detector.detect(small, 1)
                passes = 1
            detections = [d.scaled(1.0 / shrink) for d in detections]
            timings["detect"] = (time.perf_counter() - t) * 1000

            t = time.perf_counter()
            usable: list[Detection] = []
            too_small = 0
            for det in detections:
                if min(det.width, det.height) * to_original < cfg.min_face:
                    too_small += 1
                else:
                    usable.append(det)
            emb = self.embedder
            aligned = [self.aligner.align(work, d.box, emb.chip_size, emb.chip_padding) for d in usable]
            not_faces = 0
            if cfg.check_landmarks and usable:
                keep = [is_face(self.aligner.landmarks, work, d.box, a.landmarks) for d, a in zip(usable, aligned)]
                not_faces = keep.count(False)
                usable = [d for d, k in zip(usable, keep) if k]
                aligned = [a for a, k in zip(aligned, keep) if k]
            timings["align"] = (time.perf_counter() - t) * 1000  # the landmark check included

            t = time.perf_counter()
            vectors = emb.embed([a.chip for a in aligned])
            timings["embed"] = (time.perf_counter() - t) * 1000

        faces = []
        for det, al, vec in zip(usable, aligned, vectors):
            x0, y0, x1, y1 = (v * to_original for v in det.box)
            box = (max(0.0, x0), max(0.0, y0), min(float(original_size[0]), x1), min(float(original_size[1]), y1))
            faces.append(FoundFace(box, det.score, al.landmarks * to_original, vec, self.detector.name))
        # largest first; HOG boxes come in a few fixed sizes, so equal areas are common: then the
        # more confident detection first (a false box must not become "the" face of a portrait)
        faces.sort(key=lambda f: (round(f.area), f.score), reverse=True)
        smallest = getattr(self.detector, "min_size", 0) / (2 ** passes) / shrink * to_original
        return FaceResult(faces, original_size, timings, too_small, max(smallest, float(cfg.min_face)), not_faces)


@functools.lru_cache(maxsize=8)
def load_pipeline(detector: str = "hog", embedder: str = "dlib", device: str = "cpu",
                  config: PipelineConfig = PROBE_CONFIG) -> FacePipeline:
    """A pipeline with its models loaded, once per process for the same arguments (loading the
    ResNet takes longer than a verify call)."""
    return FacePipeline(build_detector(detector), DlibFivePointAligner(), build_embedder(embedder, device), config)
