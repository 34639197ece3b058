"""IoU, NMS and VOC AP against values worked out by hand."""
import json
import math
from fractions import Fraction

import numpy as np
import pytest

from vsearch.metrics.verification import MetricsInputError
from vsearch.regions.base import RegionError
from vsearch.regions.metrics import (
    DetectedBox, GroundTruthBox, average_precision, batched_nms, box_iou, evaluate_detection_files, evaluate_detections,
    load_detections, load_ground_truth, match_detections, nms,
)


def test_box_iou_hand_values():
    a = [[0, 0, 2, 2]]
    b = [[1, 1, 3, 3], [0, 0, 2, 2], [2, 2, 4, 4], [0, 0, 4, 4]]
    # overlap 1 of union 7; identical; touching corners only; contained (4 of 16)
    assert box_iou(a, b)[0] == pytest.approx([1 / 7, 1.0, 0.0, 0.25])


def test_nms_keeps_best_of_overlapping_boxes_in_score_order():
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 9]]
    scores = [0.6, 0.9, 0.5, 0.3]
    # box 1 wins; 0 overlaps it by 9/11 > 0.5; box 3 overlaps box 1 by 81/109 ≈ 0.74 -> gone
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    # at IoU 0.85 nothing overlaps that much except box 3 with box 0 (90/100 = 0.9)
    assert nms(boxes, scores, 0.85).tolist() == [1, 0, 2]


def test_batched_nms_only_suppresses_within_a_label():
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10]]
    scores = [0.9, 0.8, 0.7]
    assert sorted(batched_nms(boxes, scores, ["cat", "cat", "cup"], 0.5).tolist()) == [0, 2]


# One class, four positives in two images. In score order the detections are:
#   0.95 TP (a1), 0.9 FP (duplicate of a1), 0.8 TP (b1), 0.7 FP (IoU 1/3 with a2),
#   0.6 FP (image without that class), 0.5 TP (a2)             -> recall .25 .25 .5 .5 .5 .75
#                                                             precision 1 .5 .67 .5 .4 .5
# all-point: .25·1 + .25·(2/3) + .25·.5 = 13/24; 11-point: (3·1 + 3·(2/3) + 2·.5 + 3·0)/11 = 6/11
GT = [
    GroundTruthBox("a", "cat", (0, 0, 10, 10)),
    GroundTruthBox("a", "cat", (20, 0, 30, 10)),
    GroundTruthBox("b", "cat", (0, 0, 10, 10)),
    GroundTruthBox("b", "cat", (50, 50, 60, 60)),  # never found
]
DETS = [
    DetectedBox("a", "cat", (0, 0, 10, 10), 0.95),
    DetectedBox("a", "cat", (0, 0, 10, 9), 0.9),
    DetectedBox("b", "cat", (1, 0, 10, 10), 0.8),
    DetectedBox("a", "cat", (25, 0, 35, 10), 0.7),
    DetectedBox("c", "cat", (0, 0, 10, 10), 0.6),
    DetectedBox("a", "cat", (20, 1, 30, 10), 0.5),
]


def test_voc_matching_by_hand():
    tp, fp, n_pos = match_detections(DETS[::-1], GT)  # input order must not matter
    assert tp.tolist() == [1, 0, 1, 0, 0, 1]
    assert fp.tolist() == [0, 1, 0, 1, 1, 0]
    assert n_pos == 4


def test_ap_all_point_and_11_point_by_hand():
    ev = evaluate_detections(GT, DETS, method="all")
    (cat,) = ev.per_class
    assert cat.ap == pytest.approx(13 / 24)
    assert (cat.true_positives, cat.n_detections, cat.n_ground_truth, cat.recall) == (3, 6, 4, 0.75)
    assert evaluate_detections(GT, DETS, method="11pt").per_class[0].ap == pytest.approx(6 / 11)


def test_average_precision_curve_helpers():
    assert average_precision([0.5, 1.0], [1.0, 1.0]) == pytest.approx(1.0)
    assert average_precision([0.5, 1.0], [1.0, 1.0], "11pt") == pytest.approx(1.0)
    # one of two found, first: area 0.5; 11-point: 6 of 11 thresholds reach recall 0.5
    assert average_precision([0.5], [1.0]) == pytest.approx(0.5)
    assert average_precision([0.5], [1.0], "11pt") == pytest.approx(6 / 11)
    with pytest.raises(ValueError):
        average_precision([0.5], [1.0], "voc")


def test_map_over_classes_difficult_boxes_and_classes_without_ground_truth():
    gt = GT + [GroundTruthBox("a", "cup", (40, 40, 50, 50)),
               GroundTruthBox("a", "cup", (60, 60, 70, 70), difficult=True)]
    dets = DETS + [
        DetectedBox("a", "cup", (40, 40, 50, 50), 0.9),
        DetectedBox("a", "cup", (60, 60, 70, 70), 0.95),  # matches a difficult box: ignored
        DetectedBox("b", "dog", (0, 0, 5, 5), 0.9),  # no dog anywhere: AP undefined, not in the mean
    ]
    ev = evaluate_detections(gt, dets)
    by = {c.label: c for c in ev.per_class}
    assert by["cup"].ap == pytest.approx(1.0) and by["cup"].n_ground_truth == 1
    assert by["dog"].ap is None
    assert ev.mean_ap == pytest.approx((13 / 24 + 1.0) / 2)


def test_iou_exactly_at_threshold_counts_and_missing_class_scores_zero():
    gt = [GroundTruthBox("a", "cat", (0, 0, 10, 10)), GroundTruthBox("a", "cup", (0, 0, 10, 10))]
    dets = [DetectedBox("a", "cat", (0, 0, 10, 5), 0.9)]  # IoU exactly 0.5
    by = {c.label: c for c in evaluate_detections(gt, dets).per_class}
    assert by["cat"].ap == pytest.approx(1.0)
    assert by["cup"].ap == 0.0  # ground truth, no detections


def test_box_files_load_and_refuse_bad_records(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps([{"image": "a.jpg", "label": "cat", "box": [0, 0, 10, 10], "difficult": True}]))
    assert load_ground_truth(str(gt)) == [GroundTruthBox("a.jpg", "cat", (0, 0, 10, 10), True)]
    pred = tmp_path / "pred.json"
    for bad, msg in [
        ([{"image": "a.jpg", "label": "cat", "box": [0, 0, 10, 10]}], "score"),
        ([{"image": "a.jpg", "label": "cat", "box": [10, 0, 0, 10], "score": 1}], "empty"),
        ([{"image": "a.jpg", "label": "cat", "box": [0, 0, 10], "score": 1}], "x1, y1, x2, y2"),
        ([{"label": "cat", "box": [0, 0, 10, 10], "score": 1}], "image"),
        ({"nope": 1}, "JSON list"),
    ]:
        pred.write_text(json.dumps(bad))
        with pytest.raises(RegionError, match=msg):
            load_detections(str(pred))
    pred.write_text("{not json")
    with pytest.raises(RegionError, match="not readable JSON"):
        load_detections(str(pred))
    with pytest.raises(RegionError, match="not found"):
        load_ground_truth(str(tmp_path / "missing.json"))


@pytest.mark.parametrize("offset", [0.0, 1e7])  # 1e7: with float32 coordinates the AP was 0.468, the reference 0.406
def test_evaluation_matches_a_brute_force_reference_on_random_data(offset):
    """Oracle: the same protocol written as plain loops (IoU by hand, Python floats), on random
    boxes, also far from the origin where float32 can no longer hold the coordinates."""
    rng = np.random.default_rng(0)

    def rand_box():
        x, y = rng.uniform(0, 80, 2) + offset
        w, h = rng.uniform(5, 30, 2)
        return (float(x), float(y), float(x + w), float(y + h))

    gt = [GroundTruthBox(f"i{rng.integers(4)}", "c", rand_box(), bool(rng.random() < 0.1)) for _ in range(25)]
    dets = [DetectedBox(g.image, "c", tuple(v + rng.normal(0, 3) for v in g.box), float(rng.random()))
            for g in gt for _ in range(2)] + [DetectedBox(f"i{rng.integers(4)}", "c", rand_box(), float(rng.random()))
                                              for _ in range(20)]

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    taken, tp, fp = set(), [], []
    for d in sorted(dets, key=lambda d: -d.score):
        cands = [(iou(d.box, g.box), j) for j, g in enumerate(gt) if g.image == d.image]
        best, j = max(cands) if cands else (0.0, -1)
        if best >= 0.5 and gt[j].difficult:
            continue
        if best >= 0.5 and j not in taken:
            taken.add(j)
            tp.append(1), fp.append(0)
        else:
            tp.append(0), fp.append(1)
    npos = sum(not g.difficult for g in gt)
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    ref = average_precision(ctp / npos, ctp / (ctp + cfp))
    assert evaluate_detections(gt, dets).per_class[0].ap == pytest.approx(ref)
    assert 0.0 < ref < 1.0


# "difficult" as VOC converters write it. Ground truth: box A (flag under test) and box B; the one
# detection finds A. Reference, py-faster-rcnn's voc_eval (which reads the flag with int()):
#   A not difficult: npos 2, the detection is a true positive -> recall 1/2, AP 0.5
#   A difficult:     npos 1, the detection is ignored, B is never found -> AP 0.0
@pytest.mark.parametrize("flag, difficult", [
    (False, False), (0, False), ("false", False), ("FALSE", False), ("0", False),
    (True, True), (1, True), ("true", True), ("True", True), ("1", True),
])
def test_difficult_flag_spellings_are_read_as_written(tmp_path, flag, difficult):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps([{"image": "a", "label": "cat", "box": [0, 0, 10, 10], "difficult": flag},
                              {"image": "a", "label": "cat", "box": [50, 50, 60, 60]}]))
    boxes = load_ground_truth(str(gt))
    assert boxes[0].difficult is difficult and boxes[1].difficult is False
    (cat,) = evaluate_detections(boxes, [DetectedBox("a", "cat", (0, 0, 10, 10), 0.9)]).per_class
    voc_eval_ap, voc_eval_npos = (0.0, 1) if difficult else (0.5, 2)
    assert (cat.ap, cat.n_ground_truth) == (voc_eval_ap, voc_eval_npos)  # before: "false"/"0" gave (0.0, 1)


@pytest.mark.parametrize("flag", ["yes", "", 2, -1, 0.5, None, [], {"v": 1}])
def test_difficult_flag_of_another_kind_is_an_error_naming_file_and_record(tmp_path, flag):
    gt = tmp_path / "truth.json"
    gt.write_text(json.dumps([{"image": "a", "label": "cat", "box": [0, 0, 10, 10]},
                              {"image": "a", "label": "cat", "box": [0, 0, 10, 10], "difficult": flag}]))
    with pytest.raises(RegionError, match=r"truth\.json record 1: 'difficult' must be true/false or 1/0"):
        load_ground_truth(str(gt))


def _exact_iou(a, b) -> Fraction:
    """IoU of the boxes' float values in exact rational arithmetic (the reference)."""
    a, b = [Fraction(v) for v in a], [Fraction(v) for v in b]
    iw = max(Fraction(0), min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(Fraction(0), min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _voc_eval_iou(bb, gt) -> float:
    """The overlap lines of py-faster-rcnn's voc_eval (numpy float64), without the devkit's +1
    (boxes here are continuous, as in torchvision)."""
    bbgt = np.asarray([gt], dtype=float)
    ixmin, iymin = np.maximum(bbgt[:, 0], bb[0]), np.maximum(bbgt[:, 1], bb[1])
    ixmax, iymax = np.minimum(bbgt[:, 2], bb[2]), np.minimum(bbgt[:, 3], bb[3])
    inters = np.maximum(ixmax - ixmin, 0.0) * np.maximum(iymax - iymin, 0.0)
    uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (bbgt[:, 2] - bbgt[:, 0]) * (bbgt[:, 3] - bbgt[:, 1]) - inters
    return float((inters / uni)[0])


def test_iou_near_1e7_is_not_rounded_into_a_hit():
    gt = (10000001.1, 10000001.5, 10000006.0, 10000007.2)
    det = (10000002.8, 10000000.6, 10000005.6, 10000006.9)
    exact = float(_exact_iou(det, gt))
    assert exact == pytest.approx(0.496552, abs=1e-6) and _voc_eval_iou(det, gt) == pytest.approx(exact, rel=1e-9)
    assert box_iou([det], [gt])[0, 0] == pytest.approx(exact, rel=1e-9)  # float32 said 0.535714
    (cat,) = evaluate_detections([GroundTruthBox("a", "cat", gt)], [DetectedBox("a", "cat", det, 0.9)]).per_class
    assert cat.ap == 0.0 and cat.true_positives == 0  # a miss at IoU 0.5 (voc_eval: AP 0.0); float32 scored AP 1.0


@pytest.mark.parametrize("scale", [1e39, 1e200, 1e307])
def test_iou_of_huge_boxes_is_exact_not_nan(scale):
    a = [[0, 0, 2 * scale, 2 * scale]]
    b = [[scale, scale, 3 * scale, 3 * scale], [0, 0, 2 * scale, 2 * scale], [0, 0, 4 * scale, 4 * scale]]
    ref = [float(_exact_iou(a[0], box)) for box in b]  # 1/7, 1, 1/4 (up to the rounding of the coordinates)
    assert box_iou(a, b)[0] == pytest.approx(ref, rel=1e-12)  # float32: NaN, NaN, NaN
    gt = [GroundTruthBox("a", "cat", tuple(a[0])), GroundTruthBox("a", "cat", tuple(b[0]))]
    dets = [DetectedBox("a", "cat", tuple(a[0]), 0.9), DetectedBox("a", "cat", tuple(b[0]), 0.8)]
    assert evaluate_detections(gt, dets).per_class[0].ap == 1.0  # voc_eval (float64): 1.0; float32: 0.0


def test_box_iou_refuses_non_finite_coordinates():
    with pytest.raises(MetricsInputError, match="1 of 2 boxes hold NaN or infinite coordinates"):
        box_iou([[0, 0, 1, np.nan]], [[0, 0, 1, 1]])


def test_empty_ground_truth_is_refused_and_an_all_difficult_one_is_undefined(tmp_path):
    dets = [DetectedBox("a", "cat", (0, 0, 10, 10), 0.9)]
    with pytest.raises(MetricsInputError, match="no ground-truth boxes"):  # before: mAP NaN
        evaluate_detections([], dets)
    ev = evaluate_detections([GroundTruthBox("a", "cat", (0, 0, 10, 10), difficult=True)], dets)
    assert ev.per_class[0].ap is None and math.isnan(ev.mean_ap)  # voc_eval: npos 0, AP 0/0 = NaN
    gt, pred = tmp_path / "empty.json", tmp_path / "pred.json"
    gt.write_text("[]")
    pred.write_text(json.dumps([{"image": "a", "label": "cat", "box": [0, 0, 10, 10], "score": 0.9}]))
    with pytest.raises(RegionError, match=r"^empty\.json holds no ground-truth boxes"):
        evaluate_detection_files(str(gt), str(pred))


def test_nan_or_infinite_scores_and_coordinates_are_refused_in_memory():
    gt = [GroundTruthBox("a", "cat", (0, 0, 10, 10)), GroundTruthBox("a", "cat", (20, 0, 30, 10))]
    dets = [DetectedBox("a", "cat", (0, 0, 10, 10), math.nan), DetectedBox("a", "cat", (50, 50, 60, 60), 0.9),
            DetectedBox("a", "cat", (20, 0, 30, 10), 0.8)]
    # before: AP 0.833 in this order and 0.667 reversed (a NaN stayed where the sort found it);
    # voc_eval's np.argsort ranks NaN last (0.667); the verification metrics raise, and so does this
    for order in (dets, dets[::-1]):
        with pytest.raises(MetricsInputError, match="1 of 3 detection scores are NaN or infinite"):
            evaluate_detections(gt, order)
    with pytest.raises(MetricsInputError, match="detection scores"):
        match_detections([DetectedBox("a", "cat", (0, 0, 1, 1), math.inf)], gt)
    with pytest.raises(MetricsInputError, match="1 of 1 detected boxes hold NaN"):
        evaluate_detections(gt, [DetectedBox("b", "cat", (0, 0, math.nan, 1), 0.5)])  # an image without ground truth
    with pytest.raises(MetricsInputError, match="1 of 1 ground-truth boxes hold NaN"):
        evaluate_detections([GroundTruthBox("a", "cat", (0, 0, 1, math.inf))], [])
