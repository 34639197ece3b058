"""The catalog's transactions: the one way rows are written (and read by stores).

``with catalog.transaction() as tx:`` wraps one SQL transaction. Vector rows are written through
it (``tx.add_vectors``, ``tx.remove_vectors``, ``tx.add_media``), which also notes the change for
the FAISS indexes. On a clean exit the transaction commits *first* and *then* the loaded indexes
are brought level with it; on an exception it rolls back and no index is touched. A crash
between the commit and the index leaves the index file behind SQL, and loading it adds the
difference (see :meth:`~vsearch.catalog.indexes.VectorIndexes.index`).

``with catalog.reading() as r:`` is the read-only form for stores' queries. Feature stores (e.g.
:mod:`vsearch.faces.store`) use ``session`` for their own tables; nothing else does.
"""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.exc import InterfaceError, OperationalError, StatementError
from sqlalchemy.orm import Session

from vsearch.catalog.records import (IMAGE_SPACE, MediaRecord, chunks, id_chunks,  # noqa: F401  (re-exported)
                                     vector_blob, vectors_from_blobs)
from vsearch.fsutil import path_to_text
from vsearch.schema import Media, Vector

def rows_refused(exc: BaseException) -> bool:
    """Whether the database refused the rows written (a constraint, a value it cannot store),
    as opposed to failing itself (a full disk, a lost connection: no row's fault)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return False
    return isinstance(exc, (StatementError, ValueError, UnicodeError))


class Reading:
    """A read-only view of the catalog's database for one block (``catalog.reading()``)."""

    def __init__(self, catalog, session: Session):
        self.catalog = catalog
        self.session = session  # for store modules only

    def vectors(self, space: str, blobs: Sequence[bytes]) -> np.ndarray:
        """Stored embeddings (float32 bytes) of ``space`` as an ``(N, D)`` array."""
        return vectors_from_blobs(blobs, self.catalog._dim(space))

    def media_sha256(self, media_id: int) -> str | None:
        return self.session.scalar(select(Media.sha256).where(Media.id == media_id))


class Transaction(Reading):
    """One SQL transaction of the catalog and the index changes it makes (``catalog.transaction()``)."""

    def __init__(self, catalog, session: Session):
        super().__init__(catalog, session)
        self.removed: dict[str, list[int]] = defaultdict(list)
        self.added: list[tuple[str, np.ndarray, list[int]]] = []

    def add_vectors(self, space: str, vectors: np.ndarray, media_ids: Sequence[int | None]) -> list[int]:
        """Insert vector rows (``media_ids`` may be None: enrolled faces, captions); returns their
        ids, which are their FAISS ids."""
        if len(vectors) != len(media_ids):
            raise ValueError("one media id (or None) per vector")
        rows = [Vector(space=space, media_id=m, embedding=vector_blob(v)) for v, m in zip(vectors, media_ids)]
        self.session.add_all(rows)
        self.session.flush()
        ids = [r.id for r in rows]
        self.note_added(space, vectors, ids)
        return ids

    def remove_vectors(self, space: str, vector_ids: Sequence[int]) -> int:
        """Delete vector rows of ``space`` (and, by foreign-key cascade, rows that hang off them)."""
        ids = [int(i) for i in vector_ids]
        for chunk in id_chunks(ids):
            self.session.execute(delete(Vector).where(Vector.space == space, Vector.id.in_(chunk)))
        self.removed[space].extend(ids)
        return len(ids)

    def drop_media_vectors(self, media_ids: Sequence[int]) -> None:
        """Delete every vector (all spaces) of these media."""
        for chunk in id_chunks(media_ids):
            for vid, vspace in self.session.execute(select(Vector.id, Vector.space).where(Vector.media_id.in_(chunk))):
                self.removed[vspace].append(vid)
            self.session.execute(delete(Vector).where(Vector.media_id.in_(chunk)))

    def add_media(self, records: Sequence[MediaRecord], vectors: np.ndarray, space: str = IMAGE_SPACE) -> list[int]:
        """Insert media rows with one vector each, or replace them when a path is indexed again
        (a changed file: its old vectors of every space go). Returns the media ids."""
        if len(records) != len(vectors):
            raise ValueError("one vector per record")
        rows = self.media_rows(records, time.time())
        media_ids = [m.id for m in rows]
        self.add_vectors(space, vectors, media_ids)
        return media_ids

    def media_rows(self, records: Sequence[MediaRecord], now: float) -> list[Media]:
        """The media rows of these records, new or emptied of their old vectors, filled as
        indexed and flushed (so they have ids)."""
        stored = [path_to_text(r.path) for r in records]
        existing = {}
        for chunk in chunks(stored):
            existing.update((m.path, m) for m in self.session.scalars(select(Media).where(Media.path.in_(chunk))))
        rows = []
        for rec, text in zip(records, stored):
            row = existing.get(text)
            if row is None:
                row = Media(path=text)
                self.session.add(row)
                existing[text] = row
            else:  # changed file: its old vectors (all spaces) go
                self.drop_media_vectors([row.id])
            _fill(row, rec, now)
            rows.append(row)
        self.session.flush()
        return rows

    def note_added(self, space: str, vectors: np.ndarray, ids: Sequence[int]) -> None:
        """Remember vectors inserted in this transaction for the indexes (``add_vectors`` does this)."""
        if len(ids):
            self.added.append((space, vectors, list(ids)))


def _fill(row: Media, rec: MediaRecord, now: float) -> None:
    row.size, row.mtime, row.sha256 = rec.size, rec.mtime, rec.sha256
    row.width, row.height = rec.width, rec.height
    row.taken_at, row.orientation = rec.taken_at, rec.orientation
    row.status, row.error, row.indexed_at = "indexed", None, now


class Transactions:
    """``transaction`` and ``reading`` of :class:`~vsearch.catalog.Catalog` (mixed into it)."""

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One SQL transaction: commit first, then bring the loaded indexes level; on an
        exception, roll back and leave the indexes alone."""
        with Session(self.engine) as session:
            with session.begin():
                tx = Transaction(self, session)
                yield tx
            # committed: a crash from here on leaves the index behind SQL, which loading repairs
            self._index_apply(tx.removed, tx.added)

    @contextmanager
    def reading(self) -> Iterator[Reading]:
        """A read-only session for stores' queries (nothing is committed)."""
        with Session(self.engine) as session:
            yield Reading(self, session)
