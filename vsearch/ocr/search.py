"""Finding photos by the text read in them.

Two ways, both through the store's full-text index:

* **A filter** (``--text-in WORD``, and the ``text:`` key of the query language, which maps onto
  it): only photos whose text contains every given term. Terms are folded as the stored text is
  (:func:`vsearch.ocr.fold.fold`: no accents, no case, letters and digits only), so
  ``lumiere`` finds LUMIÈRE, ``croissants`` finds ``2croissants`` and ``"wifi password"`` finds
  ``WIFIPASSWORD``. Each term may match a different line of the photo. With a query the filter
  selects the ids FAISS may return (as ``--tag`` does), so ``-k`` photos that pass come back;
  alone it lists the matching photos newest first with a neutral score of 0.
* **Words in a plain text query**: a photo whose text contains every word of three letters or
  more of the query scores its cosine similarity to the query plus :data:`TEXT_MATCH_BONUS`
  (1.0). Cosines lie in [-1, 1], so such a photo ranks above every photo that only looks like the
  query, and text matches rank among themselves by how they look. A query whose words are in no
  photo's text ranks exactly as without text.

Hits found through their text are :class:`TextHit` s: the line that matched and its box.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from vsearch.catalog import SearchHit
from vsearch.errors import QueryError
from vsearch.fsutil import text_to_path
from vsearch.ocr import store
from vsearch.ocr.fold import fold, query_words

TEXT_MATCH_BONUS = 1.0  # added to the cosine of a photo whose text holds the query's words
MIN_QUERY_WORD = 3  # shorter words of a plain query (a, of, in) are not looked for in the text
MAX_TEXT_CANDIDATES = 10_000  # photos whose text matches a plain query that are scored


@dataclass(frozen=True)
class TextHit(SearchHit):
    """A photo found through its text: ``text`` is the line that matched, ``box`` its
    ``[x1, y1, x2, y2]`` in pixels of the upright photo."""

    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    text: str = ""
    whole_image: bool = False


def folded_terms(terms: Sequence[str]) -> list[str]:
    """The terms as the store matches them; a term without any letter or digit is a
    :class:`QueryError`."""
    out = []
    for term in terms:
        folded = fold(term)
        if not folded:
            raise QueryError(f"--text-in {term!r}: give letters or digits to look for in the photos' text")
        out.append(folded)
    return out


def photos_with_text(catalog, terms: Sequence[str]) -> dict[int, store.StoredLine]:
    """Media id -> the line that matched the first term, for the photos whose text contains
    every one of ``terms`` (already folded)."""
    found: dict[int, store.StoredLine] | None = None
    with catalog.reading() as r:
        for term in terms:
            per_photo: dict[int, store.StoredLine] = {}
            for line in store.lines_containing(r, term):
                per_photo.setdefault(line.media_id, line)
            found = per_photo if found is None else {m: found[m] for m in found if m in per_photo}
            if not found:
                return {}
    return found or {}


def text_filter(catalog, terms: Sequence[str], allowed_ids: np.ndarray | None = None
                ) -> tuple[dict[int, store.StoredLine], np.ndarray]:
    """The photos whose text contains every one of ``terms`` (as typed; folded here), among those
    whose image vector is in ``allowed_ids`` when given: (media id -> the line that matched, their
    image vector ids, sorted), for a search restricted to them."""
    matches = photos_with_text(catalog, folded_terms(terms))
    vector_of = image_vector_ids(catalog, list(matches))
    if allowed_ids is not None:
        allowed = set(np.asarray(allowed_ids).tolist())
        vector_of = {m: v for m, v in vector_of.items() if v in allowed}
    return ({m: line for m, line in matches.items() if m in vector_of},
            np.asarray(sorted(vector_of.values()), dtype=np.int64))


def image_vector_ids(catalog, media_ids: Sequence[int]) -> dict[int, int]:
    """Media id -> image vector id of these photos, for a search restricted to them."""
    with catalog.reading() as r:
        return store.image_vector_ids(r, media_ids)


def listing(catalog, matches: dict[int, store.StoredLine], k: int) -> list[TextHit]:
    """The matching photos alone (no query to rank them by): newest first, score 0."""
    with catalog.reading() as r:
        ordered = store.listing_order(r, list(matches))[:k]
        vector_of = store.image_vector_ids(r, [m for m, _ in ordered])
    return [_text_hit(mid, text_to_path(path), 0.0, rank, vector_of.get(mid, -1), matches[mid])
            for rank, (mid, path) in enumerate(ordered, start=1)]


def with_matched_lines(hits: Sequence[SearchHit], matches: dict[int, store.StoredLine]) -> list[SearchHit]:
    """``hits`` with those found through their text carrying the line that matched."""
    return [_text_hit(h.media_id, h.path, h.score, h.rank, h.vector_id, matches[h.media_id])
            if h.media_id in matches and not isinstance(h, TextHit) else h for h in hits]


def rank_with_words(catalog, query: str, query_vector: np.ndarray, hits: Sequence[SearchHit], k: int,
                    allowed_ids: np.ndarray | None = None) -> list[SearchHit]:
    """``hits`` (the visual ranking of ``query``) with the photos whose text holds the query's
    words put first (see the module's notes); unchanged when no photo's text holds them."""
    words = [w for w in query_words(query) if len(w) >= MIN_QUERY_WORD]
    if not words:
        return list(hits)
    matches = photos_with_text(catalog, words)
    if not matches:
        return list(hits)
    with catalog.reading() as r:
        chosen = sorted(matches)[:MAX_TEXT_CANDIDATES]
        mids, vids, vectors = store.image_vectors(r, chosen)
        paths = dict(store.listing_order(r, mids))
    if allowed_ids is not None:
        keep = np.isin(np.asarray(vids, dtype=np.int64), allowed_ids)
        mids, vids, vectors = [m for m, ok in zip(mids, keep) if ok], [v for v, ok in zip(vids, keep) if ok], vectors[keep]
    scores = vectors @ np.asarray(query_vector, dtype=np.float32).reshape(-1) + TEXT_MATCH_BONUS if len(mids) else []
    boosted = [_text_hit(m, text_to_path(paths[m]), float(s), 0, v, matches[m]) for m, v, s in zip(mids, vids, scores)]
    found = {h.media_id for h in boosted}
    merged = sorted([*boosted, *(h for h in hits if h.media_id not in found)], key=lambda h: -h.score)[:k]
    return [_reranked(h, rank) for rank, h in enumerate(merged, start=1)]


def _text_hit(media_id: int, path: str, score: float, rank: int, vector_id: int, line: store.StoredLine) -> TextHit:
    return TextHit(media_id, path, score, rank, vector_id, box=tuple(float(v) for v in line.box), text=line.text)


def _reranked(hit: SearchHit, rank: int) -> SearchHit:
    return replace(hit, rank=rank)


__all__ = ["TextHit", "TEXT_MATCH_BONUS", "folded_terms", "text_filter", "photos_with_text", "image_vector_ids", "listing",
           "with_matched_lines", "rank_with_words"]
