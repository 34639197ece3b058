"""Detection metrics: IoU, NMS, Pascal VOC average precision and mAP.

IoU and suppression are ``torchvision.ops`` (``box_iou``, ``nms``, ``batched_nms``); this module
adapts them to numpy (IoU and matching in float64) and adds the VOC evaluation protocol:

* Detections of a class are taken in decreasing score order. Each is matched to the unmatched
  ground-truth box of the same class in the same image with the highest IoU; IoU ≥ the threshold
  (0.5 for mAP@0.5) makes it a true positive, otherwise (or if that box is already taken) a false
  positive. Matching a box marked *difficult* counts as neither, and difficult boxes do not count
  towards recall (the VOC devkit's rules).
* AP summarises the precision/recall curve: **11-point** (VOC2007) averages the best precision at
  recall ≥ 0, 0.1, …, 1; **all-point** (VOC2010 on) is the area under the curve after making
  precision monotonically decreasing.
* Boxes are continuous ``[x1, y1, x2, y2]`` (width = x2 - x1), torchvision's convention; the VOC
  devkit's integer-pixel "+1" is not used.
* Input follows the rule of every metric (:mod:`vsearch.metrics.inputs`): NaN or infinite scores
  or coordinates and an empty ground truth are refused; an mAP without any class to average is NaN.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np
import torch

from vsearch.metrics.inputs import MetricsInputError
from vsearch.regions.base import RegionError

APMethod = Literal["all", "11pt"]


def _ops():
    from torchvision import ops  # imported on use: the CLI loads this module for every command

    return ops


def _t(boxes) -> torch.Tensor:
    return torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))


_LARGE = 2.0 ** 500  # beyond this a box's area could overflow float64 (2 ** 1024)


def box_iou(a, b) -> np.ndarray:
    """``(N, M)`` IoU between two sets of ``[x1, y1, x2, y2]`` boxes, in float64.

    float32 would move coordinates near 1e7 by up to half a unit (an IoU of 0.497 became 0.536)
    and overflow beyond 3.4e38. Coordinates larger than 2**500 are first divided by a power of
    two, which is exact and leaves every IoU as it is, so that no area overflows. NaN or infinite
    coordinates are a :class:`MetricsInputError`."""
    a64 = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b64 = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    both = np.concatenate([a64, b64])
    bad = ~np.isfinite(both).all(axis=1)
    if bad.any():
        raise MetricsInputError(f"{int(bad.sum())} of {len(both)} boxes hold NaN or infinite coordinates")
    largest = float(np.abs(both).max(initial=0.0))
    if largest > _LARGE:
        exponent = -int(np.frexp(largest)[1])
        a64, b64 = np.ldexp(a64, exponent), np.ldexp(b64, exponent)
    return _ops().box_iou(torch.from_numpy(a64), torch.from_numpy(b64)).numpy()


def nms(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by non-maximum suppression, best score first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    return _ops().nms(_t(boxes), torch.as_tensor(np.asarray(scores, np.float32)), iou_threshold).numpy()


def batched_nms(boxes, scores, labels: Sequence, iou_threshold: float) -> np.ndarray:
    """NMS within each label only (boxes of different classes never suppress each other)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    _, idx = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    keep = _ops().batched_nms(_t(boxes), torch.as_tensor(np.asarray(scores, np.float32)),
                           torch.as_tensor(idx.reshape(-1), dtype=torch.int64), iou_threshold)
    return keep.numpy()


# -- average precision -------------------------------------------------------------------------------
def average_precision(recall: Sequence[float], precision: Sequence[float], method: APMethod = "all") -> float:
    """AP from a precision/recall curve given point by point in detection order (an empty curve,
    no detection at all, has AP 0)."""
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if rec.shape != prec.shape:
        raise ValueError("recall and precision must have the same length")
    if method == "11pt":
        points = []
        for t in np.linspace(0.0, 1.0, 11):
            above = prec[rec >= t - 1e-12]
            points.append(above.max() if above.size else 0.0)
        return float(np.mean(points))
    if method == "all":
        mrec = np.concatenate([[0.0], rec, [1.0]])
        mpre = np.concatenate([[0.0], prec, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the precision envelope
        steps = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
    raise ValueError(f"unknown AP method {method!r} (use 'all' or '11pt')")


@dataclass(frozen=True)
class GroundTruthBox:
    image: str
    label: str
    box: tuple[float, float, float, float]
    difficult: bool = False


@dataclass(frozen=True)
class DetectedBox:
    image: str
    label: str
    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class ClassAP:
    label: str
    ap: float | None  # None: no (non-difficult) ground truth for this class, so AP is undefined
    n_ground_truth: int
    n_detections: int
    true_positives: int
    recall: float | None


@dataclass(frozen=True)
class DetectionEval:
    per_class: tuple[ClassAP, ...]
    iou_threshold: float
    method: APMethod

    @property
    def mean_ap(self) -> float:
        """Mean of the per-class APs over classes that have ground truth (NaN if none has: every
        ground-truth box is difficult)."""
        aps = [c.ap for c in self.per_class if c.ap is not None]
        return float(np.mean(aps)) if aps else math.nan


@dataclass(frozen=True)
class DetectionReport:
    """One set of detections scored both ways: all-point AP per class (``all_point``) and the
    11-point AP of the same classes beside it (``eleven_point``, label -> AP, None where undefined)."""

    all_point: DetectionEval
    eleven_point: dict[str, float | None]

    @property
    def iou_threshold(self) -> float:
        return self.all_point.iou_threshold

    @property
    def mean_ap(self) -> float:
        """All-point mAP (NaN when every ground-truth box is difficult)."""
        return self.all_point.mean_ap

    @property
    def mean_ap_11pt(self) -> float:
        aps = [ap for ap in self.eleven_point.values() if ap is not None]
        return sum(aps) / len(aps) if aps else math.nan

    def to_json(self) -> dict:
        """What `vsearch eval detect --json` prints (an undefined mAP is null: JSON has no NaN)."""
        return {
            "iou": self.iou_threshold,
            "classes": [{"label": c.label, "ap": c.ap, "ap_11pt": self.eleven_point[c.label],
                         "ground_truth": c.n_ground_truth, "detections": c.n_detections,
                         "true_positives": c.true_positives, "recall": c.recall}
                        for c in self.all_point.per_class],
            "map": _none_if_nan(self.mean_ap),
            "map_11pt": _none_if_nan(self.mean_ap_11pt),
        }


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def _check_finite(detections: Sequence[DetectedBox], ground_truth: Sequence[GroundTruthBox]) -> None:
    scores = np.array([d.score for d in detections], dtype=np.float64)
    if not np.isfinite(scores).all():
        raise MetricsInputError(f"{int((~np.isfinite(scores)).sum())} of {scores.size} detection scores are NaN "
                                "or infinite")
    for what, boxes in (("detected", detections), ("ground-truth", ground_truth)):
        coords = np.array([b.box for b in boxes], dtype=np.float64).reshape(-1, 4)
        bad = ~np.isfinite(coords).all(axis=1)
        if bad.any():
            raise MetricsInputError(f"{int(bad.sum())} of {len(coords)} {what} boxes hold NaN or infinite coordinates")


def match_detections(detections: Sequence[DetectedBox], ground_truth: Sequence[GroundTruthBox],
                     iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """VOC matching for ONE class: ``(tp, fp, n_positives)`` with ``tp``/``fp`` 0/1 per detection
    in decreasing score order (ties keep input order). NaN or infinite scores or coordinates are a
    :class:`MetricsInputError` (a NaN score has no place in that order)."""
    _check_finite(detections, ground_truth)
    order = sorted(range(len(detections)), key=lambda i: -detections[i].score)
    dets = [detections[i] for i in order]
    gt_by_image: dict[str, list[GroundTruthBox]] = defaultdict(list)
    for g in ground_truth:
        gt_by_image[g.image].append(g)
    n_pos = sum(not g.difficult for g in ground_truth)
    # IoU of every detection with the boxes of its own image, one box_iou call per image
    det_rows: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(dets):
        det_rows[d.image].append(i)
    ious: dict[int, np.ndarray] = {}
    for image, rows in det_rows.items():
        gts = gt_by_image.get(image, [])
        if gts:
            m = box_iou([dets[i].box for i in rows], [g.box for g in gts])
            for r, i in enumerate(rows):
                ious[i] = m[r]
    tp = np.zeros(len(dets))
    fp = np.zeros(len(dets))
    taken: dict[str, np.ndarray] = {img: np.zeros(len(g), bool) for img, g in gt_by_image.items()}
    for i, d in enumerate(dets):  # sequential by nature: a box taken by a better detection is gone
        row = ious.get(i)
        if row is None or row.size == 0:
            fp[i] = 1
            continue
        j = int(np.argmax(row))
        if row[j] >= iou_threshold:
            if gt_by_image[d.image][j].difficult:
                continue  # neither right nor wrong
            if not taken[d.image][j]:
                tp[i], taken[d.image][j] = 1, True
            else:
                fp[i] = 1  # a duplicate of a box already found
        else:
            fp[i] = 1
    return tp, fp, n_pos


def evaluate_detections(ground_truth: Iterable[GroundTruthBox], detections: Iterable[DetectedBox],
                        iou_threshold: float = 0.5, method: APMethod = "all") -> DetectionEval:
    """Per-class AP and mAP (see the module docstring for the protocol).

    No ground truth at all is a :class:`MetricsInputError` (empty input); a class without ground
    truth that is not difficult has AP None, and the mAP is NaN when every class is such a class.
    A class with ground truth and no detection has AP 0."""
    ground_truth = list(ground_truth)
    if not ground_truth:
        raise MetricsInputError("no ground-truth boxes to score the detections against")
    gt_by_label: dict[str, list[GroundTruthBox]] = defaultdict(list)
    det_by_label: dict[str, list[DetectedBox]] = defaultdict(list)
    for g in ground_truth:
        gt_by_label[g.label].append(g)
    for d in detections:
        det_by_label[d.label].append(d)
    results = []
    for label in sorted(set(gt_by_label) | set(det_by_label)):
        tp, fp, n_pos = match_detections(det_by_label.get(label, []), gt_by_label.get(label, []), iou_threshold)
        if n_pos == 0:
            results.append(ClassAP(label, None, 0, len(tp), int(tp.sum()), None))
            continue
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        recall = ctp / n_pos
        precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        ap = average_precision(recall, precision, method) if len(tp) else 0.0
        results.append(ClassAP(label, ap, n_pos, len(tp), int(tp.sum()), float(recall[-1]) if len(tp) else 0.0))
    return DetectionEval(tuple(results), iou_threshold, method)


def voc_report(ground_truth: Sequence[GroundTruthBox], detections: Sequence[DetectedBox],
               iou_threshold: float = 0.5) -> DetectionReport:
    """All-point and 11-point AP of the same detections (see :class:`DetectionReport`)."""
    all_point = evaluate_detections(ground_truth, detections, iou_threshold, "all")
    eleven = {c.label: c.ap for c in evaluate_detections(ground_truth, detections, iou_threshold, "11pt").per_class}
    return DetectionReport(all_point, eleven)


def evaluate_detection_files(ground_truth: str, predictions: str, iou_threshold: float = 0.5) -> DetectionReport:
    """`vsearch eval detect`: score a predictions file against a ground-truth file. Predictions
    that name none of the ground truth's images are refused: the two files spell the images
    differently, and scoring them would report a mAP of 0 for no reason."""
    gt = load_ground_truth(ground_truth)
    if not gt:
        raise RegionError(f"{os.path.basename(ground_truth)} holds no ground-truth boxes: nothing to score against")
    dets = load_detections(predictions)
    gt_images = {g.image for g in gt}
    det_images = {d.image for d in dets}
    if dets and not det_images & gt_images:
        raise RegionError(f"no image of {os.path.basename(predictions)} appears in {os.path.basename(ground_truth)} "
                          f"(e.g. {sorted(det_images)[0]!r} vs {sorted(gt_images)[0] if gt_images else 'nothing'!r}): "
                          "the 'image' fields must be written the same way in both files")
    return voc_report(gt, dets, iou_threshold)


# -- box files ---------------------------------------------------------------------------------------
def _records(path: str, what: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise RegionError(f"{what} file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise RegionError(f"{what} file {path} is not readable JSON: {exc}") from None
    if isinstance(data, dict):  # {"boxes": [...]} or `vsearch detect --json` output
        data = data.get("boxes", data.get("detections"))
    if not isinstance(data, list):
        raise RegionError(f"{what} file {path} must hold a JSON list of "
                          '{"image": ..., "label": ..., "box": [x1, y1, x2, y2]} records')
    return data


def _box(rec: dict, where: str) -> tuple[float, float, float, float]:
    box = rec.get("box")
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise RegionError(f"{where}: 'box' must be [x1, y1, x2, y2] numbers, got {box!r}") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise RegionError(f"{where}: box {box!r} is empty or not finite (need x2 > x1 and y2 > y1)")
    return x1, y1, x2, y2


def _image_key(rec: dict, where: str) -> str:
    image = rec.get("image")
    if not isinstance(image, str) or not image:
        raise RegionError(f"{where}: 'image' must be a non-empty string")
    return image


_DIFFICULT = {"true": True, "1": True, "false": False, "0": False}


def _difficult(rec: dict, where: str) -> bool:
    # refused rather than guessed: Python's truth value would count the string "false" as difficult
    value = rec.get("difficult", False)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _DIFFICULT:
        return _DIFFICULT[value.strip().lower()]
    raise RegionError(f"{where}: 'difficult' must be true/false or 1/0, got {value!r}")


def load_ground_truth(path: str) -> list[GroundTruthBox]:
    """Ground truth: a JSON list of ``{"image", "label", "box", "difficult"?}``. ``difficult`` is a
    JSON boolean, 0 or 1, or one of the strings true/false/1/0 in any case (absent: false); any
    other value is an error naming the file and the record."""
    out = []
    for i, rec in enumerate(_records(path, "ground-truth")):
        where = f"{os.path.basename(path)} record {i}"
        if not isinstance(rec, dict) or not isinstance(rec.get("label"), str):
            raise RegionError(f"{where}: needs 'image', 'label' (a string) and 'box'")
        out.append(GroundTruthBox(_image_key(rec, where), rec["label"], _box(rec, where),
                                  _difficult(rec, where)))
    return out


def load_detections(path: str) -> list[DetectedBox]:
    """Detections: a JSON list of ``{"image", "label", "box", "score"}`` (``vsearch detect --json``
    writes exactly this)."""
    out = []
    for i, rec in enumerate(_records(path, "predictions")):
        where = f"{os.path.basename(path)} record {i}"
        if not isinstance(rec, dict) or not isinstance(rec.get("label"), str):
            raise RegionError(f"{where}: needs 'image', 'label' (a string), 'box' and 'score'")
        try:
            score = float(rec["score"])
        except (KeyError, TypeError, ValueError):
            raise RegionError(f"{where}: 'score' must be a number") from None
        if not math.isfinite(score):
            raise RegionError(f"{where}: 'score' must be finite")
        out.append(DetectedBox(_image_key(rec, where), rec["label"], _box(rec, where), score))
    return out


__all__ = ["box_iou", "nms", "batched_nms", "average_precision", "match_detections", "evaluate_detections",
           "GroundTruthBox", "DetectedBox", "ClassAP", "DetectionEval", "DetectionReport", "voc_report",
           "evaluate_detection_files", "load_ground_truth", "load_detections"]
