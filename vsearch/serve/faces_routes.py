"""The face endpoints: enroll, remove, verify (1:1), identify (1:N), list — all behind the token.

They adapt :class:`vsearch.faces.service.FaceService`, loaded once at start. Threads:

* the face pipeline serialises its own model calls (dlib is not thread-safe);
* verify reads the person's templates from SQL on every call, so it always sees the latest
  enrollment, ours or one made meanwhile with `vsearch faces enroll`;
* identify searches the catalog's in-memory index of enrolled templates, which enroll and remove
  change: one lock keeps those apart, and identify first brings the index level with SQL so that
  people enrolled by another process are found too. The same lock covers the index of the
  collection's faces, which the people list and grouping bring level with SQL (faces indexed by
  another process) and the page's person picture searches.

With ``settings.face_processes`` > 0, verify, identify and enroll run in worker processes instead
(:mod:`vsearch.serve.face_pool`): dlib holds the GIL, so only processes use more than one core.
The workers start with the first of those calls, not with the server.

Grouping the collection's faces (the faces tab's "find groups") is a job: it runs in one of the
server's worker threads (it takes a slot of the work queue while it runs), the request that starts
it answers at once, and the page polls its progress.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from fastapi.responses import JSONResponse

from vsearch.serve.errors import ApiError, register_error
from vsearch.serve.limits import WorkQueue, check_pixels
from vsearch.serve.models import (EnrollBody, GroupingJob, IdentifyBody, PeopleBody, RemoveBody, VerifyBody,
                                  error_responses)

log = logging.getLogger("vsearch.serve")

MAX_ENROLL_IMAGES = 20


class GroupingState:
    """The state of the one grouping job a server runs at a time (thread-safe: the job reports
    progress from a worker thread while requests read it)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state = {"state": "idle", "done": 0, "total": 0, "groups": None, "error": None,
                       "started_at": None, "finished_at": None}

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._state)

    def start(self) -> bool:
        """Mark a job as running; False when one already is."""
        with self._lock:
            if self._state["state"] == "running":
                return False
            self._state.update(state="running", done=0, total=0, groups=None, error=None,
                               started_at=time.time(), finished_at=None)
            return True

    def progress(self, done: int, total: int) -> None:
        with self._lock:
            self._state.update(done=int(done), total=int(total))

    def finish(self, groups: int | None = None, error: str | None = None) -> None:
        with self._lock:
            self._state.update(state="failed" if error else "done", groups=groups, error=error,
                               finished_at=time.time())


def build_router(collection, queue: WorkQueue, require_token, settings, required: bool = False) -> APIRouter | None:
    """The router, or None when the faces feature or its models are missing (an error instead
    when ``required``)."""
    try:
        from vsearch.faces.errors import (AlreadyEnrolledError, FaceModelError, LooksLikeError, MultipleFacesError,
                                          NoFaceError, UnknownPersonError)
        from vsearch.faces.schema import ENROLLED_SPACE
        from vsearch.faces.service import FaceService
    except ImportError as exc:
        if required:
            raise
        log.info("face endpoints off: %s", exc)
        return None
    register_error(NoFaceError, 422, "no_face")
    register_error(MultipleFacesError, 422, "multiple_faces")
    register_error(UnknownPersonError, 404, "unknown_person")
    register_error(FaceModelError, 503, "face_models_unavailable")
    register_error(AlreadyEnrolledError, 409, "already_enrolled")
    register_error(LooksLikeError, 409, "looks_like")
    try:
        faces = FaceService(collection.catalog, device=collection.device)  # models load now, once
    except FaceModelError as exc:
        if required:
            raise
        log.warning("face endpoints off: %s", exc)
        return None

    catalog = collection.catalog
    index_lock = threading.Lock()  # the face indexes: identify and the people list read, enroll/remove write
    pool = None
    if settings.face_processes > 0:
        from vsearch.serve.face_pool import FacePool

        pool = FacePool(catalog.directory, catalog.url, collection.device, settings.face_processes)
    router = APIRouter(prefix="/v1/faces", tags=["faces"], dependencies=[require_token])

    async def probe_bytes(upload: UploadFile) -> bytes:
        data = await upload.read()
        if not data:
            raise ApiError(422, "bad_image", f"the uploaded file {upload.filename or ''!r} is empty")
        return data

    def checked(data: bytes) -> bytes:
        check_pixels(data, settings.max_pixels)
        return data

    @router.post("/verify", response_model=VerifyBody, responses=error_responses(401, 404, 413, 422, 503))
    async def verify(request: Request,
                     name: Annotated[str, Form(max_length=256, description="An enrolled name.")],
                     image: Annotated[UploadFile, File(description="The probe photo; its largest face is used.")]):
        """1:1 — is the largest face of the probe the enrolled person `name`? Same JSON as
        `vsearch faces verify --json`."""
        data = await probe_bytes(image)

        def work():
            probe = checked(data)
            return (pool.verify(name, probe) if pool else faces.verify(name, probe)).to_json()

        return await queue.run(work, request=request)

    @router.post("/identify", response_model=IdentifyBody, responses=error_responses(401, 413, 422, 503))
    async def identify(request: Request,
                       image: Annotated[UploadFile, File(description="A photo with one or more faces.")],
                       k: Annotated[int, Form(ge=1, le=20, description="Candidates per face.")] = 3):
        """1:N — who is in the photo? For each face, the best enrolled people; "unknown" below the threshold."""
        data = await probe_bytes(image)

        def work():
            started = time.perf_counter()
            probe = checked(data)
            if pool:
                found, threshold = pool.identify(probe, k)
            else:
                with index_lock:
                    if catalog.space_model(ENROLLED_SPACE) is not None:
                        catalog.sync(ENROLLED_SPACE)  # people enrolled by another process since
                    found, threshold = faces.identify(probe, k=k), faces.threshold
            return {"faces": [{"face_box": f.face_box, "name": f.name,
                               "score": None if f.score is None else round(f.score, 6),
                               "candidates": [{"name": c.name, "score": round(c.score, 6)} for c in f.candidates]}
                              for f in found],
                    "threshold": round(threshold, 6),
                    "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

        return await queue.run(work, request=request)

    @router.post("/enroll", response_model=EnrollBody, responses=error_responses(400, 401, 413, 422, 503))
    async def enroll(request: Request,
                     name: Annotated[str, Form(max_length=256, description="The person's name.")],
                     image: Annotated[list[UploadFile], File(description="One or more photos, each showing "
                                                             "exactly one face; one template per photo.")]):
        """Add templates for `name` (creating the person). Only embeddings are stored, never photos;
        if any photo has no usable face or several faces, nothing is stored."""
        if len(image) > MAX_ENROLL_IMAGES:
            raise ApiError(400, "too_many_images", f"{len(image)} images given; enroll at most "
                           f"{MAX_ENROLL_IMAGES} per call")
        sources = [await probe_bytes(u) for u in image]
        labels = [u.filename or f"image {i + 1}" for i, u in enumerate(image)]

        def work():
            probes = [checked(d) for d in sources]
            with index_lock:  # one enrollment at a time: each saves the enrolled index file
                res = pool.enroll(name, probes, labels) if pool else faces.enroll(name, probes, labels=labels)
            return res.to_json()

        return await queue.run(work, request=request)

    @router.delete("/{name}", response_model=RemoveBody, responses=error_responses(401, 404, 503))
    async def remove(request: Request, name: Annotated[str, Path(max_length=256, description="An enrolled name.")]):
        """Delete a person and all their templates."""
        def work():
            with index_lock:
                return {"name": name, "removed_templates": faces.remove(name)}

        return await queue.run(work, request=request)

    @router.get("", response_model=PeopleBody, responses=error_responses(401, 503))
    async def people(request: Request):
        """Enrolled people (the web page's faces tab)."""
        def work():
            with index_lock:  # the people's photos may bring the faces' index level with SQL
                people, groups = faces.people(), faces.cluster_people()
            return {"people": [{"name": p.name, "templates": p.templates, "faces_in_collection": p.faces_in_collection,
                                "photos": p.photos, "created_at": p.created_at} for p in people],
                    "threshold": round(faces.threshold, 6), "calibrated": faces.calibration() is not None,
                    "faces": faces.face_counts(),
                    "groups": [{"cluster": c, "person": p, "score": round(s, 6)} for c, (p, s) in sorted(groups.items())]}

        return await queue.run(work, request=request)

    grouping = GroupingState()
    running: set[asyncio.Task] = set()  # the job's task, kept referenced while it runs

    @router.post("/clusters/find", response_model=GroupingJob, status_code=202,
                 responses=error_responses(401, 503))
    async def find_groups():
        """Group the collection's unnamed faces (as `vsearch faces cluster`) in a server worker; the
        answer comes at once with the job's state, which GET on the same path follows. A job
        already running is not started twice."""
        if grouping.start():
            def work():
                # the groups' look-alikes are the people list's to say (it holds the index lock)
                return len(faces.cluster(progress=grouping.progress, with_people=False))

            async def job():
                try:
                    grouping.finish(groups=await queue.run(work))
                except Exception as exc:  # noqa: BLE001 - the job's error is its state, for the page
                    log.warning("grouping faces failed: %s", exc)
                    grouping.finish(error=getattr(exc, "detail", None) or str(exc))

            task = asyncio.get_running_loop().create_task(job())
            running.add(task)
            task.add_done_callback(running.discard)
        return JSONResponse(grouping.snapshot(), status_code=202)

    @router.get("/clusters/find", response_model=GroupingJob, responses=error_responses(401))
    async def grouping_state():
        """The grouping job's state and progress (idle before the first)."""
        return grouping.snapshot()

    router.face_service, router.face_pool = faces, pool  # create_app keeps them (and closes the pool)
    router.index_lock = index_lock  # for the page's routes that write the enrolled index too
    return router
