"""`vsearch detect` defaults: which score threshold and suppression leave few, plausible boxes.

    python benchmarks/detect_defaults.py

On the 4 scikit-image photos with hand-labelled boxes (benchmarks/regions_boxes.json), with the
packaged model: every photo is queried with the 11 labelled objects and 6 labels absent from all
four (cat, horse, dog, car, bicycle, banana), each box scored once (64 proposals + the whole
frame); then, for each threshold and number of boxes kept per label, the boxes `detect` would print: how many
per photo, how many for absent labels, and mAP@0.5 over the 11 labels (the `vsearch eval detect`
code). Prints a markdown table; the figures are recorded in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from benchmarks.regions import BOXES, skimage_photo  # noqa: E402

ABSENT = ["cat", "horse", "dog", "car", "bicycle", "banana"]
THRESHOLDS = (0.3, 0.35, 0.4, 0.5)
PER_LABEL = (None, 3, 1)


def main() -> None:
    os.environ.setdefault("VSEARCH_OFFLINE", "1")
    from vsearch.encoders import load_encoder
    from vsearch.regions.detect import DEFAULT_NMS_IOU, score_regions, top_per_label
    from vsearch.regions.metrics import batched_nms
    from vsearch.regions.metrics import DetectedBox, GroundTruthBox, evaluate_detections

    with open(BOXES) as fh:
        ground_truth = json.load(fh)
    present = sorted({g["label"] for g in ground_truth})
    labels = present + ABSENT
    gt = [GroundTruthBox(g["image"], g["label"], tuple(g["box"])) for g in ground_truth]
    encoder = load_encoder("packaged")
    scored = {}
    for name in sorted({g["image"] for g in ground_truth}):
        boxes, sims = score_regions(encoder, skimage_photo(name), labels)
        scored[name] = (boxes, sims.argmax(axis=1), sims.max(axis=1))
    print(f"# detect defaults — load average {os.getloadavg()[0]:.1f}; model {encoder.info.name}\n")
    print(f"| threshold | boxes per label (after NMS at IoU {DEFAULT_NMS_IOU}) | boxes per photo | "
          "boxes of absent labels | mAP@0.5 |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for cap, t in ((n, t) for n in PER_LABEL for t in THRESHOLDS):
        dets, absent = [], 0
        for name, (boxes, best, score) in scored.items():
            ok = np.flatnonzero(score >= t)
            keep = ok[batched_nms(boxes[ok], score[ok], best[ok], DEFAULT_NMS_IOU)]
            keep = top_per_label(keep, best, cap)[:20]
            for i in keep:
                dets.append(DetectedBox(name, labels[best[i]], tuple(boxes[i]), float(score[i])))
                absent += labels[best[i]] in ABSENT
        ev = evaluate_detections(gt, [d for d in dets if d.label in present])
        print(f"| {t:.2f} | {cap or 'all'} | {len(dets) / len(scored):.1f} | {absent} | {ev.mean_ap:.3f} |")


if __name__ == "__main__":
    main()
