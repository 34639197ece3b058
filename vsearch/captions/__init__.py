"""Caption sets: captions stored in SQL and embedded into their own FAISS space ("caption").

Captions are embedded with the text side of the catalog's model, so an image's vector can be
compared with them directly (best captions for an image) and so can a text (similar captions).
Their SQL is in :mod:`vsearch.captions.store`.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field

import numpy as np

from vsearch.captions import store
from vsearch.captions.store import CAPTION_SPACE
from vsearch.catalog import writes_catalog
from vsearch.errors import QueryError, VSearchError


class CaptionFileError(VSearchError):
    """A caption file cannot be read or has no usable captions."""


@dataclass(frozen=True)
class CaptionRow:
    text: str
    ext_id: str | None = None
    image_ref: str | None = None


@dataclass(frozen=True)
class CaptionHit:
    caption_id: int
    text: str
    score: float
    rank: int
    caption_set: str
    ext_id: str | None
    image_ref: str | None

    def to_json(self) -> dict:
        """One caption as `vsearch captions search --json` and `for-image --json` print it."""
        return {"caption": self.text, "score": round(self.score, 6), "set": self.caption_set, "id": self.ext_id,
                "image": self.image_ref}


@dataclass
class AddCaptionsSummary:
    added: int = 0
    skipped_empty: int = 0
    missing_images: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """What `vsearch captions add --json` prints."""
        return {"added": self.added, "skipped_empty": self.skipped_empty, "missing_images": list(self.missing_images)}


_TEXT_KEYS = ("caption", "text", "sentence")
_IMAGE_KEYS = ("image", "image_path", "path", "file", "filename")
_ID_KEYS = ("id", "caption_id")


def _pick(d: dict, keys) -> str | None:
    lowered = {str(k).strip().lower(): v for k, v in d.items()}
    for k in keys:
        if k in lowered and lowered[k] not in (None, ""):
            return str(lowered[k])
    return None


def read_caption_file(path: str) -> list[CaptionRow]:
    """``.txt`` one caption per line; ``.csv``/``.tsv`` with a caption/text column (optional id and
    image columns); ``.jsonl`` objects with the same keys."""
    ext = os.path.splitext(path)[1].lower()
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if ext in (".csv", ".tsv"):
                reader = csv.DictReader(fh, delimiter="\t" if ext == ".tsv" else ",")
                if not reader.fieldnames or not any(f.strip().lower() in _TEXT_KEYS for f in reader.fieldnames):
                    raise CaptionFileError(f"{path}: needs a header with a 'caption' or 'text' column")
                rows = [CaptionRow(_pick(r, _TEXT_KEYS) or "", _pick(r, _ID_KEYS), _pick(r, _IMAGE_KEYS)) for r in reader]
            elif ext == ".jsonl":
                rows = []
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise CaptionFileError(f"{path}:{n}: not JSON ({exc.msg})") from None
                    if isinstance(obj, str):
                        obj = {"caption": obj}
                    rows.append(CaptionRow(_pick(obj, _TEXT_KEYS) or "", _pick(obj, _ID_KEYS), _pick(obj, _IMAGE_KEYS)))
            else:
                rows = [CaptionRow(line) for line in fh.read().splitlines()]
    except OSError as exc:
        raise CaptionFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CaptionFileError(f"{path} is not UTF-8 text") from None
    return rows


def _bind(collection) -> None:
    enc = collection.encoder
    collection.catalog.bind_space(CAPTION_SPACE, enc.info.name, enc.info.dim)


@writes_catalog(lambda collection, *a, **k: collection.catalog)
def add_captions(collection, path: str, caption_set: str | None = None, batch_size: int = 512) -> AddCaptionsSummary:
    """Store and embed the captions of ``path`` as the set ``caption_set`` (default: file stem)."""
    rows = read_caption_file(path)
    summary = AddCaptionsSummary()
    caption_set = caption_set or os.path.splitext(os.path.basename(path))[0]
    base = os.path.dirname(os.path.abspath(path))
    usable = []
    for row in rows:
        text = row.text.strip()
        if not text:
            summary.skipped_empty += 1
            continue
        ref = row.image_ref
        if ref:
            ref = ref if os.path.isabs(ref) else os.path.normpath(os.path.join(base, ref))
            if not os.path.exists(ref):
                summary.missing_images.append(ref)
        usable.append(CaptionRow(text, row.ext_id, ref))
    if not usable:
        raise CaptionFileError(f"{path}: no captions in it" + (f" ({summary.skipped_empty} empty lines)" if summary.skipped_empty else ""))
    _bind(collection)
    catalog = collection.catalog
    for start in range(0, len(usable), batch_size):
        chunk = usable[start : start + batch_size]
        vectors = collection.encoder.encode_text([c.text for c in chunk])
        with catalog.transaction() as tx:
            store.add_captions(tx, caption_set, chunk, vectors)
        summary.added += len(chunk)
    catalog.save()
    return summary


def caption_sets(catalog) -> list[tuple[str, int]]:
    with catalog.reading() as r:
        return store.caption_sets(r)


@writes_catalog(lambda catalog, *a, **k: catalog)
def remove_caption_set(catalog, caption_set: str) -> int:
    with catalog.reading() as r:
        ids = store.set_vector_ids(r, caption_set)
    if ids:
        catalog.remove_vectors(CAPTION_SPACE, ids)  # captions rows go by cascade
        catalog.save()
    return len(ids)


def _hits(catalog, scores: np.ndarray, ids: np.ndarray) -> list[CaptionHit]:
    with catalog.reading() as r:
        rows = store.captions_of(r, [int(i) for i in ids if i >= 0])
    hits = []
    for score, vid in zip(scores, ids):
        c = rows.get(int(vid))
        if c is not None:
            caption_id, text, caption_set, ext_id, image_ref = c
            hits.append(CaptionHit(caption_id, text, float(score), len(hits) + 1, caption_set, ext_id, image_ref))
    return hits


def _allowed(catalog, caption_set: str | None):
    if caption_set is None:
        return None
    with catalog.reading() as r:
        return np.asarray(store.set_vector_ids(r, caption_set), np.int64)


def search_captions_by_vector(collection, vector: np.ndarray, k: int = 5, caption_set: str | None = None) -> list[CaptionHit]:
    catalog = collection.catalog
    if catalog.space_model(CAPTION_SPACE) is None:
        raise QueryError("no captions yet: add some with `vsearch captions add FILE`")
    scores, ids = catalog.search_ids(vector, k, CAPTION_SPACE, allowed_ids=_allowed(catalog, caption_set))
    return _hits(catalog, scores[0], ids[0])


def captions_for_image(collection, image_path: str, k: int = 5, caption_set: str | None = None) -> list[CaptionHit]:
    """The best captions for an image (its stored vector if it is in the catalog)."""
    return search_captions_by_vector(collection, collection.embed_image_file(image_path), k, caption_set)


def search_captions(collection, text: str, k: int = 5, caption_set: str | None = None) -> list[CaptionHit]:
    if not text.strip():
        raise QueryError("empty text")
    return search_captions_by_vector(collection, collection.encoder.encode_text([text])[0], k, caption_set)
