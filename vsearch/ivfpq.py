"""IVF-PQ for collections too large for the catalog's default indexes, built part by part.

Why: the default indexes keep every float32 vector in RAM (2 KiB per 512-d vector: 2 GB per
million). IVF-PQ keeps ``m`` bytes of product-quantisation code per vector plus its 8-byte id
(m = 64 for 512-d: 72 bytes, 28x less), and a search only scans ``nprobe`` of ``nlist`` lists.

How it is built (:func:`build_ivfpq`), so that no step needs all vectors in memory at once:

1. **sample**: ``sample_size`` rows drawn uniformly from the whole collection in one pass;
2. **train** one empty index on the sample (coarse k-means + PQ codebooks);
3. **fill** part by part: the trained index is cloned for each chunk of ``(ids, vectors)``,
   filled, and written as ``part-NNNNN.faiss`` (parts are independent: each could be filled on
   another machine from the trained index);
4. **merge** the parts' inverted lists into the trained index: in memory (``merge_from``), or
   into one memory-mapped ``.ivfdata`` file with :func:`faiss.contrib.ondisk.merge_ondisk`, so
   serving needs RAM only for centroids and codebooks.

PQ codes are lossy: on clustered data the PQ order of near neighbours is often wrong (Recall@10
0.29 against exact search at 100k x 512-d, see benchmarks/RESULTS.md). :func:`search_reranked`
therefore asks the index for a shortlist of ``k * rerank_factor`` and re-ranks it exactly with
the float vectors, which the catalog keeps in SQL anyway; the catalog's search and ``vsearch
serve`` do this for any IVF-PQ index they load. Ids are the catalog's vector ids throughout.

This module is FAISS and numpy only: the catalog drives it (:meth:`vsearch.catalog.Catalog.build_ivfpq`
feeds it the SQL vectors chunk by chunk and installs the result), never the other way round.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable

import faiss
import numpy as np

from vsearch.vector_index import VectorIndex, ivf_params

log = logging.getLogger(__name__)

# shortlist = k * this. Recall@10 against exact on 512-d clustered vectors, m = 64, at 100k / 1M:
# PQ codes alone 0.29 / 0.20, shortlist of 100 0.86 / 0.74, of 500 1.00 / 1.00 (benchmarks/RESULTS.md)
RERANK_FACTOR = 50
Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]  # () -> iterator of (ids (N,), vectors (N, D))


def default_m(dim: int) -> int:
    """Sub-quantisers for ``dim``: the largest divisor of dim with at least 8 dimensions per
    sub-vector (64 for 512-d, i.e. 64 bytes per vector at 8 bits)."""
    for m in range(max(1, dim // 8), 0, -1):
        if dim % m == 0:
            return m
    return 1


@dataclass(frozen=True)
class IvfPqParams:
    nlist: int
    m: int
    nbits: int = 8
    nprobe: int = 16

    @classmethod
    def for_size(cls, n: int, dim: int, m: int | None = None, nlist: int | None = None,
                 nbits: int = 8) -> "IvfPqParams":
        """nlist and nprobe by the catalog's IVF rule (:func:`vsearch.vector_index.ivf_params`:
        about 4·sqrt(n) lists, probing 1/8 of them). An explicit ``nlist`` gets nprobe by the
        same 1/8 rule; note that the catalog sets nprobe from the collection size whenever it
        loads an IVF index, so an index installed in a catalog should keep the default nlist."""
        if nlist:
            nprobe = min(nlist, max(16, nlist // 8))
        else:
            nlist, nprobe = ivf_params(n)
        m = m or default_m(dim)
        if dim % m:
            raise ValueError(f"m={m} must divide the dimension {dim}")
        return cls(nlist=nlist, m=m, nbits=nbits, nprobe=nprobe)

    @property
    def code_bytes(self) -> int:
        return (self.m * self.nbits + 7) // 8

    def min_train(self) -> int:
        """FAISS's k-means wants about 39 points per centroid, for the lists and for each codebook."""
        return 39 * max(self.nlist, 2 ** self.nbits)


@dataclass
class BuildReport:
    index: faiss.Index
    params: IvfPqParams
    n: int
    sample_size: int
    parts: int
    timings: dict[str, float] = field(default_factory=dict)  # sample, train, fill, merge (seconds)
    ondisk_path: str | None = None

    def to_json(self) -> dict:
        """What `vsearch build-index --json` prints (the index itself stays out)."""
        p = self.params
        return {"kind": "ivfpq", "vectors": self.n, "nlist": p.nlist, "m": p.m, "nbits": p.nbits, "nprobe": p.nprobe,
                "code_bytes": p.code_bytes, "sample_size": self.sample_size, "parts": self.parts,
                "seconds": {k: round(v, 3) for k, v in self.timings.items()}, "ondisk_path": self.ondisk_path}


def is_pq(index: faiss.Index) -> bool:
    """Whether ``index`` stores lossy PQ codes (and so should be re-ranked)."""
    try:
        # extract_index_ivf hands back the IndexIVF base class: downcast to see the real kind
        return isinstance(faiss.downcast_index(faiss.extract_index_ivf(index)), faiss.IndexIVFPQ)
    except RuntimeError:  # not an IVF index at all
        return False


def sample_rows(chunks: Chunks, n_total: int, size: int, seed: int = 1234) -> np.ndarray:
    """``size`` rows drawn uniformly without replacement from the ``n_total`` rows that
    ``chunks()`` yields, in one pass (positions are drawn first, rows picked as they go by).
    Rows beyond ``n_total`` (added to a live catalog meanwhile) are not sampled."""
    size = min(size, n_total)
    wanted = np.sort(np.random.default_rng(seed).choice(n_total, size=size, replace=False))
    out, offset = [], 0
    for _ids, vectors in chunks():
        lo, hi = np.searchsorted(wanted, [offset, offset + len(vectors)])
        if hi > lo:
            out.append(np.asarray(vectors[wanted[lo:hi] - offset], dtype=np.float32))
        offset += len(vectors)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def train_ivfpq(sample: np.ndarray, params: IvfPqParams, seed: int = 1234) -> faiss.Index:
    """An empty IVF-PQ (inner product, PQ of residuals) trained on ``sample``."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    dim = sample.shape[1]
    if len(sample) < params.nlist:
        raise ValueError(f"{len(sample)} training vectors cannot train {params.nlist} lists")
    if len(sample) < params.min_train():
        log.warning("training IVF-PQ on %d vectors; FAISS advises at least %d", len(sample), params.min_train())
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, params.nlist, params.m, params.nbits,
                             faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.pq.cp.seed = seed
    # below FAISS's advised sample size it prints a warning per codebook; we warned once above
    index.cp.min_points_per_centroid = index.pq.cp.min_points_per_centroid = 1
    index.train(sample)
    index.nprobe = params.nprobe
    return index


def fill_part(trained: faiss.Index, ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    """A copy of the trained, empty index holding these vectors under these ids."""
    part = faiss.clone_index(trained)
    if part.ntotal:
        raise ValueError("fill_part needs an empty trained index")
    part.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    return part


def merge_parts(trained: faiss.Index, part_files: list[str], ondisk_path: str | None = None) -> faiss.Index:
    """One index holding every part's lists: in memory, or (``ondisk_path``) with the lists in a
    memory-mapped ``.ivfdata`` file beside ``ondisk_path``, which is written atomically."""
    merged = faiss.clone_index(trained)
    if ondisk_path is None:
        for path in part_files:
            # not memory-mapped: merge_from empties the part's lists, which read-only mmaps refuse
            part = faiss.read_index(path)
            merged.merge_from(part, 0)  # ids kept as they are (they are catalog ids)
        return merged
    from faiss.contrib.ondisk import merge_ondisk

    ondisk_path = os.path.abspath(ondisk_path)
    os.makedirs(os.path.dirname(ondisk_path), exist_ok=True)
    stem = os.path.splitext(ondisk_path)[0]
    # a fresh .ivfdata name per build: an index file written earlier keeps pointing at its own
    # data until the new index file replaces it, and the old data is removed only after that
    ivfdata = f"{stem}.{uuid.uuid4().hex[:12]}.ivfdata"
    previous = {p for p in glob.glob(glob.escape(stem) + ".*.ivfdata")  # only files named like ours
                if re.fullmatch(r"[0-9a-f]{12}", p[len(stem) + 1 : -len(".ivfdata")])}
    try:
        merge_ondisk(merged, part_files, ivfdata)
        VectorIndex(merged.d, merged).save(ondisk_path)
    except BaseException:
        if os.path.exists(ivfdata):
            os.unlink(ivfdata)
        raise
    for old in previous:
        os.unlink(old)
    return merged


def build_ivfpq(chunks: Chunks, n_total: int, dim: int, params: IvfPqParams | None = None,
                sample_size: int | None = None, workdir: str | None = None, ondisk_path: str | None = None,
                seed: int = 1234) -> BuildReport:
    """Train on a sample, fill one part per chunk, merge (see the module docstring).

    ``chunks()`` is called twice (sample, then fill) and must yield the same rows in the same
    order both times; each chunk becomes one part. ``workdir`` holds the part files while
    building (a temporary folder by default; removed afterwards).
    """
    if n_total < 1:
        raise ValueError("nothing to index")
    params = params or IvfPqParams.for_size(n_total, dim)
    sample_size = min(n_total, sample_size or max(params.min_train(), 40 * params.nlist))
    report = BuildReport(index=None, params=params, n=n_total, sample_size=sample_size, parts=0,
                         ondisk_path=ondisk_path)
    t = time.perf_counter()
    sample = sample_rows(chunks, n_total, sample_size, seed)
    report.timings["sample"] = time.perf_counter() - t
    t = time.perf_counter()
    trained = train_ivfpq(sample, params, seed)
    del sample
    report.timings["train"] = time.perf_counter() - t

    own_workdir = workdir is None
    workdir = tempfile.mkdtemp(prefix="vsearch-ivfpq-") if own_workdir else workdir
    os.makedirs(workdir, exist_ok=True)
    try:
        t = time.perf_counter()
        part_files = []
        for i, (ids, vectors) in enumerate(chunks()):
            if np.asarray(vectors).shape[1:] != (dim,):
                raise ValueError(f"chunk {i} has vectors of shape {np.asarray(vectors).shape}, expected (N, {dim})")
            path = os.path.join(workdir, f"part-{i:05d}.faiss")
            faiss.write_index(fill_part(trained, ids, vectors), path)
            part_files.append(path)
        report.parts = len(part_files)
        report.timings["fill"] = time.perf_counter() - t
        t = time.perf_counter()
        report.index = merge_parts(trained, part_files, ondisk_path)
        report.timings["merge"] = time.perf_counter() - t
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report.n = int(report.index.ntotal)  # a live catalog may have changed since n_total was counted
    return report


def load_ondisk(path: str, nprobe: int | None = None) -> faiss.Index:
    """An index written with ``ondisk_path``: its lists stay on disk (memory-mapped)."""
    index = faiss.read_index(path)
    if nprobe:
        faiss.extract_index_ivf(index).nprobe = nprobe
    return index


# -- searching ---------------------------------------------------------------------------------
def rerank(queries: np.ndarray, candidates: np.ndarray, fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
           k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of each query among its candidate ids (-1 = none); ``fetch(ids)`` returns
    ``(ids, vectors)`` in any order. Returns (scores, ids), (Q, k), padded with -inf / -1."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    scores = np.full((len(queries), k), -np.inf, np.float32)
    out = np.full((len(queries), k), -1, np.int64)
    wanted = np.unique(candidates[candidates >= 0])
    if len(wanted) == 0:
        return scores, out
    got_ids, got_vecs = fetch(wanted)
    if len(got_ids) == 0:
        return scores, out
    order = np.argsort(got_ids)
    got_ids, got_vecs = np.asarray(got_ids)[order], np.asarray(got_vecs, dtype=np.float32)[order]
    for q, (query, cand) in enumerate(zip(queries, candidates)):
        cand = cand[cand >= 0]
        pos = np.minimum(np.searchsorted(got_ids, cand), len(got_ids) - 1)
        rows = pos[got_ids[pos] == cand]  # candidates fetch() did not return (deleted meanwhile) drop out
        if len(rows) == 0:
            continue
        s = got_vecs[rows] @ query
        top = np.argsort(-s, kind="stable")[:k]
        scores[q, : len(top)] = s[top]
        out[q, : len(top)] = got_ids[rows][top]
    return scores, out


def search_reranked(vindex: VectorIndex, queries: np.ndarray, k: int,
                    fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                    rerank_factor: int = RERANK_FACTOR, allowed_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """Shortlist ``k * rerank_factor`` from the (lossy) index, then exact re-ranking via ``fetch``.
    Same contract as :meth:`VectorIndex.search`."""
    _, candidates = vindex.search(queries, max(k, k * rerank_factor), allowed_ids=allowed_ids)
    k = min(k, candidates.shape[1])
    return rerank(queries, candidates, fetch, k)


def search_kind(vindex: VectorIndex) -> str:
    """How a loaded index is searched on the CPU: ``"ivfpq+rerank"`` (lossy codes: a shortlist
    re-ranked exactly), ``"ivf"`` or ``"exact"`` (the index answers with exact scores itself)."""
    if is_pq(vindex.index):
        return "ivfpq+rerank"
    return "ivf" if vindex.is_ivf else "exact"


def search_index(vindex: VectorIndex, queries: np.ndarray, k: int,
                 fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                 allowed_ids=None) -> tuple[np.ndarray, np.ndarray]:
    """Search ``vindex`` the way :func:`search_kind` says: an IVF-PQ index through
    :func:`search_reranked` (``fetch(ids) -> (ids, vectors)`` reads the exact vectors), any other
    index directly. The one CPU search of a vector space: the catalog's search and the search
    path's searcher (:class:`vsearch.search.SpaceSearcher`) both call it. Same contract as
    :meth:`VectorIndex.search`."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    if search_kind(vindex) == "ivfpq+rerank":
        return search_reranked(vindex, queries, k, fetch, allowed_ids=allowed_ids)
    return vindex.search(queries, k, allowed_ids=allowed_ids)
