"""Searching regions: photos ranked by their best-matching part, with that part's box.

A photo's score is the best cosine similarity between the query and any of its vectors: its
regions and (by default) the whole photo, which is the region "everything". Candidates come
from both FAISS indexes (the region index is searched deeper until it has yielded ``k``
distinct photos), then every candidate is scored exactly from the embeddings kept in SQL. That
is exact: a photo whose best vector is in neither top-k list cannot beat the k photos that are.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from vsearch.catalog import IMAGE_SPACE, Catalog, SearchHit
from vsearch.errors import QueryError
from vsearch.regions.schema import REGION_SPACE, Region
from vsearch.schema import Media, Vector
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
    return catalog.space_model(REGION_SPACE) is not None and inspect(catalog.engine).has_table(Region.__tablename__)


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
    dim = len(query)
    ids = sorted(candidates)
    with Session(catalog.engine) as s:
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            rows = s.execute(
                select(Vector.id, Vector.media_id, Vector.space, Vector.embedding, Region.x1, Region.y1,
                       Region.x2, Region.y2, Region.label, Media.path, Media.width, Media.height)
                .join(Media, Media.id == Vector.media_id)
                .outerjoin(Region, Region.vector_id == Vector.id)
                .where(Vector.media_id.in_(chunk), Vector.space.in_(spaces))
            ).all()
            if not rows:
                continue
            emb = np.frombuffer(b"".join(r.embedding for r in rows), dtype=np.float32).reshape(len(rows), dim)
            scores = emb @ query
            per_media: dict[int, list[int]] = defaultdict(list)
            for i, r in enumerate(rows):
                per_media[r.media_id].append(i)
            for mid, idx in per_media.items():
                # ties go to the region: it says more than the full frame
                i = max(idx, key=lambda j: (float(scores[j]), rows[j].space == REGION_SPACE))
                r = rows[i]
                paths[mid] = r.path
                if r.space == REGION_SPACE:
                    box, whole = (r.x1, r.y1, r.x2, r.y2), False
                else:
                    box, whole = (0.0, 0.0, float(r.width or 0), float(r.height or 0)), True
                best[mid] = (float(scores[i]), int(r.id), tuple(float(v) for v in box), r.label, whole)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    return [RegionHit(mid, paths[mid], score, rank, vid, box, label, whole)
            for rank, (mid, (score, vid, box, label, whole)) in enumerate(ranked, start=1)]


__all__ = ["RegionHit", "search_regions", "has_regions"]
