"""What the web page shows about one photo and about the faces of the collection, answered as
plain dicts for the JSON bodies. The reads are the tags' and faces' stores
(:mod:`vsearch.tags`, :mod:`vsearch.faces.store`); paths are shown as :func:`display_path` gives
them, since JSON cannot carry a file name's undecodable bytes.
"""
from __future__ import annotations

import io
import os
from typing import Sequence

from vsearch.errors import ImageDecodeError
from vsearch.fsutil import display_path
from vsearch.images import decode_image
from vsearch.serve.errors import ApiError
from vsearch.tags import photo_tags, stored_tag_counts

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
    tags = photo_tags(catalog, media_id)
    path = display_path(media.path)
    return {
        "media_id": media.id, "path": path, "name": os.path.basename(path),
        "folder": os.path.dirname(path), "bytes": media.size, "width": media.width,
        "height": media.height, "taken_at": media.taken_at, "modified_at": media.mtime,
        "tags": [{"label": label, "score": round(score, 6)} for label, score in tags],
        "text": photo_text(catalog, media.id),
        "thumbnail": f"/v1/media/{media.id}/thumbnail", "original": f"/v1/media/{media.id}/original",
    }


def photo_text(catalog, media_id: int) -> list[dict]:
    """The lines of text read in a photo (``index --ocr``), in reading order, with their boxes in
    the upright photo's pixels; none on a catalog where no text was ever read."""
    from vsearch.ocr import HAS_TEXT_KEY, store

    if not catalog.get_meta(HAS_TEXT_KEY):
        return []
    with catalog.reading() as r:
        lines = store.photo_lines(r, [media_id]).get(media_id, [])
    return [{"text": line.text, "box": [round(float(v), 1) for v in line.box], "score": round(float(line.score), 4)}
            for line in lines]


def tag_counts(catalog) -> list[dict]:
    """Every stored tag with the number of photos carrying it, most common first."""
    return [count.to_json() for count in stored_tag_counts(catalog)]


# -- faces -------------------------------------------------------------------------------------------
def faces_in_photo(catalog, media_id: int) -> list[dict]:
    """The faces found in a photo when it was indexed (boxes in the upright photo's pixels), with
    the name of the person each was labelled as and its last cluster."""
    from vsearch.faces import store

    indexed_media(catalog, media_id)
    with catalog.reading() as r:
        rows = store.photo_faces(r, media_id)
    return [{"face_id": fid, "face_box": [round(v, 1) for v in box], "cluster": cluster, "name": name}
            for fid, box, cluster, name in rows]


def cluster_examples(catalog, examples: int = 4) -> list[dict]:
    """Clusters of the last `vsearch faces cluster` still unnamed: size and a few face ids."""
    from vsearch.faces import store

    with catalog.reading() as r:
        rows = store.unnamed_cluster_faces(r)
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
    from vsearch.faces import store
    from vsearch.faces.schema import FACE_SPACE

    with catalog.reading() as r:
        labelled = store.best_labelled_face(r, name)
    if labelled is not None:
        return labelled
    templates = face_service.templates(name)  # UnknownPersonError (404) for a name not enrolled
    if catalog.space_model(FACE_SPACE) is None or catalog.vector_count(FACE_SPACE) == 0:
        return None
    scores, ids = catalog.index(FACE_SPACE).search(templates, 1)
    best = int(scores[:, 0].argmax())
    if ids[best, 0] < 0 or scores[best, 0] < face_service.threshold:
        return None
    with catalog.reading() as r:
        return store.face_of_vector(r, int(ids[best, 0]))


def face_crop_jpeg(catalog, face_id: int, size: int) -> bytes:
    """A square-ish JPEG of one face of the collection, with some margin around its box."""
    from vsearch.faces import store

    with catalog.reading() as r:
        found = store.face_box(r, face_id)
    if found is None:
        raise ApiError(404, "unknown_face", f"no face with id {face_id} in the catalog")
    media = indexed_media(catalog, found[0])
    existing_file(media)
    return crop_jpeg(media.path, found[1], size)


def original_jpeg(path: str) -> bytes | None:
    """The whole photo at ``path`` as a JPEG (upright, full size), for originals a browser cannot
    show (HEIC, TIFF, camera RAW); None when it cannot be decoded any more."""
    try:
        image = decode_image(path).image
    except ImageDecodeError:
        return None
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def crop_jpeg(path: str, box: Sequence[float], size: int) -> bytes:
    try:
        image = decode_image(path).image
    except ImageDecodeError:
        raise ApiError(404, "file_unreadable", f"{os.path.basename(display_path(path))} can no longer be decoded") from None
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
