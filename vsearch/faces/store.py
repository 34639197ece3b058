"""The SQL of the faces feature: its tables (:mod:`vsearch.faces.schema`) read and written inside a
catalog transaction (``catalog.transaction()``) or read form (``catalog.reading()``).

Face vectors are rows of the catalog's ``vectors`` table, written with ``tx.add_vectors`` /
``tx.remove_vectors`` so that the indexes follow the commit; the rows here hang off them.
"""
from __future__ import annotations

import json
import time
from typing import Sequence

import numpy as np
from sqlalchemy import delete, func, select, update

from vsearch.catalog import Reading, Transaction, id_chunks
from vsearch.faces.schema import ENROLLED_SPACE, FACE_SPACE, Face, FaceScan, Person, Template
from vsearch.faces.types import FoundFace
from vsearch.fsutil import text_to_path
from vsearch.schema import Media, Vector

# -- the indexer's faces --------------------------------------------------------------------------


def add_faces(tx: Transaction, media_id: int, faces: Sequence[FoundFace], embedder: str) -> None:
    """Store the faces found in a photo, and that this content was scanned by ``embedder`` (also
    when no face was found, so it is not scanned again)."""
    tx.session.merge(FaceScan(media_id=media_id, sha256=tx.media_sha256(media_id), faces=len(faces), embedder=embedder))
    if not faces:
        return
    vectors = np.stack([f.embedding for f in faces]).astype(np.float32)
    ids = tx.add_vectors(FACE_SPACE, vectors, [media_id] * len(faces))
    tx.session.add_all([
        Face(vector_id=vid, media_id=media_id, x0=f.box[0], y0=f.box[1], x1=f.box[2], y1=f.box[3],
             landmarks=json.dumps(np.round(f.landmarks, 1).tolist()), score=f.score, detector=f.detector)
        for vid, f in zip(ids, faces)
    ])


def take_unscanned(tx: Transaction, media_ids: Sequence[int], embedder: str) -> set[int]:
    """Photos among ``media_ids`` without a scan of their current content by ``embedder``. Their
    stale faces (from a scan of other content) are removed, so scanning again cannot duplicate them."""
    todo: set[int] = set()
    for chunk in id_chunks(media_ids):
        rows = tx.session.execute(select(Media.id, Media.sha256, FaceScan.sha256, FaceScan.embedder)
                                  .outerjoin(FaceScan, FaceScan.media_id == Media.id).where(Media.id.in_(chunk)))
        for mid, sha, scanned_sha, scanned_by in rows:
            if scanned_by is None or scanned_sha != sha or scanned_by != embedder:
                todo.add(int(mid))
    stale: list[int] = []
    for chunk in id_chunks(sorted(todo)):
        stale += tx.session.scalars(select(Face.vector_id).where(Face.media_id.in_(chunk)))
    if stale:
        tx.remove_vectors(FACE_SPACE, stale)
    return todo


# -- enrolled people ------------------------------------------------------------------------------


def add_templates(tx: Transaction, name: str, vectors: np.ndarray, source: str,
                  face_ids: Sequence[int] = ()) -> tuple[bool, int]:
    """Add templates to ``name`` (creating the person) and mark ``face_ids`` as that person.
    Returns (whether the person was created, their number of templates)."""
    s = tx.session
    person = s.scalars(select(Person).where(Person.name == name)).first()
    created = person is None
    if person is None:
        person = Person(name=name, created_at=time.time())
        s.add(person)
        s.flush()
    ids = tx.add_vectors(ENROLLED_SPACE, vectors, [None] * len(vectors))
    s.add_all([Template(vector_id=i, person_id=person.id, source=source) for i in ids])
    for chunk in id_chunks(face_ids):
        s.execute(update(Face).where(Face.id.in_(chunk)).values(person_id=person.id, cluster=None))
    s.flush()
    count = s.scalar(select(func.count()).select_from(Template).where(Template.person_id == person.id))
    return created, int(count)


def remove_person(tx: Transaction, name: str) -> int | None:
    """Delete a person with their templates (rows and vectors); None if ``name`` is not enrolled,
    else the number of templates removed."""
    person_id = tx.session.scalar(select(Person.id).where(Person.name == name))
    if person_id is None:
        return None
    vector_ids = list(tx.session.scalars(select(Template.vector_id).where(Template.person_id == person_id)))
    tx.remove_vectors(ENROLLED_SPACE, vector_ids)  # their template rows cascade
    tx.session.execute(delete(Person).where(Person.id == person_id))
    return len(vector_ids)


def people(r: Reading) -> list[tuple[str, int, float, int]]:
    """(name, templates, created_at, faces in the collection marked as them) of every person, by name."""
    s = r.session
    counts = dict(s.execute(select(Template.person_id, func.count()).group_by(Template.person_id)).all())
    in_photos = dict(s.execute(select(Face.person_id, func.count()).where(Face.person_id.is_not(None))
                               .group_by(Face.person_id)).all())
    return [(p.name, int(counts.get(p.id, 0)), p.created_at, int(in_photos.get(p.id, 0)))
            for p in s.scalars(select(Person).order_by(Person.name))]


def templates(r: Reading, name: str) -> np.ndarray | None:
    """(T, D) template embeddings of ``name`` (T may be 0); None if not enrolled."""
    person_id = r.session.scalar(select(Person.id).where(Person.name == name))
    if person_id is None:
        return None
    blobs = list(r.session.scalars(select(Vector.embedding).join(Template, Template.vector_id == Vector.id)
                                   .where(Template.person_id == person_id).order_by(Vector.id)))
    return r.vectors(ENROLLED_SPACE, blobs) if blobs else np.zeros((0, 0), np.float32)


def template_owners(r: Reading, vector_ids: Sequence[int]) -> dict[int, str]:
    """Enrolled vector id -> the person's name."""
    out: dict[int, str] = {}
    for chunk in id_chunks(sorted(vector_ids)):
        rows = r.session.execute(select(Template.vector_id, Person.name).join(Person, Person.id == Template.person_id)
                                 .where(Template.vector_id.in_(chunk)))
        out.update((int(v), n) for v, n in rows)
    return out


def all_templates(r: Reading) -> tuple[list[int], list[str], np.ndarray]:
    """(vector ids, owners' names, (T, D) embeddings) of every enrolled template, by vector id."""
    rows = r.session.execute(select(Template.vector_id, Person.name, Vector.embedding)
                             .join(Person, Person.id == Template.person_id)
                             .join(Vector, Vector.id == Template.vector_id).order_by(Template.vector_id)).all()
    emb = r.vectors(ENROLLED_SPACE, [row[2] for row in rows]) if rows else np.zeros((0, 1), np.float32)
    return [int(row[0]) for row in rows], [row[1] for row in rows], emb


def named_faces(r: Reading) -> list[tuple[str, int, int]]:
    """(person's name, face vector id, media id) of every face named as an enrolled person."""
    rows = r.session.execute(select(Person.name, Face.vector_id, Face.media_id)
                             .join(Person, Person.id == Face.person_id))
    return [(name, int(vid), int(mid)) for name, vid, mid in rows]


def faces_after(r: Reading, vector_id: int) -> tuple[list[int], list[int], np.ndarray]:
    """(vector ids, media ids, (N, D) embeddings) of the collection's faces with a larger vector
    id than ``vector_id``: those indexed since."""
    rows = r.session.execute(select(Vector.id, Vector.media_id, Vector.embedding)
                             .where(Vector.space == FACE_SPACE, Vector.id > int(vector_id)).order_by(Vector.id)).all()
    emb = r.vectors(FACE_SPACE, [row[2] for row in rows]) if rows else np.zeros((0, 1), np.float32)
    return [int(row[0]) for row in rows], [int(row[1]) for row in rows], emb


def media_of_vectors(r: Reading, vector_ids: Sequence[int]) -> dict[int, int]:
    """Face vector id -> its photo's media id."""
    out: dict[int, int] = {}
    for chunk in id_chunks(sorted(vector_ids)):
        out.update((int(v), int(m)) for v, m in r.session.execute(
            select(Vector.id, Vector.media_id).where(Vector.id.in_(chunk), Vector.media_id.is_not(None))))
    return out


def media_paths(r: Reading, media_ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in id_chunks(sorted(media_ids)):
        out.update((int(m), text_to_path(p)) for m, p in r.session.execute(
            select(Media.id, Media.path).where(Media.id.in_(chunk))))
    return out


def cluster_vector_ids(r: Reading) -> dict[int, list[int]]:
    """Cluster -> vector ids of its unnamed faces."""
    out: dict[int, list[int]] = {}
    for cid, vid in r.session.execute(select(Face.cluster, Face.vector_id)
                                      .where(Face.cluster.is_not(None), Face.person_id.is_(None))):
        out.setdefault(int(cid), []).append(int(vid))
    return out


def face_counts(r: Reading) -> tuple[int, int, int]:
    """(faces in the collection, faces in a group, faces named as a person)."""
    total, grouped, named = r.session.execute(select(
        func.count(Face.id), func.count(Face.cluster), func.count(Face.person_id))).one()
    return int(total or 0), int(grouped or 0), int(named or 0)


# -- clusters of the collection's faces -----------------------------------------------------------


def unnamed_faces(r: Reading) -> tuple[list[int], list[int], np.ndarray]:
    """(face ids, their photos' media ids, (N, D) embeddings) of faces not marked as a person."""
    rows = r.session.execute(select(Face.id, Face.media_id, Vector.embedding)
                             .join(Vector, Vector.id == Face.vector_id).where(Face.person_id.is_(None))
                             .order_by(Face.id)).all()
    emb = r.vectors(FACE_SPACE, [row[2] for row in rows]) if rows else np.zeros((0, 1), np.float32)
    return [row[0] for row in rows], [row[1] for row in rows], emb


def set_clusters(tx: Transaction, clusters: dict[int, list[int]]) -> None:
    """Replace every face's cluster: ``clusters`` maps a cluster number to its face ids."""
    tx.session.execute(update(Face).values(cluster=None))
    for cid, face_ids in clusters.items():
        for chunk in id_chunks(face_ids):
            tx.session.execute(update(Face).where(Face.id.in_(chunk)).values(cluster=cid))


def cluster_photos(r: Reading) -> list[tuple[int, str]]:
    """(cluster, photo path) of every clustered face, by cluster."""
    rows = r.session.execute(select(Face.cluster, Media.path).join(Media, Media.id == Face.media_id)
                             .where(Face.cluster.is_not(None)).order_by(Face.cluster, Face.id)).all()
    return [(int(cid), text_to_path(path)) for cid, path in rows]


def cluster_members(r: Reading, cluster: int) -> tuple[list[int], np.ndarray]:
    """(face ids, (N, D) embeddings) of the unnamed faces of a cluster."""
    rows = r.session.execute(select(Face.id, Vector.embedding).join(Vector, Vector.id == Face.vector_id)
                             .where(Face.cluster == cluster, Face.person_id.is_(None))).all()
    emb = r.vectors(FACE_SPACE, [row[1] for row in rows]) if rows else np.zeros((0, 1), np.float32)
    return [row[0] for row in rows], emb


# -- what the web page shows ----------------------------------------------------------------------


def photo_faces(r: Reading, media_id: int) -> list[tuple[int, tuple[float, float, float, float], int | None, str | None]]:
    """(face id, box, cluster, name of the person it is marked as) of every face of a photo."""
    rows = r.session.execute(select(Face.id, Face.x0, Face.y0, Face.x1, Face.y1, Face.cluster, Person.name)
                             .outerjoin(Person, Person.id == Face.person_id)
                             .where(Face.media_id == media_id).order_by(Face.id))
    return [(int(fid), (x0, y0, x1, y1), cluster, name) for fid, x0, y0, x1, y1, cluster, name in rows]


def unnamed_cluster_faces(r: Reading) -> list[tuple[int, int, int]]:
    """(cluster, face id, media id) of every clustered face not marked as a person, by cluster."""
    rows = r.session.execute(select(Face.cluster, Face.id, Face.media_id)
                             .where(Face.cluster.is_not(None), Face.person_id.is_(None)).order_by(Face.cluster, Face.id))
    return [(int(c), int(f), int(m)) for c, f, m in rows]


def best_labelled_face(r: Reading, name: str) -> int | None:
    """The highest-scoring face of the collection marked as ``name``."""
    return r.session.scalar(select(Face.id).join(Person, Person.id == Face.person_id)
                            .where(Person.name == name).order_by(Face.score.desc()).limit(1))


def face_of_vector(r: Reading, vector_id: int) -> int | None:
    return r.session.scalar(select(Face.id).where(Face.vector_id == int(vector_id)))


def face_box(r: Reading, face_id: int) -> tuple[int, tuple[float, float, float, float]] | None:
    """(media id, box in the upright photo's pixels) of a face."""
    face = r.session.get(Face, face_id)
    return None if face is None else (face.media_id, (face.x0, face.y0, face.x1, face.y1))
