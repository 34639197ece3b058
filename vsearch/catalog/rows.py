"""The SQL side of the catalog: media rows and their vectors, written in one transaction each and
then handed to the indexes; and reading them back (paths, states, vectors, search hits)."""
from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from vsearch.catalog.records import (IMAGE_SPACE, MediaRecord, MediaState, _state, chunks, device_to_sql, id_chunks,
                                     vectors_from_blobs)
from vsearch.catalog.transaction import _fill
from vsearch.fsutil import path_to_text, text_to_path
from vsearch.schema import Media, Vector


class MediaRows:
    """The media-and-vector rows of :class:`~vsearch.catalog.Catalog` (mixed into it)."""

    # -- writing (each method one transaction: commit, then the indexes follow) -------------------
    def add_vectors(self, space: str, vectors: np.ndarray, media_ids: Sequence[int | None]) -> list[int]:
        """Insert vectors not tied to an indexing run (enrolled faces, captions), commit, index."""
        with self.transaction() as tx:
            return tx.add_vectors(space, vectors, media_ids)

    def remove_vectors(self, space: str, vector_ids: Sequence[int]) -> int:
        """Delete vector rows (and, by foreign-key cascade, rows that hang off them)."""
        with self.transaction() as tx:
            return tx.remove_vectors(space, vector_ids)

    def add_media(self, records: Sequence[MediaRecord], vectors: np.ndarray, space: str = IMAGE_SPACE) -> list[int]:
        """Insert (or replace, when a path is re-indexed) media rows with their vectors, in one
        transaction. Returns the media ids. (A feature's rows that go with them are written in
        the same :meth:`transaction`, ``tx.add_media`` then the feature's store.)"""
        with self.transaction() as tx:
            return tx.add_media(records, vectors, space)

    def record_failures(self, failures: Sequence[tuple[MediaRecord, str]]) -> None:
        """Remember files that could not be indexed (so an unchanged bad file is not retried)."""
        if not failures:
            return
        with self.transaction() as tx:
            rows = tx.media_rows([rec for rec, _ in failures], time.time())
            for row, (_, reason) in zip(rows, failures):
                row.status, row.error = "failed", reason

    def reuse_media(self, source_id: int, record: MediaRecord, move: bool) -> int:
        """A file whose content (sha256) is already indexed: either the same file moved (``move``:
        the row takes the new path) or a copy (a new row gets copies of the source's vectors)."""
        with self.transaction() as tx:
            s = tx.session
            src = s.get(Media, source_id)
            stale = s.scalars(select(Media).where(Media.path == path_to_text(record.path))).first()
            if stale is not None and stale.id != source_id:
                tx.drop_media_vectors([stale.id])
                s.delete(stale)
                s.flush()
            if move:
                src.path, src.size, src.mtime = path_to_text(record.path), record.size, record.mtime
                return src.id
            copy = Media(path=path_to_text(record.path))
            s.add(copy)
            _fill(copy, record, time.time())
            s.flush()
            copy.width, copy.height = src.width, src.height
            copy.taken_at, copy.orientation = src.taken_at, src.orientation
            # only the whole-image vector is copied: faces/regions carry rows of their own, and
            # the indexer's extractors see the copy as pending and process it
            blobs = s.scalars(select(Vector.embedding)
                              .where(Vector.media_id == src.id, Vector.space == IMAGE_SPACE)).all()
            if blobs:
                tx.add_vectors(IMAGE_SPACE, tx.vectors(IMAGE_SPACE, blobs), [copy.id] * len(blobs))
            return copy.id

    def remove_media(self, media_ids: Sequence[int]) -> int:
        """Delete media rows and all their vectors; returns how many rows went."""
        if not media_ids:
            return 0
        ids = [int(i) for i in media_ids]
        with self.transaction() as tx:
            for chunk in id_chunks(ids):
                tx.drop_media_vectors(chunk)
                tx.session.execute(delete(Media).where(Media.id.in_(chunk)))
        return len(ids)

    def record_devices(self, devices: dict[str, int]) -> int:
        """Remember the device (``st_dev``) each of these files was seen on, in one transaction;
        paths without a row are passed over. Returns how many paths were given."""
        if not devices:
            return 0
        params = [{"p": path_to_text(p), "d": device_to_sql(d)} for p, d in devices.items()]
        table = Media.__table__
        statement = table.update().where(table.c.path == bindparam("p")).values(device=bindparam("d"))
        with self.transaction() as tx:
            for part in chunks(params, 5000):
                tx.session.connection().execute(statement, part)
        return len(params)

    # -- reading ---------------------------------------------------------------------------------
    def media_under(self, roots: Sequence[str]) -> dict[str, MediaState]:
        """Catalog rows whose path is one of ``roots`` or lies below one of them."""
        out: dict[str, MediaState] = {}
        bytewise = self.engine.dialect.name == "sqlite"  # SQLite compares text bytewise (BINARY)
        with Session(self.engine) as s:
            for root in roots:
                root = path_to_text(os.path.abspath(root))
                prefix = root.rstrip(os.sep) + os.sep
                if bytewise:
                    # '/' + 1 == '0': a range scan over the path index; SQLite's LIKE would ignore case
                    upper = prefix[:-1] + chr(ord(os.sep) + 1)
                    below = (Media.path >= prefix) & (Media.path < upper)
                else:
                    # other databases may sort by a locale collation, where ranges are not prefixes;
                    # their LIKE is case-sensitive, so an escaped prefix match is exact
                    below = Media.path.startswith(prefix, autoescape=True)
                query = select(Media).where((Media.path == root) | below)
                for m in s.scalars(query):
                    out[text_to_path(m.path)] = _state(m)
        return out

    def media_by_sha(self, sha256: str) -> list[MediaState]:
        with Session(self.engine) as s:
            rows = s.scalars(select(Media).where(Media.sha256 == sha256, Media.status == "indexed")).all()
            return [_state(m) for m in rows]

    def media_at(self, paths: Sequence[str]) -> dict[str, MediaState]:
        """Catalog rows for exactly these paths (those that have one)."""
        out: dict[str, MediaState] = {}
        wanted = list(dict.fromkeys(path_to_text(p) for p in paths))
        with Session(self.engine) as s:
            for chunk in chunks(wanted):
                for m in s.scalars(select(Media).where(Media.path.in_(chunk))):
                    out[text_to_path(m.path)] = _state(m)
        return out

    def media(self, media_id: int) -> Media | None:
        if not 0 <= int(media_id) < 2**63:  # beyond any SQL integer: no such row
            return None
        with Session(self.engine, expire_on_commit=False) as s:
            row = s.get(Media, media_id)
            if row is not None:
                s.expunge(row)
                row.path = text_to_path(row.path)  # detached: the filesystem name, never written back
            return row

    def media_vectors(self, space: str = IMAGE_SPACE) -> tuple[list[str], np.ndarray]:
        """(paths, (N, D) vectors) of every photo with a vector in ``space``, sorted by path."""
        with Session(self.engine) as s:
            rows = s.execute(select(Media.path, Vector.embedding).join(Vector, Vector.media_id == Media.id)
                             .where(Vector.space == space).order_by(Media.path)).all()
        return [text_to_path(r[0]) for r in rows], vectors_from_blobs([r[1] for r in rows], self._dim(space))

    def media_vector(self, media_id: int, space: str = IMAGE_SPACE) -> np.ndarray | None:
        if not 0 <= int(media_id) < 2**63:  # beyond any SQL integer: no such row
            return None
        with Session(self.engine) as s:
            blob = s.scalars(
                select(Vector.embedding).where(Vector.media_id == media_id, Vector.space == space)
            ).first()
        return None if blob is None else vectors_from_blobs([blob], self._dim(space))[0]

    def stats(self) -> dict:
        with Session(self.engine) as s:
            by_status = dict(s.execute(select(Media.status, func.count()).group_by(Media.status)).all())
            by_space = dict(s.execute(select(Vector.space, func.count()).group_by(Vector.space)).all())
        return {
            "directory": self.directory,
            "database": self.engine.url.render_as_string(hide_password=True),
            "media_indexed": by_status.get("indexed", 0),
            "media_failed": by_status.get("failed", 0),
            "vectors": by_space,
            "models": {sp: self.space_model(sp) for sp in self.spaces()},
        }

    def failures(self) -> list[tuple[str, str]]:
        with Session(self.engine) as s:
            return [(text_to_path(p), e or "") for p, e in s.execute(select(Media.path, Media.error).where(Media.status == "failed"))]

