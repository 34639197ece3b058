"""Near-duplicate photos: the same picture re-encoded, resized, cropped or lightly edited; and
photos that only look alike (bursts, re-shoots, crops of other parts of a scene), listed apart.

Candidates come from a FAISS range search over the catalog's image vectors: every photo is a
query, and the index returns all photos within ``threshold`` cosine of it. Above
``EXACT_RANGE_BELOW`` vectors the search runs on an IVF index probing a few lists, so the cost
grows as N·(N·nprobe/nlist) rather than N² (near duplicates lie in the same or a neighbouring
cell; recall against exact search is in benchmarks/RESULTS.md). Each photo keeps only its
``MAX_CANDIDATES`` nearest candidates, so a crowd of alike photos costs N·k checks, not N².

Groups never chain. Photos are taken best first (most pixels, then sharpest, then largest file);
each one not yet placed keeps a group of its own, and a candidate joins it only if it matches
*that* photo: at the threshold, and (with the keypoint check) when the kept copy shows what the
candidate shows (``MIN_COVERAGE`` of it) with as many pixels, its content unchanged. So a file
called redundant can go without taking any of the picture with it. A candidate that shares part
of the scene but shows something the kept copy lacks (another crop, a zoomed re-shoot, a burst
with the subject moved) is a *similar shot*: listed with the photo it resembles in
``DuplicateReport.similar``, never redundant.
Files with the same sha256 are always one group.

Each candidate is checked against the kept copy geometrically: ORB keypoints matched between the
two images, a RANSAC similarity (shift, scale, rotation) that must explain enough of them
(OpenCV), the strongest keypoints matched first and all of them only when those do not settle
it; then where the candidate lands on the kept copy, and whether its content changed there. No
vector tells a burst from a copy; and the packaged model embeds what a photo *shows* (a mix of
ImageNet classes), so two different photos of coins and of a clock can be 0.96 apart. Without the
check (``geometric_check=False``) a candidate at the threshold to the kept copy is redundant.
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol

import faiss
import numpy as np

from vsearch.catalog import IMAGE_SPACE
from vsearch.encoders.spec import EncoderSpec

# Exact range search below this many vectors, IVF above: at 10,000 vectors exact took 12.5 s and
# IVF 5.5 s with the same pairs found (shared 2-core CPU, benchmarks/RESULTS.md).
EXACT_RANGE_BELOW = 5_000
# Cosine thresholds for candidates, by model (measured on re-encoded, resized and cropped
# scikit-image photos; benchmarks/RESULTS.md). A lower one finds more candidates, each still checked.
PACKAGED_THRESHOLD = 0.60
CLIP_THRESHOLD = 0.92
# Candidates checked per photo: its nearest this many by cosine (a pair stays if it is among the
# nearest of either photo). benchmarks/RESULTS.md: 400 crops of 5 photos.
MAX_CANDIDATES = 12
# Geometric check: distinct keypoints a RANSAC similarity (shift, scale, rotation) must explain.
# Between 45 pairs of different scikit-image photos there were at most 3; re-encodes, halvings,
# quarterings, 80 % crops and brightenings of them had 13–332 (benchmarks/RESULTS.md).
MIN_INLIERS = 12
# The strongest keypoints of each photo are matched first (a tenth of the cost of matching all
# 1,500); a pair they leave below MIN_INLIERS is matched again with all of them.
QUICK_FEATURES = 400
ORB_FEATURES = 1500
# Keypoints are found on copies of the same size, so two copies of a picture map at a scale near
# 1 (a 50 % crop: 2); a mapping that shrinks or grows more than this is no match.
MIN_SCALE = 1 / 8
# A candidate is redundant when the kept copy shows this share of its view or more, with at least
# this many of the kept copy's pixels per pixel of the candidate (a zoomed re-shoot has fewer), and
# the content there changed no more than MAX_CHANGE (see content_change). Measured on scikit-image
# photos (benchmarks/RESULTS.md): the estimated share is within 0.3 % of the truth for crops that
# lie inside another, and 99.7 % or more for whole-photo edits; edits changed the content by at
# most 0.82, shots with a quarter-size patch moved by 4 % of the width by 0.04–2.6 (20 of 24 above 0.9).
MIN_COVERAGE = 0.995
MIN_DETAIL = 0.9
MAX_CHANGE = 0.9
# An image with fewer keypoints than this (a smooth, texture-less or blurred picture) cannot be
# checked; such a pair is at most "similar shots" (keep all), when the vectors are at least this
# close: a vector alone cannot tell a copy from a different photo of the same kind (the packaged
# model put coins and a clock 0.96 apart, a random model a blurred clock and a portrait 0.97).
MIN_KEYPOINTS = 100
UNCHECKABLE_THRESHOLD = 0.97
# ... unless it is the same frame with the same grey values (see same_frame): the largest mean
# difference over a block, in grey levels of 255; a JPEG re-encode at quality 40 or a half-size copy
# of a smooth picture stays within a few levels
SAME_FRAME_LEVELS = 6.0
# Content compared on grey copies this long, in blocks of this many pixels a side.
THUMB = 192
CHANGE_BLOCK = 8
SHA_PAIRS = 8  # byte copies of one file: each pairs with the first this many (rows sorted by path)
FEATURE_CACHE = 2048  # images whose keypoints are kept while pairs are checked (~90 KB each)

SAME, SIMILAR, DIFFERENT = "same", "similar", "different"


def _is_packaged(encoder_name: str) -> bool:
    return EncoderSpec.parse(encoder_name).family == "packaged"


def default_threshold(encoder_name: str) -> float:
    return PACKAGED_THRESHOLD if _is_packaged(encoder_name) else CLIP_THRESHOLD


def needs_geometric_check(encoder_name: str) -> bool:
    """Whether candidates are checked with keypoints by default: for every model, since only the
    check tells a burst or a crop of another part of the scene from a copy."""
    return True


class Progress(Protocol):
    """What :func:`find_duplicates` reports: ``start(total)`` once, then ``advance(n)`` steps."""

    def start(self, total: int) -> None: ...
    def advance(self, n: int) -> None: ...


@dataclass(frozen=True)
class DuplicateMember:
    media_id: int
    path: str
    width: int | None
    height: int | None
    size: int
    sha256: str | None
    sharpness: float | None  # variance of the Laplacian of a ≤512 px grey copy
    similarity: float  # cosine of its vector to the best copy's
    same_bytes_as_best: bool
    same_bytes_as: str | None = None  # another file of the group with identical bytes


@dataclass(frozen=True)
class DuplicateGroup:
    best: DuplicateMember
    others: tuple[DuplicateMember, ...]
    similar: bool = False  # photos that look alike, none of them redundant (kept all)

    @property
    def kind(self) -> str:
        if self.similar:
            return "similar"
        return "exact" if all(m.same_bytes_as_best for m in self.others) else "near"

    @property
    def exact_copies(self) -> int:
        """Files of the group that repeat another file's bytes."""
        return sum(m.same_bytes_as is not None for m in (self.best, *self.others))

    @property
    def redundant_bytes(self) -> int:
        return 0 if self.similar else sum(m.size for m in self.others)

    def to_json(self) -> dict:
        return {"kind": self.kind, "best": asdict(self.best), "others": [asdict(m) for m in self.others],
                "redundant_bytes": self.redundant_bytes}


@dataclass(frozen=True)
class DuplicateReport:
    threshold: float
    geometric_check: bool
    photos: int
    candidate_pairs: int
    confirmed_pairs: int
    groups: tuple[DuplicateGroup, ...]
    seconds: dict = field(default_factory=dict)
    similar: tuple[DuplicateGroup, ...] = ()  # similar shots: each kept copy with those it resembles
    checked_pairs: int = 0  # pairs whose keypoints were matched

    def to_json(self) -> dict:
        """A JSON-able dict (for `vsearch duplicates --json` and an HTTP route)."""
        return {"threshold": self.threshold, "geometric_check": self.geometric_check, "photos": self.photos,
                "candidate_pairs": self.candidate_pairs, "checked_pairs": self.checked_pairs,
                "confirmed_pairs": self.confirmed_pairs,
                "exact_groups": sum(g.kind == "exact" for g in self.groups),
                "near_groups": sum(g.kind == "near" for g in self.groups),
                "similar_groups": len(self.similar),
                "redundant_files": sum(len(g.others) for g in self.groups),
                "exact_copies": sum(g.exact_copies for g in self.groups),
                "redundant_bytes": sum(g.redundant_bytes for g in self.groups),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "groups": [g.to_json() for g in self.groups],
                "similar": [g.to_json() for g in self.similar]}


# -- pure parts ----------------------------------------------------------------------------------
def similar_pairs(vectors: np.ndarray, threshold: float, exact_below: int = EXACT_RANGE_BELOW,
                  nprobe: int = 4, batch: int = 8192, seed: int = 1234) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row pairs (i < j) of unit ``vectors`` whose cosine is at least ``threshold``, with it.

    FAISS range search; exact (flat) below ``exact_below`` rows, else IVF with ``nprobe`` lists
    per query. Queries go in batches so memory stays bounded by the result size.
    """
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if n < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    if n < exact_below:
        index = faiss.IndexFlatIP(dim)
    else:
        # fewer, larger lists than the search index uses: every row is a query here, so
        # training cost (k-means) matters as much as per-query cost
        nlist = max(16, int(np.sqrt(n)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        index.train(x[rng.choice(n, size=min(n, nlist * 50), replace=False)])
        index.nprobe = min(nprobe, nlist)
    index.add(x)
    # range_search keeps scores strictly above the radius; nudge it so "at least" holds
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    rows_i, rows_j, sims = [], [], []
    for start in range(0, n, batch):
        lims, dist, labels = index.range_search(x[start : start + batch], radius)
        q = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims.astype(np.int64)))
        keep = labels > q  # each pair once, and not a photo with itself
        rows_i.append(q[keep])
        rows_j.append(labels[keep])
        sims.append(dist[keep])
    return (np.concatenate(rows_i).astype(np.int64), np.concatenate(rows_j).astype(np.int64),
            np.concatenate(sims).astype(np.float32))


def nearest_per_row(rows_i: np.ndarray, rows_j: np.ndarray, sims: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs among the ``k`` most similar of either of their rows (ties: the lower row first)."""
    if k <= 0 or len(rows_i) == 0:
        return rows_i[:0], rows_j[:0], sims[:0]
    pair = np.concatenate([np.arange(len(rows_i)), np.arange(len(rows_i))])
    row = np.concatenate([rows_i, rows_j])
    other = np.concatenate([rows_j, rows_i])
    order = np.lexsort((other, -np.concatenate([sims, sims]), row))  # by row, most similar first
    row_sorted = row[order]
    starts = np.r_[0, np.flatnonzero(np.diff(row_sorted)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = np.zeros(len(rows_i), bool)
    keep[pair[order[rank < k]]] = True
    return rows_i[keep], rows_j[keep], sims[keep]


def connected_groups(n: int, rows_i: np.ndarray, rows_j: np.ndarray) -> list[np.ndarray]:
    """Groups (of at least two rows) joined by the pairs, as arrays of row numbers."""
    if len(rows_i) == 0:
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(rows_i), np.int8), (rows_i, rows_j)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    order = np.argsort(label, kind="stable")
    bounds = np.flatnonzero(np.diff(label[order])) + 1
    return [g for g in np.split(order, bounds) if len(g) > 1]


def star_groups(order: list[int], rows_i: np.ndarray, rows_j: np.ndarray, sims: np.ndarray,
                verdict: Callable[[int, int, float], str],
                advance: Callable[[int], None] = lambda n: None) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Groups that never chain: ``order`` lists rows best first; each row not yet placed keeps a
    group, and each of its candidates not yet placed (most similar first) joins it when
    ``verdict(kept, candidate, cosine)`` is ``"same"``. ``"similar"`` candidates stay free to keep
    groups of their own and are noted as the kept row's similar shots.

    Returns ({kept row: redundant rows}, {kept row: similar rows that kept a group too}); rows
    that joined no group and kept none appear in neither. ``advance(n)`` is told as each row's
    pairs are settled (``len(rows_i)`` in all)."""
    rank = {row: r for r, row in enumerate(order)}
    partners: dict[int, list[tuple[float, int]]] = {}
    for i, j, s in zip(rows_i.tolist(), rows_j.tolist(), sims.tolist()):
        a, b = (i, j) if rank[i] < rank[j] else (j, i)
        partners.setdefault(a, []).append((s, b))
    placed: dict[int, int] = {}  # redundant row -> its kept row
    groups: dict[int, list[int]] = {}
    alike: dict[int, list[int]] = {}
    for row in order:
        candidates = sorted(partners.get(row, ()), key=lambda p: (-p[0], rank[p[1]]))
        if row in placed:
            advance(len(candidates))
            continue
        for s, other in candidates:
            if other not in placed:
                answer = verdict(row, other, s)
                if answer == SAME:
                    placed[other] = row
                    groups.setdefault(row, []).append(other)
                elif answer == SIMILAR:
                    alike.setdefault(row, []).append(other)
            advance(1)
    # similar shots: only rows that kept a group of their own (a redundant row is in its group)
    similar: dict[int, list[int]] = {}
    listed: set[int] = set()
    for row in order:
        if row in listed or row not in alike:
            continue
        shots = [o for o in alike[row] if o not in placed and o not in listed]
        if shots:
            similar[row] = shots
            listed.update([row, *shots])
    return groups, similar


def sharpness(path: str, side: int = 512) -> float | None:
    """Variance of the Laplacian of a grey copy at most ``side`` px over the variance of the grey
    values: higher is sharper. Dividing by the contrast keeps a brightened copy (whose Laplacian
    grows with its contrast) from passing for a sharper one."""
    from PIL import ImageFilter

    from vsearch.errors import ImageDecodeError
    from vsearch.images import decode_image, limit_aspect

    try:
        image = limit_aspect(decode_image(path, draft_size=side).image)
    except ImageDecodeError:
        return None
    image.thumbnail((side, side))
    grey = image.convert("L")
    lap = np.asarray(grey.filter(ImageFilter.Kernel((3, 3), (0, 1, 0, 1, -4, 1, 0, 1, 0), scale=1, offset=128)),
                     dtype=np.float32)
    return float(lap.var() / max(float(np.asarray(grey, dtype=np.float32).var()), 1e-6))


@dataclass(frozen=True)
class Keypoints:
    """ORB keypoints of one photo, strongest first."""

    points: np.ndarray  # (K, 2) float32, in the pixels of the copy they were found on
    descriptors: np.ndarray | None  # (K, 32) uint8
    to_photo: np.ndarray  # (3, 3): from those pixels to the upright photo's own
    size: tuple[int, int]  # the upright photo's (width, height)
    thumb: np.ndarray | None = None  # a grey copy at most THUMB px long, to compare content
    thumb_to_photo: np.ndarray | None = None  # (3, 3): from its pixels to the photo's

    @property
    def checkable(self) -> bool:
        return self.descriptors is not None and len(self.points) >= MIN_KEYPOINTS


NO_KEYPOINTS = Keypoints(np.zeros((0, 2), np.float32), None, np.eye(3), (0, 0))


@dataclass(frozen=True)
class PairCheck:
    """How a candidate relates to the copy kept: ``same`` (the kept copy shows all of it, with as
    many pixels), ``similar`` (part of the same scene) or ``different``."""

    verdict: str
    inliers: int
    coverage: float = 0.0  # share of the candidate's view that the kept copy shows
    detail: float = 0.0  # kept copy's pixels per candidate pixel over that view
    change: float = 0.0  # the largest change of content over that view (see content_change)


def view_inside(homography: np.ndarray, size: tuple[int, int], kept_size: tuple[int, int]) -> tuple[float, float]:
    """(coverage, detail) of a photo of ``size`` mapped by ``homography`` into a kept copy of
    ``kept_size`` (both in their own pixels): the share of the photo's area that lands inside the
    kept copy, and the area it lands on over its own area. (0, 0) for a degenerate mapping."""
    import cv2

    w, h = size
    kw, kh = kept_size
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]]).reshape(-1, 1, 2)
    quad = cv2.perspectiveTransform(corners, homography.astype(np.float64)).reshape(-1, 2).astype(np.float32)
    if not np.all(np.isfinite(quad)) or not cv2.isContourConvex(quad.reshape(-1, 1, 2)):
        return 0.0, 0.0
    area = abs(float(cv2.contourArea(quad)))
    if area <= 0 or w * h <= 0:
        return 0.0, 0.0
    rect = np.float32([[0, 0], [kw, 0], [kw, kh], [0, kh]])
    inside, _ = cv2.intersectConvexConvex(quad, rect)
    return min(1.0, float(inside) / area), area / float(w * h)


def content_change(kept: Keypoints, other: Keypoints, homography: np.ndarray) -> float:
    """How much the content differs where ``other`` lands on the kept copy (``homography`` maps
    its photo pixels to the kept copy's): grey values blurred, the other's tones matched to the
    kept copy's over the overlap, then the largest mean absolute difference over blocks of it,
    in standard deviations of the kept copy's grey values. Re-encoding, resizing, cropping and brightening change little everywhere; a
    subject that moved between two shots changes its block a lot."""
    import cv2

    if kept.thumb is None or other.thumb is None:
        return 0.0
    to_kept = np.linalg.inv(kept.thumb_to_photo) @ homography @ other.thumb_to_photo
    kh, kw = kept.thumb.shape
    warped = cv2.warpPerspective(other.thumb.astype(np.float32), to_kept, (kw, kh), flags=cv2.INTER_LINEAR)
    valid = cv2.warpPerspective(np.ones(other.thumb.shape, np.uint8), to_kept, (kw, kh), flags=cv2.INTER_NEAREST)
    valid = cv2.erode(valid, np.ones((5, 5), np.uint8)).astype(bool)  # off the blurred borders
    if valid.sum() < 4 * CHANGE_BLOCK * CHANGE_BLOCK:
        return 0.0
    a = cv2.GaussianBlur(kept.thumb.astype(np.float32), (0, 0), 1.5)
    b = cv2.GaussianBlur(warped, (0, 0), 1.5)
    # tones of b matched to a's over the overlap (brightness, contrast, gamma, clipped highlights)
    order = np.argsort(b[valid], kind="stable")
    matched = np.empty(order.size, np.float32)
    matched[order] = np.sort(a[valid])
    b = np.zeros_like(a)
    b[valid] = matched
    scale = max(float(a[valid].std()), 1e-3)
    a, b = a / scale, b / scale
    diff = np.where(valid, np.abs(a - b), 0.0)
    rows, cols = kh // CHANGE_BLOCK, kw // CHANGE_BLOCK
    if rows == 0 or cols == 0:
        return 0.0
    cut = (slice(0, rows * CHANGE_BLOCK), slice(0, cols * CHANGE_BLOCK))
    shape = (rows, CHANGE_BLOCK, cols, CHANGE_BLOCK)
    total = diff[cut].reshape(shape).sum(axis=(1, 3))
    count = valid[cut].reshape(shape).sum(axis=(1, 3))
    full = count >= CHANGE_BLOCK * CHANGE_BLOCK // 2
    return float((total[full] / count[full]).max()) if full.any() else 0.0


def same_frame(kept: Keypoints, other: Keypoints) -> PairCheck | None:
    """For photos with too few keypoints to match (smooth, blurred, a thin strip): ``same`` when
    ``other`` is the kept copy's whole frame again (same aspect, no more pixels) with the same grey
    values everywhere, block by block on blurred thumbnails (a re-encode or a resize); else None,
    unsure. No tone matching here, unlike :func:`content_change`: without keypoints to anchor it,
    matching tones would make any two featureless pictures look alike."""
    import cv2

    if kept.thumb is None or other.thumb is None or min(kept.size) <= 0 or min(other.size) <= 0:
        return None
    (kw, kh), (w, h) = kept.size, other.size
    if abs(np.log((kw / kh) / (w / h))) > 0.01:  # not the same frame
        return None
    detail = (kw * kh) / float(w * h)
    if detail < MIN_DETAIL:
        return None
    th, tw = kept.thumb.shape
    a = cv2.GaussianBlur(kept.thumb.astype(np.float32), (0, 0), 1.5)
    b = cv2.GaussianBlur(cv2.resize(other.thumb, (tw, th), interpolation=cv2.INTER_AREA).astype(np.float32), (0, 0), 1.5)
    diff = np.abs(a - b)
    blocks = [diff[y:y + CHANGE_BLOCK, x:x + CHANGE_BLOCK].mean()
              for y in range(0, th, CHANGE_BLOCK) for x in range(0, tw, CHANGE_BLOCK)]
    change = float(max(blocks))
    if change > SAME_FRAME_LEVELS:
        return None
    return PairCheck(SAME, 0, 1.0, round(detail, 4), round(change, 3))


class GeometricCheck:
    """Do two photos show the same picture? ORB keypoints, ratio-tested matches, and a RANSAC
    homography with at least ``min_inliers`` inliers. Keypoints are computed once per file, on an
    upright copy ``side`` px long, cropped to the aspect limit that guards indexing."""

    def __init__(self, min_inliers: int = MIN_INLIERS, side: int = 640, quick_features: int = QUICK_FEATURES):
        self.min_inliers = min_inliers
        self.side = side
        self.quick_features = quick_features
        self.matched_all = 0  # pairs the strongest keypoints did not settle
        self._features: OrderedDict[str, Keypoints] = OrderedDict()  # LRU

    def keypoints(self, path: str) -> Keypoints:
        if path in self._features:
            self._features.move_to_end(path)
            return self._features[path]
        while len(self._features) >= FEATURE_CACHE:
            self._features.popitem(last=False)
        self._features[path] = found = self._detect(path)
        return found

    def _detect(self, path: str) -> Keypoints:
        import cv2

        from vsearch.errors import ImageDecodeError
        from vsearch.images import decode_image, limit_aspect

        try:
            decoded = decode_image(path, draft_size=self.side)
        except ImageDecodeError:
            return NO_KEYPOINTS
        image = decoded.image
        part = limit_aspect(image)  # a 1×8000 strip would resize to nothing on its short side
        left, top = (image.width - part.width) // 2, (image.height - part.height) // 2
        scale = self.side / max(part.size)  # small copies are enlarged, so both sides get keypoints
        width, height = max(1, round(part.width * scale)), max(1, round(part.height * scale))
        grey = np.asarray(part.convert("L").resize((width, height)))
        try:
            found, descriptors = cv2.ORB_create(nfeatures=ORB_FEATURES).detectAndCompute(grey, None)
        except cv2.error:  # an image too small for ORB's pyramid
            return NO_KEYPOINTS
        # the copy's pixels -> the decoded image's (crop offset) -> the photo's (a reduced JPEG decode)
        fx, fy = decoded.width / image.width, decoded.height / image.height
        to_photo = np.array([[fx * part.width / width, 0, fx * left],
                             [0, fy * part.height / height, fy * top], [0, 0, 1]], np.float64)
        size = (decoded.width, decoded.height)
        shrink = THUMB / max(width, height)
        tw, th = max(1, round(width * shrink)), max(1, round(height * shrink))
        thumb = cv2.resize(grey, (tw, th), interpolation=cv2.INTER_AREA)
        thumb_to_photo = to_photo @ np.diag([width / tw, height / th, 1.0])
        if descriptors is None or not found:
            return Keypoints(NO_KEYPOINTS.points, None, to_photo, size, thumb, thumb_to_photo)
        strongest = np.argsort([-k.response for k in found], kind="stable")
        points = np.float32([found[k].pt for k in strongest])
        return Keypoints(points, descriptors[strongest], to_photo, size, thumb, thumb_to_photo)

    def _match(self, a: Keypoints, b: Keypoints, limit: int | None) -> tuple[int, np.ndarray | None]:
        """(inliers, homography from a's photo pixels to b's), matching the strongest ``limit``."""
        import cv2

        des_a, des_b = a.descriptors[:limit], b.descriptors[:limit]
        if len(des_a) < 4 or len(des_b) < 4:
            return 0, None
        matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des_a, des_b, k=2)
        good = [m[0] for m in matches if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
        if len(good) < 4:
            return 0, None
        src = a.points[[m.queryIdx for m in good]]
        dst = b.points[[m.trainIdx for m in good]]
        # a similarity (shift, scale, rotation): what re-encoding, resizing and cropping do; its
        # four parameters extrapolate to the photo's corners far better than a homography's eight
        similarity, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=5.0)
        if mask is None or similarity is None:
            return 0, None
        scale = float(np.sqrt(abs(np.linalg.det(similarity[:, :2]))))
        if not MIN_SCALE <= scale <= 1 / MIN_SCALE:  # e.g. many keypoints sent onto one: no picture
            return 0, None
        inlier = mask.ravel().astype(bool)
        # distinct keypoints on either side: repeated texture can send many onto a few
        found = min(len({m.queryIdx for m, k in zip(good, inlier) if k}), len({m.trainIdx for m, k in zip(good, inlier) if k}))
        return found, b.to_photo @ np.vstack([similarity, [0, 0, 1]]) @ np.linalg.inv(a.to_photo)

    def inliers(self, path_a: str, path_b: str) -> int:
        a, b = self.keypoints(path_a), self.keypoints(path_b)
        if a.descriptors is None or b.descriptors is None:
            return 0
        return self._match(a, b, None)[0]

    def checkable(self, path: str) -> bool:
        return self.keypoints(path).checkable

    def compare(self, kept_path: str, path: str) -> PairCheck | None:
        """How the photo at ``path`` relates to the copy kept (see :class:`PairCheck`), or None
        when either image has too few keypoints to tell."""
        kept, other = self.keypoints(kept_path), self.keypoints(path)
        if not (kept.checkable and other.checkable):
            return same_frame(kept, other)
        inliers, homography = self._match(other, kept, self.quick_features)
        if inliers < self.min_inliers and min(len(kept.points), len(other.points)) > self.quick_features:
            self.matched_all += 1
            inliers, homography = self._match(other, kept, None)
        if inliers < self.min_inliers or homography is None:
            return PairCheck(DIFFERENT, inliers)
        coverage, detail = view_inside(homography, other.size, kept.size)
        change = content_change(kept, other, homography)
        same = coverage >= MIN_COVERAGE and detail >= MIN_DETAIL and change <= MAX_CHANGE
        return PairCheck(SAME if same else SIMILAR, inliers, round(coverage, 4), round(detail, 4), round(change, 3))

    def same_picture(self, path_a: str, path_b: str) -> bool | None:
        """True when the two show (part of) the same scene, False when not, None when either
        image has too few keypoints to tell."""
        found = self.compare(path_a, path_b)
        return None if found is None else found.verdict != DIFFERENT


# -- over a catalog ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Photo:
    path: str
    state: object | None  # the catalog's MediaState
    width: int | None
    height: int | None
    size: int
    sharpness: float | None

    def quality(self) -> tuple:
        """Best copy first: most pixels, then sharpest, then largest file (ties: path order)."""
        return (-(self.width or 0) * (self.height or 0), -(self.sharpness if self.sharpness is not None else -1.0),
                -self.size, self.path)


def find_duplicates(catalog, threshold: float | None = None, geometric_check: bool | None = None,
                    max_candidates: int = MAX_CANDIDATES, progress: Progress | None = None) -> DuplicateReport:
    """Groups of the catalog's photos that are the same picture, each led by its best copy (most
    pixels, then sharpest, then largest file), and the similar shots that are not redundant.
    Exact byte copies (same sha256) always group. Every file of a group matches the best copy
    itself, never through a third photo.

    ``threshold``: cosine for candidates (default: by model, see ``default_threshold``);
    ``geometric_check``: check candidates with keypoints (default: on; off, a candidate at the
    threshold to the kept copy is redundant);
    ``max_candidates``: candidates checked per photo, its most similar; ``progress``: told the
    steps (photos rated, pairs settled) as they are done.
    """
    timings: dict[str, float] = {}
    t = time.perf_counter()
    recorded = catalog.space_model(IMAGE_SPACE)
    if recorded is None:
        return DuplicateReport(threshold or 0.0, bool(geometric_check), 0, 0, 0, ())
    encoder_name = recorded[0]
    threshold = default_threshold(encoder_name) if threshold is None else float(threshold)
    check = needs_geometric_check(encoder_name) if geometric_check is None else geometric_check
    paths, vectors = catalog.media_vectors(IMAGE_SPACE)
    states = catalog.media_at(paths)
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    rows_i, rows_j, sims = similar_pairs(vectors, threshold)
    candidates = len(rows_i)
    rows_i, rows_j, sims = nearest_per_row(rows_i, rows_j, sims, max_candidates)
    # byte copies always pair, even beyond the cap
    sha = [states[p].sha256 if p in states else None for p in paths]
    by_sha: dict[str, list[int]] = {}
    for row, digest in enumerate(sha):
        if digest:
            by_sha.setdefault(digest, []).append(row)
    seen = set(zip(rows_i.tolist(), rows_j.tolist()))
    extra = [(a, b) for rows in by_sha.values() for a in rows[:SHA_PAIRS] for b in rows if a < b and (a, b) not in seen]
    if extra:
        rows_i = np.concatenate([rows_i, np.asarray([a for a, _ in extra], np.int64)])
        rows_j = np.concatenate([rows_j, np.asarray([b for _, b in extra], np.int64)])
        sims = np.concatenate([sims, np.sum(vectors[rows_i[-len(extra):]] * vectors[rows_j[-len(extra):]], axis=1)])
    timings["range_search"] = time.perf_counter() - t

    t = time.perf_counter()
    involved = sorted(set(rows_i.tolist()) | set(rows_j.tolist()))
    if progress is not None:
        progress.start(len(involved) + len(rows_i))
    photos: dict[int, _Photo] = {}
    for row in involved:
        photos[row] = _photo(catalog, paths[row], states.get(paths[row]))
        if progress is not None:
            progress.advance(1)
    order = sorted(involved, key=lambda r: photos[r].quality())
    timings["rate"] = time.perf_counter() - t

    t = time.perf_counter()
    verifier = GeometricCheck() if check else None
    checked = 0

    def verdict(kept: int, other: int, cosine: float) -> str:
        nonlocal checked
        if sha[kept] is not None and sha[kept] == sha[other]:
            return SAME
        if verifier is None:
            return SAME
        checked += 1
        found = verifier.compare(paths[kept], paths[other])
        if found is None:
            return SIMILAR if cosine >= UNCHECKABLE_THRESHOLD else DIFFERENT
        return found.verdict

    groups, similar = star_groups(order, rows_i, rows_j, sims, verdict,
                                  progress.advance if progress is not None else lambda n: None)
    timings["geometric_check" if check else "grouping"] = time.perf_counter() - t

    t = time.perf_counter()
    described = [_describe_group([photos[r] for r in [kept, *rows]], vectors[[kept, *rows]])
                 for kept, rows in groups.items()]
    described.sort(key=lambda g: (-len(g.others), g.best.path))
    shots = [_describe_group([photos[r] for r in [kept, *rows]], vectors[[kept, *rows]], similar=True)
             for kept, rows in similar.items()]
    shots.sort(key=lambda g: (-len(g.others), g.best.path))
    timings["describe"] = time.perf_counter() - t
    confirmed = sum(len(rows) for rows in groups.values())
    return DuplicateReport(threshold, check, len(paths), candidates, confirmed, tuple(described), timings,
                           similar=tuple(shots), checked_pairs=checked)


def _photo(catalog, path: str, state) -> _Photo:
    row = catalog.media(state.id) if state is not None else None
    size = state.size if state is not None else (os.path.getsize(path) if os.path.exists(path) else 0)
    return _Photo(path, state, getattr(row, "width", None), getattr(row, "height", None), size, sharpness(path))


def _describe_group(photos: list[_Photo], vectors: np.ndarray, similar: bool = False) -> DuplicateGroup:
    """The group of ``photos``, the first of them the copy kept."""
    first_with_sha: dict[str, str] = {}
    for p in photos:
        if p.state is not None and p.state.sha256:
            first_with_sha.setdefault(p.state.sha256, p.path)
    best_sha = photos[0].state.sha256 if photos[0].state is not None else None
    sims = vectors @ vectors[0]
    members = []
    for k, p in enumerate(photos):
        digest = p.state.sha256 if p.state is not None else None
        members.append(DuplicateMember(
            media_id=p.state.id if p.state is not None else -1, path=p.path, width=p.width, height=p.height,
            size=p.size, sha256=digest, sharpness=None if p.sharpness is None else round(p.sharpness, 2),
            similarity=round(float(sims[k]), 4), same_bytes_as_best=bool(best_sha and digest == best_sha),
            same_bytes_as=(first_with_sha.get(digest) if digest and first_with_sha.get(digest) != p.path else None)))
    others = tuple(sorted(members[1:], key=lambda m: -m.similarity))
    return DuplicateGroup(members[0], others, similar=similar)


def duplicates_html(report: DuplicateReport, thumb_size: int = 200) -> str:
    """A self-contained page: one row per group, the best copy first (thumbnails inlined)."""
    import base64
    import html

    from vsearch.report import thumbnail_jpeg

    def card(m: DuplicateMember, best: bool, similar: bool = False) -> str:
        data = thumbnail_jpeg(m.path, thumb_size)
        img = (f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}" alt="">'
               if data else '<div class="missing">unreadable</div>')
        what = "best copy" if best else ("same bytes" if m.same_bytes_as_best else f"similarity {m.similarity:.3f}")
        if best and similar:
            what = "kept"
        dims = f"{m.width}×{m.height}" if m.width and m.height else "?"
        return (f'<figure class="{"best" if best else ""}">{img}<figcaption><b>{what}</b><br>{dims}, '
                f'{m.size / 1024:.0f} KB<br><span title="{html.escape(m.path)}">'
                f'{html.escape(os.path.basename(m.path))}</span></figcaption></figure>')

    def section(g: DuplicateGroup) -> str:
        title = (f"similar shots: {1 + len(g.others)} files, none redundant" if g.similar
                 else f"{g.kind} group: {1 + len(g.others)} files")
        return (f'<section><h2>{title}</h2><div class="row">' + card(g.best, True, g.similar)
                + "".join(card(m, False) for m in g.others) + "</div></section>")

    rows = "".join(section(g) for g in (*report.groups, *report.similar))
    summary = report.to_json()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vsearch: duplicates</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; }}
.row {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; background: #fff; padding: .5rem; border-radius: 6px; box-shadow: 0 1px 3px #0002; width: {thumb_size}px; }}
figure.best {{ outline: 3px solid #2a7; }}
img {{ max-width: 100%; display: block; margin: auto; }}
figcaption {{ font-size: .85rem; margin-top: .4rem; word-break: break-all; }}
.missing {{ height: 120px; display: flex; align-items: center; justify-content: center; color: #a00; }}
</style></head><body>
<h1>Duplicates</h1>
<p>{summary["exact_groups"]} groups of identical files, {summary["near_groups"]} groups of near duplicates among
{report.photos} photos (cosine ≥ {report.threshold:.2f}{", keypoint-checked" if report.geometric_check else ""});
{summary["redundant_files"]} files besides the best copies, {summary["redundant_bytes"] / 1e6:.1f} MB;
{summary["similar_groups"]} groups of similar shots (each shows something the others lack: keep them all).</p>
{rows}
</body></html>
"""
