"""Reading the text in one photo, offline: :class:`TextReader`.

The engine is RapidOCR (``rapidocr-onnxruntime``): PaddleOCR's PP-OCRv4 detection and
recognition models and its text-direction classifier, as ONNX files inside the wheel, run by ONNX
Runtime on the CPU. They read Chinese (simplified) and English; Latin text with accents comes
back without them (LUMIÈRE is read LUMIERE), which the folded text searches ignore anyway.

Reading costs about a second a photo on two cores, and most photos hold no text, so a photo goes
through two steps:

1. **The gate**: the detector alone on a copy scaled to :data:`GATE_SIDE` pixels on its longest
   side. No text region there, no text read: most photos stop here, at a small share of the full
   cost. At 256 pixels it stopped all 27 photos without text of the benchmark and let all 8 with
   text through, a 48-pixel line in a 2000-pixel photo included; at 192 it missed that one, at
   320 it cost 1.6 times more (``benchmarks/RESULTS.md``). Smaller text in a large photo can be
   missed.
2. **Reading**: the detector on the photo scaled to :data:`DETECT_SIDE` pixels on its longest
   side, then the direction classifier and the recognizer on the regions found (cut from the
   photo at up to :data:`READ_SIDE` pixels), and only on those.

A recognised line is kept when its confidence reaches :data:`MIN_SCORE` and it holds at least
:data:`MIN_CHARS` letters or digits: the recognizer returns noise such as "M6" at 0.68 on the
coins of scikit-image's photos, while real lines of the test signs, receipt and page score above
0.9 (measured in ``benchmarks/ocr.py``).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vsearch.errors import ImageDecodeError, VSearchError
from vsearch.images import decode_image
from vsearch.ocr.fold import fold

GATE_SIDE = 256  # pixels, longest side of the copy the gate looks at (measured in benchmarks/ocr.py)
MIN_SCORE = 0.8  # recognizer confidence a line needs to be kept
MIN_CHARS = 2  # letters or digits a line needs to be kept
READ_SIDE = 2000  # longest side of the photo text lines are cut from for the recognizer
DETECT_SIDE = 960  # longest side the detector sees when reading (scaled up or down)
# ONNX Runtime threads per model: one. On two cores shared with the indexer and other work, a
# second thread made the gate five times slower (385 ms against 75 ms a photo at load 13), and
# reading is a pass of its own that several processes can share out.
THREADS = 1
ENGINE = "rapidocr-onnxruntime 1.4.4 PP-OCRv4 ch+en"


class OcrUnavailableError(VSearchError):
    """The OCR engine is not installed."""


@dataclass(frozen=True)
class ReadLine:
    """One line of text read in a photo: ``box`` is ``(x1, y1, x2, y2)`` in pixels of the upright
    photo (around the detector's quadrangle), ``score`` the recognizer's confidence."""

    text: str
    box: tuple[float, float, float, float]
    score: float

    @property
    def folded(self) -> str:
        return fold(self.text)

    def to_json(self) -> dict:
        return {"text": self.text, "box": [round(v, 1) for v in self.box], "score": round(self.score, 4)}


@dataclass(frozen=True)
class PhotoText:
    """What reading one photo gave: its lines, and whether the gate let it through."""

    lines: tuple[ReadLine, ...]
    gated: bool  # True: the gate found no text and nothing was recognised

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


class TextReader:
    """The gate and the reader over one set of loaded models (built on first use, shared by
    threads through a lock: ONNX Runtime already uses every core for one photo)."""

    def __init__(self, gate_side: int = GATE_SIDE, min_score: float = MIN_SCORE, min_chars: int = MIN_CHARS,
                 threads: int | None = THREADS):
        self.gate_side = gate_side
        self.min_score = min_score
        self.min_chars = min_chars
        self.threads = threads
        self._ocr = None
        self._gate = None
        self._lock = threading.Lock()

    @property
    def settings(self) -> str:
        """The engine and the settings its stored text depends on: text read with other settings
        is read again."""
        return (f"{ENGINE}; gate {self.gate_side}; detect {DETECT_SIDE}; min score {self.min_score:g}; "
                f"min chars {self.min_chars}")

    def _models(self):
        if self._ocr is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
                from rapidocr_onnxruntime.ch_ppocr_det import TextDetector
            except ImportError as exc:
                raise OcrUnavailableError(f"reading text needs rapidocr-onnxruntime ({exc}); "
                                          "pip install --no-deps rapidocr-onnxruntime==1.4.4") from None
            threads = {} if self.threads is None else {"intra_op_num_threads": self.threads}
            ocr = RapidOCR(text_score=self.min_score, max_side_len=READ_SIDE, **threads)
            det = ocr.text_det
            gate = TextDetector.__new__(TextDetector)  # the same detector and ONNX session, at the gate's size
            gate.__dict__.update(det.__dict__)
            det.get_preprocess = _scaled_preprocess(DETECT_SIDE, det.mean, det.std)
            gate.get_preprocess = _scaled_preprocess(self.gate_side, det.mean, det.std)
            self._ocr, self._gate = ocr, gate
        return self._ocr, self._gate

    def has_text(self, image: Image.Image) -> bool:
        """The gate: whether the detector finds any text region in a small copy of ``image``."""
        small = image.convert("RGB")
        if max(small.size) > self.gate_side:
            small = small.copy()
            small.thumbnail((self.gate_side, self.gate_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
        _, gate = self._models()
        with self._lock:
            boxes, _ = gate(_bgr(small))
        return boxes is not None and len(boxes) > 0

    def read(self, image: Image.Image, gate: bool = True) -> PhotoText:
        """The lines of text in ``image`` (RGB, upright), in reading order; with ``gate``, nothing
        is recognised in a photo where the gate finds no text."""
        if gate and not self.has_text(image):
            return PhotoText((), gated=True)
        ocr, _ = self._models()
        with self._lock:
            result, _ = ocr(_bgr(image.convert("RGB")))
        lines = []
        for quad, text, score in result or []:
            text = str(text).strip()
            if float(score) < self.min_score or len(fold(text)) < self.min_chars:
                continue
            q = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
            box = (float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()), float(q[:, 1].max()))
            lines.append(ReadLine(text, box, float(score)))
        return PhotoText(tuple(lines), gated=False)

    def read_file(self, path: str, gate: bool = True) -> PhotoText:
        """:meth:`read` of an image file; a file that cannot be read raises
        :class:`~vsearch.errors.ImageDecodeError` naming it, in one line."""
        try:
            decoded = decode_image(path)
        except ImageDecodeError as exc:
            raise ImageDecodeError(str(exc) if path in str(exc) else f"{path}: {exc}") from None
        except OSError as exc:
            raise ImageDecodeError(f"{path}: {exc.strerror or exc}") from None
        return self.read(decoded.image, gate=gate)


def _scaled_preprocess(side: int, mean, std):
    """The detector's input at ``side`` pixels on its longest side, scaled up or down (sides
    rounded to multiples of 32, as the network needs). RapidOCR's own rule scales the *shortest*
    side to 736: a 560×140 street sign became 2944×736 and took 10 s to read against 0.35 s at
    960 on its longest side (``benchmarks/ocr.py``)."""
    import cv2
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    class ScaledPreProcess(DetPreProcess):
        def resize(self, img: np.ndarray) -> np.ndarray:
            h, w = img.shape[:2]
            ratio = self.limit_side_len / max(h, w)
            size = (max(32, round(w * ratio / 32) * 32), max(32, round(h * ratio / 32) * 32))
            return cv2.resize(img, size, interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)

    return lambda _longest_side: ScaledPreProcess(side, "max", mean, std)


def _bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


__all__ = ["TextReader", "ReadLine", "PhotoText", "OcrUnavailableError", "GATE_SIDE", "MIN_SCORE", "MIN_CHARS",
           "ENGINE"]
