"""The FAISS side of the catalog: one index file per vector space, loaded and brought level with
SQL (database ids are FAISS ids), changed only after a commit, written atomically; and the IVF-PQ
that :mod:`vsearch.ivfpq` builds from the SQL vectors."""
from __future__ import annotations

import logging
import os
import shutil
from typing import Iterator, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vsearch.catalog.reader import load_index_file
from vsearch.catalog.records import IMAGE_SPACE, SyncResult, vectors_from_blobs
from vsearch.catalog.storage import _is_storage_full, _storage_full_message
from vsearch.errors import IndexBuildError, StorageFullError
from vsearch.ivfpq import BuildReport, IvfPqParams, build_ivfpq
from vsearch.schema import Vector
from vsearch.vector_index import VectorIndex

log = logging.getLogger(__name__)


class VectorIndexes:
    """The index half of :class:`~vsearch.catalog.Catalog` (mixed into it)."""

    # -- vector indexes --------------------------------------------------------------------------
    def index_path(self, space: str) -> str:
        return os.path.join(self.directory, f"{space}.faiss")

    def vector_count(self, space: str = IMAGE_SPACE) -> int:
        with Session(self.engine) as s:
            return int(s.scalar(select(func.count()).select_from(Vector).where(Vector.space == space)) or 0)

    def forget_index(self, space: str) -> None:
        """Drop the loaded copy of a space's index (its file was replaced); the next use reloads it."""
        self._indexes.pop(space, None)
        self._dirty.discard(space)

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
            yield np.asarray([r[0] for r in rows], dtype=np.int64), vectors_from_blobs([r[1] for r in rows], dim)

    def index(self, space: str = IMAGE_SPACE) -> VectorIndex:
        """The space's index, loaded from disk and brought level with SQL if it lags behind."""
        if space not in self._indexes:
            self._indexes[space] = load_index_file(self.index_path(space), self._dim(space))
            result = self.sync(space)
            if result.added or result.removed or result.rebuilt:
                log.info("index %s brought level with the database: %s", space, result)
        return self._indexes[space]

    def sync(self, space: str) -> SyncResult:
        """Make the in-memory index hold exactly the SQL ids of ``space`` (rebuilding if its kind
        no longer suits the size). Marks it dirty when anything changed."""
        vindex = self._indexes[space] if space in self._indexes else self.index(space)
        self._indexes[space], result = self.levelled_index(space, vindex)
        if result.added or result.removed or result.rebuilt:
            self._dirty.add(space)
        return result

    def sql_fingerprint(self, space: str = IMAGE_SPACE) -> tuple[int, int]:
        """(count, largest id) of a space's vectors: a cheap way to notice that SQL moved on."""
        with Session(self.engine) as s:
            n, top = s.execute(select(func.count(), func.max(Vector.id)).where(Vector.space == space)).one()
        return int(n or 0), int(top if top is not None else -1)

    def rebuild(self, space: str) -> VectorIndex:
        """A fresh index of the kind that suits the space's size, from the SQL embeddings."""
        self._indexes[space] = self.built_index(space)
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

