"""Which faces of the collection show which enrolled person.

A person's faces are the indexed faces (space ``face``) that verify against them — the best cosine
over their templates reaches the threshold, as ``faces verify`` decides — and the faces named as
them (``faces name``). Their photos are the photos of those faces. A face may verify against two
people; :meth:`FaceLinks.best_person` picks one where a single answer is needed.

The links are computed, not stored: one FAISS range search of every template over the index of
the collection's faces. So enrolling someone after the photos were indexed, adding templates,
removing a person, a new calibration or faces indexed by another process can never leave them
stale. The search is kept per (threshold, the SQL fingerprints of both face spaces): repeated
look-ups while nothing changed (the faces tab, a ``person:`` filter) cost two SQL counts; when
faces were only added (an index run going on), just the new faces are compared with the
templates; any other change of either space, or of the threshold, searches again. Time at 100,000 faces:
``benchmarks/face_people.py``, figures in ``benchmarks/RESULTS.md``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from vsearch.faces import store
from vsearch.faces.schema import ENROLLED_SPACE, FACE_SPACE


@dataclass(frozen=True)
class PersonFaces:
    name: str
    faces: dict[int, float]  # face vector id -> best template score (1.0 for a face named as them)
    media_ids: frozenset[int]  # the photos showing them

    @property
    def photos(self) -> int:
        return len(self.media_ids)


@dataclass(frozen=True)
class _Matches:
    """The cached part: per person, the faces verifying against their templates."""

    key: tuple
    faces: dict[str, dict[int, float]]
    media: dict[int, int]  # face vector id -> media id, for every matched face
    owners: tuple[str, ...] = ()  # the templates' owners, row by row of ``templates``
    templates: np.ndarray | None = None  # (T, D)


class FaceLinks:
    """The links of one catalog, searched again only when a face space or the threshold changed.
    Thread-safe (the server asks from several worker threads)."""

    def __init__(self, catalog):
        self.catalog = catalog
        self._lock = threading.Lock()
        self._matches: _Matches | None = None

    def people(self, threshold: float) -> dict[str, PersonFaces]:
        """Every enrolled person who shows in the collection -> their faces and photos."""
        matches = self._current(threshold)
        faces = {name: dict(found) for name, found in matches.faces.items()}
        media = {name: {matches.media[v] for v in found if v in matches.media} for name, found in faces.items()}
        with self.catalog.reading() as r:
            named = store.named_faces(r)
        for name, vid, mid in named:
            faces.setdefault(name, {})[vid] = 1.0
            media.setdefault(name, set()).add(mid)
        return {name: PersonFaces(name, faces[name], frozenset(media[name])) for name in faces}

    def person(self, name: str, threshold: float) -> PersonFaces:
        """One person's faces and photos (none for a name not enrolled or never seen)."""
        return self.people(threshold).get(name) or PersonFaces(name, {}, frozenset())

    def best_person(self, threshold: float) -> dict[int, tuple[str, float]]:
        """Face vector id -> (the person it verifies best against, that score), for every face
        linked to anyone; a face named as a person is theirs."""
        out: dict[int, tuple[str, float]] = {}
        for name, person in self.people(threshold).items():
            for vid, score in person.faces.items():
                if vid not in out or score > out[vid][1]:
                    out[vid] = (name, score)
        return out

    # -- the search ------------------------------------------------------------------------------
    def _current(self, threshold: float) -> _Matches:
        catalog = self.catalog
        key = (round(float(threshold), 9), catalog.sql_fingerprint(FACE_SPACE), catalog.sql_fingerprint(ENROLLED_SPACE))
        with self._lock:
            old = self._matches
            if old is None or old.key != key:
                added = _only_added(old.key, key) if old is not None else False
                self._matches = self._add_new_faces(old, key, float(threshold)) if added else \
                    self._search(key, float(threshold))
            return self._matches

    def _add_new_faces(self, old: _Matches, key: tuple, threshold: float) -> _Matches:
        """``old`` with the faces indexed since compared with the same templates (``key`` differs
        from ``old.key`` by added faces only)."""
        with self.catalog.reading() as r:
            vids, mids, emb = store.faces_after(r, old.key[1][1])
        if old.templates is None or len(vids) != key[1][0] - old.key[1][0]:  # first faces, or rows went too
            return self._search(key, threshold)
        faces = {name: dict(found) for name, found in old.faces.items()}
        media = dict(old.media)
        if len(old.templates) and len(vids):
            scores = old.templates @ emb.T  # (T, new)
            for row, col in zip(*np.nonzero(scores >= threshold)):
                found = faces.setdefault(old.owners[row], {})
                vid, score = vids[col], float(scores[row, col])
                if score > found.get(vid, -2.0):
                    found[vid] = score
                media[vid] = mids[col]
        return _Matches(key, faces, media, old.owners, old.templates)

    def _search(self, key: tuple, threshold: float) -> _Matches:
        catalog = self.catalog
        faces: dict[str, dict[int, float]] = {}
        if key[1][0] == 0 or key[2][0] == 0 or catalog.space_model(FACE_SPACE) is None:
            return _Matches(key, faces, {})
        with catalog.reading() as r:
            template_ids, owners, templates = store.all_templates(r)
        catalog.sync(FACE_SPACE)  # faces indexed or removed by another process since the last look
        lims, scores, ids = range_search(catalog.index(FACE_SPACE).index, templates, threshold)
        for row, owner in enumerate(owners):
            found = faces.setdefault(owner, {})
            for vid, score in zip(ids[lims[row]:lims[row + 1]].tolist(), scores[lims[row]:lims[row + 1]].tolist()):
                if score > found.get(vid, -2.0):
                    found[vid] = score
        faces = {name: found for name, found in faces.items() if found}
        with catalog.reading() as r:
            media = store.media_of_vectors(r, sorted({v for found in faces.values() for v in found}))
        return _Matches(key, faces, media, tuple(owners), templates)


def _only_added(old: tuple, new: tuple) -> bool:
    """Whether two keys differ only by faces added (same threshold and templates, more faces with
    larger ids); :meth:`FaceLinks._add_new_faces` checks that no face went meanwhile."""
    return old[0] == new[0] and old[2] == new[2] and new[1][0] > old[1][0] and new[1][1] > old[1][1]


def range_search(index, queries: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lims, scores, ids) of every indexed vector whose inner product with a query is at least
    ``threshold`` (FAISS keeps scores strictly above its radius, so the radius is the float32 just
    below). An IVF index searches its ``nprobe`` nearest lists only."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if not len(queries) or index.ntotal == 0:
        return np.zeros(len(queries) + 1, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64)
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    lims, scores, ids = index.range_search(queries, radius)
    return np.asarray(lims, np.int64), np.asarray(scores, np.float32), np.asarray(ids, np.int64)
