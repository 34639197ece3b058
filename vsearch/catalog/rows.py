"""The SQL side of the catalog: media rows and their vectors, written in one transaction each and
then handed to the indexes; and reading them back (paths, states, vectors, search hits)."""
from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Sequence

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from vsearch.catalog.records import (IMAGE_SPACE, AttachFn, MediaRecord, MediaState, SearchHit, _from_blobs, _state,
                                     _to_blob)
from vsearch.fsutil import path_to_text, text_to_path
from vsearch.schema import Media, Vector


class MediaRows:
    """The media-and-vector rows of :class:`~vsearch.catalog.Catalog` (mixed into it)."""

    # -- writing ---------------------------------------------------------------------------------
    def add_vectors(self, space: str, vectors: np.ndarray, media_ids: Sequence[int | None]) -> list[int]:
        """Insert vectors not tied to an indexing run (enrolled faces, captions), commit, index."""
        with Session(self.engine) as s, s.begin():
            ids = self.new_vector_rows(s, space, vectors, media_ids)
        self._index_add(space, vectors, ids)
        return ids

    def remove_vectors(self, space: str, vector_ids: Sequence[int]) -> int:
        """Delete vector rows (and, by foreign-key cascade, rows that hang off them)."""
        ids = [int(i) for i in vector_ids]
        with Session(self.engine) as s, s.begin():
            for start in range(0, len(ids), 900):
                s.execute(delete(Vector).where(Vector.space == space, Vector.id.in_(ids[start : start + 900])))
        self._index_remove({space: ids})
        return len(ids)

    def add_media(self, records: Sequence[MediaRecord], vectors: np.ndarray,
                  space: str = IMAGE_SPACE, attach: "AttachFn | None" = None) -> list[int]:
        """Insert (or replace, when a path is re-indexed) media rows with their vectors, in one
        transaction. Returns the media ids.

        ``attach(session, media_ids)`` may add rows of its own (faces, regions) in the same
        transaction; it returns the vectors it added as ``[(space, vectors, vector_ids)]`` so that
        the indexes follow once the transaction has committed."""
        if len(records) != len(vectors):
            raise ValueError("one vector per record")
        now = time.time()
        removed: dict[str, list[int]] = defaultdict(list)
        with Session(self.engine) as s, s.begin():
            stored = [path_to_text(r.path) for r in records]
            existing = {m.path: m for m in s.scalars(select(Media).where(Media.path.in_(stored)))}
            media_rows = []
            for rec, text in zip(records, stored):
                row = existing.get(text)
                if row is None:
                    row = Media(path=text)
                    s.add(row)
                else:  # changed file: its old vectors (all spaces) go
                    self._drop_vectors(s, [row.id], removed)
                self._fill(row, rec, now)
                media_rows.append(row)
            s.flush()
            media_ids = [m.id for m in media_rows]
            vector_rows = [Vector(space=space, media_id=m, embedding=_to_blob(v)) for v, m in zip(vectors, media_ids)]
            s.add_all(vector_rows)
            s.flush()
            vector_ids = [v.id for v in vector_rows]
            attached = attach(s, media_ids) if attach is not None else []
        self._index_apply(removed, [(space, vectors, vector_ids), *attached])
        return media_ids

    def attach(self, media_ids: Sequence[int], attach: "AttachFn") -> None:
        """Run ``attach`` for media already in the catalog (e.g. faces found in photos indexed
        before ``--faces`` was used), in one transaction, then update the indexes."""
        with Session(self.engine) as s, s.begin():
            attached = attach(s, list(media_ids))
        self._index_apply({}, attached)

    def new_vector_rows(self, session: Session, space: str, vectors: np.ndarray,
                        media_ids: Sequence[int | None]) -> list[int]:
        """Insert vector rows inside the caller's transaction; returns their ids (= FAISS ids).
        The caller hands ``(space, vectors, ids)`` back from its attach function."""
        rows = [Vector(space=space, media_id=m, embedding=_to_blob(v)) for v, m in zip(vectors, media_ids)]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]

    @staticmethod
    def _drop_vectors(session: Session, media_ids: Sequence[int], removed: dict[str, list[int]]) -> None:
        """Delete every vector of these media inside ``session``, noting the ids per space so the
        indexes can follow after the commit."""
        for vid, vspace in session.execute(select(Vector.id, Vector.space).where(Vector.media_id.in_(media_ids))):
            removed[vspace].append(vid)
        session.execute(delete(Vector).where(Vector.media_id.in_(media_ids)))

    @staticmethod
    def _fill(row: Media, rec: MediaRecord, now: float) -> None:
        row.size, row.mtime, row.sha256 = rec.size, rec.mtime, rec.sha256
        row.width, row.height = rec.width, rec.height
        row.taken_at, row.orientation = rec.taken_at, rec.orientation
        row.status, row.error, row.indexed_at = "indexed", None, now

    def record_failures(self, failures: Sequence[tuple[MediaRecord, str]]) -> None:
        """Remember files that could not be indexed (so an unchanged bad file is not retried)."""
        if not failures:
            return
        now = time.time()
        removed: dict[str, list[int]] = defaultdict(list)
        with Session(self.engine) as s, s.begin():
            stored = [path_to_text(r.path) for r, _ in failures]
            existing = {m.path: m for m in s.scalars(select(Media).where(Media.path.in_(stored)))}
            for (rec, reason), text in zip(failures, stored):
                row = existing.get(text)
                if row is None:
                    row = Media(path=text)
                    s.add(row)
                else:
                    self._drop_vectors(s, [row.id], removed)
                self._fill(row, rec, now)
                row.status, row.error = "failed", reason
        self._index_remove(removed)

    def reuse_media(self, source_id: int, record: MediaRecord, move: bool) -> int:
        """A file whose content (sha256) is already indexed: either the same file moved (``move``:
        the row takes the new path) or a copy (a new row gets copies of the source's vectors)."""
        with Session(self.engine) as s, s.begin():
            src = s.get(Media, source_id)
            stale = s.scalars(select(Media).where(Media.path == path_to_text(record.path))).first()
            removed: dict[str, list[int]] = defaultdict(list)
            if stale is not None and stale.id != source_id:
                self._drop_vectors(s, [stale.id], removed)
                s.delete(stale)
                s.flush()
            if move:
                src.path, src.size, src.mtime = path_to_text(record.path), record.size, record.mtime
                return_id, added = src.id, []
            else:
                copy = Media(path=path_to_text(record.path))
                s.add(copy)
                self._fill(copy, record, time.time())
                copy.width, copy.height = src.width, src.height
                copy.taken_at, copy.orientation = src.taken_at, src.orientation
                s.flush()
                added = []
                # only the whole-image vector is copied: faces/regions carry rows of their own,
                # and the indexer's extractors see the copy as pending and process it
                for v in s.scalars(select(Vector).where(Vector.media_id == src.id, Vector.space == IMAGE_SPACE)).all():
                    nv = Vector(space=v.space, media_id=copy.id, embedding=v.embedding)
                    s.add(nv)
                    added.append(nv)
                s.flush()
                added = [(v.space, v.id, v.embedding) for v in added]
                return_id = copy.id
        self._index_apply(removed, [(space, _from_blobs([blob], self._dim(space)), [vid]) for space, vid, blob in added])
        return return_id

    def remove_media(self, media_ids: Sequence[int]) -> int:
        """Delete media rows and all their vectors; returns how many rows went."""
        if not media_ids:
            return 0
        removed: dict[str, list[int]] = defaultdict(list)
        ids = [int(i) for i in media_ids]
        with Session(self.engine) as s, s.begin():
            for start in range(0, len(ids), 900):
                chunk = ids[start : start + 900]
                self._drop_vectors(s, chunk, removed)
                s.execute(delete(Media).where(Media.id.in_(chunk)))
        self._index_remove(removed)
        return len(ids)

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
            for start in range(0, len(wanted), 900):  # stay under SQLite's variable limit
                for m in s.scalars(select(Media).where(Media.path.in_(wanted[start : start + 900]))):
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
        return [text_to_path(r[0]) for r in rows], _from_blobs([r[1] for r in rows], self._dim(space))

    def media_vector(self, media_id: int, space: str = IMAGE_SPACE) -> np.ndarray | None:
        if not 0 <= int(media_id) < 2**63:  # beyond any SQL integer: no such row
            return None
        with Session(self.engine) as s:
            blob = s.scalars(
                select(Vector.embedding).where(Vector.media_id == media_id, Vector.space == space)
            ).first()
        return None if blob is None else _from_blobs([blob], self._dim(space))[0]

    def search(self, queries: np.ndarray, k: int = 10, space: str = IMAGE_SPACE,
               allowed_ids=None) -> list[list[SearchHit]]:
        """Top-k media for each query vector (rows of ``queries``), best first."""
        scores, ids = self.search_ids(queries, k, space, allowed_ids)
        return self.hits(scores, ids)

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
