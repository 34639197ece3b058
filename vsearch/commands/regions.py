"""CLI commands of the regions feature: ``vsearch detect`` and ``vsearch eval detect``.

``vsearch index --regions`` and ``vsearch search --regions`` are options of the core commands;
their work is done in :mod:`vsearch.regions`.
"""
from __future__ import annotations

import math
import os
from typing import Annotated, Optional

import typer

from vsearch.commands.common import (DeviceOpt, ModelOpt, check_output_file, console, err_console, escape,
                                     handle_errors, json_flag, loading, print_json, print_rows, resolve_device)

# Defaults of vsearch.regions.detect, repeated so that `--help` needs no torch (a test checks they agree).
DEFAULT_THRESHOLD = 0.3
DETECT_PROPOSALS = 64


@handle_errors
def detect(
    image: Annotated[str, typer.Argument(help="The image to look in: a file or an http(s) URL.")],
    labels: Annotated[str, typer.Option("--labels", "-l", help='What to look for, comma-separated: "cat,cup".')],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write the image with the boxes drawn here (PNG; its folder must exist).")] = None,
    threshold: Annotated[float, typer.Option("--threshold", "-t",
                         help="Lowest cosine similarity kept (0.3 suits the packaged model; use less with CLIP).")] = DEFAULT_THRESHOLD,
    max_detections: Annotated[int, typer.Option("--max", "-n", min=1, help="At most this many boxes.")] = 20,
    proposals: Annotated[int, typer.Option("--proposals", min=1,
                         help="Region proposals to classify (fewer: faster, may miss small things).")] = DETECT_PROPOSALS,
    as_json: Annotated[bool, json_flag("Print a JSON list of {image, label, score, box} "
                                       "(the predictions format of `vsearch eval detect`).")] = False,
    model: ModelOpt = "auto",
    device: DeviceOpt = "cpu",
) -> None:
    """Open-vocabulary detection in one image: region proposals scored against the label texts,
    per-label NMS, a score threshold. Prints the boxes ([x1, y1, x2, y2] in image pixels)."""
    from vsearch.encoders import load_encoder, resolve_auto
    from vsearch.fetch import local_image
    from vsearch.images import decode_image
    from vsearch.regions.detect import annotate
    from vsearch.regions.detect import detect as run_detect
    from vsearch.regions.detect import parse_labels

    names = parse_labels(labels)  # fail on bad labels before loading a model
    out = check_output_file(out, "--out")
    with local_image(image) as image_file:
        picture = decode_image(image_file).image
    device = resolve_device(device)
    with loading(f"loading model {model}"):
        if model == "auto":
            encoder, notice = resolve_auto(device)
        else:
            encoder, notice = load_encoder(model, device), None
    if notice:
        err_console.print(escape(notice))
    from vsearch.regions.proposals import ProposalConfig, ProposalSource

    found = run_detect(encoder, picture, names, threshold=threshold, max_detections=max_detections,
                       proposals=ProposalSource(ProposalConfig(max_regions=proposals)))
    if out:
        from vsearch.regions.base import RegionError

        try:
            annotate(picture, found).save(out, format="PNG")
        except (OSError, ValueError) as exc:
            raise RegionError(f"cannot write {out}: {exc}") from None
        err_console.print(f"wrote {escape(out)}")
    from vsearch.fetch import is_url

    path = image if is_url(image) else os.path.abspath(image)
    if as_json:
        print_json([{"image": path, "label": d.label, "score": round(d.score, 6),
                     "box": [round(v, 2) for v in d.box]} for d in found])
        return
    if not found:
        err_console.print(f"nothing above {threshold} for {escape(', '.join(names))}")
        return
    print_rows(["label", "score", "box [x1, y1, x2, y2]"],
               [[d.label, f"{d.score:.3f}", "[" + ", ".join(f"{v:.0f}" for v in d.box) + "]"] for d in found],
               justify=["left", "right", "left"])


@handle_errors
def detect_eval(
    ground_truth: Annotated[str, typer.Argument(help='GT.json: [{"image", "label", "box", "difficult"?}, ...]')],
    predictions: Annotated[str, typer.Argument(help='PRED.json: [{"image", "label", "box", "score"}, ...] '
                                                    "(what `vsearch detect --json` prints)")],
    iou: Annotated[float, typer.Option("--iou", min=0.0, max=1.0, help="IoU a detection needs to count as found.")] = 0.5,
    as_json: Annotated[bool, json_flag("Print the figures as JSON.")] = False,
) -> None:
    """Per-class Pascal VOC average precision (all-point and 11-point) and mAP of detections."""
    from vsearch.regions.base import RegionError
    from vsearch.regions.metrics import evaluate_detections, load_detections, load_ground_truth

    gt = load_ground_truth(ground_truth)
    dets = load_detections(predictions)
    gt_images = {g.image for g in gt}
    det_images = {d.image for d in dets}
    if dets and not det_images & gt_images:
        raise RegionError(f"no image of {os.path.basename(predictions)} appears in {os.path.basename(ground_truth)} "
                          f"(e.g. {sorted(det_images)[0]!r} vs {sorted(gt_images)[0] if gt_images else 'nothing'!r}): "
                          "the 'image' fields must be written the same way in both files")
    all_point = evaluate_detections(gt, dets, iou, "all")
    eleven = {c.label: c.ap for c in evaluate_detections(gt, dets, iou, "11pt").per_class}
    tag = f"mAP@{iou:g}"
    if as_json:
        print_json({
            "iou": iou,
            "classes": [{"label": c.label, "ap": c.ap, "ap_11pt": eleven[c.label], "ground_truth": c.n_ground_truth,
                         "detections": c.n_detections, "true_positives": c.true_positives, "recall": c.recall}
                        for c in all_point.per_class],
            "map": _none_if_nan(all_point.mean_ap),
            "map_11pt": _none_if_nan(_mean([v for v in eleven.values() if v is not None])),
        })
        return
    columns = ("class", "AP", "AP (11-pt)", "ground truth", "detections", "true pos.", "recall")
    print_rows(columns, [[c.label, _fmt(c.ap), _fmt(eleven[c.label]), str(c.n_ground_truth), str(c.n_detections),
                          str(c.true_positives), _fmt(c.recall)] for c in all_point.per_class],
               justify=["left"] + ["right"] * (len(columns) - 1))
    mean_11 = _mean([v for v in eleven.values() if v is not None])
    if math.isnan(all_point.mean_ap):
        console.print(f"{tag}: undefined (no ground-truth boxes)")
    else:
        console.print(f"{tag} = {all_point.mean_ap:.4f} (all-point), {mean_11:.4f} (11-point) over "
                      f"{sum(c.ap is not None for c in all_point.per_class)} classes", highlight=False)
    missing = [c.label for c in all_point.per_class if c.ap is None]
    if missing:
        console.print(f"not scored (detections but no ground truth): {escape(', '.join(missing))}")


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x  # JSON has no NaN


__all__ = ["detect", "detect_eval"]
