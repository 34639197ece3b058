"""One writer at a time: a lock file in the catalog folder and, on PostgreSQL, an advisory lock in
the database (the same database may serve catalogs in several folders). Readers never take it."""
from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Self

from vsearch.errors import CatalogBusyError, CatalogError


# pg_advisory_lock key of the catalog writer lock (a fixed 63-bit number: "vsearch" in ASCII)
PG_WRITER_LOCK_KEY = 0x76736561726368


class WriterLock:
    """The writer-lock half of :class:`~vsearch.catalog.Catalog` (mixed into it)."""

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
    def writing(self, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> Iterator[Self]:
        """Hold the writer lock for a block; a lock already held (by the caller) is left held."""
        held = self.is_writer
        self.lock_for_writing(wait, on_wait)
        try:
            yield self
        finally:
            if not held:
                self.release_writer()


def writes_catalog(catalog_of: Callable[..., object]):
    """Decorator for a library function that changes the catalog (tags, captions, enrolled faces):
    it runs holding the writer lock, so it never interleaves with an `index` run; a busy catalog
    raises :class:`CatalogBusyError` naming the writer. ``catalog_of(*args, **kwargs)`` finds the
    catalog among the call's arguments. A lock the caller already holds is kept."""

    def decorate(fn):
        @functools.wraps(fn)
        def locked(*args, **kwargs):
            with catalog_of(*args, **kwargs).writing():
                return fn(*args, **kwargs)

        return locked

    return decorate
