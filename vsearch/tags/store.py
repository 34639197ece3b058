"""The SQL of zero-shot tags: the ``tags`` and ``tag_runs`` tables (:mod:`vsearch.schema`) read and
written inside a catalog transaction (``catalog.transaction()``) or read form (``catalog.reading()``).

Tags hang off image vectors (foreign key, cascade), so they go when their vector goes.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from sqlalchemy import delete, func, select

from vsearch.catalog import IMAGE_SPACE, Reading, Transaction, id_chunks
from vsearch.schema import Tag, TagRun, Vector


def clear(tx: Transaction) -> None:
    """Delete every tag and every record of a vector having been tagged."""
    tx.session.execute(delete(Tag))
    tx.session.execute(delete(TagRun))


def untagged(r: Reading, limit: int) -> tuple[list[int], np.ndarray]:
    """(ids, (N, D) embeddings) of at most ``limit`` image vectors not tagged yet."""
    rows = r.session.execute(select(Vector.id, Vector.embedding)
                             .where(Vector.space == IMAGE_SPACE, Vector.id.not_in(select(TagRun.vector_id)))
                             .limit(limit)).all()
    return [int(row[0]) for row in rows], r.vectors(IMAGE_SPACE, [row[1] for row in rows])


def add_tags(tx: Transaction, tagged: Sequence[int], tags: Iterable[tuple[int, str, float]]) -> None:
    """Store ``tags`` as (vector id, label, score), and that the vectors ``tagged`` were tagged
    (also those that got no tag, so they are not tagged again)."""
    tx.session.add_all([Tag(vector_id=vid, label=label, score=score) for vid, label, score in tags])
    tx.session.add_all([TagRun(vector_id=vid) for vid in tagged])


def vector_ids_with_tags(r: Reading, tags: Sequence[str]) -> set[int]:
    """Image vector ids carrying every one of ``tags`` (case-insensitive)."""
    result: set[int] | None = None
    for tag in tags:
        ids = {int(i) for i in r.session.scalars(select(Tag.vector_id).where(Tag.label.ilike(tag.strip())))}
        result = ids if result is None else result & ids
    return result or set()


def tags_of(r: Reading, vector_ids: Sequence[int]) -> dict[int, list[tuple[str, float]]]:
    """Vector id -> its (label, score) tags, best first."""
    out: dict[int, list[tuple[str, float]]] = {}
    for chunk in id_chunks(vector_ids):
        for vid, label, score in r.session.execute(select(Tag.vector_id, Tag.label, Tag.score)
                                                   .where(Tag.vector_id.in_(chunk)).order_by(Tag.score.desc())):
            out.setdefault(int(vid), []).append((label, score))
    return out


def photo_tags(r: Reading, media_id: int) -> list[tuple[str, float]]:
    """(label, score) of the tags of a photo's image vector, best first."""
    return [(label, score) for label, score in r.session.execute(
        select(Tag.label, Tag.score).join(Vector, Vector.id == Tag.vector_id)
        .where(Vector.media_id == media_id, Vector.space == IMAGE_SPACE).order_by(Tag.score.desc()))]


def label_counts(r: Reading) -> list[tuple[str, int]]:
    """Every stored label with the number of vectors carrying it, most common first."""
    rows = r.session.execute(select(Tag.label, func.count()).group_by(Tag.label)
                             .order_by(func.count().desc(), Tag.label))
    return [(label, int(n)) for label, n in rows]
