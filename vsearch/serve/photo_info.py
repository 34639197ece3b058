"""What the web page shows about one photo and about the faces of the collection: read-only
queries over the catalog's tables, answered as plain dicts for the JSON bodies.

The catalog and :class:`~vsearch.faces.service.FaceService` have no public reads for these views
(a photo's tags and faces, the face crops of people and clusters), so they are gathered here, in
one place, rather than inside the routes.
"""
from __future__ import annotations

import io
import os
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vsearch.catalog import IMAGE_SPACE
from vsearch.errors import ImageDecodeError
from vsearch.images import decode_image
from vsearch.schema import Media, Tag, Vector
from vsearch.serve.errors import ApiError

FACE_MARGIN = 0.35  # a face crop shows this much of the box's size around it (hair, chin)


def indexed_media(catalog, media_id: int):
    media = catalog.media(media_id)
    if media is None or media.status != "indexed":
        raise ApiError(404, "unknown_media", f"no indexed photo with id {media_id} in the catalog")
    return media


def existing_file(media) -> os.stat_result:
    try:
        return os.stat(media.path)
    except OSError:
        raise ApiError(404, "file_missing", f"photo {media.id} is in the catalog but its file is gone; "
                       "run `vsearch index` again to update the catalog") from None


def photo_details(catalog, media_id: int) -> dict:
    """Path, folder, size, pixels, date and stored tags of an indexed photo."""
    media = indexed_media(catalog, media_id)
    with Session(catalog.engine) as s:
        tags = s.execute(select(Tag.label, Tag.score).join(Vector, Vector.id == Tag.vector_id)
                         .where(Vector.media_id == media_id, Vector.space == IMAGE_SPACE)
                         .order_by(Tag.score.desc())).all()
    return {
        "media_id": media.id, "path": media.path, "name": os.path.basename(media.path),
        "folder": os.path.dirname(media.path), "bytes": media.size, "width": media.width,
        "height": media.height, "taken_at": media.taken_at, "modified_at": media.mtime,
        "tags": [{"label": label, "score": round(score, 6)} for label, score in tags],
        "thumbnail": f"/v1/media/{media.id}/thumbnail", "original": f"/v1/media/{media.id}/original",
    }


def tag_counts(catalog) -> list[dict]:
    """Every stored tag with the number of photos carrying it, most common first."""
    with Session(catalog.engine) as s:
        rows = s.execute(select(Tag.label, func.count()).group_by(Tag.label)
                         .order_by(func.count().desc(), Tag.label)).all()
    return [{"label": label, "photos": int(n)} for label, n in rows]


# -- faces -------------------------------------------------------------------------------------------
def faces_in_photo(catalog, media_id: int) -> list[dict]:
    """The faces found in a photo when it was indexed (boxes in the upright photo's pixels), with
    the name of the person each was labelled as and its last cluster."""
    from vsearch.faces.schema import Face, Person

    indexed_media(catalog, media_id)
    with Session(catalog.engine) as s:
        rows = s.execute(select(Face.id, Face.x0, Face.y0, Face.x1, Face.y1, Face.cluster, Person.name)
                         .outerjoin(Person, Person.id == Face.person_id)
                         .where(Face.media_id == media_id).order_by(Face.id)).all()
    return [{"face_id": fid, "face_box": [round(v, 1) for v in (x0, y0, x1, y1)], "cluster": cluster, "name": name}
            for fid, x0, y0, x1, y1, cluster, name in rows]


def cluster_examples(catalog, examples: int = 4) -> list[dict]:
    """Clusters of the last `vsearch faces cluster` still unnamed: size and a few face ids."""
    from vsearch.faces.schema import Face

    with Session(catalog.engine) as s:
        rows = s.execute(select(Face.cluster, Face.id, Face.media_id).where(Face.cluster.is_not(None),
                                                                              Face.person_id.is_(None))
                         .order_by(Face.cluster, Face.id)).all()
    out: dict[int, dict] = {}
    for cluster, face_id, media_id in rows:
        entry = out.setdefault(int(cluster), {"cluster": int(cluster), "size": 0, "faces": []})
        entry["size"] += 1
        if len(entry["faces"]) < examples:
            entry["faces"].append({"face_id": face_id, "media_id": media_id})
    return sorted(out.values(), key=lambda c: (-c["size"], c["cluster"]))


def person_face_id(catalog, face_service, name: str) -> int | None:
    """A face of the collection that shows ``name``: one labelled as them, else the face nearest
    to their templates if it passes the verification threshold; None when no photo shows them."""
    from vsearch.faces.schema import FACE_SPACE, Face, Person

    with Session(catalog.engine) as s:
        labelled = s.scalar(select(Face.id).join(Person, Person.id == Face.person_id)
                            .where(Person.name == name).order_by(Face.score.desc()).limit(1))
    if labelled is not None:
        return labelled
    templates = face_service.templates(name)  # UnknownPersonError (404) for a name not enrolled
    if catalog.space_model(FACE_SPACE) is None or catalog.vector_count(FACE_SPACE) == 0:
        return None
    scores, ids = catalog.index(FACE_SPACE).search(templates, 1)
    best = int(scores[:, 0].argmax())
    if ids[best, 0] < 0 or scores[best, 0] < face_service.threshold:
        return None
    with Session(catalog.engine) as s:
        return s.scalar(select(Face.id).where(Face.vector_id == int(ids[best, 0])))


def face_crop_jpeg(catalog, face_id: int, size: int) -> bytes:
    """A square-ish JPEG of one face of the collection, with some margin around its box."""
    from vsearch.faces.schema import Face

    with Session(catalog.engine) as s:
        face = s.get(Face, face_id)
        box = None if face is None else (face.media_id, face.x0, face.y0, face.x1, face.y1)
    if box is None:
        raise ApiError(404, "unknown_face", f"no face with id {face_id} in the catalog")
    media = indexed_media(catalog, box[0])
    existing_file(media)
    return crop_jpeg(media.path, box[1:], size)


def crop_jpeg(path: str, box: Sequence[float], size: int) -> bytes:
    try:
        image = decode_image(path).image
    except ImageDecodeError:
        raise ApiError(404, "file_unreadable", f"{os.path.basename(path)} can no longer be decoded") from None
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * FACE_MARGIN)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    window = (max(0, int(cx - side / 2)), max(0, int(cy - side / 2)),
              min(image.width, int(cx + side / 2)), min(image.height, int(cy + side / 2)))
    crop = image.crop(window)
    crop.thumbnail((size, size))
    buf = io.BytesIO()
    crop.convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()
