"""A catalog opened for searching only: :class:`CatalogReader`.

A query process reads a few rows and one index file; it writes nothing. Opening the full
:class:`~vsearch.catalog.Catalog` for that imports SQLAlchemy and checks or creates every table:
importing SQLAlchemy alone took 0.37 s of a 1.9 s cold ``vsearch search`` (benchmarks/RESULTS.md). The
reader runs the catalog's own read queries (:mod:`vsearch.catalog.queries`) through the standard
library's ``sqlite3`` instead, and keeps the catalog's rules:

* SQL is the truth: an index file behind SQL (a writer crashed between its commit and its save,
  or is still running) is brought level in memory from SQL on load, as the catalog does; the
  file is left for the writer (or ``vsearch verify --repair``) to rewrite.
* The schema version is checked first: a catalog recording a version other than the one the
  queries were written for is not read here; :func:`open_reader` answers None and the caller
  opens the full catalog, which migrates it or refuses it with its usual message.
"""
from __future__ import annotations

import logging
import os

from vsearch.catalog.queries import QUERIES_READABLE_VERSIONS, SqliteDriver, SqlReads
from vsearch.catalog.records import IMAGE_SPACE
from vsearch.catalog.storage import DB_FILENAME
from vsearch.errors import CatalogError
from vsearch.vector_index import ANN_THRESHOLD, VectorIndex

log = logging.getLogger(__name__)


class CatalogReader(SqlReads):
    """The read side of a SQLite catalog for searching: metadata, each space's index (loaded from
    its file and levelled with SQL in memory), vectors and search hits. Never writes, takes no
    lock, imports no SQLAlchemy. Made by :func:`open_reader`."""

    def __init__(self, directory: str, driver, ann_threshold: int = ANN_THRESHOLD):
        self.directory = directory
        self.ann_threshold = ann_threshold
        self._sql = driver
        self._indexes: dict[str, VectorIndex] = {}

    def index_path(self, space: str) -> str:
        return os.path.join(self.directory, f"{space}.faiss")

    def index(self, space: str = IMAGE_SPACE) -> VectorIndex:
        """The space's index file, brought level with SQL in memory (see the module's notes)."""
        if space not in self._indexes:
            loaded = load_index_file(self.index_path(space), self._dim(space))
            self._indexes[space], result = self.levelled_index(space, loaded)
            if result.added or result.removed or result.rebuilt:
                log.info("index %s is behind the database; levelled in memory: %s", space, result)
        return self._indexes[space]

    def close(self) -> None:
        self._sql.close()
        self._indexes.clear()

    def __enter__(self) -> "CatalogReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_index_file(path: str, dim: int) -> VectorIndex:
    """The index stored at ``path``, or an empty one when there is no file or it cannot be read
    (SQL holds every vector: levelling with SQL rebuilds what the file lacks)."""
    if os.path.exists(path):
        try:
            return VectorIndex.load(path, dim)
        except Exception as exc:  # unreadable or wrong-size file: rebuild from SQL
            log.warning("index file %s unusable (%s); rebuilding from the database", path, exc)
    return VectorIndex(dim)


def open_reader(directory: str | os.PathLike) -> CatalogReader | None:
    """A reader of the SQLite catalog in ``directory``; None when the catalog is not one this
    reader may read as it is (no tables yet, or another schema version): open
    :class:`~vsearch.catalog.Catalog` then. A missing catalog is a :class:`CatalogError`, as it
    is for the catalog."""
    directory = os.path.abspath(os.fspath(directory))
    db_path = os.path.join(directory, DB_FILENAME)
    if not os.path.isfile(db_path):
        raise CatalogError(f"no catalog at {directory}: run `vsearch index PATH --db {directory}` first")
    try:
        driver = SqliteDriver(db_path)
    except CatalogError:  # cannot be opened here (permissions): the catalog decides, with its message
        return None
    try:
        reader = CatalogReader(directory, driver)
        version = reader.get_meta("schema_version")
    except CatalogError:  # no meta table (an empty file) or not a database: the catalog decides
        driver.close()
        return None
    if version not in QUERIES_READABLE_VERSIONS:
        driver.close()
        return None
    return reader
