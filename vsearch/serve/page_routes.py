"""Routes behind the web page's photo view, duplicates tab and faces tab.

Photo files are reached only by catalog id, never by a path from the client. The photo and
duplicates routes answer without a token, as search and thumbnails do; everything about faces and
people is behind the bearer token, as the other face endpoints are.
"""
from __future__ import annotations

import mimetypes
import os
import threading
from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import FileResponse, Response

from vsearch.fsutil import display_path
from vsearch.serve import photo_info
from vsearch.serve.errors import ApiError
from vsearch.serve.limits import WorkQueue
from vsearch.serve.models import (ClustersBody, DuplicatesBody, EnrollBody, PhotoDetails, PhotoFacesBody, TagsBody,
                                  error_responses)

MAX_ID = 2**63 - 1  # SQL's integer range: a larger id is a 422, not an overflow inside the driver
MediaId = Annotated[int, Path(ge=1, le=MAX_ID, description="The photo's catalog id (from a search result).")]
FaceSize = Annotated[int, Query(ge=32, le=512, description="Longest side in pixels.")]
JPEG = {200: {"content": {"image/jpeg": {}}, "description": "A JPEG."}}
# An original is shown as an image and nothing else: no scripts even if a file claims to be HTML or SVG.
# what browsers show inline; other originals (HEIC, TIFF, camera RAW) are converted to JPEG
BROWSER_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/bmp"})
ORIGINAL_HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src 'self'; sandbox",
                    "Cache-Control": "private, max-age=60"}


def _jpeg(data: bytes) -> Response:
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


class DuplicatesCache:
    """The last duplicates answer, kept while the threshold asked and the catalog's vectors
    (count and largest id) stay the same: finding them takes seconds on a large catalog, and the
    page asks again each time the tab is opened. One computation at a time; a second caller with
    the same question waits for it and gets its answer."""

    def __init__(self, catalog):
        self.catalog = catalog
        self._lock = threading.Lock()
        self._key = None
        self._body: dict | None = None

    def get(self, threshold: float | None) -> dict:
        from vsearch.catalog import IMAGE_SPACE
        from vsearch.duplicates import find_duplicates

        with self._lock:
            key = (threshold, self.catalog.sql_fingerprint(IMAGE_SPACE))
            if key == self._key and self._body is not None:
                return {**self._body, "cached": True}
            body = find_duplicates(self.catalog, threshold=threshold).to_json()
            for group in (*body["groups"], *body["similar"]):
                for copy in (group["best"], *group["others"]):
                    copy["path"] = display_path(copy["path"])  # JSON cannot carry undecodable bytes
                    copy["name"] = os.path.basename(copy["path"])
                    copy["thumbnail"] = f"/v1/media/{copy['media_id']}/thumbnail"
            self._key, self._body = key, body
            return {**body, "cached": False}


def photo_router(catalog, queue: WorkQueue) -> APIRouter:
    router = APIRouter(tags=["media"])
    duplicates_cache = DuplicatesCache(catalog)

    @router.get("/v1/media/{media_id}", response_model=PhotoDetails, responses=error_responses(404, 422, 503))
    async def details(request: Request, media_id: MediaId):
        """Path, folder, size, pixels, date and tags of a catalog photo (the page's full view)."""
        return await queue.run(photo_info.photo_details, catalog, media_id, request=request)

    @router.get("/v1/media/{media_id}/original", response_class=FileResponse,
                responses={200: {"content": {"image/*": {}}, "description": "The photo's file as indexed."},
                           **error_responses(404, 422, 503)})
    async def original(request: Request, media_id: MediaId):
        """The original file of a catalog photo, as it is on disk now; one a browser cannot show
        (HEIC, TIFF, camera RAW) comes as a JPEG of the whole photo."""
        def find():
            media = photo_info.indexed_media(catalog, media_id)
            photo_info.existing_file(media)
            return media

        media = await queue.run(find, request=request)
        kind = mimetypes.guess_type(media.path)[0] or ""
        if kind not in BROWSER_IMAGE_TYPES:
            data = await queue.run(photo_info.original_jpeg, media.path, request=request)
            if data is not None:
                return Response(data, media_type="image/jpeg", headers=ORIGINAL_HEADERS)
            kind = "application/octet-stream"  # downloaded, never rendered as a page (SVG, HTML, ...)
        return FileResponse(media.path, media_type=kind, filename=os.path.basename(display_path(media.path)),
                            content_disposition_type="inline", headers=ORIGINAL_HEADERS)

    @router.get("/v1/tags", response_model=TagsBody, tags=["search"], responses=error_responses(503))
    async def tags(request: Request):
        """The tags stored by `vsearch tag`, for the page's tag filter."""
        return {"tags": await queue.run(photo_info.tag_counts, catalog, request=request)}

    @router.get("/v1/duplicates", response_model=DuplicatesBody, tags=["library"], responses=error_responses(422, 503))
    async def duplicates(
        request: Request,
        threshold: Annotated[float | None, Query(ge=-1.0, le=1.0, description=(
            "Cosine from which two photos are candidates (default: the model's, as `vsearch duplicates`); "
            "lower finds more candidates, each still checked."))] = None,
    ):
        """Groups of catalog photos that are the same picture (as `vsearch duplicates --json`), the
        best copy of each first. The last answer is reused while the catalog is unchanged."""
        return await queue.run(duplicates_cache.get, threshold, request=request)

    return router


def faces_router(catalog, face_service, queue: WorkQueue, require_token, index_lock: threading.Lock) -> APIRouter:
    """``index_lock``: the lock the enroll and remove routes hold while they write the enrolled
    templates' index; naming a cluster writes it too."""
    router = APIRouter(prefix="/v1/faces", tags=["faces"], dependencies=[require_token])

    @router.get("/photos/{media_id}", response_model=PhotoFacesBody, responses=error_responses(401, 404, 422, 503))
    async def photo_faces(request: Request, media_id: MediaId):
        """The faces found in a photo when it was indexed, with names where known."""
        def work():
            media = photo_info.indexed_media(catalog, media_id)
            return {"media_id": media_id, "width": media.width, "height": media.height,
                    "faces": photo_info.faces_in_photo(catalog, media_id)}

        return await queue.run(work, request=request)

    @router.get("/crops/{face_id}", response_class=Response, responses={**JPEG, **error_responses(401, 404, 422, 503)})
    async def crop(request: Request, face_id: Annotated[int, Path(ge=1, le=MAX_ID)],
                   size: FaceSize = 128):
        """A JPEG of one face of the collection."""
        return _jpeg(await queue.run(photo_info.face_crop_jpeg, catalog, face_id, size, request=request))

    @router.get("/people/{name}/face", response_class=Response, responses={**JPEG, **error_responses(401, 404, 503)})
    async def person_face(request: Request, name: Annotated[str, Path(max_length=256)],
                          size: FaceSize = 128):
        """A JPEG of an enrolled person's face from a photo of the collection (enrollment photos are
        never kept): 404 no_photo when no indexed photo shows them."""
        def work():
            with index_lock:  # the faces' index may be brought level with SQL meanwhile
                face_id = photo_info.person_face_id(catalog, face_service, name)
            if face_id is None:
                raise ApiError(404, "no_photo", f"no indexed photo shows {name}")
            return photo_info.face_crop_jpeg(catalog, face_id, size)

        return _jpeg(await queue.run(work, request=request))

    @router.get("/clusters", response_model=ClustersBody, responses=error_responses(401, 503))
    async def clusters(request: Request):
        """Groups of unnamed faces found by the last `vsearch faces cluster`."""
        return {"clusters": await queue.run(photo_info.cluster_examples, catalog, request=request)}

    @router.post("/clusters/{cluster}/name", response_model=EnrollBody, responses=error_responses(400, 401, 404, 503))
    async def name_cluster(request: Request, cluster: Annotated[int, Path(ge=1, le=MAX_ID)],
                           name: Annotated[str, Form(max_length=256, description="Who the group shows.")],
                           new_person: Annotated[bool, Form(description="Name it even if the group looks like an "
                                                            "enrolled person (409 looks_like otherwise).")] = False):
        """Enroll a group's faces as `name` (as `vsearch faces name` does)."""
        def work():
            if not any(c["cluster"] == cluster for c in photo_info.cluster_examples(catalog, examples=0)):
                raise ApiError(404, "unknown_cluster", f"no unnamed group {cluster}; reload the list")
            with index_lock:
                res = face_service.name_cluster(cluster, name, new_person=new_person)
            return res.to_json()

        return await queue.run(work, request=request)

    return router
