"""The one search path: query vectors, the searcher of a vector space, and photos from vector ids.

* :func:`compose_query` turns weighted texts, images and vectors into one unit query vector.
* :class:`SpaceSearcher` searches one :class:`~vsearch.vector_index.VectorIndex`, the way chosen
  once when it is built: exact or IVF as the index is, IVF-PQ with an exact re-rank of its
  shortlist, or the measured-fastest GPU path. The CPU choice is
  :func:`vsearch.ivfpq.search_index`, which the catalog's own search uses as well.
* :func:`top_media` maps the vector ids a searcher returns to photos through the catalog, and
  with ``distinct=True`` searches deeper until it has ``k`` distinct photos (a space that holds
  several vectors per photo: regions, faces).

The Python API, the server (over its snapshot of the index file), region search and face
search all go through here.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from vsearch.catalog import SearchHit
from vsearch.errors import QueryError
from vsearch.ivfpq import search_index, search_kind
from vsearch.vector_index import VectorIndex

if TYPE_CHECKING:
    from vsearch.catalog import Catalog, CatalogReader

log = logging.getLogger(__name__)

FetchVectors = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# -- query composition ---------------------------------------------------------------------------
@dataclass(frozen=True)
class QueryTerm:
    """One part of a combined query: a text, an image file or a ready vector, with a signed weight."""

    weight: float
    text: str | None = None
    image: str | None = None
    vector: np.ndarray | None = field(default=None, compare=False)


# Python's whitespace (what str.strip removes), spelled out: "\\s" means other sets in other
# regular-expression engines, and these patterns are also read by OpenAPI clients (ECMA-262).
SPACE_CHARS = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NOT_BLANK_PATTERN = f"[^{SPACE_CHARS}]"  # somewhere in a text that is not blank
# A term's weight: a plain decimal below 100 either way. No nan, inf or exponent: a weight that is
# not a finite number would turn the whole query vector into nan and every result into noise.
WEIGHT_PATTERN = r"[-+]?(?:[0-9]{1,2}(?:\.[0-9]*)?|\.[0-9]+)"
_WEIGHT = re.compile(WEIGHT_PATTERN)
# What parse_weighted accepts, as one regular expression (for the HTTP API's OpenAPI document): a
# text without '=' that is not blank, or a text that is not blank, '=', and a weight.
TERM_PATTERN = (f"^(?:[^=]*[^={SPACE_CHARS}][^=]*|[\\s\\S]*{NOT_BLANK_PATTERN}[\\s\\S]*=[{SPACE_CHARS}]*"
                f"{WEIGHT_PATTERN}[{SPACE_CHARS}]*)$")


def parse_weighted(term: str, default: float = 1.0) -> tuple[str, float]:
    """'snow=0.5' -> ('snow', 0.5); 'snow' -> ('snow', default). 'night=abc' is a mistyped weight,
    not a text to search for: a :class:`QueryError`; so are 'snow=nan', 'snow=inf' and weights
    of 100 or more (:data:`WEIGHT_PATTERN`)."""
    head, sep, tail = term.rpartition("=")
    if not sep:
        return term, default
    if not _WEIGHT.fullmatch(tail.strip()):
        raise QueryError(f"{term!r}: the weight after '=' must be a number such as 0.5 or -2 (below 100 either "
                         f"way; no nan, inf or exponent), e.g. {head.strip() or 'night'}=0.5")
    if not head.strip():
        raise QueryError(f"{term!r}: no text before '='")
    return head, float(tail.strip())  # float() strips fewer characters than str.strip()


@dataclass(frozen=True)
class QueryLimits:
    """How much one search may ask for. Each text is one pass of the text encoder, so the number
    of texts bounds the work as much as their length does; ``check`` counts before it reads, so
    a query of thousands of terms is refused at once."""

    # measured on the packaged model (benchmarks/RESULTS.md, "Service"): 33 texts of up to 1,000
    # characters took 9 s to encode; these bounds keep the costliest search under half a second
    max_terms: int = 16  # plus and minus terms together
    max_text_chars: int = 500  # the query text, and each term
    max_total_chars: int = 1500  # all of them together
    max_k: int = 10_000

    def check(self, text: str | None, plus: Sequence[str] = (), minus: Sequence[str] = (),
              k: int | None = None) -> None:
        """Raise :class:`QueryError` for a query beyond these limits (the message says which)."""
        terms = len(plus) + len(minus)
        if terms > self.max_terms:
            raise QueryError(f"{terms} plus/minus terms given; one search takes at most {self.max_terms}")
        texts = ([text] if text is not None else []) + list(plus) + list(minus)
        for t in texts:
            if len(t) > self.max_text_chars:
                raise QueryError(f"a query text of {len(t)} characters ({t[:30]!r}...); one text may have at most "
                                 f"{self.max_text_chars}")
        total = sum(len(t) for t in texts)
        if total > self.max_total_chars:
            raise QueryError(f"the query's texts have {total} characters together; one search takes at most "
                             f"{self.max_total_chars}")
        if k is not None and k > self.max_k:
            raise QueryError(f"k={k}: one search returns at most {self.max_k} results")


QUERY_LIMITS = QueryLimits()


def compose_query(terms: Sequence[QueryTerm], encode_texts: Callable[[list[str]], np.ndarray] | None = None,
                  encode_image: Callable[[str], np.ndarray] | None = None,
                  empty_message: str = "empty query: give a text, --image, or --plus terms") -> np.ndarray:
    """``Σ weight·vector``, renormalised to unit length, as float32.

    Preconditions: every term has exactly one of ``text``, ``image`` or ``vector``; the vectors
    (given, or made by ``encode_texts`` — all texts in one call, rows in order — and
    ``encode_image`` — one path) share one dimension. Texts are summed first, then images, then
    given vectors. Raises :class:`QueryError` for no terms (``empty_message``), a blank text, or
    terms that cancel out.
    """
    if not terms:
        raise QueryError(empty_message)
    texts = [t for t in terms if t.text is not None]
    for t in texts:
        if not t.text.strip():
            raise QueryError("a text query is empty")
    total = None
    if texts:
        vecs = encode_texts([t.text for t in texts])
        total = sum(t.weight * v for t, v in zip(texts, vecs))
    for t in terms:
        if t.text is None:
            v = t.weight * (encode_image(t.image) if t.vector is None else t.vector)
            total = v if total is None else total + v
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError("the query terms cancel out (weights sum to a zero vector)")
    return (total / norm).astype(np.float32)


# -- searching one space -------------------------------------------------------------------------
class SpaceSearcher:
    """Searches one vector index; how is decided once, here.

    ``fetch_vectors(ids) -> (ids, vectors)`` reads exact vectors (the catalog's SQL) for the
    IVF-PQ re-rank. On a CUDA ``device`` an index that is not IVF-PQ is copied to the GPU once
    (so later additions to ``vindex`` are not seen by that copy; build a new searcher). A
    filtered search (``allowed_ids``) always runs on the CPU index.
    """

    def __init__(self, vindex: VectorIndex, fetch_vectors: FetchVectors, device: str = "cpu"):
        self.vindex = vindex
        self._fetch = fetch_vectors
        self._gpu = None
        self.kind = search_kind(vindex)
        if self.kind != "ivfpq+rerank" and device.startswith("cuda"):
            from vsearch.gpu import gpu_searcher

            self._gpu, note = gpu_searcher(vindex, device)
            log.info("search: %s", note)
            self.kind = "gpu"

    def __len__(self) -> int:
        return len(self.vindex)

    @property
    def dim(self) -> int:
        return self.vindex.dim

    def search(self, queries: np.ndarray, k: int, allowed_ids=None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, vector ids), each (Q, k') with k' <= k, best first; -1 ids mark empty slots.
        Same contract as :meth:`VectorIndex.search`."""
        if self._gpu is not None and allowed_ids is None:
            return self._gpu.search(np.atleast_2d(np.asarray(queries, dtype=np.float32)), k)
        return search_index(self.vindex, queries, k, self._fetch, allowed_ids=allowed_ids)


def catalog_searcher(catalog: Catalog | CatalogReader, space: str, device: str = "cpu") -> SpaceSearcher:
    """The searcher of the catalog's in-memory index of ``space`` (a catalog or its read-only view)."""
    return SpaceSearcher(catalog.index(space), lambda ids: catalog.vectors(space, ids), device)


# -- photos from vectors -------------------------------------------------------------------------
def top_media(searcher: SpaceSearcher, catalog: Catalog | CatalogReader, query: np.ndarray, k: int, *, distinct: bool = True,
              fetch: int | None = None, allowed_ids=None, exclude_media: int | None = None,
              min_score: float | None = None) -> list[SearchHit]:
    """The best ``k`` hits for one query vector, as photos (ranks renumbered from 1).

    Preconditions: ``query`` has the searcher's dimension; the searcher returns scores best first
    (inner product). Vector ids whose rows are gone from SQL are skipped, as are hits of
    ``exclude_media`` and, with ``min_score``, hits scoring below it.

    ``distinct=False``: one search for ``fetch`` (default ``k``) vectors; a photo may appear more
    than once. ``distinct=True``: each photo once, at its best vector; the search starts at
    ``fetch`` (default ``4 * k``) vectors and goes four times deeper until it has ``k`` photos,
    the index is exhausted, or (with ``min_score``) the scores have fallen below ``min_score``.
    """
    query = np.asarray(query, dtype=np.float32).reshape(1, -1)
    depth = int(fetch if fetch is not None else (4 * k if distinct else k))
    while True:
        scores, ids = searcher.search(query, depth, allowed_ids=allowed_ids)
        hits = [h for h in catalog.hits(scores, ids)[0]
                if h.media_id != exclude_media and (min_score is None or h.score >= min_score)]
        if not distinct:
            break
        seen: dict[int, SearchHit] = {}
        for h in hits:  # in rank order: the first hit of a photo is its best
            seen.setdefault(h.media_id, h)
        hits = list(seen.values())
        below = min_score is not None and ids.shape[1] > 0 and float(scores[0, -1]) < min_score
        if len(hits) >= k or depth >= len(searcher) or below:
            break
        depth *= 4
    return [SearchHit(h.media_id, h.path, h.score, rank, h.vector_id) for rank, h in enumerate(hits[:k], 1)]


__all__ = ["QueryTerm", "QueryLimits", "QUERY_LIMITS", "TERM_PATTERN", "NOT_BLANK_PATTERN", "parse_weighted", "compose_query", "SpaceSearcher", "catalog_searcher", "top_media"]
