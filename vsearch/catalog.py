"""The catalog: SQL metadata and FAISS indexes behind one object that keeps them consistent.

Rules that make it crash-safe:

* SQL is the source of truth. Every change commits to the database first; the in-memory FAISS
  index follows, and :meth:`Catalog.save` writes it to a temporary file that is renamed over the
  old one, so an index file is always complete.
* Database ids are FAISS ids (``add_with_ids``), and embeddings are kept in SQL too. After a crash
  between a commit and a save, the index file lags behind the database; :meth:`Catalog.index`
  notices (it compares the two id sets) and brings the index up to date from SQL before use.
* The encoder name and dimension of every vector space and the schema version are recorded and
  checked when the catalog is opened with a model.
"""
from __future__ import annotations

import errno
import shutil
import logging
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import create_engine, delete, event, func, inspect, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from vsearch.errors import (CatalogBusyError, CatalogError, IndexBuildError, ModelMismatchError, StorageError,
                            StorageFullError)
from vsearch.fsutil import FolderLock, path_to_text, text_to_path
from vsearch.ivfpq import BuildReport, IvfPqParams, build_ivfpq, is_pq, search_reranked
from vsearch.schema import SCHEMA_VERSION, Base, Media, Meta, Vector, migrate
from vsearch.vector_index import ANN_THRESHOLD, VectorIndex

log = logging.getLogger(__name__)

DB_FILENAME = "catalog.sqlite"
LOCK_FILENAME = "writer.lock"
# pg_advisory_lock key of the catalog writer lock (a fixed 63-bit number: "vsearch" in ASCII)
PG_WRITER_LOCK_KEY = 0x76736561726368
IMAGE_SPACE = "image"


@dataclass(frozen=True)
class MediaRecord:
    """What the indexer learned about one file."""

    path: str
    size: int
    mtime: float
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    orientation: int | None = None


@dataclass(frozen=True)
class MediaState:
    """The catalog's view of a file, used by the indexer to decide what changed."""

    id: int
    path: str
    size: int
    mtime: float
    sha256: str | None
    status: str
    error: str | None
    indexed_at: float | None = None  # when this row was last written (merge_shards skips older shards)


@dataclass(frozen=True)
class SearchHit:
    media_id: int
    path: str
    score: float
    rank: int
    vector_id: int


@dataclass(frozen=True)
class VerifyReport:
    """Differences between a space's SQL rows and its index file on disk."""

    space: str
    sql_count: int
    index_count: int
    missing_from_index: tuple[int, ...] = ()
    extra_in_index: tuple[int, ...] = ()
    index_file_missing: bool = False
    duplicated_in_index: tuple[int, ...] = ()  # ids stored more than once in the index file

    @property
    def ok(self) -> bool:
        return not self.missing_from_index and not self.extra_in_index and not self.duplicated_in_index

    @property
    def only_lagging(self) -> bool:
        """The file only lacks ids the database has: what a writer's unsaved work looks like."""
        return not self.extra_in_index and not self.duplicated_in_index


@dataclass
class SyncResult:
    added: int = 0
    removed: int = 0
    rebuilt: bool = False
    details: list[str] = field(default_factory=list)


# attach(session, media_ids) -> [(space, vectors (N, D), vector_ids)], see Catalog.add_media
AttachFn = Callable[[Session, list[int]], list[tuple[str, np.ndarray, list[int]]]]


def _duplicates(ids: np.ndarray) -> tuple[int, ...]:
    values, counts = np.unique(ids, return_counts=True)
    return tuple(int(v) for v in values[counts > 1])


def _to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def _from_blobs(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    if not blobs:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim).copy()


def _state(m: Media) -> MediaState:
    return MediaState(m.id, text_to_path(m.path), m.size, m.mtime, m.sha256, m.status, m.error, m.indexed_at)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")  # readers (search, serve) do not block the indexer
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


_FULL_MARKERS = ("database or disk is full", "no space left on device", "disk full", "could not extend file")


def _is_storage_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return True
    if getattr(exc, "sqlstate", None) == "53100":  # PostgreSQL disk_full
        return True
    text = str(exc).lower()
    return any(m in text for m in _FULL_MARKERS)


def _storage_full_message(where: str, exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"out of space writing {where} ({first}); everything committed before is kept: "
            "free some space and run the same command again")


def _on_db_error(context) -> None:
    """SQLAlchemy ``handle_error`` hook: a full disk becomes one clear :class:`StorageFullError`,
    a disk I/O error one clear :class:`StorageError` (neither is the fault of the rows written)."""
    exc = context.original_exception
    if _is_storage_full(exc):
        raise StorageFullError(_storage_full_message("the database", exc))
    if "disk i/o error" in str(exc).lower():
        raise StorageError(f"the disk failed while writing the database ({exc}); everything committed "
                           "before is kept: check the disk and run the same command again")


def catalog_exists(directory: str | os.PathLike, url: str | None = None) -> bool:
    """Whether a catalog is already stored at ``directory`` (its SQLite file, or for another
    database the folder of its index files)."""
    directory = os.path.abspath(os.fspath(directory))
    if url is None:
        return os.path.exists(os.path.join(directory, DB_FILENAME))
    return os.path.isdir(directory)


def remove_empty_catalog(directory: str | os.PathLike, url: str | None = None) -> bool:
    """Delete a catalog that holds nothing (no media, no vectors), such as the one a failed first
    ``vsearch index`` created, so that it does not pass for a real, empty collection. Only the
    catalog's own files go, and the folder if that leaves it empty; a catalog another process is
    writing to is left alone. Returns whether anything was removed."""
    directory = os.path.abspath(os.fspath(directory))
    if not os.path.isdir(directory):
        return False
    lock = FolderLock(os.path.join(directory, LOCK_FILENAME))
    try:
        if not lock.try_acquire():
            return False
    except OSError:
        return False
    try:
        engine = create_engine(url or f"sqlite:///{os.path.join(directory, DB_FILENAME)}", future=True)
        try:
            with engine.connect() as conn:
                if inspect(conn).has_table("media"):
                    if conn.execute(select(func.count()).select_from(Media)).scalar() or \
                            conn.execute(select(func.count()).select_from(Vector)).scalar():
                        return False
        finally:
            engine.dispose()
        names = [f"{DB_FILENAME}{x}" for x in ("", "-wal", "-shm", "-journal")] if url is None else []
        names += [n for n in os.listdir(directory) if n.endswith(".faiss")]
        for name in names:
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass
        os.unlink(lock.path)
    finally:
        lock.release()
    try:
        os.rmdir(directory)
    except OSError:
        pass  # other files of the user's: the folder stays
    return True


def _private_folder(directory: str) -> None:
    """Create the catalog folder readable by its owner only (it holds face embeddings)."""
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)  # makedirs' mode is filtered by the umask


def _private_file(path: str) -> None:
    """Create ``path`` as 0600 if missing; tighten an existing file of ours that others can read.
    SQLite gives its -wal and -shm files the database file's permissions."""
    if not os.path.exists(path):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    try:
        st = os.stat(path)
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(path, 0o600)
    except OSError:
        pass


class Catalog:
    """SQL + FAISS for one collection. ``directory`` holds the index files (and the SQLite file
    unless ``url`` points at another database such as PostgreSQL).

    One writer at a time: :meth:`lock_for_writing` takes a lock file in ``directory`` (and, on
    PostgreSQL, an advisory lock in the database) that the indexer holds for its whole run.
    Readers (search, serve) never take it."""

    def __init__(self, directory: str | os.PathLike, url: str | None = None, create: bool = True,
                 ann_threshold: int = ANN_THRESHOLD):
        self.directory = os.path.abspath(os.fspath(directory))
        db_path = os.path.join(self.directory, DB_FILENAME)
        if not create and url is None and not os.path.exists(db_path):
            raise CatalogError(
                f"no catalog at {self.directory}: run `vsearch index PATH --db {self.directory}` first"
            )
        if not create and url is not None and not os.path.isdir(self.directory):
            raise CatalogError(
                f"no catalog folder at {self.directory}: run `vsearch index PATH --db {self.directory}` first"
            )
        _private_folder(self.directory)
        if url is None:
            _private_file(db_path)
        self.url = url or f"sqlite:///{db_path}"
        self.ann_threshold = ann_threshold
        self.engine: Engine = create_engine(self.url, future=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        event.listen(self.engine, "handle_error", _on_db_error)
        self._indexes: dict[str, VectorIndex] = {}
        self._dirty: set[str] = set()
        self._writer_lock = FolderLock(os.path.join(self.directory, LOCK_FILENAME))
        self._pg_lock_conn = None
        self._init_schema()

    # -- one writer at a time --------------------------------------------------------------------
    @property
    def is_writer(self) -> bool:
        return self._writer_lock.held

    def writer(self) -> str | None:
        """Who holds the writer lock (pid and command), or None when no process is writing."""
        return self._writer_lock.holder()

    def lock_for_writing(self, wait: bool = False, on_wait: Callable[[str], None] | None = None,
                         poll_seconds: float = 0.5) -> None:
        """Become the catalog's only writer until :meth:`release_writer` or :meth:`close`.

        With ``wait`` False a busy catalog raises :class:`CatalogBusyError` naming the holder;
        with ``wait`` True it waits (``on_wait(holder)`` is called once, to tell the user)."""
        if self._writer_lock.held:
            return
        told = False
        while not self._try_lock():
            holder = self._writer_lock.holder() or "another process"
            if not wait:
                raise CatalogBusyError(
                    f"another vsearch process is writing to the catalog at {self.directory} ({holder}); "
                    "wait for it to finish, or pass --wait to start when it does"
                )
            if not told and on_wait is not None:
                on_wait(holder)
                told = True
            time.sleep(poll_seconds)
        if self.engine.dialect.name == "postgresql":
            try:
                self._lock_postgres(wait, on_wait, told, poll_seconds)
            except BaseException:
                self._writer_lock.release()
                raise

    def _try_lock(self) -> bool:
        try:
            return self._writer_lock.try_acquire()
        except OSError as exc:
            raise CatalogError(f"cannot write to the catalog at {self.directory}: "
                               f"{exc.strerror or exc} ({self._writer_lock.path})") from None

    def _lock_postgres(self, wait, on_wait, told, poll_seconds) -> None:
        """The same database may serve catalogs in several folders: lock it too."""
        conn = self.engine.connect()
        while not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({PG_WRITER_LOCK_KEY})").scalar():
            conn.rollback()
            if not wait:
                conn.close()
                raise CatalogBusyError(
                    f"another vsearch process is writing to the database {self.engine.url.render_as_string(hide_password=True)}"
                    " (PostgreSQL advisory lock held); wait for it to finish, or pass --wait"
                )
            if not told and on_wait is not None:
                on_wait("a writer on the same PostgreSQL database")
                told = True
            time.sleep(poll_seconds)
        conn.commit()  # the session-level lock outlives the transaction
        self._pg_lock_conn = conn

    def release_writer(self) -> None:
        if self._pg_lock_conn is not None:
            try:
                self._pg_lock_conn.exec_driver_sql(f"SELECT pg_advisory_unlock({PG_WRITER_LOCK_KEY})")
                self._pg_lock_conn.commit()
            finally:
                self._pg_lock_conn.close()
                self._pg_lock_conn = None
        self._writer_lock.release()

    @contextmanager
    def writing(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> Iterator["Catalog"]:
        """Hold the writer lock for a block; a lock already held (by the caller) is left held."""
        held = self.is_writer
        self.lock_for_writing(wait, on_wait)
        try:
            yield self
        finally:
            if not held:
                self.release_writer()

    # -- schema and metadata ---------------------------------------------------------------------
    def _init_schema(self) -> None:
        with self.engine.begin() as conn:
            if not inspect(conn).has_table("meta"):
                Base.metadata.create_all(conn)
                conn.execute(Meta.__table__.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
                return
            row = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar()
            version = int(row or 0)
            if version > SCHEMA_VERSION:
                raise CatalogError(
                    f"catalog schema version {version} is newer than this vsearch understands "
                    f"({SCHEMA_VERSION}); upgrade vsearch"
                )
            if version < SCHEMA_VERSION:
                Base.metadata.create_all(conn)  # new tables; column changes are in migrations
                migrate(conn, version)
                conn.execute(update(Meta).where(Meta.key == "schema_version").values(value=str(SCHEMA_VERSION)))
            else:
                Base.metadata.create_all(conn)  # tables added by later features, idempotent

    def get_meta(self, key: str) -> str | None:
        with Session(self.engine) as s:
            row = s.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.merge(Meta(key=key, value=value))

    def space_model(self, space: str = IMAGE_SPACE) -> tuple[str, int] | None:
        """(encoder name, dimension) recorded for a vector space, or None if it is still empty."""
        name = self.get_meta(f"space.{space}.encoder")
        dim = self.get_meta(f"space.{space}.dim")
        return (name, int(dim)) if name and dim else None

    def bind_space(self, space: str, encoder_name: str, dim: int) -> None:
        """Record which model fills a space, or refuse a different one."""
        recorded = self.space_model(space)
        if recorded is None:
            self.set_meta(f"space.{space}.encoder", encoder_name)
            self.set_meta(f"space.{space}.dim", str(dim))
            return
        if recorded != (encoder_name, dim):
            raise ModelMismatchError(
                f"this catalog's {space!r} vectors were made with {recorded[0]} ({recorded[1]}-d); "
                f"it cannot be queried or extended with {encoder_name} ({dim}-d). Use --model "
                f"{recorded[0]} or a new --db"
            )

    def spaces(self) -> list[str]:
        with Session(self.engine) as s:
            keys = s.scalars(select(Meta.key).where(Meta.key.like("space.%.encoder"))).all()
        return sorted(k[len("space."):-len(".encoder")] for k in keys)

    # -- vector indexes --------------------------------------------------------------------------
    def index_path(self, space: str) -> str:
        return os.path.join(self.directory, f"{space}.faiss")

    def _dim(self, space: str) -> int:
        recorded = self.space_model(space)
        if recorded is None:
            raise CatalogError(f"vector space {space!r} has no model recorded yet")
        return recorded[1]

    def _sql_ids(self, space: str) -> np.ndarray:
        with Session(self.engine) as s:
            ids = s.scalars(select(Vector.id).where(Vector.space == space)).all()
        return np.asarray(ids, dtype=np.int64)

    def _load_vectors(self, space: str, ids: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        dim = self._dim(space)
        with Session(self.engine) as s:
            query = select(Vector.id, Vector.embedding).where(Vector.space == space)
            if ids is not None:
                wanted = [int(i) for i in ids]
                rows = []
                for start in range(0, len(wanted), 900):  # stay under SQLite's variable limit
                    rows += s.execute(query.where(Vector.id.in_(wanted[start : start + 900]))).all()
            else:
                rows = s.execute(query).all()
        ids_out = np.asarray([r[0] for r in rows], dtype=np.int64)
        return ids_out, _from_blobs([r[1] for r in rows], dim)

    def vector_count(self, space: str = IMAGE_SPACE) -> int:
        with Session(self.engine) as s:
            return int(s.scalar(select(func.count()).select_from(Vector).where(Vector.space == space)) or 0)

    def vector_ids(self, space: str = IMAGE_SPACE) -> np.ndarray:
        return self._sql_ids(space)

    def forget_index(self, space: str) -> None:
        """Drop the loaded copy of a space's index (its file was replaced); the next use reloads it."""
        self._indexes.pop(space, None)
        self._dirty.discard(space)

    def vectors(self, space: str, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of these vector ids from SQL, in no particular order (unknown ids are absent)."""
        return self._load_vectors(space, ids)

    def iter_vectors(self, space: str = IMAGE_SPACE, chunk_size: int = 100_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every (ids, vectors) of a space from SQL, in id order, ``chunk_size`` rows at a time
        (keyset pagination, so memory stays at one chunk however large the space is)."""
        dim = self._dim(space)
        last = -1
        while True:
            with Session(self.engine) as s:
                rows = s.execute(
                    select(Vector.id, Vector.embedding).where(Vector.space == space, Vector.id > last)
                    .order_by(Vector.id).limit(chunk_size)
                ).all()
            if not rows:
                return
            last = rows[-1][0]
            yield np.asarray([r[0] for r in rows], dtype=np.int64), _from_blobs([r[1] for r in rows], dim)

    def index(self, space: str = IMAGE_SPACE) -> VectorIndex:
        """The space's index, loaded from disk and brought level with SQL if it lags behind."""
        if space not in self._indexes:
            dim = self._dim(space)
            path = self.index_path(space)
            vindex = None
            if os.path.exists(path):
                try:
                    vindex = VectorIndex.load(path, dim)
                except Exception as exc:  # unreadable or wrong-size file: rebuild from SQL
                    log.warning("index file %s unusable (%s); rebuilding from the database", path, exc)
            if vindex is None:
                vindex = VectorIndex(dim)
            self._indexes[space] = vindex
            result = self.sync(space)
            if result.added or result.removed or result.rebuilt:
                log.info("index %s brought level with the database: %s", space, result)
        return self._indexes[space]

    def sync(self, space: str) -> SyncResult:
        """Make the in-memory index hold exactly the SQL ids of ``space`` (rebuilding if its kind
        no longer suits the size). Marks it dirty when anything changed."""
        vindex = self._indexes[space] if space in self._indexes else self.index(space)
        if len(_duplicates(vindex.ids())):  # set arithmetic cannot repair an id stored twice
            self.rebuild(space)
            return SyncResult(rebuilt=True)
        result = self.level_with_sql(space, vindex)
        if vindex.needs_rebuild(self.ann_threshold):
            self.rebuild(space)
            result.rebuilt = True
        if result.added or result.removed or result.rebuilt:
            self._dirty.add(space)
        return result

    def level_with_sql(self, space: str, vindex: VectorIndex) -> SyncResult:
        """Add the SQL vectors ``vindex`` lacks and drop the ids SQL no longer has, in memory
        only (a reader such as the server uses this on its own copy; nothing is written)."""
        sql_ids = self._sql_ids(space)
        index_ids = vindex.ids()
        missing = np.setdiff1d(sql_ids, index_ids, assume_unique=True)
        extra = np.setdiff1d(index_ids, sql_ids)
        result = SyncResult()
        if len(extra):
            result.removed = vindex.remove(extra)
        if len(missing):
            ids, vectors = self._load_vectors(space, missing)
            vindex.add(vectors, ids)
            result.added = len(ids)
        return result

    def sql_fingerprint(self, space: str = IMAGE_SPACE) -> tuple[int, int]:
        """(count, largest id) of a space's vectors: a cheap way to notice that SQL moved on."""
        with Session(self.engine) as s:
            n, top = s.execute(select(func.count(), func.max(Vector.id)).where(Vector.space == space)).one()
        return int(n or 0), int(top if top is not None else -1)

    def rebuild(self, space: str) -> VectorIndex:
        """A fresh index of the kind that suits the space's size, from the SQL embeddings."""
        ids, vectors = self._load_vectors(space)
        self._indexes[space] = VectorIndex.build(self._dim(space), vectors, ids, self.ann_threshold)
        self._dirty.add(space)
        return self._indexes[space]

    def save(self) -> None:
        """Write every changed index atomically (temporary file + rename)."""
        for space in sorted(self._dirty):
            vindex = self._indexes.get(space)
            if vindex is not None:
                if vindex.needs_rebuild(self.ann_threshold):
                    vindex = self.rebuild(space)
                try:
                    vindex.save(self.index_path(space))
                except (OSError, RuntimeError) as exc:  # FAISS reports a failed write as RuntimeError
                    if _is_storage_full(exc) or shutil.disk_usage(self.directory).free < 64 << 20:
                        raise StorageFullError(_storage_full_message(self.index_path(space), exc)) from None
                    raise
        self._dirty.clear()

    # -- IVF-PQ (vsearch.ivfpq builds it; the catalog feeds it SQL vectors and installs it) --------
    def build_ivfpq(self, space: str = IMAGE_SPACE, m: int | None = None, nlist: int | None = None,
                    nbits: int = 8, sample_size: int | None = None, part_size: int = 500_000,
                    ondisk_path: str | None = None, seed: int = 1234) -> BuildReport:
        """Build an IVF-PQ over a space (ids = vector ids), ``part_size`` vectors per part.

        Without ``ondisk_path`` it is installed as the space's index file, replacing the exact/IVF
        one: the catalog then re-ranks its searches exactly, keeps adding and removing vectors in it,
        and replaces it by its default kind only when the space grows 4x
        (``vsearch.vector_index.RETRAIN_GROWTH``) or shrinks below half the ANN threshold, so build
        again after large merges. With ``ondisk_path`` the index (lists memory-mapped) is written
        there for a server to load with :func:`vsearch.ivfpq.load_ondisk`, and the catalog is left
        as it is.
        """
        if ondisk_path is None and space != IMAGE_SPACE:
            # faces and regions search their index files directly, without the exact re-ranking
            # that makes PQ codes usable: only the image space may hold an IVF-PQ
            raise IndexBuildError(f"an IVF-PQ can replace the index of the 'image' space only, not {space!r} "
                                  "(use --ondisk to write one for another space)")
        recorded = self.space_model(space)
        if recorded is None:
            raise IndexBuildError(f"vector space {space!r} is empty: index some photos first")
        dim = recorded[1]
        n = self.vector_count(space)
        if ondisk_path is None and n < self.ann_threshold / 2:
            raise IndexBuildError(
                f"{space!r} has {n} vectors: below {self.ann_threshold // 2} the catalog uses its exact index "
                "(fast at that size) and would replace an IVF-PQ at once"
            )
        try:
            params = IvfPqParams.for_size(n, dim, m=m, nlist=nlist, nbits=nbits)
        except ValueError as exc:
            raise IndexBuildError(str(exc)) from None
        if n < max(params.nlist, 2 ** params.nbits):
            raise IndexBuildError(f"{n} vectors are too few to train IVF-PQ ({params.nlist} lists, "
                                  f"{2 ** params.nbits} centroids per codebook)")
        report = build_ivfpq(lambda: self.iter_vectors(space, part_size), n, dim, params,
                             sample_size=sample_size, ondisk_path=ondisk_path, seed=seed)
        if ondisk_path is None:
            self.install_index(space, report.index)
        return report

    def install_index(self, space: str, index) -> None:
        """Make the FAISS ``index`` the space's index file (atomic replace), then load it, which
        brings it level with SQL (vectors added or removed while it was built), and save."""
        VectorIndex(index.d, index).save(self.index_path(space))
        self.forget_index(space)
        self.index(space)
        self.save()

    def recall_against_exact(self, space: str = IMAGE_SPACE, n_queries: int = 200, k: int = 10,
                             seed: int = 0, chunk_size: int = 100_000) -> float:
        """Recall@k of the catalog's own search (whatever index it has) against exact search, with
        ``n_queries`` of the space's stored vectors, chosen at random, as queries. Each query's own
        vector is left out of both lists (it would be an easy hit). Exact search is a brute-force
        pass over the SQL vectors, one chunk at a time."""
        all_ids = self.vector_ids(space)
        if len(all_ids) <= k:
            raise ValueError(f"need more than {k} vectors to measure Recall@{k}")
        picked = np.random.default_rng(seed).choice(all_ids, size=min(n_queries, len(all_ids)), replace=False)
        qids, queries = self.vectors(space, picked)
        best_s = np.full((len(qids), k + 1), -np.inf, np.float32)
        best_i = np.full((len(qids), k + 1), -1, np.int64)
        for ids, vectors in self.iter_vectors(space, chunk_size):  # running exact top-(k+1)
            s = np.concatenate([best_s, queries @ vectors.T], axis=1)
            i = np.concatenate([best_i, np.broadcast_to(ids, (len(qids), len(ids)))], axis=1)
            top = np.argsort(-s, axis=1, kind="stable")[:, : k + 1]
            best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
        _, approx = self.search_ids(queries, k + 1, space)
        hits = 0
        for qid, want, got in zip(qids, best_i, approx):
            want = [int(x) for x in want if x != qid][:k]
            got = [int(x) for x in got if x != qid and x >= 0][:k]
            hits += len(set(want) & set(got))
        return hits / (k * len(qids))

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

    def _index_add(self, space: str, vectors: np.ndarray, ids: Sequence[int]) -> None:
        self._index_apply({}, [(space, vectors, ids)])

    def _index_remove(self, by_space: dict[str, list[int]]) -> None:
        self._index_apply(by_space, [])

    def _index_apply(self, removed: dict[str, list[int]],
                     added: Sequence[tuple[str, np.ndarray, Sequence[int]]]) -> None:
        """Bring the indexes level with one committed transaction. A space not loaded yet is
        loaded instead: loading syncs from SQL, which already reflects the *whole* transaction
        (applying the changes on top would add ids twice), and save() only writes loaded indexes
        (skipping the space would leave its file stale)."""
        touched = dict.fromkeys([*(sp for sp, ids in removed.items() if len(ids)), *(sp for sp, _, _ in added)])
        for space in touched:
            if space not in self._indexes:
                self.index(space)
            else:
                if removed.get(space):
                    self._indexes[space].remove(removed[space])
                for sp, vectors, ids in added:
                    if sp == space and len(ids):
                        self._indexes[space].add(vectors, ids)
            self._dirty.add(space)

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

    def search_ids(self, queries: np.ndarray, k: int = 10, space: str = IMAGE_SPACE,
                   allowed_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """Raw (scores, vector ids) for each query row; -1 ids mark empty slots."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        vindex = self.index(space)
        if is_pq(vindex.index):  # lossy codes (vsearch build-index --kind ivfpq): exact re-rank from SQL
            return search_reranked(vindex, queries, k, lambda ids: self.vectors(space, ids), allowed_ids=allowed_ids)
        return vindex.search(queries, k, allowed_ids=allowed_ids)

    def search(self, queries: np.ndarray, k: int = 10, space: str = IMAGE_SPACE,
               allowed_ids=None) -> list[list[SearchHit]]:
        """Top-k media for each query vector (rows of ``queries``), best first."""
        scores, ids = self.search_ids(queries, k, space, allowed_ids)
        return self.hits(scores, ids)

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> list[list[SearchHit]]:
        """Turn (scores, vector ids) from any searcher into :class:`SearchHit` lists via SQL."""
        wanted = sorted({int(i) for i in ids.ravel() if i >= 0})
        with Session(self.engine) as s:
            rows = {}
            for start in range(0, len(wanted), 900):
                chunk = wanted[start : start + 900]
                for vid, mid, path in s.execute(
                    select(Vector.id, Media.id, Media.path).join(Media, Media.id == Vector.media_id).where(Vector.id.in_(chunk))
                ):
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

    # -- consistency -----------------------------------------------------------------------------
    def verify(self) -> list[VerifyReport]:
        """Compare each space's SQL ids with its index *file* (not the in-memory copy)."""
        reports = []
        for space in self.spaces():
            sql_ids = self._sql_ids(space)
            path = self.index_path(space)
            exists = os.path.exists(path)
            try:
                file_ids = VectorIndex.load(path, self._dim(space)).ids() if exists else np.zeros(0, np.int64)
            except Exception:
                file_ids, exists = np.zeros(0, np.int64), False
            reports.append(VerifyReport(
                space=space,
                sql_count=len(sql_ids),
                index_count=len(file_ids),
                missing_from_index=tuple(int(i) for i in np.setdiff1d(sql_ids, file_ids)),
                extra_in_index=tuple(int(i) for i in np.setdiff1d(file_ids, sql_ids)),
                index_file_missing=not exists and len(sql_ids) > 0,
                duplicated_in_index=_duplicates(file_ids),
            ))
        return reports

    def repair(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> None:
        """Bring every index file level with SQL and write it (as the catalog's only writer: an
        index run in progress would overwrite the repaired file with its own at its next save)."""
        with self.writing(wait, on_wait):
            for space in self.spaces():
                self._indexes.pop(space, None)
                self.index(space)  # load + sync
                self._dirty.add(space)
            self.save()

    def close(self) -> None:
        try:
            self.save()
        finally:
            self.release_writer()
            self.engine.dispose()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
