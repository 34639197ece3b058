"""The :class:`Catalog` object: opening the database and index folder, the schema and metadata,
and the parts (writer lock, indexes, rows, consistency) it is made of."""
from __future__ import annotations

import os

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from vsearch.catalog.consistency import Consistency
from vsearch.catalog.indexes import VectorIndexes
from vsearch.catalog.locking import WriterLock
from vsearch.catalog.migrate import upgrade_schema
from vsearch.catalog.queries import SqlAlchemyDriver, SqlReads
from vsearch.catalog.rows import MediaRows
from vsearch.catalog.transaction import Transactions
from vsearch.catalog.storage import (DB_FILENAME, LOCK_FILENAME, _on_db_error, _private_file, _private_folder,
                                     _sqlite_pragmas)
from vsearch.errors import CatalogError, ModelMismatchError
from vsearch.fsutil import FolderLock
from vsearch.schema import Meta
from vsearch.vector_index import ANN_THRESHOLD, VectorIndex


def _open_failure(where: str, exc: DBAPIError) -> str:
    """The one line for a catalog database that cannot be opened, with what to do about it."""
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None and str(exc.orig).strip() else type(exc).__name__
    message = f"cannot open the catalog database {where} ({reason})"
    if where.endswith(DB_FILENAME):
        folder = os.path.dirname(where)
        if "not a database" in reason or "malformed" in reason:
            return message + ": it is not a vsearch catalog or it is damaged; it was left as it is"
        if "unable to open" in reason or "readonly" in reason or "read-only" in reason:
            if not os.access(folder, os.W_OK):  # also False on a read-only mount or an immutable folder, for root too
                return (f"{message}: the folder {folder} is read-only; `vsearch search` still reads it, "
                        "other commands need to write there")
    return message


class Catalog(WriterLock, VectorIndexes, MediaRows, Transactions, Consistency, SqlReads):
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
        if not create and url is None and os.path.getsize(db_path) == 0:
            # a truncated file (or a first run that stopped before its tables): making fresh
            # tables in it would answer "no results" for a collection whose index files remain
            raise CatalogError(
                f"the catalog database {db_path} is empty (0 bytes): it was truncated or never finished; "
                f"restore it from a backup, or run `vsearch index PATH --db {self.directory}` to build it again"
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
        self._sql = SqlAlchemyDriver(self.engine)  # the read queries (vsearch.catalog.queries)
        self._indexes: dict[str, VectorIndex] = {}
        self._dirty: set[str] = set()
        self._writer_lock = FolderLock(os.path.join(self.directory, LOCK_FILENAME))
        self._pg_lock_conn = None
        try:
            self._init_schema()
        except DBAPIError as exc:  # the file cannot be opened or is no database: one line naming it
            self.engine.dispose()
            raise CatalogError(_open_failure(db_path if url is None else self.engine.url.render_as_string(hide_password=True), exc)) from exc

    # -- schema and metadata ---------------------------------------------------------------------
    def _init_schema(self) -> None:
        # the core tables and every feature's, checked against their recorded versions and
        # migrated if older, in one transaction (vsearch.catalog.migrate)
        upgrade_schema(self.engine)

    def set_meta(self, key: str, value: str) -> None:
        with Session(self.engine) as s, s.begin():
            s.merge(Meta(key=key, value=value))

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

    def close(self, save: bool = True) -> None:
        """Release the writer lock and the database connections; with ``save``, first write the
        changed indexes (see :meth:`_save_on_close`). ``save=False`` is for processes that only
        read and leave every file as it is."""
        try:
            if save:
                self._save_on_close()
        finally:
            self.release_writer()
            self.engine.dispose()

    def _save_on_close(self) -> None:
        """Write the changed indexes: always for the writer; for a reader (a search that levelled
        a lagging index in memory) only while no writer runs, so that an older copy never
        replaces a running writer's newer file. Skipping is safe: loading levels from SQL."""
        if not self._dirty or self.is_writer:
            self.save()
            return
        try:
            self.lock_for_writing(wait=False)
        except CatalogError:  # busy (CatalogBusyError), or a folder this process cannot write
            return
        try:
            self.save()
        finally:
            self.release_writer()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
