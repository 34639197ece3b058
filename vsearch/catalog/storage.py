"""The catalog's files and database connection: where the SQLite file is, private permissions,
SQLite settings, full-disk errors turned into one clear message, and telling whether a catalog
exists (or removing an empty one)."""
from __future__ import annotations

import errno
import os
import time

from vsearch.errors import StorageError, StorageFullError
from vsearch.fsutil import FolderLock


DB_FILENAME = "catalog.sqlite"
LOCK_FILENAME = "writer.lock"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    _use_wal(cur)  # readers (search, serve) do not block the indexer
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps it consistent
    cur.close()


def _use_wal(cur, patience_s: float = 30.0) -> None:
    """Put the database in WAL mode (recorded in the file: once per catalog).

    Switching a new file to WAL needs it to itself, and SQLite answers "database is locked" at
    once, without its busy timeout, while another connection is opening the same new catalog:
    retried here for as long as the busy timeout would wait."""
    import sqlite3

    if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    deadline = time.monotonic() + patience_s
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


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
    from sqlalchemy import create_engine, func, inspect, select

    from vsearch.schema import Media, Vector

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
