"""``vsearch index --faces``: the face extractor the indexer runs on every photo.

Each face found is stored with its box and landmarks (original pixels), detector score and
embedding (space ``face``, linked to the photo). A ``face_scans`` row remembers that the photo was
processed, with zero faces too, so a second run does not redo it; photos indexed before ``--faces``
was first used, copies, and files changed since their scan are ``pending`` and get processed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vsearch.extractors import register_extractor
from vsearch.faces import store
from vsearch.faces.errors import FaceError
from vsearch.faces.pipeline import INDEX_CONFIG, FacePipeline, load_pipeline
from vsearch.faces.schema import FACE_SPACE
from vsearch.faces.types import FoundFace


class FaceExtractor:
    name = "faces"
    max_side = INDEX_CONFIG.detect_side  # the indexer hands us photos at most this big

    def __init__(self, detector: str = "hog", device: str = "cpu", pipeline: FacePipeline | None = None):
        self.detector_name = detector
        self.device = device
        self._pipeline = pipeline

    @property
    def pipeline(self) -> FacePipeline:
        if self._pipeline is None:
            self._pipeline = load_pipeline(self.detector_name, "dlib", self.device, INDEX_CONFIG)
        return self._pipeline

    def prepare(self, catalog) -> None:
        from vsearch.faces.service import recorded_embedder

        recorded = recorded_embedder(catalog)
        if self._pipeline is None and recorded:  # keep embedding with the model the catalog holds
            self._pipeline = load_pipeline(self.detector_name, recorded, self.device, INDEX_CONFIG)
        emb = self.pipeline.embedder
        catalog.bind_space(FACE_SPACE, emb.name, emb.dim)
        catalog.index(FACE_SPACE)  # load (and heal after a crash) before the run adds to it

    def pending(self, catalog, media_ids: Sequence[int]) -> set[int]:
        """Photos among ``media_ids`` without a scan of their current content by this embedder.
        Stale faces of such photos (left by a scan of other content) are removed first, so
        processing them again cannot duplicate faces."""
        embedder = self.pipeline.embedder.name
        with catalog.transaction() as tx:
            return store.take_unscanned(tx, media_ids, embedder)

    def extract(self, item) -> list[FoundFace]:
        work = np.ascontiguousarray(np.asarray(item.image.convert("RGB"), dtype=np.uint8))
        return self.pipeline.analyze_array(work, item.original_size).faces

    def write(self, tx, media_id: int, faces: list[FoundFace]) -> None:
        """Store one photo's faces inside the indexer's transaction ``tx``."""
        store.add_faces(tx, media_id, faces, self.pipeline.embedder.name)


@register_extractor("faces")
def _faces_extractor(argument: str = "", device: str = "cpu") -> FaceExtractor:
    detector = argument or "hog"
    if detector not in ("hog", "cnn", "haar"):
        raise FaceError(f"unknown face detector {detector!r} for --faces (hog, cnn or haar)")
    return FaceExtractor(detector=detector, device=device)
