"""Why a photo matched a query: the part of it that matched best (``vsearch search --explain``).

Three sources, best first:

* **text** — a photo found through the words read in it (``index --ocr``): the box of the line
  that matched, at no encoding cost.
* **regions** — when the photo was indexed with ``--regions``, its region vectors are already in
  the catalog: the region closest to the query is the answer, at no encoding cost.
* **occlusion** — otherwise the photo is re-encoded with each cell of a ``grid × grid`` raster
  hidden in turn (filled with the photo's mean colour, as in Zeiler & Fergus, 2014); a cell
  whose hiding lowers the query score most is where the match is. The heat map is that drop
  per cell, scaled to [0, 1], and the box encloses the cells at half the highest drop or more.
  Costs ``grid² + 1`` image encodings per photo.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from vsearch.images import aspect_window, decode_image, limit_aspect

DEFAULT_GRID = 4
HOT = 0.5  # cells at this share of the highest drop or more go into the box


@dataclass(frozen=True)
class Explanation:
    """``box``: [x1, y1, x2, y2] in pixels of the upright photo. ``heatmap``: rows of cells in
    [0, 1] (occlusion only). ``score``: the region's cosine to the query, or the whole photo's."""

    source: str  # "text" (the words that matched) | "region" | "occlusion" | "none" (photo unreadable, or no query vector)
    box: tuple[float, float, float, float]
    score: float
    heatmap: tuple[tuple[float, ...], ...] | None = None

    def to_json(self) -> dict:
        out = {"source": self.source, "box": [round(v, 1) for v in self.box], "score": round(self.score, 6)}
        if self.heatmap is not None:
            out["heatmap"] = [[round(v, 3) for v in row] for row in self.heatmap]
        return out


def occlusion_map(encoder, image: Image.Image, query: np.ndarray, grid: int = DEFAULT_GRID) -> tuple[float, np.ndarray]:
    """(score of the whole image, (grid, grid) drop in score when each cell is hidden).

    The cells divide the whole image; the encoder is shown only its centre at most
    :data:`~vsearch.images.MAX_ASPECT`:1 (as when indexing), so a thin strip costs what a normal
    photo does, and a cell outside that centre drops nothing and is not encoded."""
    w, h = image.size
    left, top, right, bottom = aspect_window(w, h)
    shown = limit_aspect(image)
    arr = np.asarray(shown.convert("RGB"))
    fill = arr.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    xs = np.linspace(0, w, grid + 1).round().astype(int).clip(left, right) - left
    ys = np.linspace(0, h, grid + 1).round().astype(int).clip(top, bottom) - top
    pixels = [encoder.preprocess(shown)]
    cells = []
    for r in range(grid):
        for c in range(grid):
            if xs[c] >= xs[c + 1] or ys[r] >= ys[r + 1]:
                continue  # outside what the encoder is shown
            hidden = arr.copy()
            hidden[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = fill
            pixels.append(encoder.preprocess(Image.fromarray(hidden)))  # (C, S, S): one variant at a time
            cells.append((r, c))
    if isinstance(pixels[0], np.ndarray):  # an ONNX encoder without torch in the process
        batch = np.stack(pixels)
    else:
        import torch

        batch = torch.stack(pixels)
    scores = encoder.encode_pixels(batch) @ np.asarray(query, np.float32).reshape(-1)
    drop = np.zeros((grid, grid), np.float32)
    for (r, c), score in zip(cells, scores[1:]):
        drop[r, c] = scores[0] - score
    return float(scores[0]), drop


def occlusion_explanation(encoder, path: str, query: np.ndarray, grid: int = DEFAULT_GRID) -> Explanation:
    decoded = decode_image(path, draft_size=2 * encoder.info.image_size)
    image = decoded.image
    base, drop = occlusion_map(encoder, image, query, grid)
    top = float(drop.max())
    width, height = float(decoded.width), float(decoded.height)
    if top <= 0:  # hiding any one part changes nothing: the match is the photo as a whole
        return Explanation("occlusion", (0.0, 0.0, width, height), base, tuple(tuple(0.0 for _ in row) for row in drop))
    heat = np.clip(drop / top, 0.0, 1.0)
    rows, cols = np.nonzero(heat >= HOT)
    box = (cols.min() / grid * width, rows.min() / grid * height, (cols.max() + 1) / grid * width,
           (rows.max() + 1) / grid * height)
    return Explanation("occlusion", tuple(float(v) for v in box), base,
                       tuple(tuple(float(v) for v in row) for row in heat))


def region_explanation(catalog, media_id: int, query: np.ndarray) -> Explanation | None:
    """The photo's region closest to the query, when it has regions (index --regions)."""
    from vsearch.regions.search import best_region

    found = best_region(catalog, media_id, query)
    return None if found is None else Explanation("region", *found)


def explain_hits(collection, hits: Sequence, query: np.ndarray, grid: int = DEFAULT_GRID,
                 on_hit: Callable[[int], None] | None = None) -> list[Explanation]:
    """One explanation per hit: the box of the words that matched (a hit found through its read
    text), its region box (region search), else its best stored region, else an occlusion map (an
    encoder pass per grid cell: seconds a photo). ``query`` None (a search by read text alone):
    only the text boxes explain. ``on_hit(1)`` after each hit (a progress bar)."""
    from vsearch.errors import ImageDecodeError
    from vsearch.ocr.search import TextHit

    out = []
    for hit in hits:
        box = getattr(hit, "box", None)
        if box is not None and not getattr(hit, "whole_image", False):
            source = "text" if isinstance(hit, TextHit) else "region"
            out.append(Explanation(source, tuple(float(v) for v in box), float(hit.score)))
            if on_hit is not None:
                on_hit(1)
            continue
        if query is None:
            out.append(Explanation("none", (0.0, 0.0, 0.0, 0.0), float(hit.score)))
            if on_hit is not None:
                on_hit(1)
            continue
        found = region_explanation(collection.catalog, hit.media_id, query)
        if found is None:
            try:
                found = occlusion_explanation(collection.encoder, hit.path, query, grid)
            except (ImageDecodeError, OSError):
                found = Explanation("none", (0.0, 0.0, 0.0, 0.0), float(hit.score))
        out.append(found)
        if on_hit is not None:
            on_hit(1)
    return out


def query_vector_for(collection, text: str | None, image: str | None, plus: Sequence[str] = (),
                     minus: Sequence[str] = ()) -> np.ndarray:
    """The same combined query vector :meth:`Collection.search` builds from these arguments."""
    from vsearch.api import QueryTerm, parse_weighted

    terms = []
    if text is not None:
        terms.append(QueryTerm(1.0, text=text))
    if image is not None:
        terms.append(QueryTerm(1.0, image=image))
    terms += [QueryTerm(w, text=t) for t, w in (parse_weighted(p) for p in plus)]
    terms += [QueryTerm(-w, text=t) for t, w in (parse_weighted(m) for m in minus)]
    return collection.query_vector(terms)


def explained_thumbnail_jpeg(path: str, explanation: Explanation, size: int = 256) -> bytes | None:
    """A thumbnail with the heat map laid over it in red (occlusion) and the box outlined."""
    from vsearch.errors import ImageDecodeError

    try:
        decoded = decode_image(path, draft_size=size)
    except ImageDecodeError:
        return None
    image = decoded.image.convert("RGB")
    image.thumbnail((size, size))
    if explanation.heatmap is not None:
        heat = np.asarray(explanation.heatmap, np.float32)
        heat_img = Image.fromarray((heat * 255).astype(np.uint8)).resize(image.size, Image.BILINEAR)
        red = Image.new("RGB", image.size, (255, 30, 30))
        image = Image.composite(red, image, heat_img.point(lambda v: int(v * 0.45)))
    if explanation.source != "none":
        scale = image.width / float(decoded.width)
        x1, y1, x2, y2 = (v * scale for v in explanation.box)
        ImageDraw.Draw(image).rectangle([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], outline=(255, 220, 0), width=3)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
