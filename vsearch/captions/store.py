"""The SQL of caption sets: the ``captions`` table (:mod:`vsearch.schema`) read and written inside
a catalog transaction (``catalog.transaction()``) or read form (``catalog.reading()``).

Each caption is a vector of the space ``caption`` (no photo) plus a row here that hangs off it
(foreign key, cascade), so removing its vector removes the caption.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sqlalchemy import func, select

from vsearch.catalog import Reading, Transaction, id_chunks
from vsearch.schema import Caption

CAPTION_SPACE = "caption"


def add_captions(tx: Transaction, caption_set: str, rows: Sequence, vectors: np.ndarray) -> list[int]:
    """Store ``rows`` (``text``, ``ext_id``, ``image_ref``) with their embeddings as the set
    ``caption_set``; returns their vector ids."""
    ids = tx.add_vectors(CAPTION_SPACE, vectors, [None] * len(rows))
    tx.session.add_all([Caption(caption_set=caption_set, ext_id=c.ext_id, text=c.text, image_ref=c.image_ref,
                                vector_id=vid) for c, vid in zip(rows, ids)])
    return ids


def caption_sets(r: Reading) -> list[tuple[str, int]]:
    """(set name, number of captions) of every caption set."""
    return [(n, int(c)) for n, c in r.session.execute(select(Caption.caption_set, func.count())
                                                        .group_by(Caption.caption_set))]


def set_vector_ids(r: Reading, caption_set: str) -> list[int]:
    """The vector ids of a caption set's captions."""
    return [int(i) for i in r.session.scalars(select(Caption.vector_id).where(Caption.caption_set == caption_set))]


def captions_of(r: Reading, vector_ids: Sequence[int]) -> dict[int, tuple[int, str, str, str | None, str | None]]:
    """Vector id -> (caption id, text, set, external id, image reference) of its caption."""
    out = {}
    for chunk in id_chunks(vector_ids):
        rows = r.session.execute(select(Caption.vector_id, Caption.id, Caption.text, Caption.caption_set, Caption.ext_id,
                                        Caption.image_ref).where(Caption.vector_id.in_(chunk)))
        out.update((int(vid), (int(cid), *rest)) for vid, cid, *rest in rows)
    return out
