"""The catalog's read queries, written once as plain SQL, and the two drivers that run them.

Searching needs only a few reads: metadata (the schema version, each space's model), a space's
vector ids and embeddings (to bring an index file level with SQL) and the photos behind vector
ids. Each is one SQL text below, with ``:name`` parameters, which both drivers take as they are:

* :class:`SqliteDriver` runs them through the standard library's ``sqlite3`` on a connection that
  refuses writes (``PRAGMA query_only``). A search on a SQLite catalog then never imports
  SQLAlchemy (0.37 s of a 1.9 s cold query before, benchmarks/RESULTS.md).
* :class:`SqlAlchemyDriver` runs them through ``text()`` on the catalog's engine: every catalog
  opened by :class:`~vsearch.catalog.Catalog` (writers, PostgreSQL) reads through it.

:class:`SqlReads` holds the reads themselves, for the catalog and for its read-only view
(:mod:`vsearch.catalog.reader`) alike. Writes stay on SQLAlchemy (:mod:`vsearch.catalog.rows`).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Iterable, Protocol, Sequence

import numpy as np

from vsearch.catalog.records import IMAGE_SPACE, SearchHit, SyncResult, _duplicates, id_chunks, vectors_from_blobs
from vsearch.errors import CatalogError
from vsearch.fsutil import path_to_text, text_to_path

log = logging.getLogger(__name__)

# The core schema version these queries were written for. A catalog recording another version is
# opened by Catalog (SQLAlchemy), which migrates it or refuses it; tests/test_catalog_reader.py
# fails when vsearch.schema.SCHEMA_VERSION moves on, so that the queries are looked at again.
QUERIES_SCHEMA_VERSION = 2
# Older versions whose tables these queries read the same way (version 2 added media.device,
# which no search reads): such a catalog is searched as it is, in a read-only folder too.
QUERIES_READABLE_VERSIONS = ("1", str(QUERIES_SCHEMA_VERSION))

META_VALUE = "SELECT value FROM meta WHERE key = :key"
META_KEYS_LIKE = "SELECT key FROM meta WHERE key LIKE :pattern"
SPACE_VECTOR_IDS = "SELECT id FROM vectors WHERE space = :space"
SPACE_VECTORS = "SELECT id, embedding FROM vectors WHERE space = :space"
SPACE_VECTORS_WITH_IDS = "SELECT id, embedding FROM vectors WHERE space = :space AND id IN ({ids})"
MEDIA_OF_VECTORS = ("SELECT vectors.id, media.id, media.path FROM vectors JOIN media ON media.id = vectors.media_id "
                    "WHERE vectors.id IN ({ids})")
PHOTO_FACTS = ("SELECT vectors.id, media.id, media.path, media.taken_at, media.mtime FROM vectors "
               "JOIN media ON media.id = vectors.media_id WHERE vectors.space = :space AND media.status = 'indexed'")
STORED_VECTOR_OF_FILE = ("SELECT vectors.embedding FROM media JOIN vectors ON vectors.media_id = media.id "
                         "WHERE media.path = :path AND media.status = 'indexed' AND media.size = :size "
                         "AND media.mtime = :mtime AND vectors.space = :space")


def _in_list(ids: Sequence[int]) -> tuple[str, dict[str, int]]:
    """``(":i0, :i1, ...", {"i0": ..., ...})``: an IN list both drivers bind the same way."""
    names = [f"i{n}" for n in range(len(ids))]
    return ", ".join(f":{n}" for n in names), {n: int(i) for n, i in zip(names, ids)}


class Driver(Protocol):
    def rows(self, sql: str, params: dict | None = None) -> list[tuple]: ...

    def close(self) -> None: ...


class SqliteDriver:
    """Runs the read queries on a SQLite file through ``sqlite3``, never writing.

    One connection in autocommit mode (each statement sees the latest commit; a writer in WAL mode
    never blocks it), guarded by a lock so that threads may share it. The file must exist: the
    connection does not create one."""

    def __init__(self, path: str):
        import sqlite3
        from urllib.parse import quote

        self._sqlite3 = sqlite3
        path = os.path.abspath(path)
        uri = f"file:{quote(path)}?mode=rw"  # rw, not rwc: never creates the file
        try:
            self._conn = self._connect(uri)
        except sqlite3.OperationalError as exc:
            # A WAL database is read through its -shm file, created beside it on first use. In a
            # folder that cannot be written (a read-only mount, `chmod a-w`) and with no writer
            # holding the database open (no -wal file), nothing can change the file: it is read
            # as immutable, without the -shm file. Otherwise the catalog decides, with its message.
            if not _unwritable_and_idle(path):
                raise CatalogError(f"cannot open the catalog database {path} ({exc})") from exc
            try:
                self._conn = self._connect(f"file:{quote(path)}?mode=ro&immutable=1")
            except sqlite3.Error as exc2:
                raise CatalogError(f"cannot open the catalog database {path} ({exc2})") from exc2
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open the catalog database {path} ({exc})") from exc
        self._lock = threading.Lock()

    def _connect(self, uri: str):
        conn = self._sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA query_only=ON")  # a reader: any write is refused by SQLite itself
            conn.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the WAL here, not mid-search
        except BaseException:
            conn.close()
            raise
        return conn

    def rows(self, sql: str, params: dict | None = None) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params or {}).fetchall()
            except self._sqlite3.DatabaseError as exc:
                raise CatalogError(f"cannot read the catalog database ({exc})") from exc

    def close(self) -> None:
        self._conn.close()


def _unwritable_and_idle(db_path: str) -> bool:
    """Whether no process can be writing the SQLite file at ``db_path``: its folder cannot be
    written (so no -wal file can be made) and there is no -wal file with content already."""
    folder = os.path.dirname(db_path)
    try:
        if os.path.getsize(db_path + "-wal") > 0:
            return False
    except OSError:
        pass
    return not os.access(folder, os.W_OK)  # False on a read-only mount or an immutable folder, for root too


class SqlAlchemyDriver:
    """Runs the read queries through ``text()`` on an SQLAlchemy engine (PostgreSQL, writers)."""

    def __init__(self, engine):
        from sqlalchemy import text

        self._engine = engine
        self._text = text

    def rows(self, sql: str, params: dict | None = None) -> list[tuple]:
        with self._engine.connect() as conn:
            return [tuple(r) for r in conn.execute(self._text(sql), params or {})]

    def close(self) -> None:
        pass  # the engine belongs to the catalog, which disposes of it


class SqlReads:
    """The reads of :class:`~vsearch.catalog.Catalog` and of its read-only view (mixed into both):
    metadata, vector ids and embeddings, levelling an index with SQL, photos of vector ids. Each
    runs one query of this module through ``self._sql`` (a driver)."""

    _sql: Driver

    # -- metadata --------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._sql.rows(META_VALUE, {"key": key})
        return rows[0][0] if rows else None

    def space_model(self, space: str = IMAGE_SPACE) -> tuple[str, int] | None:
        """(encoder name, dimension) recorded for a vector space, or None if it is still empty."""
        name = self.get_meta(f"space.{space}.encoder")
        dim = self.get_meta(f"space.{space}.dim")
        return (name, int(dim)) if name and dim else None

    def spaces(self) -> list[str]:
        keys = [r[0] for r in self._sql.rows(META_KEYS_LIKE, {"pattern": "space.%.encoder"})]
        return sorted(k[len("space."):-len(".encoder")] for k in keys)

    def _dim(self, space: str) -> int:
        recorded = self.space_model(space)
        if recorded is None:
            raise CatalogError(f"vector space {space!r} has no model recorded yet")
        return recorded[1]

    # -- vectors ---------------------------------------------------------------------------------
    def _sql_ids(self, space: str) -> np.ndarray:
        return np.asarray([r[0] for r in self._sql.rows(SPACE_VECTOR_IDS, {"space": space})], dtype=np.int64)

    def _load_vectors(self, space: str, ids: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        dim = self._dim(space)
        if ids is None:
            rows = self._sql.rows(SPACE_VECTORS, {"space": space})
        else:
            rows = []
            for chunk in id_chunks(ids):
                placeholders, params = _in_list(chunk)
                rows += self._sql.rows(SPACE_VECTORS_WITH_IDS.format(ids=placeholders), {**params, "space": space})
        return np.asarray([r[0] for r in rows], dtype=np.int64), vectors_from_blobs([r[1] for r in rows], dim)

    def vector_ids(self, space: str = IMAGE_SPACE) -> np.ndarray:
        return self._sql_ids(space)

    def vectors(self, space: str, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of these vector ids from SQL, in no particular order (unknown ids are absent)."""
        return self._load_vectors(space, ids)

    def stored_vector_of_file(self, path: str, size: int, mtime: float, space: str = IMAGE_SPACE) -> np.ndarray | None:
        """The stored vector of the photo at ``path`` (absolute) when the catalog holds it indexed
        with this size and modification time (unchanged since), else None."""
        rows = self._sql.rows(STORED_VECTOR_OF_FILE, {"path": path_to_text(path), "size": int(size),
                                                      "mtime": float(mtime), "space": space})
        return vectors_from_blobs([rows[0][0]], self._dim(space))[0] if rows else None

    def levelled_index(self, space: str, vindex):
        """``vindex`` made to hold exactly the SQL ids of ``space``, in memory (nothing is
        written): ``(index, SyncResult)``. The difference is added and dropped; the index is built
        anew from SQL when it holds an id twice (set arithmetic cannot repair that) or has grown
        past its kind. The catalog keeps the result (and writes it later); the read-only view
        only searches it."""
        if len(_duplicates(vindex.ids())):
            return self.built_index(space), SyncResult(rebuilt=True)
        result = self.level_with_sql(space, vindex)
        if vindex.needs_rebuild(self.ann_threshold):
            result.rebuilt = True
            return self.built_index(space), result
        return vindex, result

    def built_index(self, space: str):
        """A fresh index of ``space`` from the SQL embeddings, of the kind that suits its size."""
        from vsearch.vector_index import VectorIndex  # FAISS: imported when an index is used

        ids, vectors = self._load_vectors(space)
        return VectorIndex.build(self._dim(space), vectors, ids, self.ann_threshold)

    def level_with_sql(self, space: str, vindex) -> SyncResult:
        """Add the SQL vectors ``vindex`` lacks and drop the ids SQL no longer has, in memory
        only (a reader such as the server uses this on its own copy; nothing is written)."""
        sql_ids = np.sort(self._sql_ids(space))
        index_ids = np.sort(vindex.ids())
        result = SyncResult()
        if np.array_equal(sql_ids, index_ids):  # the usual case, answered without set operations
            return result
        missing = np.setdiff1d(sql_ids, index_ids, assume_unique=True)
        extra = np.setdiff1d(index_ids, sql_ids)
        if len(extra):
            result.removed = vindex.remove(extra)
        if len(missing):
            ids, vectors = self._load_vectors(space, missing)
            vindex.add(vectors, ids)
            result.added = len(ids)
        return result

    # -- searching (the catalog and the read-only view alike; ``self.index(space)`` is theirs) ---
    def search_ids(self, queries: np.ndarray, k: int = 10, space: str = IMAGE_SPACE,
                   allowed_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """Raw (scores, vector ids) for each query row; -1 ids mark empty slots. An IVF-PQ index
        (``vsearch build-index --kind ivfpq``) is re-ranked exactly from SQL."""
        from vsearch.ivfpq import search_index  # FAISS: imported when a search runs

        return search_index(self.index(space), queries, k, lambda ids: self.vectors(space, ids), allowed_ids=allowed_ids)

    def search(self, queries: np.ndarray, k: int = 10, space: str = IMAGE_SPACE,
               allowed_ids=None) -> list[list[SearchHit]]:
        """Top-k media for each query vector (rows of ``queries``), best first."""
        scores, ids = self.search_ids(queries, k, space, allowed_ids)
        return self.hits(scores, ids)

    # -- photos of vectors -----------------------------------------------------------------------
    def photo_facts(self, space: str = IMAGE_SPACE) -> list[tuple[int, int, str, str | None, float]]:
        """(vector id, media id, path, taken_at, mtime) of every indexed photo with a vector in
        ``space``: what a search's ``folder:``, ``type:`` and date filters select on."""
        return [(int(v), int(m), text_to_path(p), t, float(mt or 0.0))
                for v, m, p, t, mt in self._sql.rows(PHOTO_FACTS, {"space": space})]

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> list[list[SearchHit]]:
        """Turn (scores, vector ids) from any searcher into :class:`SearchHit` lists via SQL;
        ids whose rows are gone from SQL (or -1, an empty slot) are skipped."""
        wanted = sorted({int(i) for i in np.asarray(ids).ravel() if i >= 0})
        rows: dict[int, tuple[int, str]] = {}
        for chunk in id_chunks(wanted):
            placeholders, params = _in_list(chunk)
            for vid, mid, path in self._sql.rows(MEDIA_OF_VECTORS.format(ids=placeholders), params):
                rows[vid] = (mid, text_to_path(path))
        results = []
        for qscores, qids in zip(scores, ids):
            hits = []
            for score, vid in zip(qscores, qids):
                if vid < 0 or int(vid) not in rows:
                    continue
                mid, path = rows[int(vid)]
                hits.append(SearchHit(mid, path, float(score), len(hits) + 1, int(vid)))
            results.append(hits)
        return results
