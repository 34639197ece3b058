"""Near-duplicate photos: the same picture re-encoded, resized, cropped or lightly edited, and
(at a lower threshold) bursts of near-identical shots.

Candidates come from a FAISS range search over the catalog's image vectors: every photo is a
query, and the index returns all photos within ``threshold`` cosine of it. Above
``EXACT_RANGE_BELOW`` vectors the search runs on an IVF index probing a few lists, so the cost
grows as N·(N·nprobe/nlist) rather than N² (near duplicates lie in the same or a neighbouring
cell; recall against exact search is in benchmarks/RESULTS.md). Pairs are joined into groups
(connected components); files with the same sha256 are always one group.

The packaged model embeds what a photo *shows* (a mix of ImageNet classes), so two different
photos of coins and of a clock can be 0.96 apart. For such semantic vectors each candidate pair
is also checked geometrically: ORB keypoints matched between the two images, and a RANSAC
homography must explain enough of them (OpenCV). CLIP vectors are specific enough to go without.
"""
from __future__ import annotations

import os
from collections import OrderedDict
import time
from dataclasses import asdict, dataclass, field

import faiss
import numpy as np

from vsearch.catalog import IMAGE_SPACE
from vsearch.encoders.spec import EncoderSpec

# Exact range search below this many vectors, IVF above: at 10,000 vectors exact took 12.5 s and
# IVF 5.5 s with the same pairs found (shared 2-core CPU, benchmarks/RESULTS.md).
EXACT_RANGE_BELOW = 5_000
# Cosine thresholds for candidates, by model (measured on re-encoded, resized and cropped
# scikit-image photos; benchmarks/RESULTS.md). Bursts need a lower one, e.g. --threshold 0.85 (CLIP).
PACKAGED_THRESHOLD = 0.60
CLIP_THRESHOLD = 0.92
# Geometric check: RANSAC inliers a pair needs. Between 45 pairs of different scikit-image photos
# there were at most 7; re-encodes, halvings, quarterings, 80 % crops and brightenings had 25–1,237.
MIN_INLIERS = 20
# An image with fewer keypoints than this (a smooth, texture-less picture) cannot be checked; such
# a pair is kept only when the vectors are at least this close.
MIN_KEYPOINTS = 100
UNCHECKABLE_THRESHOLD = 0.97
FEATURE_CACHE = 4096  # images whose keypoints are kept while candidate pairs are checked


def _is_packaged(encoder_name: str) -> bool:
    return EncoderSpec.parse(encoder_name).family == "packaged"


def default_threshold(encoder_name: str) -> float:
    return PACKAGED_THRESHOLD if _is_packaged(encoder_name) else CLIP_THRESHOLD


def needs_geometric_check(encoder_name: str) -> bool:
    return _is_packaged(encoder_name)


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

    @property
    def kind(self) -> str:
        return "exact" if all(m.same_bytes_as_best for m in self.others) else "near"

    @property
    def exact_copies(self) -> int:
        """Files of the group that repeat another file's bytes."""
        return sum(m.same_bytes_as is not None for m in (self.best, *self.others))

    @property
    def redundant_bytes(self) -> int:
        return sum(m.size for m in self.others)

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

    def to_json(self) -> dict:
        """A JSON-able dict (for `vsearch duplicates --json` and an HTTP route)."""
        return {"threshold": self.threshold, "geometric_check": self.geometric_check, "photos": self.photos,
                "candidate_pairs": self.candidate_pairs, "confirmed_pairs": self.confirmed_pairs,
                "exact_groups": sum(g.kind == "exact" for g in self.groups),
                "near_groups": sum(g.kind == "near" for g in self.groups),
                "redundant_files": sum(len(g.others) for g in self.groups),
                "exact_copies": sum(g.exact_copies for g in self.groups),
                "redundant_bytes": sum(g.redundant_bytes for g in self.groups),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "groups": [g.to_json() for g in self.groups]}


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


def sharpness(path: str, side: int = 512) -> float | None:
    """Variance of the Laplacian of a grey copy at most ``side`` px over the variance of the grey
    values: higher is sharper. Dividing by the contrast keeps a brightened copy (whose Laplacian
    grows with its contrast) from passing for a sharper one."""
    from PIL import ImageFilter

    from vsearch.errors import ImageDecodeError
    from vsearch.images import decode_image

    try:
        image = decode_image(path, draft_size=side).image
    except ImageDecodeError:
        return None
    image.thumbnail((side, side))
    grey = image.convert("L")
    lap = np.asarray(grey.filter(ImageFilter.Kernel((3, 3), (0, 1, 0, 1, -4, 1, 0, 1, 0), scale=1, offset=128)),
                     dtype=np.float32)
    return float(lap.var() / max(float(np.asarray(grey, dtype=np.float32).var()), 1e-6))


class GeometricCheck:
    """Do two photos show the same picture? ORB keypoints, ratio-tested matches, and a RANSAC
    homography with at least ``min_inliers`` inliers. Keypoints are computed once per file."""

    def __init__(self, min_inliers: int = MIN_INLIERS, side: int = 640):
        self.min_inliers = min_inliers
        self.side = side
        self._features: OrderedDict[str, tuple] = OrderedDict()  # LRU: ~50 KB per image

    def _describe(self, path: str):
        if path in self._features:
            self._features.move_to_end(path)
        else:
            while len(self._features) >= FEATURE_CACHE:
                self._features.popitem(last=False)
            import cv2

            from vsearch.errors import ImageDecodeError
            from vsearch.images import decode_image

            try:
                image = decode_image(path, draft_size=self.side).image.convert("L")
            except ImageDecodeError:
                self._features[path] = ((), None)
                return self._features[path]
            scale = self.side / max(image.size)  # small copies are enlarged, so both sides get keypoints
            image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
            orb = cv2.ORB_create(nfeatures=1500)
            self._features[path] = orb.detectAndCompute(np.asarray(image), None)
        return self._features[path]

    def inliers(self, path_a: str, path_b: str) -> int:
        import cv2

        kp_a, des_a = self._describe(path_a)
        kp_b, des_b = self._describe(path_b)
        if des_a is None or des_b is None or len(kp_a) < 4 or len(kp_b) < 4:
            return 0
        matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des_a, des_b, k=2)
        good = [m[0] for m in matches if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
        if len(good) < 4:
            return 0
        src = np.float32([kp_a[m.queryIdx].pt for m in good])
        dst = np.float32([kp_b[m.trainIdx].pt for m in good])
        _, mask = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
        return 0 if mask is None else int(mask.sum())

    def checkable(self, path: str) -> bool:
        keypoints, descriptors = self._describe(path)
        return descriptors is not None and len(keypoints) >= MIN_KEYPOINTS

    def same_picture(self, path_a: str, path_b: str) -> bool | None:
        """True / False, or None when either image has too few keypoints to tell."""
        if not (self.checkable(path_a) and self.checkable(path_b)):
            return None
        return self.inliers(path_a, path_b) >= self.min_inliers


# -- over a catalog ------------------------------------------------------------------------------
def find_duplicates(catalog, threshold: float | None = None, geometric_check: bool | None = None) -> DuplicateReport:
    """Groups of the catalog's photos that are the same picture; the best copy of each named
    (most pixels, then sharpest, then largest file). Exact byte copies (same sha256) always group.

    ``threshold``: cosine for candidates (default: by model, see ``default_threshold``);
    ``geometric_check``: confirm candidates with keypoints (default: for semantic-only models).
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
    timings["range_search"] = time.perf_counter() - t
    candidates = len(rows_i)

    sha = [states[p].sha256 if p in states else None for p in paths]
    same_bytes = np.asarray([sha[i] is not None and sha[i] == sha[j] for i, j in zip(rows_i, rows_j)], bool)
    if check and candidates:
        t = time.perf_counter()
        verifier = GeometricCheck()

        def confirmed_pair(k: int, i: int, j: int) -> bool:
            if same_bytes[k]:
                return True
            same = verifier.same_picture(paths[i], paths[j])
            return bool(sims[k] >= UNCHECKABLE_THRESHOLD) if same is None else same

        ok = np.asarray([confirmed_pair(k, i, j) for k, (i, j) in enumerate(zip(rows_i, rows_j))], bool)
        rows_i, rows_j, sims = rows_i[ok], rows_j[ok], sims[ok]
        timings["geometric_check"] = time.perf_counter() - t
    # exact byte copies group even if their vectors were never compared
    by_sha: dict[str, list[int]] = {}
    for row, digest in enumerate(sha):
        if digest:
            by_sha.setdefault(digest, []).append(row)
    extra = [(rows[0], r) for rows in by_sha.values() if len(rows) > 1 for r in rows[1:]]
    if extra:
        rows_i = np.concatenate([rows_i, np.asarray([a for a, _ in extra], np.int64)])
        rows_j = np.concatenate([rows_j, np.asarray([b for _, b in extra], np.int64)])
    confirmed = len(rows_i)

    t = time.perf_counter()
    groups = []
    for rows in connected_groups(len(paths), rows_i, rows_j):
        groups.append(_describe_group(catalog, [paths[r] for r in rows], vectors[rows], [states.get(paths[r]) for r in rows]))
    groups.sort(key=lambda g: (-len(g.others), g.best.path))
    timings["describe"] = time.perf_counter() - t
    return DuplicateReport(threshold, check, len(paths), candidates, confirmed, tuple(groups), timings)


def _describe_group(catalog, paths, vectors, states) -> DuplicateGroup:
    infos = []
    for path, state in zip(paths, states):
        row = catalog.media(state.id) if state is not None else None
        width = getattr(row, "width", None)
        height = getattr(row, "height", None)
        size = state.size if state is not None else (os.path.getsize(path) if os.path.exists(path) else 0)
        infos.append((path, state, width, height, size, sharpness(path)))

    def quality(k: int):
        path, _, w, h, size, sharp = infos[k]
        return ((w or 0) * (h or 0), sharp if sharp is not None else -1.0, size, [-ord(c) for c in path])

    best = max(range(len(infos)), key=quality)  # ties: the first path in sort order
    first_with_sha: dict[str, str] = {}
    for k in [best] + [k for k in range(len(infos)) if k != best]:
        state = infos[k][1]
        if state is not None and state.sha256:
            first_with_sha.setdefault(state.sha256, infos[k][0])
    best_sha = infos[best][1].sha256 if infos[best][1] is not None else None
    sims = vectors @ vectors[best]
    members = [DuplicateMember(
        media_id=state.id if state is not None else -1, path=path, width=w, height=h, size=size,
        sha256=state.sha256 if state is not None else None, sharpness=None if sharp is None else round(sharp, 2),
        similarity=round(float(sims[k]), 4),
        same_bytes_as_best=bool(best_sha and state is not None and state.sha256 == best_sha),
        same_bytes_as=(first_with_sha.get(state.sha256) if state is not None and state.sha256
                       and first_with_sha.get(state.sha256) != path else None))
        for k, (path, state, w, h, size, sharp) in enumerate(infos)]
    others = tuple(sorted((m for k, m in enumerate(members) if k != best), key=lambda m: -m.similarity))
    return DuplicateGroup(members[best], others)


def duplicates_html(report: DuplicateReport, thumb_size: int = 200) -> str:
    """A self-contained page: one row per group, the best copy first (thumbnails inlined)."""
    import base64
    import html

    from vsearch.report import thumbnail_jpeg

    def card(m: DuplicateMember, best: bool) -> str:
        data = thumbnail_jpeg(m.path, thumb_size)
        img = (f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}" alt="">'
               if data else '<div class="missing">unreadable</div>')
        what = "best copy" if best else ("same bytes" if m.same_bytes_as_best else f"similarity {m.similarity:.3f}")
        dims = f"{m.width}×{m.height}" if m.width and m.height else "?"
        return (f'<figure class="{"best" if best else ""}">{img}<figcaption><b>{what}</b><br>{dims}, '
                f'{m.size / 1024:.0f} KB<br><span title="{html.escape(m.path)}">'
                f'{html.escape(os.path.basename(m.path))}</span></figcaption></figure>')

    rows = "".join(f'<section><h2>{g.kind} group: {1 + len(g.others)} files</h2><div class="row">'
                   + card(g.best, True) + "".join(card(m, False) for m in g.others) + "</div></section>"
                   for g in report.groups)
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
{summary["redundant_files"]} files besides the best copies, {summary["redundant_bytes"] / 1e6:.1f} MB.</p>
{rows}
</body></html>
"""
