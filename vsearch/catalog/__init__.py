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
``consistency`` (verify and repair), and ``core``, the :class:`Catalog` that joins them.
"""
from vsearch.catalog.core import Catalog
from vsearch.catalog.locking import PG_WRITER_LOCK_KEY, writes_catalog
from vsearch.catalog.records import (IMAGE_SPACE, MediaRecord, MediaState, SearchHit, SyncResult, VerifyReport,
                                     vector_blob, vectors_from_blobs)
from vsearch.catalog.transaction import Reading, Transaction, id_chunks, rows_refused
from vsearch.catalog.storage import DB_FILENAME, LOCK_FILENAME, catalog_exists, remove_empty_catalog

__all__ = ["Catalog", "IMAGE_SPACE", "MediaRecord", "MediaState", "SearchHit", "SyncResult", "VerifyReport",
           "DB_FILENAME", "LOCK_FILENAME", "PG_WRITER_LOCK_KEY", "writes_catalog", "catalog_exists", "remove_empty_catalog",
           "Transaction", "Reading", "id_chunks", "rows_refused", "vector_blob", "vectors_from_blobs"]
