"""What the HTTP layer calls: search, thumbnails and zero-shot classification over one catalog,
with the model loaded once and the image index following the indexer's saves.

Everything here is synchronous and thread-safe; :mod:`vsearch.serve.app` runs it in worker
threads. Nothing here knows about HTTP except :class:`~vsearch.serve.errors.ApiError` for the
few answers that are the client's business (unknown id, limits).
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from vsearch.api import Collection
from vsearch.catalog import IMAGE_SPACE, SearchHit
from vsearch.filters import PersonPhotos, select
from vsearch.images import decode_image, limit_aspect
from vsearch.ocr import HAS_TEXT_KEY
from vsearch.query import Term
from vsearch.report import thumbnail_jpeg
from vsearch.search import QueryTerm, compose_query, top_media
from vsearch.serve.errors import ApiError
from vsearch.serve.limits import check_pixels
from vsearch.serve.snapshot import IndexReader

# Host headers accepted when serving on loopback. Checking them defeats DNS rebinding: a web page
# on another origin cannot make the browser send its requests to 127.0.0.1 under its own name.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
TEMPLATE_SETS = ("default", "plain")  # only named sets: a client never names a server-side file


@dataclass(frozen=True)
class ServeSettings:
    max_upload_bytes: int = 10 << 20
    body_timeout_s: float = 30.0  # the longest wait for the next part of a request body (then 408)
    max_pixels: int = 40_000_000  # a 40 MP photo is already larger than most phone cameras make
    workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    queue_depth: int = 64  # waiting calls beyond the running ones; more get 503
    max_k: int = 200
    max_labels: int = 256
    # building a classifier costs one text encoding per label and template: 64 labels with the 8
    # default templates, 512 with templates=plain
    max_label_texts: int = 512
    index_check_seconds: float = 0.5
    index_level_seconds: float = 10.0  # how often SQL is checked for vectors the index file lacks
    face_processes: int = 0  # >0: face calls in this many worker processes (dlib holds the GIL)
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS  # None: any Host header


class _LRU:
    """A small thread-safe LRU map (thumbnails, classifier matrices)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


class SearchService:
    def __init__(self, collection: Collection, settings: ServeSettings):
        self.collection = collection
        self.catalog = collection.catalog
        self.settings = settings
        self.encoder = collection.encoder  # loaded now, once, not on the first request
        self.reader = IndexReader(self.catalog, IMAGE_SPACE, settings.index_check_seconds,
                                  settings.index_level_seconds)
        self._thumbs = _LRU(512)
        self._classifiers = _LRU(16)
        self._classifier_build = threading.Lock()

    # -- query vectors ---------------------------------------------------------------------------
    def image_vector(self, data: bytes) -> np.ndarray:
        """The vector of an uploaded image; limits are checked on the header before decoding."""
        check_pixels(data, self.settings.max_pixels)
        image = limit_aspect(decode_image(data, draft_size=self.encoder.info.image_size).image)
        pixels = self.encoder.preprocess(image)[None]  # (1, 3, H, W): a tensor (torch) or an array (ONNX)
        return self.encoder.encode_pixels(pixels)[0]

    def media_vector(self, media_id: int) -> np.ndarray:
        vec = self.catalog.media_vector(media_id, IMAGE_SPACE)
        if vec is None:
            raise ApiError(404, "unknown_media", f"no indexed photo with id {media_id} in the catalog")
        return vec

    def compose(self, texts: Sequence[tuple[str, float]], vectors: Sequence[tuple[np.ndarray, float]] = ()) -> np.ndarray:
        """Σ weight·vector over the texts (encoded in one batch) and the given vectors,
        renormalised (:func:`vsearch.search.compose_query`, as for the CLI)."""
        terms = [QueryTerm(w, text=t) for t, w in texts] + [QueryTerm(w, vector=v) for v, w in vectors]
        return compose_query(terms, self.encode_texts,
                             empty_message="empty query: give q (text), like (a photo id) or an image")

    def encode_texts(self, texts: Sequence[str], short: int = 64) -> np.ndarray:
        """(N, D) rows in order: the short texts in one batch, each longer one alone. A batch pads
        every text to its longest, so one long q would make each short term cost as much as it
        (measured: 33 texts padded to 1,000 characters, 9 s; apart, about a tenth of that)."""
        out: list[np.ndarray | None] = [None] * len(texts)
        batch = [i for i, t in enumerate(texts) if len(t) <= short]
        if batch:
            for i, row in zip(batch, self.encoder.encode_text([texts[i] for i in batch])):
                out[i] = row
        for i, t in enumerate(texts):
            if out[i] is None:
                out[i] = self.encoder.encode_text([t])[0]
        return np.stack(out)

    # -- search ----------------------------------------------------------------------------------
    def search(self, query: np.ndarray | None, k: int, filters: Sequence[Term] = (), exclude_media: int | None = None,
               person_photos: PersonPhotos | None = None, text: str | None = None) -> list[SearchHit]:
        """Top-k photos of the index as last saved that pass ``filters`` (:mod:`vsearch.filters`);
        ids whose rows are gone since are skipped. ``query`` None: the photos that pass, newest first.
        ``text``: the query's free text; photos whose read text holds its words come first, as in
        :meth:`vsearch.Collection.search` (:func:`vsearch.ocr.search.rank_with_words`)."""
        snap = self.reader.current()
        if snap.index is None:
            return []
        allowed = None
        if filters:
            selection = select(self.catalog, lambda: self.catalog, filters, person_photos, listing=query is None)
            if query is None:
                return selection.listing(k)
            allowed = selection.vector_ids
            if len(allowed) == 0:
                return []
        if snap.index.dim != len(query):
            raise ApiError(409, "model_mismatch",
                           f"the catalog's index now holds {snap.index.dim}-d vectors but this server's model "
                           f"({self.encoder.info.name}) makes {len(query)}-d ones; restart `vsearch serve`")
        # a few extra candidates make up for rows deleted since the save and the excluded photo;
        # ids map to paths through SQL (one read transaction), where deleted rows drop out
        hits = top_media(snap.searcher, self.catalog, query, k, distinct=False, fetch=k + 8, allowed_ids=allowed,
                         exclude_media=exclude_media)
        if text and self.catalog.get_meta(HAS_TEXT_KEY):
            from vsearch.ocr import search as text_search

            hits = text_search.rank_with_words(self.catalog, text, query, hits, k, allowed)
            if exclude_media is not None:
                hits = [h for h in hits if h.media_id != exclude_media]
        return hits

    # -- media -----------------------------------------------------------------------------------
    def thumbnail(self, media_id: int, size: int) -> bytes:
        """A JPEG of the catalog's photo ``media_id``: the only way the service reads a photo file."""
        media = self.catalog.media(media_id)
        if media is None or media.status != "indexed":
            raise ApiError(404, "unknown_media", f"no indexed photo with id {media_id} in the catalog")
        try:
            st = os.stat(media.path)
        except OSError:
            raise ApiError(404, "file_missing", f"photo {media_id} is in the catalog but its file is gone; "
                           "run `vsearch index` again to update the catalog") from None
        key = (media_id, size, st.st_ino, st.st_size, st.st_mtime_ns)
        data = self._thumbs.get(key)
        if data is None:
            data = thumbnail_jpeg(media.path, size)
            if data is None:
                raise ApiError(404, "file_unreadable", f"photo {media_id}'s file can no longer be decoded")
            self._thumbs.put(key, data)
        return data

    # -- zero-shot classification -------------------------------------------------------------------
    def classify(self, vector: np.ndarray, labels: str, k: int, templates: str, closed_set: bool = False) -> dict:
        """The same decision as ``vsearch classify``: open set by default (a label is chosen only
        when it reaches its calibrated threshold, else "none of these" wins and ``top`` is None),
        or a softmax over the given labels alone with ``closed_set``."""
        from vsearch.zeroshot import LabelError, calibration_for, classify_vectors, load_templates, parse_labels

        try:
            label_set = parse_labels(labels)
        except LabelError:
            raise ApiError(400, "bad_labels", "labels is empty: give comma-separated labels, e.g. labels=cat,dog") from None
        if len(label_set.labels) > self.settings.max_labels:
            raise ApiError(400, "too_many_labels", f"{len(label_set.labels)} labels given; this server classifies "
                           f"with at most {self.settings.max_labels} per call")
        if templates not in TEMPLATE_SETS:
            raise ApiError(400, "bad_templates", f"templates must be one of {', '.join(TEMPLATE_SETS)}")
        template_set = load_templates(templates)
        texts = len(label_set.labels) * len(template_set)
        if texts > self.settings.max_label_texts:
            raise ApiError(400, "too_many_labels", f"{len(label_set.labels)} labels × {len(template_set)} templates "
                           f"= {texts} texts to encode; this server encodes at most {self.settings.max_label_texts} "
                           f"per call (fewer labels, or templates=plain)")
        classifier = self._classifier(label_set.labels, template_set)
        [decision] = classify_vectors(["upload"], np.atleast_2d(vector), classifier, label_set.labels,
                                      calibration_for(self.encoder), k=k, closed_set=closed_set)
        answer = decision.to_json()
        return {"model": self.encoder.info.name, "top": answer["top"], "none": answer["none"],
                "labels": answer["labels"], "ignored_duplicates": list(label_set.duplicates)}

    def _classifier(self, labels: tuple[str, ...], templates: tuple[str, ...]) -> np.ndarray:
        from vsearch.zeroshot import ClassifierCache

        key = (labels, templates)
        found = self._classifiers.get(key)
        if found is not None:
            return found
        # one build at a time: concurrent requests for the same new label set wait for the first
        # build instead of each encoding the same texts (and racing on the disk cache's file)
        with self._classifier_build:
            found = self._classifiers.get(key)
            if found is None:
                found = ClassifierCache().get(self.encoder, labels, templates)
                self._classifiers.put(key, found)
        return found

    # -- status ----------------------------------------------------------------------------------
    def health(self) -> dict:
        snap = self.reader.current()
        return {
            "model": self.encoder.info.name,
            "dim": self.encoder.info.dim,
            "photos_in_index": len(snap),
            "index_loaded_at": snap.loaded_at,
            "index_reloads": self.reader.reloads,
        }
