"""CLI commands of the regions feature: ``vsearch detect`` and ``vsearch eval detect``.

``vsearch index --regions`` and ``vsearch search --regions`` are options of the core commands;
their work is done in :mod:`vsearch.regions`.
"""
from __future__ import annotations

import json
import math
import os
from typing import Annotated, Optional

import typer

from vsearch.commands.common import DeviceOpt, ModelOpt, console, err_console, handle_errors, resolve_device
from vsearch.regions.detect import DEFAULT_THRESHOLD, DETECT_PROPOSALS


@handle_errors
def detect(
    image: Annotated[str, typer.Argument(help="The image to look in.")],
    labels: Annotated[str, typer.Option("--labels", "-l", help='What to look for, comma-separated: "cat,cup".')],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write the image with the boxes drawn here (PNG).")] = None,
    threshold: Annotated[float, typer.Option("--threshold", "-t",
                         help="Lowest cosine similarity kept (0.3 suits the packaged model; use less with CLIP).")] = DEFAULT_THRESHOLD,
    max_detections: Annotated[int, typer.Option("--max", "-n", min=1, help="At most this many boxes.")] = 20,
    proposals: Annotated[int, typer.Option("--proposals", min=1,
                         help="Region proposals to classify (fewer: faster, may miss small things).")] = DETECT_PROPOSALS,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of {image, label, score, box} "
                       "(the predictions format of `vsearch eval detect`).")] = False,
    model: ModelOpt = "auto",
    device: DeviceOpt = "cpu",
) -> None:
    """Open-vocabulary detection in one image: region proposals scored against the label texts,
    per-label NMS, a score threshold. Prints the boxes ([x1, y1, x2, y2] in image pixels)."""
    from vsearch.encoders import load_encoder, resolve_auto
    from vsearch.images import decode_image
    from vsearch.regions.detect import annotate
    from vsearch.regions.detect import detect as run_detect
    from vsearch.regions.detect import parse_labels

    names = parse_labels(labels)  # fail on bad labels before loading a model
    picture = decode_image(image).image
    device = resolve_device(device)
    if model == "auto":
        encoder, notice = resolve_auto(device)
        err_console.print(notice, highlight=False)
    else:
        encoder = load_encoder(model, device)
    from vsearch.regions.proposals import ProposalConfig, ProposalSource

    found = run_detect(encoder, picture, names, threshold=threshold, max_detections=max_detections,
                       proposals=ProposalSource(ProposalConfig(max_regions=proposals)))
    if out:
        from vsearch.regions.base import RegionError

        try:
            annotate(picture, found).save(out, format="PNG")
        except (OSError, ValueError) as exc:
            raise RegionError(f"cannot write {out}: {exc}") from None
        err_console.print(f"wrote {out}")
    path = os.path.abspath(image)
    if as_json:
        print(json.dumps([{"image": path, "label": d.label, "score": round(d.score, 6),
                           "box": [round(v, 2) for v in d.box]} for d in found], ensure_ascii=False))
        return
    if not found:
        console.print(f"nothing above {threshold} for {', '.join(names)}")
        return
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for col, justify in (("label", "left"), ("score", "right"), ("box [x1, y1, x2, y2]", "left")):
        table.add_column(col, justify=justify)
    for d in found:
        table.add_row(d.label, f"{d.score:.3f}", "[" + ", ".join(f"{v:.0f}" for v in d.box) + "]")
    console.print(table)


@handle_errors
def detect_eval(
    ground_truth: Annotated[str, typer.Argument(help='GT.json: [{"image", "label", "box", "difficult"?}, ...]')],
    predictions: Annotated[str, typer.Argument(help='PRED.json: [{"image", "label", "box", "score"}, ...] '
                                                    "(what `vsearch detect --json` prints)")],
    iou: Annotated[float, typer.Option("--iou", min=0.0, max=1.0, help="IoU a detection needs to count as found.")] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
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
        print(json.dumps({
            "iou": iou,
            "classes": [{"label": c.label, "ap": c.ap, "ap_11pt": eleven[c.label], "ground_truth": c.n_ground_truth,
                         "detections": c.n_detections, "true_positives": c.true_positives, "recall": c.recall}
                        for c in all_point.per_class],
            "map": _none_if_nan(all_point.mean_ap),
            "map_11pt": _none_if_nan(_mean([v for v in eleven.values() if v is not None])),
        }))
        return
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for col in ("class", "AP", "AP (11-pt)", "ground truth", "detections", "true pos.", "recall"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in all_point.per_class:
        table.add_row(c.label, _fmt(c.ap), _fmt(eleven[c.label]), str(c.n_ground_truth), str(c.n_detections),
                      str(c.true_positives), _fmt(c.recall))
    console.print(table)
    mean_11 = _mean([v for v in eleven.values() if v is not None])
    if math.isnan(all_point.mean_ap):
        console.print(f"{tag}: undefined (no ground-truth boxes)")
    else:
        console.print(f"{tag} = {all_point.mean_ap:.4f} (all-point), {mean_11:.4f} (11-point) over "
                      f"{sum(c.ap is not None for c in all_point.per_class)} classes", highlight=False)
    missing = [c.label for c in all_point.per_class if c.ap is None]
    if missing:
        console.print(f"not scored (detections but no ground truth): {', '.join(missing)}", highlight=False)


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x  # JSON has no NaN


# `vsearch eval detect`: a group of its own for now. Another branch adds an `eval` group in
# vsearch/commands/eval.py; when both are merged, `detect_eval` joins that group and this goes.
eval_detect_app = typer.Typer(help="Evaluate results against ground truth.", no_args_is_help=True)
eval_detect_app.command("detect")(detect_eval)

__all__ = ["detect", "detect_eval", "eval_detect_app"]
