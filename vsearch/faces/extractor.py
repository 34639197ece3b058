"""``vsearch index --faces``: the face extractor the indexer runs on every photo.

Each face found is stored with its box and landmarks (original pixels), detector score and
embedding (space ``face``, linked to the photo). A ``face_scans`` row remembers that the photo was
processed, with zero faces too, so a second run does not redo it; photos indexed before ``--faces``
was first used, copies, and files changed since their scan are ``pending`` and get processed.
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from vsearch.extractors import register_extractor
from vsearch.faces.errors import FaceError
from vsearch.faces.pipeline import INDEX_CONFIG, FacePipeline, load_pipeline
from vsearch.faces.schema import FACE_SPACE, Face, FaceScan, ensure_face_tables
from vsearch.faces.types import FoundFace
from vsearch.schema import Media


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

        ensure_face_tables(catalog)
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
        wanted = [int(m) for m in media_ids]
        emb_name = self.pipeline.embedder.name
        todo: set[int] = set()
        stale_vectors: list[int] = []
        with Session(catalog.engine) as s:
            for start in range(0, len(wanted), 900):
                chunk = wanted[start:start + 900]
                rows = s.execute(select(Media.id, Media.sha256, FaceScan.sha256, FaceScan.embedder)
                                 .outerjoin(FaceScan, FaceScan.media_id == Media.id).where(Media.id.in_(chunk)))
                for mid, sha, scanned_sha, scanned_by in rows:
                    if scanned_by is None or scanned_sha != sha or scanned_by != emb_name:
                        todo.add(int(mid))
            todo_list = sorted(todo)
            for start in range(0, len(todo_list), 900):
                stale_vectors += s.scalars(select(Face.vector_id).where(Face.media_id.in_(todo_list[start:start + 900])))
        if stale_vectors:
            catalog.remove_vectors(FACE_SPACE, stale_vectors)
        return todo

    def extract(self, item) -> list[FoundFace]:
        work = np.ascontiguousarray(np.asarray(item.image.convert("RGB"), dtype=np.uint8))
        return self.pipeline.analyze_array(work, item.original_size).faces

    def write(self, catalog, session, media_id: int, faces: list[FoundFace]) -> list[tuple[str, np.ndarray, list[int]]]:
        sha = session.scalar(select(Media.sha256).where(Media.id == media_id))
        session.merge(FaceScan(media_id=media_id, sha256=sha, faces=len(faces),
                               embedder=self.pipeline.embedder.name))
        if not faces:
            return []
        vectors = np.stack([f.embedding for f in faces]).astype(np.float32)
        ids = catalog.new_vector_rows(session, FACE_SPACE, vectors, [media_id] * len(faces))
        session.add_all([
            Face(vector_id=vid, media_id=media_id, x0=f.box[0], y0=f.box[1], x1=f.box[2], y1=f.box[3],
                 landmarks=json.dumps(np.round(f.landmarks, 1).tolist()), score=f.score, detector=f.detector)
            for vid, f in zip(ids, faces)
        ])
        return [(FACE_SPACE, vectors, ids)]


@register_extractor("faces")
def _faces_extractor(argument: str = "", device: str = "cpu") -> FaceExtractor:
    detector = argument or "hog"
    if detector not in ("hog", "cnn", "haar"):
        raise FaceError(f"unknown face detector {detector!r} for --faces (hog, cnn or haar)")
    return FaceExtractor(detector=detector, device=device)
