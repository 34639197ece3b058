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
                                     handle_errors, json_flag, loading, note_once, print_json, print_rows, resolve_device,
                                     warn_if_not_english)

# Defaults of vsearch.regions.detect, repeated so that `--help` needs no torch (a test checks they agree).
DEFAULT_THRESHOLD = 0.3
DETECT_PROPOSALS = 64
DEFAULT_PER_LABEL = 1


@handle_errors
def detect(
    image: Annotated[str, typer.Argument(help="The image to look in: a file or an http(s) URL.")],
    labels: Annotated[str, typer.Option("--labels", "-l", help='What to look for, comma-separated: "cat,cup".')],
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write the image with the boxes drawn here (PNG; its folder must exist).")] = None,
    threshold: Annotated[float, typer.Option("--threshold", "-t",
                         help="Lowest cosine similarity kept (0.3 suits the packaged model; use less with CLIP).")] = DEFAULT_THRESHOLD,
    max_detections: Annotated[int, typer.Option("--max", "-n", min=1, help="At most this many boxes.")] = 20,
    per_label: Annotated[int, typer.Option("--per-label", min=0, help="At most this many boxes of each label "
                         "(0: every box NMS keeps).")] = DEFAULT_PER_LABEL,
    proposals: Annotated[int, typer.Option("--proposals", min=1,
                         help="Region proposals to classify (fewer: faster, may miss small things).")] = DETECT_PROPOSALS,
    as_json: Annotated[bool, json_flag("Print a JSON list of {image, label, score, box} "
                                       "(the predictions format of `vsearch eval detect`).")] = False,
    model: ModelOpt = "auto",
    device: DeviceOpt = "cpu",
) -> None:
    """Open-vocabulary detection in one image: region proposals scored against the label texts,
    per-label NMS, a score threshold, the best box of each label (--per-label). Prints the boxes ([x1, y1, x2, y2] in image pixels)."""
    from vsearch.encoders import resolve_encoder
    from vsearch.fetch import local_image
    from vsearch.images import decode_image
    from vsearch.regions.detect import detect as run_detect
    from vsearch.regions.detect import parse_labels, write_annotated

    names = parse_labels(labels)  # fail on bad labels before loading a model
    out = check_output_file(out, "--out")
    with local_image(image) as image_file:
        picture = decode_image(image_file).image
    device = resolve_device(device)
    with loading(f"loading model {model}"):
        encoder, notice = resolve_encoder(model, device)
    if notice:
        err_console.print(escape(notice))
    warn_if_not_english(encoder.info.name, names)
    if encoder.info.name.startswith("packaged"):
        note_once("detect-packaged-model", f"{encoder.info.name} names what is in a photo better than where: its "
                  "boxes often miss the object; a CLIP model (--model clip:ARCH@WEIGHTS.pt) localises better")
    from vsearch.regions.proposals import ProposalConfig, ProposalSource

    found = run_detect(encoder, picture, names, threshold=threshold, max_detections=max_detections,
                       proposals=ProposalSource(ProposalConfig(max_regions=proposals)), per_label=per_label or None)
    if out:
        write_annotated(picture, found, out)
        err_console.print(f"wrote {escape(out)}")
    if as_json:  # the image as `vsearch eval detect` will match it: the URL, else the absolute path
        from vsearch.fetch import is_url

        path = image if is_url(image) else os.path.abspath(image)
        print_json([d.to_json(path) for d in found])
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
    from vsearch.regions.metrics import evaluate_detection_files

    report = evaluate_detection_files(ground_truth, predictions, iou)
    if as_json:
        print_json(report.to_json())
        return
    per_class, eleven = report.all_point.per_class, report.eleven_point
    columns = ("class", "AP", "AP (11-pt)", "ground truth", "detections", "true pos.", "recall")
    print_rows(columns, [[c.label, _fmt(c.ap), _fmt(eleven[c.label]), str(c.n_ground_truth), str(c.n_detections),
                          str(c.true_positives), _fmt(c.recall)] for c in per_class],
               justify=["left"] + ["right"] * (len(columns) - 1))
    tag = f"mAP@{iou:g}"
    if math.isnan(report.mean_ap):
        console.print(f"{tag}: undefined (every ground-truth box is marked difficult)")
    else:
        console.print(f"{tag} = {report.mean_ap:.4f} (all-point), {report.mean_ap_11pt:.4f} (11-point) over "
                      f"{sum(c.ap is not None for c in per_class)} classes", highlight=False)
    missing = [c.label for c in per_class if c.ap is None]
    if missing:
        console.print(f"not scored (detections but no ground truth): {escape(', '.join(missing))}")


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


__all__ = ["detect", "detect_eval"]
