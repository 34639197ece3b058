"""Open-vocabulary detection in one image: region proposals classified by label texts.

The R-CNN recipe with the classifier swapped for text: propose class-agnostic boxes, embed each
crop with the image encoder, and compare it with the text embeddings of the labels
("a photo of a {label}."). A box takes the label it matches best; its score is that cosine
similarity. Boxes under the threshold go, then per-label NMS (``torchvision.ops.batched_nms``)
keeps the best of overlapping boxes of one label, and by default only the best box of each label
is kept (the packaged model localises poorly: its other boxes are mostly nested crops).

Scores are raw cosine similarities, so a good threshold depends on the encoder. With the packaged
model, the best box of each hand-labelled object in its photo scored 0.25–1.0 (median 0.53) and
the best box of labels absent from those photos at most 0.29 (median 0.12): hence 0.3
(benchmarks/RESULTS.md). CLIP's image–text similarities are typically lower (around 0.3 for a
matching pair; not measured here, there are no CLIP weights offline), so pass a lower
``--threshold`` with CLIP.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from vsearch.regions.base import RegionError, Regions, RegionSource
from vsearch.regions.crops import draw_boxes, embed_regions
from vsearch.regions.metrics import batched_nms
from vsearch.regions.proposals import ProposalConfig, ProposalSource

DEFAULT_THRESHOLD = 0.3
DEFAULT_TEMPLATE = "a photo of a {}."
DETECT_PROPOSALS = 64  # more than for indexing: one image, and recall matters more than speed
DEFAULT_NMS_IOU = 0.5  # the usual value; 0.3 made no measurable difference on the hand-labelled boxes
# one box per label: on the hand-labelled photos (benchmarks/RESULTS.md, "detect defaults") the
# best box of each label gave 5.2 boxes per photo and mAP@0.5 0.136, against 20 boxes and 0.114
# with every box NMS keeps: the packaged model's further boxes are nested crops of the same thing
DEFAULT_PER_LABEL = 1


@dataclass(frozen=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # [x1, y1, x2, y2] in the image's pixels

    def to_json(self, image: str) -> dict:
        """One prediction record of ``image`` as `vsearch detect --json` prints it (the predictions
        format :func:`vsearch.regions.metrics.load_detections` reads)."""
        return {"image": image, "label": self.label, "score": round(self.score, 6),
                "box": [round(v, 2) for v in self.box]}


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """``"cat, cup"`` or ``["cat", "cup"]`` -> ``["cat", "cup"]`` (stripped, duplicates dropped)."""
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    out: list[str] = []
    for item in items:
        item = item.strip()
        if item and item not in out:
            out.append(item)
    if not out:
        raise RegionError('give at least one label, e.g. --labels "cat,cup"')
    return out


def score_regions(encoder, image: Image.Image, labels: Sequence[str], proposals: RegionSource | None = None,
                  template: str = DEFAULT_TEMPLATE) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes (N, 4), similarities (N, C))``: every candidate box of ``image`` (the proposals and
    the whole frame) and the cosine similarity of its crop with each label's text embedding."""
    if "{}" not in template:
        raise RegionError("the prompt template needs a {} where the label goes")
    image = image.convert("RGB")
    source = proposals or ProposalSource(ProposalConfig(max_regions=DETECT_PROPOSALS))
    found = source(image)
    # the whole frame is a candidate too: proposals leave out boxes that cover most of the photo,
    # and an object may fill it
    boxes = np.concatenate([found.boxes, np.array([[0, 0, image.width, image.height]], np.float32)])
    crops = embed_regions(encoder, image, Regions(boxes, np.zeros(len(boxes), np.float32)))  # (N, D)
    texts = encoder.encode_text([template.format(n) for n in labels])  # (C, D)
    return boxes, crops @ texts.T


def top_per_label(order: np.ndarray, labels: np.ndarray, per_label: int | None) -> np.ndarray:
    """``order`` (indices, best first) keeping at most ``per_label`` of each label."""
    if per_label is None:
        return order
    seen: dict = {}
    out = []
    for i in order:
        seen[labels[i]] = seen.get(labels[i], 0) + 1
        if seen[labels[i]] <= per_label:
            out.append(i)
    return np.asarray(out, np.int64)


def detect(encoder, image: Image.Image, labels: str | Sequence[str], threshold: float = DEFAULT_THRESHOLD,
           proposals: RegionSource | None = None, nms_iou: float = DEFAULT_NMS_IOU,
           max_detections: int = 20, template: str = DEFAULT_TEMPLATE,
           per_label: int | None = DEFAULT_PER_LABEL) -> list[Detection]:
    """Boxes of ``labels`` in ``image`` (RGB), best first, at most ``per_label`` of each label
    (None: all that NMS keeps). ``encoder`` embeds both images and texts."""
    names = parse_labels(labels)
    if max_detections < 1:
        raise RegionError("max_detections must be at least 1")
    boxes, sims = score_regions(encoder, image, names, proposals, template)
    best = sims.argmax(axis=1)  # each box takes the label it matches best
    score = sims[np.arange(len(sims)), best]
    ok = np.flatnonzero(score >= threshold)
    if ok.size == 0:
        return []
    keep = top_per_label(ok[batched_nms(boxes[ok], score[ok], best[ok], nms_iou)], best, per_label)[:max_detections]
    return [Detection(names[best[i]], float(score[i]), tuple(float(v) for v in boxes[i])) for i in keep]


def annotate(image: Image.Image, detections: Sequence[Detection]) -> Image.Image:
    """``image`` with each detection's box and "label score" drawn; one colour per label."""
    from vsearch.regions.crops import PALETTE

    order = list(dict.fromkeys(d.label for d in detections))
    colours = [PALETTE[order.index(d.label) % len(PALETTE)] for d in detections]
    return draw_boxes(image, [d.box for d in detections], [f"{d.label} {d.score:.2f}" for d in detections], colours)


def write_annotated(image: Image.Image, detections: Sequence[Detection], path: str) -> None:
    """:func:`annotate` saved as a PNG at ``path``; a file that cannot be written is a RegionError."""
    try:
        annotate(image, detections).save(path, format="PNG")
    except (OSError, ValueError) as exc:
        raise RegionError(f"cannot write {path}: {exc}") from None


__all__ = ["Detection", "detect", "score_regions", "annotate", "write_annotated", "parse_labels", "DEFAULT_THRESHOLD", "DEFAULT_TEMPLATE",
           "DEFAULT_NMS_IOU", "DEFAULT_PER_LABEL", "DETECT_PROPOSALS", "top_per_label"]
