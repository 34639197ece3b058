"""Read-only views of a catalog's index files that follow the indexer's saves.

``vsearch index`` (another process) commits rows to SQL and, every 30 s and at the end, writes
``<space>.faiss`` to a temporary file and renames it over the old one. A reader that opens the
path therefore always gets a complete file: the old one or the new one. The server searches the
file as last saved, brought level in memory with SQL when the database holds vectors the file
does not (an indexer that crashed before its last save; one that has not saved yet): the server
never writes index files, so it cannot race the indexer's writes. Ids map to paths through SQL,
where rows deleted since the save simply drop out.

A reload is noticed by the file's (inode, size, mtime): a rename always brings a new inode, so
coarse mtime clocks do not hide a save.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from vsearch.catalog import Catalog
from vsearch.catalog.reader import load_index_file
from vsearch.search import SpaceSearcher
from vsearch.vector_index import VectorIndex

log = logging.getLogger("vsearch.serve")


@dataclass(frozen=True)
class Snapshot:
    """One loaded index file. Never mutated after construction, so threads share it freely."""

    index: VectorIndex | None  # None: the space has no vectors (no file) yet
    signature: tuple[int, int, int] | None
    loaded_at: float
    searcher: SpaceSearcher | None = None  # chosen once per loaded file (IVF-PQ: exact re-rank from SQL)

    def __len__(self) -> int:
        return 0 if self.index is None else len(self.index)


def file_signature(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class IndexReader:
    """The newest saved index of one vector space, checked at most every ``check_seconds``."""

    def __init__(self, catalog: Catalog, space: str, check_seconds: float = 0.5, level_seconds: float = 10.0):
        self.catalog, self.space, self.check_seconds = catalog, space, check_seconds
        self.level_seconds = level_seconds  # how often SQL is compared with the loaded file
        self._leveled = float("-inf")
        self._fingerprint: tuple[int, int] | None = None
        self.path = catalog.index_path(space)
        self._snapshot = Snapshot(None, None, time.time())
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.reloads = 0
        self.refresh(force=True)

    def current(self) -> Snapshot:
        """The snapshot to search now. When a check is due, one caller reloads while the others
        go on with the previous snapshot instead of queueing behind the load."""
        if time.monotonic() - self._checked >= self.check_seconds:
            self.refresh()
        return self._snapshot

    def _sql_fingerprint(self) -> tuple[int, int] | None:
        try:
            return self.catalog.sql_fingerprint(self.space)
        except Exception as exc:  # noqa: BLE001 - the database may be busy; the file still serves
            log.warning("could not compare %s with the database (%s)", self.space, exc)
            return None

    def refresh(self, force: bool = False) -> Snapshot:
        if not self._lock.acquire(blocking=force):
            return self._snapshot
        try:
            self._checked = time.monotonic()
            # taken *before* loading: if the file is replaced while we read it, the next check
            # sees a signature that differs from this one and loads again
            signature = file_signature(self.path)
            level_due = time.monotonic() - self._leveled >= self.level_seconds
            fingerprint = None
            if signature == self._snapshot.signature and not force:
                if not level_due:
                    return self._snapshot
                fingerprint = self._sql_fingerprint()
                self._leveled = time.monotonic()
                if fingerprint is None or fingerprint == self._fingerprint:
                    return self._snapshot
            recorded = self.catalog.space_model(self.space)
            if recorded is None:  # no model recorded: nothing we can interpret
                return self._snapshot
            fingerprint = fingerprint or self._sql_fingerprint()
            try:
                # a damaged file is rebuilt from SQL in memory, as the catalog does (the server
                # never writes it: `vsearch verify --repair` does)
                index = load_index_file(self.path, recorded[1]) if signature is not None else VectorIndex(recorded[1])
                # the file may trail SQL (a crash before the indexer's last save): level this copy
                self._leveled = time.monotonic()
                if fingerprint is not None and fingerprint != (len(index), int(index.ids().max()) if len(index) else -1):
                    result = self.catalog.level_with_sql(self.space, index)
                    if result.added or result.removed:
                        log.info("index %s is older than the database: +%d/-%d vectors from SQL",
                                 os.path.basename(self.path), result.added, result.removed)
                self._fingerprint = fingerprint
            except Exception as exc:  # noqa: BLE001 - keep serving the previous snapshot
                log.warning("could not load %s (%s); still serving the previous index", self.path, exc)
                return self._snapshot
            if signature is None and len(index) == 0:
                self._snapshot = Snapshot(None, None, time.time())
                return self._snapshot
            previous = len(self._snapshot)
            space = self.space
            searcher = SpaceSearcher(index, lambda ids: self.catalog.vectors(space, ids))
            self._snapshot = Snapshot(index, signature, time.time(), searcher)
            self.reloads += 1
            if self.reloads > 1:
                log.info("reloaded %s: %d → %d vectors", os.path.basename(self.path), previous, len(index))
            return self._snapshot
        finally:
            self._lock.release()
