"""Faces over a catalog: enroll, verify (1:1), identify (1:N), find photos of a person, cluster,
name clusters, calibrate. The CLI (and a server) are thin adapters over :class:`FaceService`.

Scores are cosine similarities of unit-length embeddings (FAISS inner products), in [-1, 1],
higher = more alike; a pair is the same person when ``score >= threshold``. The threshold is the
calibrated one (``vsearch faces calibrate``) when the catalog holds a calibration for the
embedder in use, else the embedder's default (for dlib: its customary 0.6 Euclidean distance on
raw descriptors, a cosine of 0.915, see :mod:`vsearch.faces.embedders`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from vsearch.catalog import Catalog, SearchHit, writes_catalog
from vsearch.errors import ModelMismatchError, QueryError, VSearchError
from vsearch.faces import store
from vsearch.faces.calibrate import CalibrationReport, calibrate_faces, embed_folder, plot_roc
from vsearch.faces.cluster import cluster_faces
from vsearch.faces.errors import AlreadyEnrolledError, LooksLikeError, MultipleFacesError, NoFaceError, UnknownPersonError
from vsearch.faces.impostors import ImpostorModel
from vsearch.faces.people import FaceLinks, PersonFaces
from vsearch.faces.pipeline import ENROLL_CONFIG, INDEX_CONFIG, FacePipeline, ImageSource, load_pipeline
from vsearch.faces.schema import ENROLLED_SPACE, FACE_SPACE
from vsearch.faces.types import FaceResult, Progress
from vsearch.search import catalog_searcher, top_media

CALIBRATION_KEY = "faces.calibration"
MAX_CLUSTER_TEMPLATES = 50  # templates kept when a cluster becomes a person (the most central)
# Two enrollment photos whose faces score this much are the same photo: re-saved, resized or
# cropped copies of a full face score 0.996 or more, different photos of one person at most 0.986
# (a crop showing part of the face of the same photo), on the offline test photos.
SAME_PHOTO = 0.99


@dataclass(frozen=True)
class VerifyResult:
    match: bool
    score: float
    threshold: float
    # upper confidence bound of the false accept rate at this score (None until the catalog is
    # calibrated for this embedder), and how it was obtained
    far_estimate: float | None
    face_box: list[float]  # (left, top, right, bottom), original pixels of the probe
    latency_ms: float
    faces_in_probe: int = 1
    timings_ms: dict[str, float] = field(default_factory=dict)
    far_basis: dict | None = None

    def to_json(self) -> dict:
        """The documented keys (also what `vsearch faces verify --json` prints)."""
        return {"match": self.match, "score": round(self.score, 6), "threshold": round(self.threshold, 6),
                "far_estimate": None if self.far_estimate is None else float(f"{self.far_estimate:.6g}"),
                "far_basis": self.far_basis,
                "face_box": self.face_box, "latency_ms": round(self.latency_ms, 2),
                "faces_in_probe": self.faces_in_probe}


@dataclass(frozen=True)
class Candidate:
    name: str
    score: float

    def to_json(self) -> dict:
        return {"name": self.name, "score": round(self.score, 6)}


@dataclass(frozen=True)
class Identification:
    """One face of a probe: the best enrolled people, and the answer (a name or "unknown")."""

    face_box: list[float]
    name: str
    score: float | None
    candidates: list[Candidate]

    def to_json(self) -> dict:
        """One face as `vsearch faces identify --json` prints it."""
        return {"face_box": self.face_box, "name": self.name, "score": self.score,
                "candidates": [c.to_json() for c in self.candidates]}


@dataclass(frozen=True)
class PersonInfo:
    name: str
    templates: int
    created_at: float
    faces_in_collection: int  # faces that verify against them, or named as them
    photos: int = 0  # the photos of those faces

    def to_json(self) -> dict:
        """One person as `vsearch faces list --json` prints it."""
        return {"name": self.name, "templates": self.templates, "faces_in_collection": self.faces_in_collection,
                "photos": self.photos}


@dataclass(frozen=True)
class ClusterInfo:
    cluster: int
    size: int
    photos: list[str]  # a few example paths
    person: str | None = None  # the enrolled person most of its faces verify against
    score: float | None = None  # the median score of those faces against that person

    def to_json(self) -> dict:
        """One group as `vsearch faces cluster --json` prints it."""
        return {"cluster": self.cluster, "size": self.size, "photos": self.photos, "person": self.person,
                "score": None if self.score is None else round(self.score, 6)}


@dataclass(frozen=True)
class EnrollResult:
    name: str
    added: int
    templates: int
    created: bool
    skipped: tuple[str, ...] = ()  # photos already enrolled as this person

    def to_json(self) -> dict:
        """What `vsearch faces enroll --json` and `faces name --json` print."""
        return {"name": self.name, "added": self.added, "templates": self.templates, "created": self.created,
                "already_enrolled": list(self.skipped)}


class FaceService:
    """Face operations on one catalog with one loaded :class:`FacePipeline`."""

    def __init__(self, catalog: Catalog, pipeline: FacePipeline | None = None, detector: str = "hog",
                 embedder: str | None = None, device: str = "cpu"):
        self.catalog = catalog
        recorded = recorded_embedder(catalog)
        if pipeline is None:
            if recorded and embedder and _canonical_embedder(embedder) != recorded:
                raise ModelMismatchError(
                    f"this catalog's faces were embedded with {recorded}; it cannot be used with "
                    f"--embedder {embedder}. Leave --embedder out, or use another --db")
            pipeline = load_pipeline(detector, recorded or embedder or "dlib", device)
        elif recorded and pipeline.embedder.name != recorded:
            raise ModelMismatchError(f"this catalog's faces were embedded with {recorded}, "
                                     f"not {pipeline.embedder.name}")
        self.pipeline = pipeline
        self.links = FaceLinks(catalog)
        self._calibration_raw: str | None = None
        self._calibration: dict | None = None

    # -- threshold and calibration ---------------------------------------------------------------
    def calibration(self) -> dict | None:
        """The stored calibration if it was made with this embedder (re-read when it changes)."""
        raw = self.catalog.get_meta(CALIBRATION_KEY)
        if raw != self._calibration_raw:
            self._calibration_raw = raw
            cal = json.loads(raw) if raw else None
            if cal is not None:
                cal["_impostors"] = ImpostorModel.from_json(cal["impostors"])
            self._calibration = cal
        cal = self._calibration
        return cal if cal is not None and cal.get("embedder") == self.pipeline.embedder.name else None

    @property
    def threshold(self) -> float:
        cal = self.calibration()
        return float(cal["threshold"]) if cal else float(self.pipeline.embedder.default_threshold)

    def far_estimate(self, score: float) -> float | None:
        """Upper confidence bound of the false accept rate at ``score`` (None uncalibrated)."""
        cal = self.calibration()
        return cal["_impostors"].far(score) if cal else None

    def far_basis(self, score: float) -> dict | None:
        cal = self.calibration()
        return cal["_impostors"].far_basis(score) if cal else None

    @writes_catalog(lambda self, *a, **k: self.catalog)
    def calibrate(self, folder: str, target_far: float = 1e-3, plot: str | None = None,
                  store: bool = True, progress: Progress | None = None) -> CalibrationReport:
        """Score all pairs of a folder-per-identity set; store the threshold for ``target_far``.
        ``progress(done, total)`` follows the photos as they are embedded."""
        if not 0 < target_far < 1:
            raise VSearchError("--target-far must be between 0 and 1")
        faces = embed_folder(_ConfiguredPipeline(self.pipeline), folder, progress)
        report = calibrate_faces(faces, target_far, default_threshold=self.pipeline.embedder.default_threshold)
        if plot:
            plot_roc(report, plot, title=f"{self.pipeline.embedder.name} on {folder}")
        if store:
            summary = report.summary()
            summary.update(embedder=self.pipeline.embedder.name, detector=self.pipeline.detector.name,
                           folder=folder, calibrated_at=time.time(),
                           impostors=report.impostor_model.to_json())
            self.catalog.set_meta(CALIBRATION_KEY, json.dumps(summary))
        return report

    # -- probes ----------------------------------------------------------------------------------
    def _analyze_probe(self, source: ImageSource, every_face: bool = False) -> FaceResult:
        """The probe's faces, largest first. The fast scan looks at a 400 px copy, which finds the
        face of a face-unlock probe but can miss the smaller faces of a group photo; with
        ``every_face`` a probe that may hold more faces (several found, or one near the smallest
        size that scan sees) is scanned again at the indexer's resolution, so identify finds
        the faces ``index --faces`` finds."""
        result = self.pipeline.analyze(source)
        if every_face and _may_hold_more_faces(result):
            closer = self.pipeline.analyze(source, INDEX_CONFIG)
            if len(closer.faces) >= len(result.faces):
                closer.timings_ms = {k: v + result.timings_ms.get(k, 0.0) for k, v in closer.timings_ms.items()}
                result = closer
        if not result.faces:
            if result.too_small:
                raise NoFaceError(
                    f"the probe's face is too small: {result.too_small} face(s) found, all under "
                    f"{self.pipeline.config.min_face} px; move closer or use a larger image")
            raise NoFaceError(
                f"no face found in the probe (the detector finds frontal and slightly turned faces at least "
                f"about {result.min_detectable:.0f} px wide in this image; profile views are not found)")
        return result

    # -- enrollment ------------------------------------------------------------------------------
    @writes_catalog(lambda self, *a, **k: self.catalog)
    def enroll(self, name: str, sources: Sequence[ImageSource], labels: Sequence[str] | None = None) -> EnrollResult:
        """Add one template per image to ``name`` (creating the person). Every image must show
        exactly one usable face; otherwise nothing at all is stored. Only embeddings are kept. A
        photo already enrolled as ``name`` is skipped (``EnrollResult.skipped``); one enrolled as
        someone else raises :class:`AlreadyEnrolledError` and stores nothing."""
        name = _check_name(name)
        if not sources:
            raise QueryError("give at least one image to enroll")
        labels = list(labels) if labels is not None else [s if isinstance(s, str) else f"image {i + 1}"
                                                          for i, s in enumerate(sources)]
        vectors = []
        for source, label in zip(sources, labels):
            result = self.pipeline.analyze(source, ENROLL_CONFIG)
            if len(result.faces) > 1:
                raise MultipleFacesError(
                    f"{label}: {len(result.faces)} faces found; an enrollment photo must show only the "
                    "person being enrolled (crop it, or use another photo). Nothing was enrolled")
            if not result.faces:
                why = (f"its face is under {self.pipeline.config.min_face} px" if result.too_small
                       else "no face found")
                raise NoFaceError(f"{label}: {why}; an enrollment photo must show one clear, frontal face. "
                                  "Nothing was enrolled")
            vectors.append(result.faces[0].embedding)
        keep, skipped = self._new_photos(name, np.stack(vectors), labels)
        if not len(keep):
            return EnrollResult(name, 0, len(self.templates(name)), False, tuple(skipped))
        res = self._add_templates(name, keep, source="enroll")
        return EnrollResult(res.name, res.added, res.templates, res.created, tuple(skipped))

    def _new_photos(self, name: str, vectors: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """The vectors that are not a photo already enrolled (:data:`SAME_PHOTO`), and the labels
        of those already enrolled as ``name``. A photo already enrolled as someone else, or given
        twice, stores nothing."""
        with self.catalog.reading() as r:
            _ids, owners, existing = store.all_templates(r)
        keep: list[np.ndarray] = []
        skipped: list[str] = []
        for vec, label in zip(vectors, labels):
            if len(owners):
                scores = existing @ vec
                best = int(np.argmax(scores))
                if scores[best] >= SAME_PHOTO:
                    if owners[best] != name:
                        raise AlreadyEnrolledError(
                            f"{label}: this photo is already enrolled as {owners[best]} (score {scores[best]:.3f}); "
                            "Nothing was enrolled")
                    skipped.append(label)
                    continue
            if keep and float(np.max(np.stack(keep) @ vec)) >= SAME_PHOTO:
                skipped.append(label)  # the same photo twice in one call
                continue
            keep.append(vec)
        return (np.stack(keep) if keep else np.zeros((0, vectors.shape[1]), np.float32)), skipped

    def _bind(self, space: str) -> None:
        emb = self.pipeline.embedder
        self.catalog.bind_space(space, emb.name, emb.dim)

    def _add_templates(self, name: str, vectors: np.ndarray, source: str,
                       face_ids: Sequence[int] = ()) -> EnrollResult:
        self._bind(ENROLLED_SPACE)
        with self.catalog.transaction() as tx:  # rows and vectors commit together, then the index follows
            created, templates = store.add_templates(tx, name, vectors, source, face_ids)
        self.catalog.save()
        return EnrollResult(name, len(vectors), templates, created)

    def people(self) -> list[PersonInfo]:
        """Enrolled people by name, with the faces and photos of the collection that show them."""
        with self.catalog.reading() as r:
            rows = store.people(r)
        shown = self.links.people(self.threshold)
        out = []
        for name, templates, created_at, _named in rows:
            found = shown.get(name)
            out.append(PersonInfo(name, templates, created_at, len(found.faces) if found else 0,
                                  found.photos if found else 0))
        return out

    def face_counts(self) -> dict[str, int]:
        """Faces of the collection: in all, in a group of the last clustering, named as a person."""
        with self.catalog.reading() as r:
            total, grouped, named = store.face_counts(r)
        return {"total": total, "grouped": grouped, "named": named}

    def person_photos(self, name: str) -> PersonFaces:
        """The faces and photos of the collection that show ``name`` (see :mod:`vsearch.faces.people`)."""
        with self.catalog.reading() as r:
            if store.templates(r, name) is None:
                raise UnknownPersonError(f"{name!r} is not enrolled (see `vsearch faces list`)")
        return self.links.person(name, self.threshold)

    @writes_catalog(lambda self, *a, **k: self.catalog)
    def remove(self, name: str) -> int:
        """Delete a person and their templates from SQL and the index. Returns templates removed."""
        with self.catalog.transaction() as tx:
            removed = store.remove_person(tx, name)
        if removed is None:
            raise UnknownPersonError(f"{name!r} is not enrolled (see `vsearch faces list`)")
        self.catalog.save()
        return removed

    def templates(self, name: str) -> np.ndarray:
        """(T, D) template embeddings of an enrolled person."""
        with self.catalog.reading() as r:
            vectors = store.templates(r, name)
        if vectors is None:
            raise UnknownPersonError(f"{name!r} is not enrolled (see `vsearch faces list`)")
        if not len(vectors):
            raise UnknownPersonError(f"{name!r} has no templates left; enroll again")
        return vectors

    # -- 1:1 -------------------------------------------------------------------------------------
    def verify(self, name: str, probe: ImageSource) -> VerifyResult:
        """Is the (largest) face of ``probe`` the enrolled person ``name``? The score is the best
        cosine similarity over the person's templates."""
        t0 = time.perf_counter()
        templates = self.templates(name)  # unknown names fail before any model work
        lookup_ms = (time.perf_counter() - t0) * 1000
        result = self._analyze_probe(probe)
        face = result.faces[0]
        t = time.perf_counter()
        score = float(np.max(templates @ face.embedding))
        threshold = self.threshold
        far = self.far_estimate(score)
        # "compare": reading the templates, scoring, threshold and FAR look-up
        compare_ms = lookup_ms + (time.perf_counter() - t) * 1000
        latency = (time.perf_counter() - t0) * 1000
        return VerifyResult(score >= threshold, score, threshold, far, face.box_list(), latency,
                            len(result.faces), {**result.timings_ms, "compare": compare_ms},
                            far_basis=self.far_basis(score))

    # -- 1:N -------------------------------------------------------------------------------------
    def identify(self, probe: ImageSource, k: int = 3) -> list[Identification]:
        """For every face of the probe (largest first): the ``k`` best enrolled people and the
        answer, which is "unknown" when even the best scores below the threshold."""
        if k < 1:
            raise QueryError("-k must be at least 1")
        result = self._analyze_probe(probe, every_face=True)
        threshold = self.threshold
        if self.catalog.space_model(ENROLLED_SPACE) is None:
            return [Identification(f.box_list(), "unknown", None, []) for f in result.faces]
        queries = np.stack([f.embedding for f in result.faces])
        index = self.catalog.index(ENROLLED_SPACE)
        # several templates per person (up to 50 from a named cluster): score all of them while
        # that is cheap, else enough neighbours to rank k distinct people in practice
        fetch = len(index) if len(index) <= 4096 else max(256, 64 * k)
        scores, ids = index.search(queries, fetch)
        with self.catalog.reading() as r:
            owner = store.template_owners(r, {int(i) for i in ids.ravel() if i >= 0})
        out = []
        for face, row_scores, row_ids in zip(result.faces, scores, ids):
            best: dict[str, float] = {}
            for sc, vid in zip(row_scores, row_ids):
                name = owner.get(int(vid))
                if name is not None and name not in best:
                    best[name] = float(sc)  # results are sorted: the first is the person's best
            cands = [Candidate(n, s) for n, s in sorted(best.items(), key=lambda kv: -kv[1])[:k]]
            top = cands[0] if cands else None
            answer = top.name if top is not None and top.score >= threshold else "unknown"
            out.append(Identification(face.box_list(), answer, top.score if top else None, cands))
        return out

    def search_photos(self, probe: ImageSource, k: int = 10) -> list[SearchHit]:
        """Photos of the collection with a face matching the probe's (largest) face, best first.
        Needs `vsearch index --faces`."""
        if k < 1:
            raise QueryError("-k must be at least 1")
        face = self._analyze_probe(probe).faces[0]
        if self.catalog.space_model(FACE_SPACE) is None:
            raise VSearchError("no faces in this catalog yet: run `vsearch index PATH --faces` first")
        # a photo may show the person several times: search deeper until k distinct photos (or
        # the scores fall below the match threshold), each photo at its best face
        return top_media(catalog_searcher(self.catalog, FACE_SPACE), self.catalog, face.embedding, k,
                         min_score=self.threshold)

    # -- clustering ------------------------------------------------------------------------------
    @writes_catalog(lambda self, *a, **k: self.catalog)
    def cluster(self, min_size: int = 2, threshold: float | None = None,
                progress: Progress | None = None, with_people: bool = True) -> list[ClusterInfo]:
        """Group the collection's unlabelled faces into people (numbered 1, 2, ... by size) and
        store the grouping on the faces; faces in no group of ``min_size`` get none.
        ``progress(done, total)`` follows the faces through the neighbour search; ``with_people``:
        say which groups look like an enrolled person (:meth:`clusters`)."""
        threshold = self.threshold if threshold is None else threshold
        with self.catalog.reading() as r:
            face_ids, media_ids, emb = store.unnamed_faces(r)
        labels = cluster_faces(emb, media_ids, threshold, min_size=min_size, progress=progress)
        by_label: dict[int, list[int]] = {}
        for fid, lab in zip(face_ids, labels):
            if lab >= 0:
                by_label.setdefault(int(lab) + 1, []).append(fid)
        with self.catalog.transaction() as tx:
            store.set_clusters(tx, by_label)
        return self.clusters(with_people=with_people)

    def clusters(self, examples: int = 3, with_people: bool = True) -> list[ClusterInfo]:
        """The groups of the last clustering still unnamed, each with the enrolled person it
        looks like, if any (with ``with_people``)."""
        with self.catalog.reading() as r:
            rows = store.cluster_photos(r)
        out: dict[int, list[str]] = {}
        for cid, path in rows:
            out.setdefault(cid, []).append(path)
        looks = self.cluster_people() if with_people else {}
        return [ClusterInfo(cid, len(paths), sorted(set(paths))[:examples], *looks.get(cid, (None, None)))
                for cid, paths in sorted(out.items())]

    def cluster_people(self) -> dict[int, tuple[str, float]]:
        """Cluster -> (enrolled person, median score) for the groups whose faces, at least half of
        them, verify against one enrolled person: the group is that person (its median face
        verifies against them)."""
        with self.catalog.reading() as r:
            members = store.cluster_vector_ids(r)
        if not members:
            return {}
        best = self.links.best_person(self.threshold)
        out: dict[int, tuple[str, float]] = {}
        for cid, vids in members.items():
            votes: dict[str, list[float]] = {}
            for vid in vids:
                if vid in best:
                    votes.setdefault(best[vid][0], []).append(best[vid][1])
            if votes:
                person, scores = max(votes.items(), key=lambda kv: (len(kv[1]), np.median(kv[1])))
                if 2 * len(scores) >= len(vids):
                    out[cid] = (person, float(np.median(scores)))
        return out

    @writes_catalog(lambda self, *a, **k: self.catalog)
    def name_cluster(self, cluster: int, name: str, new_person: bool = False) -> EnrollResult:
        """Enroll the faces of a cluster as ``name`` (up to the 50 most central as templates) and
        mark them as that person so later clustering leaves them out. A group that looks like an
        enrolled person other than ``name`` (:meth:`cluster_people`) raises :class:`LooksLikeError`
        offering that person, unless ``new_person``."""
        name = _check_name(name)
        with self.catalog.reading() as r:
            face_ids, emb = store.cluster_members(r, cluster)
            enrolled = store.templates(r, name) is not None
        if not face_ids:
            raise VSearchError(f"no cluster {cluster} (run `vsearch faces cluster` and pick a number it lists)")
        looks = self.cluster_people().get(cluster)
        if looks and looks[0] != name and not enrolled and not new_person:
            person, score = looks
            raise LooksLikeError(
                f"group {cluster} looks like {person} ({score:.2f}): name it {person} to add these faces to "
                f"{person}, or confirm that {name} is someone else", cluster, person, score)
        centre = emb.mean(axis=0)
        central = np.argsort(-(emb @ centre))[:MAX_CLUSTER_TEMPLATES]
        return self._add_templates(name, np.ascontiguousarray(emb[central]), source=f"cluster:{cluster}",
                                   face_ids=face_ids)


def photos_with_face(catalog: Catalog, probe: ImageSource, k: int = 10, device: str = "cpu") -> list[SearchHit]:
    """`vsearch search --face PROBE`: photos of the collection showing the probe's person."""
    return FaceService(catalog, device=device).search_photos(probe, k=k)


def _may_hold_more_faces(result: FaceResult) -> bool:
    """Several faces, faces too small to use, or a face under twice the smallest the scan could
    find: a closer look may find more (a lone big face, the face-unlock case, is not looked at again)."""
    if len(result.faces) > 1 or result.too_small:
        return True
    return bool(result.faces) and min(f.size for f in result.faces) < 2 * result.min_detectable


class _ConfiguredPipeline:
    """The service's pipeline with the enrollment settings, for calibration folders."""

    def __init__(self, pipeline: FacePipeline):
        self._pipeline = pipeline
        self.embedder = pipeline.embedder

    def analyze(self, source):
        return self._pipeline.analyze(source, ENROLL_CONFIG)


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise QueryError("a person's name cannot be empty")
    if len(name) > 256:
        raise QueryError("a person's name is limited to 256 characters")
    return name


def _canonical_embedder(spec: str) -> str:
    from vsearch.faces.embedders import DLIB_RESNET

    if spec in ("dlib", "dlib-native", DLIB_RESNET):
        return DLIB_RESNET
    from vsearch.encoders import canonical_spec

    return canonical_spec(spec)


def recorded_embedder(catalog: Catalog) -> str | None:
    """The embedder that filled this catalog's face spaces, if any."""
    for space in (FACE_SPACE, ENROLLED_SPACE):
        rec = catalog.space_model(space)
        if rec:
            return rec[0]
    return None
