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

Its parts: ``records`` (value types), ``storage`` (files, engine, full-disk errors), ``locking``
(one writer), ``indexes`` (FAISS files and IVF-PQ), ``transaction`` (``catalog.transaction()``:
commit, then the indexes follow; ``catalog.reading()``), ``rows`` (media and vector rows),
``consistency`` (verify and repair), ``migrate`` (core and feature table versions), and ``core``,
the :class:`Catalog` that joins them. Its read queries are plain SQL in ``queries``, run through
SQLAlchemy by the catalog and through ``sqlite3`` by ``reader``, the read-only view a search opens.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Each name is imported from its module on first use: a search through the read-only view
# (vsearch.catalog.reader) needs the records and the reader, not SQLAlchemy and the writer.
_EXPORTS = {
    "Catalog": "core",
    "PG_WRITER_LOCK_KEY": "locking", "writes_catalog": "locking",
    "IMAGE_SPACE": "records", "MediaRecord": "records", "MediaState": "records",
    "SearchHit": "records", "SyncResult": "records", "VerifyReport": "records",
    "vector_blob": "records", "vectors_from_blobs": "records",
    "Transaction": "transaction", "Reading": "transaction", "id_chunks": "transaction",
    "rows_refused": "transaction",
    "CatalogReader": "reader", "open_reader": "reader",
    "DB_FILENAME": "storage", "LOCK_FILENAME": "storage", "catalog_exists": "storage",
    "remove_empty_catalog": "storage",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from vsearch.catalog.core import Catalog
    from vsearch.catalog.locking import PG_WRITER_LOCK_KEY, writes_catalog
    from vsearch.catalog.reader import CatalogReader, open_reader
    from vsearch.catalog.records import (IMAGE_SPACE, MediaRecord, MediaState, SearchHit, SyncResult, VerifyReport,
                                         vector_blob, vectors_from_blobs)
    from vsearch.catalog.storage import DB_FILENAME, LOCK_FILENAME, catalog_exists, remove_empty_catalog
    from vsearch.catalog.transaction import Reading, Transaction, id_chunks, rows_refused
