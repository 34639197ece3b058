"""Class-agnostic region proposals that need no learned weights.

Candidates come from two sources, as in the R-CNN era before learned proposals:

* **Segments.** Felzenszwalb & Huttenlocher's graph-based segmentation
  (``skimage.segmentation.felzenszwalb``) at a few scales; each segment's bounding box is a
  candidate, and so is the box around each pair of touching segments (one step of selective
  search's hierarchical grouping: an object split into two segments is still proposed whole).
* **A multi-scale grid** of square windows, so that every part of the photo is covered at a few
  sizes even where segmentation finds nothing crisp.

Boxes that are tiny, very elongated or nearly the whole photo (which the whole-image vector
already covers) are dropped. Every remaining candidate is scored by **colour contrast** with its
surroundings (Alexe, Deselaers & Ferrari, "What is an object?", 2010): the chi-square distance
between the colour histogram inside the box and in a ring around it, computed for all boxes at
once from integral histograms. Objects tend to differ from what surrounds them; a window cut
through a uniform background does not. Near-duplicates are removed with ``torchvision.ops.nms``
and the ``max_regions`` best are kept. Measured on the 11 hand-labelled objects of
benchmarks/regions_boxes.json (benchmarks/RESULTS.md): the top 24 hold 7 of them at IoU ≥ 0.5,
which random order of the same candidates matches; the ranking pays off further down (10 of 11
in the top 64 against 7 for random order). Eleven objects are few; treat these as a sanity check.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from vsearch.regions.base import RegionError, Regions
from vsearch.regions.metrics import nms

DEFAULT_MAX_REGIONS = 24


@dataclass(frozen=True)
class ProposalConfig:
    max_regions: int = DEFAULT_MAX_REGIONS
    # segmentation and scoring run on the photo shrunk to this long side: felzenszwalb's cost grows
    # with the pixel count (about 70 ms per scale at 256 px, 400 ms at 512 px on one core)
    segment_side: int = 256
    scales: tuple[float, ...] = (100.0, 300.0, 1000.0)  # felzenszwalb `scale`: larger, bigger segments
    sigma: float = 0.8
    min_segment: float = 0.002  # smallest segment, as a fraction of the photo's area
    merge_neighbours: bool = True
    grid: tuple[int, ...] = (2, 3)  # window side = short side / n, stride half a window
    min_side: float = 0.08  # boxes whose shorter side is below this fraction of the photo's long side go
    max_area: float = 0.8  # boxes covering more than this fraction of the photo go
    max_aspect: float = 5.0
    colour_bins: int = 4  # per channel: 4 × 4 × 4 RGB histogram for the contrast score
    ring: float = 0.5  # the surrounding ring adds this fraction of the box's width/height
    nms_iou: float = 0.5

    def __post_init__(self) -> None:
        if self.max_regions < 1:
            raise ValueError("max_regions must be at least 1")
        if not 0 < self.nms_iou <= 1:
            raise ValueError("nms_iou must be in (0, 1]")
        if self.segment_side < 16:
            raise ValueError("segment_side must be at least 16 pixels")

    def describe(self) -> str:
        """Everything that changes the output, for the catalog to compare runs."""
        return (f"proposals/v1 max={self.max_regions} side={self.segment_side} scales={list(self.scales)} "
                f"sigma={self.sigma} minseg={self.min_segment} merge={int(self.merge_neighbours)} "
                f"grid={list(self.grid)} minside={self.min_side} maxarea={self.max_area} "
                f"aspect={self.max_aspect} bins={self.colour_bins} ring={self.ring} nms={self.nms_iou}")


def segment_boxes(image: np.ndarray, scale: float, sigma: float, min_size: int,
                  merge_neighbours: bool = True) -> np.ndarray:
    """``(N, 4)`` boxes of the felzenszwalb segments of an ``(H, W, 3)`` uint8 image, and of each
    pair of touching segments when ``merge_neighbours``."""
    from skimage.segmentation import felzenszwalb

    labels = felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)
    n = int(labels.max()) + 1
    h, w = labels.shape
    ys, xs = np.mgrid[0:h, 0:w]
    flat = labels.ravel()
    # per-segment extent, vectorised over all pixels
    x1 = np.full(n, w, np.int64)
    y1 = np.full(n, h, np.int64)
    x2 = np.zeros(n, np.int64)
    y2 = np.zeros(n, np.int64)
    np.minimum.at(x1, flat, xs.ravel())
    np.minimum.at(y1, flat, ys.ravel())
    np.maximum.at(x2, flat, xs.ravel() + 1)
    np.maximum.at(y2, flat, ys.ravel() + 1)
    boxes = np.stack([x1, y1, x2, y2], axis=1)
    if merge_neighbours and n > 1:
        # touching pairs: labels that differ between horizontal or vertical neighbours
        pairs = np.concatenate([
            np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
            np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1),
        ])
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        a, b = np.unique(np.sort(pairs, axis=1), axis=0).T
        union = np.stack([np.minimum(x1[a], x1[b]), np.minimum(y1[a], y1[b]),
                          np.maximum(x2[a], x2[b]), np.maximum(y2[a], y2[b])], 1)
        boxes = np.concatenate([boxes, union])
    return boxes.astype(np.float32)


def grid_boxes(width: int, height: int, divisions: tuple[int, ...]) -> np.ndarray:
    """Square windows of side ``min(width, height) / n`` for each ``n``, with half-window stride,
    the last row and column flush with the image edge."""
    out = []
    short = min(width, height)
    for n in divisions:
        if n < 1:
            raise ValueError("grid divisions must be positive")
        side = short / n
        stride = side / 2
        xs = np.arange(0.0, max(width - side, 0.0) + 1e-6, stride)
        ys = np.arange(0.0, max(height - side, 0.0) + 1e-6, stride)
        if width - side - xs[-1] > 1e-6:
            xs = np.append(xs, width - side)
        if height - side - ys[-1] > 1e-6:
            ys = np.append(ys, height - side)
        out += [[x, y, x + side, y + side] for y in ys for x in xs]
    return np.asarray(out, np.float32).reshape(-1, 4)


def colour_contrast(image: np.ndarray, boxes: np.ndarray, bins: int = 4, ring: float = 0.5) -> np.ndarray:
    """Chi-square distance ``(N,)`` between the colour histogram inside each box of an ``(H, W, 3)``
    uint8 image and the one of the ring around it (the box grown by ``ring`` of its size, minus
    the box). 0 for a box whose ring is (almost) all outside the image: nothing to contrast with.

    One integral histogram (``(H+1, W+1, bins³)``) makes every box's histogram four lookups."""
    h, w = image.shape[:2]
    q = image.astype(np.int64) * bins // 256
    codes = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    integral = np.zeros((h + 1, w + 1, bins ** 3), np.int32)
    np.put_along_axis(integral[1:, 1:], codes[..., None], 1, axis=2)  # one-hot, then summed in place
    np.cumsum(integral, axis=0, out=integral)
    np.cumsum(integral, axis=1, out=integral)

    def hist(b: np.ndarray) -> np.ndarray:
        x1, x2 = (np.clip(np.round(b[:, i]), 0, w).astype(np.int64) for i in (0, 2))
        y1, y2 = (np.clip(np.round(b[:, i]), 0, h).astype(np.int64) for i in (1, 3))
        return integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]

    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    grown = np.stack([boxes[:, 0] - ring * bw / 2, boxes[:, 1] - ring * bh / 2,
                      boxes[:, 2] + ring * bw / 2, boxes[:, 3] + ring * bh / 2], 1)
    inside = hist(boxes).astype(np.float32)
    around = hist(grown).astype(np.float32) - inside
    n_in, n_around = inside.sum(1, keepdims=True), around.sum(1, keepdims=True)
    p, r = inside / np.maximum(n_in, 1), around / np.maximum(n_around, 1)
    chi2 = 0.5 * ((p - r) ** 2 / np.maximum(p + r, 1e-9)).sum(1)
    return np.where(n_around[:, 0] > 0.05 * n_in[:, 0], chi2, 0.0).astype(np.float32)


def _keep_plausible(boxes: np.ndarray, width: int, height: int, cfg: ProposalConfig) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    short_ok = np.minimum(w, h) >= cfg.min_side * max(width, height)
    area_ok = (w * h) <= cfg.max_area * width * height
    aspect_ok = np.maximum(w, h) <= cfg.max_aspect * np.maximum(np.minimum(w, h), 1e-6)
    return short_ok & area_ok & aspect_ok


class ProposalSource:
    """``ProposalSource(config)(image) -> Regions``: class-agnostic boxes scored by colour contrast,
    best first; no labels, no masks."""

    name = "proposals"

    def __init__(self, config: ProposalConfig | None = None):
        import importlib.util

        if importlib.util.find_spec("skimage") is None:
            raise RegionError("region proposals need scikit-image: pip install 'vsearch[regions]'")
        self.config = config or ProposalConfig()
        self.settings = self.config.describe()

    def candidates(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """``(pixels, boxes)``: the shrunk ``(h, w, 3)`` copy of ``image`` that segmentation runs on,
        and every plausible candidate box in its pixels, before ranking and suppression."""
        cfg = self.config
        small = image.convert("RGB")
        if max(small.size) > cfg.segment_side:
            small = small.copy()
            # Pillow's antialiased default filter: aliasing from a plain shrink adds spurious edges
            # that felzenszwalb turns into segment borders
            small.thumbnail((cfg.segment_side, cfg.segment_side))
        arr = np.asarray(small)
        sh, sw = arr.shape[:2]
        min_size = max(4, int(cfg.min_segment * sh * sw))
        boxes = np.concatenate(
            [segment_boxes(arr, s, cfg.sigma, min_size, cfg.merge_neighbours) for s in cfg.scales]
            + [grid_boxes(sw, sh, cfg.grid)]
        )
        return arr, boxes[_keep_plausible(boxes, sw, sh, cfg)]

    def select(self, pixels: np.ndarray, boxes: np.ndarray, scores: np.ndarray, size: tuple[int, int]) -> Regions:
        """Suppress near-duplicates, keep the ``max_regions`` best, scale to an image of ``size``."""
        if len(boxes) == 0:
            return Regions.empty()
        width, height = size
        sh, sw = pixels.shape[:2]
        keep = nms(boxes, scores, self.config.nms_iou)[: self.config.max_regions]
        full = boxes[keep] * np.array([width / sw, height / sh] * 2, np.float32)
        full[:, [0, 2]] = full[:, [0, 2]].clip(0, width)
        full[:, [1, 3]] = full[:, [1, 3]].clip(0, height)
        return Regions(full, scores[keep])

    def __call__(self, image: Image.Image) -> Regions:
        pixels, boxes = self.candidates(image)
        scores = colour_contrast(pixels, boxes, self.config.colour_bins, self.config.ring)
        return self.select(pixels, boxes, scores, image.size)


def propose(image: Image.Image, max_regions: int = DEFAULT_MAX_REGIONS, **options) -> Regions:
    """Proposals for one image (``options`` override the other :class:`ProposalConfig` fields)."""
    return ProposalSource(ProposalConfig(max_regions=max_regions, **options))(image)


__all__ = ["ProposalConfig", "ProposalSource", "propose", "segment_boxes", "grid_boxes", "colour_contrast",
           "DEFAULT_MAX_REGIONS"]
