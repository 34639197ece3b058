"""FAISS indexes keyed by catalog ids: building by size, adding, removing, saving atomically.

This module knows nothing about SQL. The catalog owns one :class:`VectorIndex` per vector space
and keeps it equal to the SQL rows; here we only make sure that FAISS ids are the database ids and
that a file on disk is never half-written.

Why two index kinds and no HNSW: the catalog must delete vectors (files removed, faces
un-enrolled), and FAISS's HNSW cannot remove ids. ``IndexIDMap2(IndexFlatIP)`` is exact and fine
up to ``ANN_THRESHOLD`` vectors; above that an ``IndexIVFFlat`` (which stores our ids natively and
supports removal) answers with recall measured in ``benchmarks/search.py``.
"""
from __future__ import annotations

import math

import faiss
import numpy as np

from vsearch.fsutil import atomic_write

# Below this many vectors exact search answers one query in tens of ms on a 2-core CPU; above it
# IVF is 10-50x faster at Recall@10 >= 0.96 (benchmarks/search.py, figures in benchmarks/RESULTS.md).
ANN_THRESHOLD = 50_000
# IVF retrains when the collection has grown this much since its centroids were trained.
RETRAIN_GROWTH = 4.0


def _as_ids(ids) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def _as_vectors(vectors, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (N, {dim}), got {x.shape}")
    return x


def ivf_params(n: int) -> tuple[int, int]:
    """(nlist, nprobe) for n vectors: about 4·sqrt(n) lists, probing 1/8 of them (≥ 16).

    nprobe is set for Recall@10 ≥ 0.95 against exact search on clustered data; the test suite
    and benchmarks/search.py check it.
    """
    nlist = max(16, int(4 * math.sqrt(max(n, 1))))
    nprobe = min(nlist, max(16, nlist // 8))
    return nlist, nprobe


class VectorIndex:
    """One FAISS index over L2-normalised float32 vectors, searched by inner product."""

    def __init__(self, dim: int, index: faiss.Index | None = None, trained_size: int = 0):
        self.dim = dim
        self.index = index if index is not None else self._new_flat(dim)
        self.trained_size = trained_size

    # -- construction ---------------------------------------------------------------------------
    @staticmethod
    def _new_flat(dim: int) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @classmethod
    def build(cls, dim: int, vectors: np.ndarray, ids, ann_threshold: int = ANN_THRESHOLD,
              seed: int = 1234) -> "VectorIndex":
        """An index of the right kind for this many vectors, filled with them."""
        vectors = _as_vectors(vectors, dim) if len(vectors) else np.zeros((0, dim), np.float32)
        ids = _as_ids(ids)
        n = len(ids)
        if n <= ann_threshold:
            out = cls(dim)
        else:
            nlist, nprobe = ivf_params(n)
            quantizer = faiss.IndexFlatIP(dim)
            ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.cp.seed = seed
            rng = np.random.default_rng(seed)
            sample = vectors[rng.choice(n, size=min(n, nlist * 64), replace=False)]
            ivf.train(sample)
            ivf.nprobe = nprobe
            out = cls(dim, ivf, trained_size=n)
        if n:
            out.add(vectors, ids)
        return out

    @property
    def kind(self) -> str:
        return "ivf" if self.is_ivf else "flat"

    @property
    def is_ivf(self) -> bool:
        return isinstance(self.index, faiss.IndexIVF)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def needs_rebuild(self, ann_threshold: int = ANN_THRESHOLD) -> bool:
        """True when the collection has outgrown its index kind (flat → IVF, or stale centroids)."""
        n = len(self)
        if not self.is_ivf:
            return n > ann_threshold
        return n < ann_threshold / 2 or n > self.trained_size * RETRAIN_GROWTH

    # -- contents -------------------------------------------------------------------------------
    def add(self, vectors, ids) -> None:
        ids = _as_ids(ids)
        if len(ids) == 0:
            return
        self.index.add_with_ids(_as_vectors(vectors, self.dim), ids)

    def remove(self, ids) -> int:
        ids = _as_ids(ids)
        if len(ids) == 0:
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    def ids(self) -> np.ndarray:
        """Every id in the index (order unspecified)."""
        if isinstance(self.index, faiss.IndexIDMap2) or isinstance(self.index, faiss.IndexIDMap):
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        if self.is_ivf:
            invlists = faiss.extract_index_ivf(self.index).invlists
            parts = []
            for list_no in range(invlists.nlist):
                size = invlists.list_size(list_no)
                if size:
                    parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
            return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        raise TypeError(f"unsupported index type {type(self.index).__name__}")

    def search(self, queries: np.ndarray, k: int, allowed_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (Q, k'), with k' = min(k, len(self)); best first.

        ``allowed_ids`` restricts the search to those ids inside FAISS (an ``IDSelector``), so a
        filter never costs recall the way post-filtering the top k would. Rows may end in -1
        when fewer than k ids qualify.
        """
        queries = _as_vectors(np.atleast_2d(queries), self.dim)
        k = min(int(k), len(self))
        if allowed_ids is not None:
            allowed = _as_ids(allowed_ids)
            k = min(k, len(allowed))
        if k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if allowed_ids is None:
            return self.index.search(queries, k)
        selector = faiss.IDSelectorBatch(allowed)
        if self.is_ivf:
            params = faiss.SearchParametersIVF(sel=selector, nprobe=self.index.nprobe)
        else:
            params = faiss.SearchParameters(sel=selector)
        # pytorch-metric-learning imports faiss.contrib.torch_utils, which replaces Index.search
        # for the whole process with a wrapper that has no ``params=``; it keeps the original
        # numpy method as ``search_numpy``, which still filters.
        search = getattr(self.index, "search_numpy", self.index.search)
        return search(queries, k, params=params)

    def reconstruct(self, vector_id: int) -> np.ndarray:
        return self.index.reconstruct(int(vector_id))

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write to a temporary file beside ``path``, fsync, then rename over it (atomic on POSIX)."""
        atomic_write(path, lambda tmp: faiss.write_index(self.index, tmp))

    @classmethod
    def load(cls, path: str, dim: int) -> "VectorIndex":
        index = faiss.read_index(path)
        if index.d != dim:
            raise ValueError(f"{path} holds {index.d}-d vectors, expected {dim}")
        trained = int(index.ntotal) if isinstance(index, faiss.IndexIVF) else 0
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = ivf_params(max(int(index.ntotal), 1))[1]
        return cls(dim, index, trained_size=trained)
