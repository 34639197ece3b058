"""How region hits are shown: JSON records and boxes drawn on gallery thumbnails."""
from __future__ import annotations

from typing import Sequence

from PIL import Image


def hit_json(hit) -> dict:
    """``{"path", "score"}``, plus for a region hit ``"box": [x1, y1, x2, y2]`` (pixels of the
    upright photo), ``"whole_image"`` and the detector's ``"label"`` when it gave one."""
    out = {"path": hit.path, "score": round(hit.score, 6)}
    box = getattr(hit, "box", None)
    if box is not None:
        out["box"] = [round(float(v), 1) for v in box]
        out["whole_image"] = bool(getattr(hit, "whole_image", False))
        if getattr(hit, "label", None):
            out["label"] = hit.label
        if getattr(hit, "text", None) is not None:  # found through its read text: the line that matched
            out["text"] = hit.text
    return out


def hit_box(hit) -> tuple[float, float, float, float] | None:
    """The box worth drawing for a hit: a region's, not the full frame's, not a plain photo hit's."""
    if getattr(hit, "whole_image", False):
        return None
    return getattr(hit, "box", None)


def draw_on_thumbnail(thumb: Image.Image, original_width: int, box: Sequence[float]) -> Image.Image:
    """``thumb`` (a shrunk copy of a photo ``original_width`` pixels wide) with ``box`` (in the
    photo's pixels) outlined."""
    from vsearch.regions.crops import draw_boxes

    scale = thumb.width / float(original_width)
    return draw_boxes(thumb, [[float(v) * scale for v in box]], colours=[(255, 40, 40)], width=3)


__all__ = ["hit_json", "hit_box", "draw_on_thumbnail"]
