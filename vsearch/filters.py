"""What the filters of a query (:mod:`vsearch.query`) select: the image vector ids a search may
return, handed to FAISS as an id selection (``allowed_ids``), so ``-k 10`` is the 10 best photos
that pass, never fewer.

All terms must hold (AND); ``-key:value`` must not. What each key reads:

* ``tag:`` the zero-shot tags (``vsearch tag``), case-insensitive;
* ``text:`` the text read in the photo (``index --ocr``), ignoring case, accents and spaces;
* ``person:`` the photos with a face verifying against that enrolled person
  (:mod:`vsearch.faces.people`), through a look-up the caller passes (the faces need their model);
* ``folder:`` a path prefix, a whole folder name at a time (``~`` expanded, made absolute);
* ``type:`` the file name's extension family (:data:`vsearch.query.TYPE_FAMILIES`);
* ``year:``, ``month:``, ``date:``, ``after:``, ``before:`` (inclusive) the day the photo was
  taken: its EXIF capture time as recorded (the camera's local time), or, for a photo without
  one, the day its file was last modified (local time of this machine).

``place:``, ``near:``, ``camera:`` and ``lens:`` are refused: the catalog stores no places,
cameras or lenses yet.
"""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from vsearch.catalog import IMAGE_SPACE, SearchHit
from vsearch.errors import QueryError
from vsearch.query import DATE_KEYS, TYPE_FAMILIES, Term

NOT_STORED = {"place": "places", "near": "places", "camera": "cameras", "lens": "lenses"}

PersonPhotos = Callable[[str], frozenset[int]]  # an enrolled person's name -> media ids of their photos


@dataclass(frozen=True)
class Photo:
    vector_id: int
    media_id: int
    path: str  # as stored paths come back from the catalog (str, undecodable bytes as surrogates)
    day: _dt.date
    when: str  # sort key, newest last: the capture time, else the file time, as ISO text


@dataclass(frozen=True)
class Selection:
    """The photos that pass: their image vector ids (sorted, for FAISS), newest first for a listing;
    ``lines``: media id -> the read line a ``text:`` term matched."""

    photos: tuple[Photo, ...]
    lines: dict = field(default_factory=dict)
    ids: tuple[int, ...] | None = None  # the vector ids alone, when no listing was asked for

    @property
    def vector_ids(self) -> np.ndarray:
        if self.ids is not None:
            return np.asarray(sorted(self.ids), dtype=np.int64)
        return np.asarray(sorted(p.vector_id for p in self.photos), dtype=np.int64)

    def listing(self, k: int) -> list[SearchHit]:
        """The first ``k`` photos, newest first, with no score (0)."""
        return [SearchHit(p.media_id, p.path, 0.0, rank, p.vector_id)
                for rank, p in enumerate(self.photos[:k], start=1)]


def person_lookup(face_service) -> PersonPhotos:
    """``person:`` over a :class:`~vsearch.faces.service.FaceService`: the photos of an enrolled
    person, their name in any case; a name nobody is enrolled under is a :class:`QueryError`."""
    from vsearch.faces.errors import UnknownPersonError

    def photos(name: str) -> frozenset[int]:
        try:
            return face_service.person_photos(name).media_ids
        except UnknownPersonError:
            pass
        same = [p.name for p in face_service.people() if p.name.casefold() == name.casefold()]
        if len(same) == 1:  # names are typed in any case; two names differing only in case must be typed exactly
            return face_service.person_photos(same[0]).media_ids
        raise QueryError(f"person:{name}: no one of that name is enrolled (see `vsearch faces list`)")

    return photos


def check_supported(terms: Sequence[Term]) -> None:
    for t in terms:
        if t.key in NOT_STORED:
            raise QueryError(f"{t}: not supported yet: this catalog stores no {NOT_STORED[t.key]}")


def select(catalog_reads, catalog: Callable[[], object], terms: Sequence[Term],
           person_photos: PersonPhotos | None = None, listing: bool = True) -> Selection:
    """The photos passing every term. ``catalog_reads`` runs the read queries (a catalog or its
    read-only view); ``catalog()`` opens the full catalog, only for tags, read text and faces.
    ``listing=False`` (a search that ranks by a query): only the vector ids are needed, and tags
    alone (the everyday ``--tag``) are answered from the tag table without reading every photo."""
    check_supported(terms)
    if not listing and terms and all(t.key == "tag" for t in terms) and any(not t.negated for t in terms):
        ids: set[int] | None = None
        for t in sorted(terms, key=lambda t: t.negated):  # the tags a photo must carry first
            tagged = _tagged(catalog(), t.value)
            ids = (ids - tagged if t.negated else tagged if ids is None else ids & tagged)
        return Selection((), {}, tuple(sorted(ids or ())))
    tests = [(_predicate(t), t.negated) for t in terms if t.key not in _LOOKED_UP]
    photos = [p for p in (_photo(*row) for row in catalog_reads.photo_facts(IMAGE_SPACE))
              if all(test(p) != negated for test, negated in tests)]
    lines: dict = {}
    for t in terms:
        if not photos:
            break
        if t.key == "tag":
            photos = _keep(photos, _tagged(catalog(), t.value), t.negated, by_vector=True)
        elif t.key == "text":
            found = _with_text(catalog(), t.value)
            photos = _keep(photos, set(found), t.negated)
            if not t.negated:
                lines.update({m: line for m, line in found.items() if m not in lines})
        elif t.key == "person":
            if person_photos is None:
                raise QueryError(f"{t}: this catalog has no faces to look for people in (see `index --faces`)")
            photos = _keep(photos, person_photos(t.value), t.negated)
    photos.sort(key=lambda p: (p.when, p.media_id), reverse=True)
    kept = {p.media_id for p in photos}
    return Selection(tuple(photos), {m: line for m, line in lines.items() if m in kept})


_LOOKED_UP = ("tag", "text", "person")


def _photo(vector_id: int, media_id: int, path: str, taken_at: str | None, mtime: float) -> Photo:
    day = None
    if taken_at:
        try:
            day = _dt.date.fromisoformat(taken_at[:10])
        except ValueError:
            day = None
    if day is None:
        stamp = _dt.datetime.fromtimestamp(mtime)
        return Photo(vector_id, media_id, path, stamp.date(), stamp.isoformat())
    return Photo(vector_id, media_id, path, day, taken_at)


def _predicate(t: Term) -> Callable[[Photo], bool]:
    """What a term asks of a photo's facts, worked out once per search (not once per photo)."""
    if t.key in DATE_KEYS:
        first, last = t.day_range()
        return lambda p: first <= p.day <= last
    if t.key == "folder":
        folder = os.path.abspath(os.path.expanduser(t.value))
        prefix = folder if folder.endswith(os.sep) else folder + os.sep
        return lambda p: p.path.startswith(prefix)
    if t.key == "type":
        extensions = TYPE_FAMILIES[t.value]
        return lambda p: p.path.lower().endswith(extensions)
    raise QueryError(f"{t}: this key does not filter photos")


def _keep(photos: list[Photo], ids, negated: bool, by_vector: bool = False) -> list[Photo]:
    ids = set(ids)
    return [p for p in photos if ((p.vector_id if by_vector else p.media_id) in ids) != negated]


def _tagged(catalog, tag: str) -> set[int]:
    from vsearch.tags import check_known_tags, vector_ids_with_tags

    check_known_tags(catalog, [tag])
    return set(vector_ids_with_tags(catalog, [tag]).tolist())


def _with_text(catalog, words: str) -> dict:
    from vsearch.ocr import search as text_search

    return text_search.photos_with_text(catalog, text_search.folded_terms([words]))


__all__ = ["NOT_STORED", "Photo", "Selection", "check_supported", "person_lookup", "select"]
