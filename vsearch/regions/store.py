"""The SQL of the regions feature: its tables (:mod:`vsearch.regions.schema`) read and written
inside a catalog transaction (``catalog.transaction()``) or read form (``catalog.reading()``).

Region vectors are rows of the catalog's ``vectors`` table in the space ``region``, written with
``tx.add_vectors`` / ``tx.remove_vectors`` so that the indexes follow the commit; the rows here
hang off them.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import NamedTuple, Sequence

import numpy as np
from sqlalchemy import delete, inspect, select

from vsearch.catalog import Reading, Transaction, id_chunks
from vsearch.fsutil import text_to_path
from vsearch.regions.schema import REGION_SPACE, Region, RegionRun
from vsearch.schema import Media, Vector


def has_region_table(r: Reading) -> bool:
    """Whether the catalog's database holds the regions table (a catalog indexed with ``--regions``)."""
    return inspect(r.session.get_bind()).has_table(Region.__tablename__)


# -- the indexer's regions ------------------------------------------------------------------------


def take_stale(tx: Transaction, media_ids: Sequence[int], source: str, settings: str) -> tuple[set[int], int]:
    """Photos among ``media_ids`` with no regions from ``source`` yet, or with regions made from
    other file content or other settings; the regions and runs of the latter are removed, so a
    photo never holds two generations of regions from one source. Returns (those photos, the
    number of regions removed)."""
    todo, stale = set(), []
    for chunk in id_chunks(media_ids):
        rows = tx.session.execute(
            select(Media.id, Media.sha256, RegionRun.settings, RegionRun.sha256)
            .outerjoin(RegionRun, (RegionRun.media_id == Media.id) & (RegionRun.source == source))
            .where(Media.id.in_(chunk))
        )
        for media_id, sha, run_settings, run_sha in rows:
            if run_settings is None:
                todo.add(int(media_id))
            elif run_settings != settings or run_sha != sha:
                todo.add(int(media_id))
                stale.append(int(media_id))
    vector_ids: list[int] = []
    for chunk in id_chunks(sorted(stale)):
        vector_ids += tx.session.scalars(select(Region.vector_id).where(Region.media_id.in_(chunk),
                                                                        Region.source == source))
        tx.session.execute(delete(RegionRun).where(RegionRun.media_id.in_(chunk), RegionRun.source == source))
    if vector_ids:
        tx.remove_vectors(REGION_SPACE, vector_ids)  # their region rows cascade
    return todo, len(vector_ids)


def add_regions(tx: Transaction, media_id: int, source: str, settings: str, boxes: np.ndarray,
                scores: np.ndarray, labels: Sequence[str] | None, masks: Sequence[bytes] | None,
                vectors: np.ndarray) -> None:
    """Store one photo's regions (boxes in original-photo pixels), and that ``source`` processed
    this content with ``settings`` (also when it found nothing, so it is not processed again)."""
    n = len(boxes)
    ids = tx.add_vectors(REGION_SPACE, vectors, [media_id] * n) if n else []
    tx.session.add_all([
        Region(vector_id=vid, media_id=media_id, source=source,
               x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3]), score=float(scores[i]),
               label=labels[i] if labels is not None else None, mask=masks[i] if masks is not None else None)
        for i, (vid, b) in enumerate(zip(ids, boxes))
    ])
    tx.session.merge(RegionRun(media_id=media_id, source=source, settings=settings, sha256=tx.media_sha256(media_id),
                               regions=n, created_at=time.time()))


# -- searching ------------------------------------------------------------------------------------


class Candidate(NamedTuple):
    """One stored vector of a candidate photo: a region (``box``, ``label``) or the whole photo
    (``box`` None)."""

    vector_id: int
    space: str
    box: tuple[float, float, float, float] | None
    label: str | None


class CandidatePhoto(NamedTuple):
    path: str  # as the filesystem knows it
    width: int
    height: int
    vectors: list[Candidate]
    embeddings: np.ndarray  # (len(vectors), D)


def candidate_vectors(r: Reading, media_ids: Sequence[int], spaces: Sequence[str]) -> dict[int, CandidatePhoto]:
    """Every vector of ``spaces`` of these photos, with its region's box, grouped by photo."""
    out: dict[int, CandidatePhoto] = {}
    for chunk in id_chunks(sorted(media_ids)):
        rows = r.session.execute(
            select(Vector.id, Vector.media_id, Vector.space, Vector.embedding, Region.x1, Region.y1,
                   Region.x2, Region.y2, Region.label, Media.path, Media.width, Media.height)
            .join(Media, Media.id == Vector.media_id)
            .outerjoin(Region, Region.vector_id == Vector.id)
            .where(Vector.media_id.in_(chunk), Vector.space.in_(list(spaces)))
        ).all()
        per_media: dict[int, list] = defaultdict(list)
        for row in rows:
            per_media[int(row.media_id)].append(row)
        for mid, group in per_media.items():
            first = group[0]
            out[mid] = CandidatePhoto(
                text_to_path(first.path), int(first.width or 0), int(first.height or 0),
                [Candidate(int(g.id), g.space, (g.x1, g.y1, g.x2, g.y2) if g.space == REGION_SPACE else None, g.label)
                 for g in group],
                # regions are embedded with the catalog's image encoder: one dimension for both spaces
                r.vectors(first.space, [g.embedding for g in group]))
    return out


def region_boxes(r: Reading, media_id: int) -> dict[int, tuple[float, float, float, float]]:
    """Region vector id -> its box, for every region of one photo."""
    rows = r.session.execute(select(Region.vector_id, Region.x1, Region.y1, Region.x2, Region.y2)
                             .where(Region.media_id == media_id))
    return {int(v): (x1, y1, x2, y2) for v, x1, y1, x2, y2 in rows}
