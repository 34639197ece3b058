"""Regions -> pixels the image encoder can embed, and back to pictures people can look at.

Crops follow R-CNN's recipe: a little context around the box, then warped to the encoder's input.
Instead of warping (which distorts shapes) the window is grown to a square, because every encoder
in vsearch resizes the short side and centre-crops: a long thin box would otherwise lose its ends.
"""
from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from vsearch.encoders.base import stack_pixels
from vsearch.images import limit_aspect
from vsearch.regions.base import Regions

# The ImageNet mean colour (CLIP's is within 2 levels of it). After the encoders' normalisation it
# becomes an all-zero input, the most "nothing here" a CNN or ViT can be shown: used for the blanked
# background of masked crops and for the part of a crop window that falls outside the photo.
MEAN_RGB = (124, 116, 104)
CONTEXT = 0.1  # fraction of the box size added on each side (R-CNN used 16 px around 227 px)


def crop_window(box: Sequence[float], context: float = CONTEXT) -> tuple[int, int, int, int]:
    """The square pixel window (may extend past the image) centred on ``box`` plus context."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"empty box {list(box)}")
    w, h = x2 - x1, y2 - y1
    side = max(w, h) * (1.0 + 2.0 * context)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    side_px = max(1, int(round(side)))
    return left, top, left + side_px, top + side_px


def crop_region(image: Image.Image, box: Sequence[float], mask: np.ndarray | None = None,
                context: float = CONTEXT, fill: tuple[int, int, int] = MEAN_RGB,
                max_size: int | None = None) -> Image.Image:
    """The crop of ``image`` (RGB) around ``box``, as a square RGB image (at most ``max_size``
    pixels a side: a crop is shrunk while it is cut out, which costs far less than letting the
    encoder's preprocessing shrink a big crop).

    With ``mask`` (bool, the image's height × width) every pixel outside the mask becomes ``fill``,
    so a segmented object is embedded alone rather than with whatever stood behind it.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    left, top, right, bottom = crop_window(box, context)
    side = right - left
    # the part of the window inside the image; the rest stays `fill`
    ix1, iy1 = max(left, 0), max(top, 0)
    ix2, iy2 = min(right, image.width), min(bottom, image.height)
    if ix2 <= ix1 or iy2 <= iy1:
        raise ValueError(f"box {list(box)} lies outside the {image.width}x{image.height} image")
    f = min(1.0, max_size / side) if max_size else 1.0
    out_side = max(1, round(side * f))
    part_size = (max(1, round((ix2 - ix1) * f)), max(1, round((iy2 - iy1) * f)))
    part = image.resize(part_size, Image.Resampling.BILINEAR, box=(ix1, iy1, ix2, iy2), reducing_gap=2.0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (image.height, image.width):
            raise ValueError(f"mask is {mask.shape[::-1]} but the image is {image.size}")
        keep = Image.fromarray(mask[iy1:iy2, ix1:ix2].astype(np.uint8) * 255, "L")
        if keep.size != part_size:
            keep = keep.resize(part_size, Image.Resampling.NEAREST)
        part = Image.composite(part, Image.new("RGB", part_size, fill), keep)
    out = Image.new("RGB", (out_side, out_side), fill)
    out.paste(part, (round((ix1 - left) * f), round((iy1 - top) * f)))
    return out


def region_crops(image: Image.Image, regions: Regions, context: float = CONTEXT,
                 max_size: int | None = None) -> list[Image.Image]:
    masks = regions.masks
    return [crop_region(image, box, None if masks is None else masks[i], context, max_size=max_size)
            for i, box in enumerate(regions.boxes)]


def embed_regions(encoder, image: Image.Image, regions: Regions, batch_size: int = 32,
                  context: float = CONTEXT) -> np.ndarray:
    """``(N, D)`` L2-normalised embeddings of the regions' crops with ``encoder`` (an image encoder
    of vsearch: ``preprocess`` + ``encode_pixels``), so they live in the same space as the photos
    and as text queries."""
    # no encoder resizes its input above image_size / 0.875 (the ImageNet resize-then-crop ratio)
    crops = region_crops(image, regions, context, max_size=int(np.ceil(encoder.info.image_size / 0.875)))
    out = []
    for start in range(0, len(crops), batch_size):
        # a thin box (a pole, a strip photo's proposal) must not become a huge resize: see limit_aspect
        pixels = stack_pixels([encoder.preprocess(limit_aspect(c)) for c in crops[start : start + batch_size]])
        out.append(encoder.encode_pixels(pixels))
    if not out:
        return np.zeros((0, encoder.info.dim), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


# -- masks in the catalog ----------------------------------------------------------------------------
def encode_mask(mask: np.ndarray, box: Sequence[float]) -> bytes:
    """The part of a full-image bool mask inside ``box`` (pixels of that image), as a 1-bit PNG:
    a few hundred bytes where the raw array would take width × height."""
    x1, y1, x2, y2 = _int_box(box, mask.shape[1], mask.shape[0])
    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask[y1:y2, x1:x2], dtype=bool)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def decode_mask(data: bytes) -> np.ndarray:
    """A mask stored by :func:`encode_mask`: bool ``(h, w)`` covering its box."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("1"), dtype=bool)


def _int_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, y1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    x2, y2 = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


# -- drawing ---------------------------------------------------------------------------------------
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128)]


def draw_boxes(image: Image.Image, boxes: Sequence[Sequence[float]], captions: Sequence[str] | None = None,
               colours: Sequence[tuple[int, int, int]] | None = None, width: int | None = None) -> Image.Image:
    """A copy of ``image`` with the boxes (in its pixels) outlined and captioned."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = width or max(2, round(max(out.size) / 250))
    for i, box in enumerate(boxes):
        colour = colours[i] if colours else PALETTE[i % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) for v in box)
        # a box under a pixel high or wide (a strip photo's, shrunk) is still drawn, one pixel thin
        draw.rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=colour, width=width)
        if captions and captions[i]:
            tx, ty = x1 + width, max(0.0, y1 - 12) if y1 >= 12 else y1 + width
            text_box = draw.textbbox((tx, ty), captions[i])
            draw.rectangle(text_box, fill=colour)
            draw.text((tx, ty), captions[i], fill=(255, 255, 255))
    return out


__all__ = ["MEAN_RGB", "CONTEXT", "crop_window", "crop_region", "region_crops", "embed_regions",
           "encode_mask", "decode_mask", "draw_boxes", "PALETTE"]
