"""Searching regions: photos ranked by their best-matching part, with that part's box.

A photo's score is the best cosine similarity between the query and any of its vectors: its
regions and (by default) the whole photo, which is the region "everything". Candidates come
from both FAISS indexes (the region index is searched deeper until it has yielded ``k``
distinct photos), then every candidate is scored exactly from the embeddings kept in SQL. That
is exact: a photo whose best vector is in neither top-k list cannot beat the k photos that are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vsearch.catalog import IMAGE_SPACE, Catalog, SearchHit
from vsearch.errors import QueryError
from vsearch.regions import store
from vsearch.regions.schema import REGION_SPACE
from vsearch.search import catalog_searcher, top_media


@dataclass(frozen=True)
class RegionHit(SearchHit):
    """A photo and where in it the query matched best. ``box`` is ``[x1, y1, x2, y2]`` in pixels of
    the upright photo; when the whole photo matched better than any region it is the full frame
    and ``whole_image`` is True. ``vector_id`` is the vector that matched."""

    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    label: str | None = None
    whole_image: bool = False


def has_regions(catalog: Catalog) -> bool:
    if catalog.space_model(REGION_SPACE) is None:
        return False
    with catalog.reading() as r:
        return store.has_region_table(r)


def search_regions(catalog: Catalog, query: np.ndarray, k: int = 10, whole_image: bool = True) -> list[RegionHit]:
    """Top-``k`` photos for one L2-normalised query vector, each with its best box."""
    if k < 1:
        raise QueryError("-k must be at least 1")
    if not has_regions(catalog):
        raise QueryError("this catalog has no regions yet: run `vsearch index PATH --regions proposals` first")
    query = np.asarray(query, dtype=np.float32).reshape(-1)
    # the region index holds many vectors per photo: search it deeper until k distinct photos
    candidates = {h.media_id for h in top_media(catalog_searcher(catalog, REGION_SPACE), catalog, query, k,
                                                fetch=max(4 * k, 32))}
    spaces = [REGION_SPACE]
    if whole_image and catalog.space_model(IMAGE_SPACE) is not None:
        candidates |= {h.media_id for h in catalog.search(query, k=k, space=IMAGE_SPACE)[0]}
        spaces.append(IMAGE_SPACE)
    if not candidates:
        return []
    best: dict[int, tuple[float, int, tuple, str | None, bool]] = {}
    paths: dict[int, str] = {}
    with catalog.reading() as r:
        photos = store.candidate_vectors(r, candidates, spaces)
    for mid, photo in photos.items():
        scores = photo.embeddings @ query
        # ties go to the region: it says more than the full frame
        i = max(range(len(photo.vectors)), key=lambda j: (float(scores[j]), photo.vectors[j].space == REGION_SPACE))
        vector = photo.vectors[i]
        paths[mid] = photo.path
        if vector.box is not None:
            box, whole = vector.box, False
        else:
            box, whole = (0.0, 0.0, float(photo.width), float(photo.height)), True
        best[mid] = (float(scores[i]), vector.vector_id, tuple(float(v) for v in box), vector.label, whole)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    return [RegionHit(mid, paths[mid], score, rank, vid, box, label, whole)
            for rank, (mid, (score, vid, box, label, whole)) in enumerate(ranked, start=1)]


def best_region(catalog: Catalog, media_id: int, query: np.ndarray) -> tuple[tuple[float, float, float, float], float] | None:
    """(box, cosine) of the photo's region closest to ``query``; None when it has no regions."""
    if not has_regions(catalog):
        return None
    with catalog.reading() as r:
        boxes = store.region_boxes(r, media_id)
    if not boxes:
        return None
    ids, vectors = catalog.vectors(REGION_SPACE, list(boxes))
    if not len(ids):
        return None
    scores = vectors @ np.asarray(query, np.float32).reshape(-1)
    i = int(np.argmax(scores))
    return tuple(float(v) for v in boxes[int(ids[i])]), float(scores[i])


__all__ = ["RegionHit", "search_regions", "has_regions", "best_region"]
