"""The FastAPI application: routes, limits, auth and error shapes around :class:`SearchService`.

``create_app`` loads the catalog, the model and the index once; every request then only encodes
its query and searches. CPU-heavy work (decoding, inference, FAISS, thumbnails) runs in the
:class:`~vsearch.serve.limits.WorkQueue`'s threads, never on the event loop.
"""
from __future__ import annotations

import base64
import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal, Optional

from fastapi import Depends, FastAPI, File, Form, Path as PathParam, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import Field

import vsearch
from vsearch.errors import QueryError
from vsearch.filters import check_supported, person_lookup
from vsearch.fsutil import display_path, undecodable_name
from vsearch.query import ParsedQuery, parse_query
from vsearch.query import Term as Filter
from vsearch.search import NOT_BLANK_PATTERN, QUERY_LIMITS, SPACE_CHARS, TERM_PATTERN, parse_weighted
from vsearch.serve.auth import TOKEN_FILENAME, BearerToken, bearer_scheme, load_or_create_token
from vsearch.serve.errors import ApiError, error_response, install_error_handlers
from vsearch.serve.limits import BodySizeLimit, QueryStringLimit, WorkQueue
from vsearch.serve.models import ClassifyResult, Health, Hit, SearchResult, error_responses
from vsearch.serve.openapi import install as install_openapi
from vsearch.serve.service import ServeSettings, SearchService

log = logging.getLogger("vsearch.serve")

STATIC_DIR = Path(__file__).parent / "static"
MAX_K = 200
# One search: q (up to QUERY_LIMITS.max_text_chars) and up to 8 plus and 8 minus terms of up to
# 60 characters. Within QUERY_LIMITS by construction (a test keeps them in step), so a request
# that the OpenAPI document accepts is one the search accepts.
MAX_TERMS_EACH = 8
MAX_TERM_CHARS = 60
MAX_TAGS = 16
ORDINARY_TEXT_CHARS = 256  # a search of longer texts together runs in the work queue's lane for costly calls
NOT_BLANK = {"pattern": NOT_BLANK_PATTERN}  # in the document; the server's own check says "empty"
# The raw query string, before it is parsed: a search takes at most 35 parameters (q, like, k,
# 8 plus, 8 minus, 16 tags), each character of its texts at most 12 bytes percent-encoded.
MAX_QUERY_PARAMS = 64
MAX_QUERY_BYTES = 12 * (QUERY_LIMITS.max_text_chars + 2 * MAX_TERMS_EACH * MAX_TERM_CHARS) + 4096
Term = Annotated[str, Field(min_length=1, max_length=MAX_TERM_CHARS, json_schema_extra={"pattern": TERM_PATTERN})]
# The page's own files only: no inline script, nothing from other origins.
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class HostCheck:
    """ASGI middleware: refuse requests whose Host header is not one of ``allowed`` (see
    ``LOOPBACK_HOSTS``: on loopback this stops DNS-rebinding pages from reading the API)."""

    def __init__(self, app, allowed: tuple[str, ...]):
        self.app, self.allowed = app, {h.lower() for h in allowed}

    @staticmethod
    def _hostname(value: str) -> str:
        if value.startswith("["):  # [::1]:8000
            return value[: value.find("]") + 1] if "]" in value else value
        return value.rsplit(":", 1)[0] if value.count(":") == 1 else value

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope.get("headers", ())).get(b"host", b"").decode("latin-1").strip().lower()
            if self._hostname(host) not in self.allowed:
                response = error_response(
                    400, "bad_host", f"Host {host!r} is not served here: this server answers requests addressed "
                    f"to {', '.join(sorted(self.allowed))} (start it with --host to serve another name)")
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


class SafetyHeaders:
    """ASGI middleware: no MIME sniffing, no referrer to other sites, on every response. (A plain
    ASGI wrapper: Starlette's BaseHTTPMiddleware would hide client disconnects from the routes.)"""

    HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": list(message.get("headers", []))
                           + [h for h in self.HEADERS if h[0] not in names]}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


MAX_ID = 2**63 - 1  # catalog ids are SQL integers: larger numbers name no photo (422, not a crash)


def create_app(db: str | os.PathLike | None = None, *, model: str | None = None, db_url: str | None = None,
               device: str = "cpu", token: str | None = None, token_file: str | None = None,
               settings: ServeSettings | None = None, faces: bool | None = None,
               collection: vsearch.Collection | None = None) -> FastAPI:
    """The service over the catalog in ``db``.

    ``token``: the bearer token for the face endpoints; else read from ``token_file`` (default
    ``<db>/serve.token``), which is created with mode 0600 on first start. ``faces``: serve the
    face endpoints (None: when the faces feature and its models are installed; True: or fail).
    """
    settings = settings or ServeSettings()
    collection = collection or vsearch.open(db, model=model, url=db_url, device=device, create=False)
    service = SearchService(collection, settings)
    token_path, token_created = None, False
    if token is None:
        token_path = token_file or os.path.join(collection.catalog.directory, TOKEN_FILENAME)
        token, token_created = load_or_create_token(token_path)
    token_check = BearerToken(token)
    require_token = Depends(token_check)
    queue = WorkQueue(settings.workers, settings.queue_depth)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if app.state.face_pool is not None:  # worker processes end with the server
            app.state.face_pool.close()
        # this server never writes the image index: leave the files as they are
        collection.catalog.close(save=False)

    app = FastAPI(
        lifespan=lifespan,
        title="vsearch",
        version=getattr(vsearch, "__version__", "0"),
        summary="Visual search and face verification over a vsearch catalog.",
        description="Search photos by text or example image, classify images zero-shot, and verify faces. "
                    "Face endpoints need `Authorization: Bearer <token>` (the token file is printed at start). "
                    "Errors are JSON: `{\"error\": code, \"detail\": message}`.",
        docs_url=None, redoc_url=None,  # served below from local files: the network may be closed
    )
    app.state.service, app.state.queue, app.state.settings = service, queue, settings
    app.state.token_file, app.state.token_created = token_path, token_created
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(QueryStringLimit, max_params=MAX_QUERY_PARAMS, max_bytes=MAX_QUERY_BYTES)
    if settings.allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed=settings.allowed_hosts)
    app.add_middleware(SafetyHeaders)

    async def read_upload(upload: UploadFile) -> bytes:
        data = await upload.read()  # bounded: BodySizeLimit has capped the whole body already
        if not data:
            raise ApiError(422, "bad_image", f"the uploaded file {upload.filename or ''!r} is empty")
        return data

    def hit_json(hit) -> Hit:
        path = display_path(hit.path)  # JSON cannot carry a file name's undecodable bytes: shown as \xNN
        raw = undecodable_name(hit.path)  # and given exactly, since a real backslash reads the same
        return Hit(media_id=hit.media_id, path=path, name=os.path.basename(path), score=round(hit.score, 6),
                   rank=hit.rank, thumbnail=f"/v1/media/{hit.media_id}/thumbnail",
                   path_bytes=base64.b64encode(raw).decode("ascii") if raw is not None else None)

    faces_router = None
    if faces is not False:
        from vsearch.serve import faces_routes

        faces_router = faces_routes.build_router(collection, queue, require_token, settings, required=bool(faces))
        if faces_router is not None:
            app.include_router(faces_router)
    app.state.faces = faces_router.face_service if faces_router is not None else None
    app.state.face_pool = faces_router.face_pool if faces_router is not None else None

    # -- status ----------------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["status"])
    def healthz() -> Health:
        """Liveness and load: model, photos in the loaded index, queue occupancy. Not queued, so
        it answers while the work queue is full."""
        pool = app.state.face_pool
        workers = None if faces_router is None else pool.state if pool is not None else "none"
        return Health(status="ok", faces=faces_router is not None, face_workers=workers, queue=queue.stats(),
                      **service.health())

    # -- search ----------------------------------------------------------------------------------
    def run_search(texts, vectors_fn, k: int, filters, exclude=None, words: str | None = None) -> tuple[list, int]:
        vectors = vectors_fn()
        query = service.compose(texts, vectors) if texts or vectors or not filters else None
        people = person_lookup(app.state.faces) if app.state.faces is not None else None
        hits = service.search(query, k, filters, exclude_media=exclude, person_photos=people, text=words)
        return hits, len(service.reader.current())

    def query_filters(q: str | None, tags: list[str], authorization) -> tuple[str | None, list[Term]]:
        """q's free text and its filters with the tag parameters; a malformed q is a 422, and
        person: needs the bearer token as the face endpoints do (401)."""
        try:
            parsed = parse_query(q) if q is not None else ParsedQuery("")
            check_supported(parsed.terms)
        except QueryError as exc:
            raise ApiError(422, "invalid_request", f"q: {exc}", fields=[{"field": "q", "message": str(exc)}]) from None
        if parsed.of("person"):
            token_check(authorization)
        return parsed.text or None, [*parsed.terms, *(Filter("tag", t) for t in tags)]

    @app.get("/v1/search", response_model=SearchResult, response_model_exclude_none=True, tags=["search"],
             responses=error_responses(400, 404, 422, 503))
    async def search_get(
        request: Request,
        q: Annotated[Optional[str], Query(min_length=1, max_length=QUERY_LIMITS.max_text_chars, json_schema_extra=NOT_BLANK,
                                          description="Text query, e.g. 'a dog on the beach', with filters such as "
                                          "'year:2019 -tag:cat type:raw' (README, Query language); 'person:NAME' needs "
                                          "the bearer token. Filters alone list the photos that pass, newest first, "
                                          "score 0.")] = None,
        like: Annotated[Optional[int], Query(ge=0, le=MAX_ID, description="A photo's catalog id: find photos similar to it "
                                             "(the photo itself is left out).")] = None,
        plus: Annotated[list[Term], Query(max_length=MAX_TERMS_EACH, description=(
            "Text concepts to add; 'snow=0.5' sets a weight (a number below 100 either way)."))] = [],  # noqa: B006
        minus: Annotated[list[Term], Query(max_length=MAX_TERMS_EACH, description=(
            "Text concepts to subtract; 'night=0.5' sets a weight."))] = [],  # noqa: B006
        tag: Annotated[list[str], Query(max_length=MAX_TAGS, description="Only photos carrying every one of these tags.")] = [],  # noqa: B006
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Number of results.")] = 10,
    ) -> SearchResult:
        """Photos ranked by similarity to a text, to a catalog photo (`like`), or a combination.

        Give at least one of `q`, `like` and `plus`, whose weights do not cancel out (`plus=cat=0`,
        or `q=cat&minus=cat`): otherwise 400 `bad_query` (OpenAPI cannot state a rule across query
        parameters). Each text is one pass of the text encoder, so the
        terms are bounded in number and length; a weight that is not a number below 100 (`nan`,
        `inf`, `1e9`) is a 422."""
        if q is None and like is None and not plus:
            raise ApiError(400, "bad_query", "give q (a text), like (a photo id) or plus terms")
        words, filters = query_filters(q, tag, await bearer_scheme(request))
        texts = [(words, 1.0)] if words is not None else []
        for field, terms, sign in (("plus", plus, 1.0), ("minus", minus, -1.0)):
            for term in terms:
                try:
                    text, weight = parse_weighted(term)
                except QueryError as exc:
                    raise ApiError(422, "invalid_request", f"{field}: {exc}",
                                   fields=[{"field": field, "message": str(exc)}]) from None
                texts.append((text, sign * weight))
        try:
            QUERY_LIMITS.check(q, plus, minus, k)  # implied by the parameters' bounds; kept in step by a test
        except QueryError as exc:
            raise ApiError(422, "invalid_request", str(exc)) from None

        def vectors():
            return [(service.media_vector(like), 1.0)] if like is not None else []

        started = time.perf_counter()
        heavy = sum(len(t) for t, _ in texts) > ORDINARY_TEXT_CHARS
        hits, n = await queue.run(run_search, texts, vectors, k, filters, like, words, request=request, heavy=heavy)
        return SearchResult(results=[hit_json(h) for h in hits], k=k, photos_in_index=n,
                            took_ms=round((time.perf_counter() - started) * 1000, 2))

    @app.post("/v1/search", response_model=SearchResult, response_model_exclude_none=True, tags=["search"],
              responses=error_responses(400, 413, 422, 503))
    async def search_post(
        request: Request,
        image: Annotated[UploadFile, File(description="The example image (JPEG, PNG, WebP, ...).")],
        q: Annotated[Optional[str], Form(max_length=QUERY_LIMITS.max_text_chars, json_schema_extra=NOT_BLANK,
                                         description="Optional text added to the image query.")] = None,
        k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
        tag: Annotated[list[str], Form(max_length=MAX_TAGS, description="Only photos carrying every one of these tags.")] = [],  # noqa: B006
    ) -> SearchResult:
        """Photos ranked by similarity to an uploaded image (plus an optional text)."""
        data = await read_upload(image)
        texts = [(q, 1.0)] if q else []

        def vectors():
            return [(service.image_vector(data), 1.0)]

        started = time.perf_counter()
        hits, n = await queue.run(run_search, texts, vectors, k, [Filter("tag", t) for t in tag], request=request)
        return SearchResult(results=[hit_json(h) for h in hits], k=k, photos_in_index=n,
                            took_ms=round((time.perf_counter() - started) * 1000, 2))

    @app.post("/v1/classify", response_model=ClassifyResult, tags=["classify"],
              responses=error_responses(400, 404, 413, 422, 503))
    async def classify(
        request: Request,
        labels: Annotated[str, Form(max_length=20000, json_schema_extra={"pattern": f"[^,{SPACE_CHARS}]"},
                                    description="Comma-separated labels, e.g. 'cat,dog,car' (at most 512 texts to "
                                    "encode: labels × templates).")],
        image: Annotated[Optional[UploadFile], File(description="The image to classify.")] = None,
        media_id: Annotated[Optional[int], Form(ge=0, le=MAX_ID, description="Or a catalog photo's id instead of an upload.")] = None,
        k: Annotated[int, Form(ge=1, le=100, description="Labels to return, best first.")] = 3,
        templates: Annotated[Literal["default", "plain"], Form(
            description="default: 8 CLIP prompt templates per label; plain: the label alone.")] = "default",
        closed_set: Annotated[bool, Form(description="Always pick one of the labels (a softmax over them alone) "
                                         "instead of answering \"none of these\" when no label fits.")] = False,
    ) -> ClassifyResult:
        """Zero-shot classification of one image against the given labels, as `vsearch classify`:
        a label is chosen only when it fits (open set), else `top` is null."""
        if (image is None) == (media_id is None):
            raise ApiError(400, "bad_request", "give exactly one of: an image upload, or media_id")
        data = await read_upload(image) if image is not None else None

        def work():
            vector = service.image_vector(data) if data is not None else service.media_vector(media_id)
            return service.classify(vector, labels, k, templates, closed_set)

        started = time.perf_counter()
        heavy = len(labels.split(",")) * (1 if templates == "plain" else 8) > 64  # texts to encode (8 default templates)
        result = await queue.run(work, request=request, heavy=heavy)
        return ClassifyResult(**result, took_ms=round((time.perf_counter() - started) * 1000, 2))

    @app.get("/v1/media/{media_id}/thumbnail", tags=["media"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail."},
                        **error_responses(404, 503)})
    async def thumbnail(
        request: Request,
        media_id: Annotated[int, PathParam(ge=0, le=MAX_ID, description="The photo's catalog id (from a search result).")],
        size: Annotated[int, Query(ge=32, le=1024, description="Longest side in pixels.")] = 256,
    ) -> Response:
        """A JPEG thumbnail of a catalog photo. Photos are reachable only by catalog id."""
        data = await queue.run(service.thumbnail, media_id, size, request=request)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})

    # -- the page's photo view and faces tab (vsearch.serve.page_routes) ---------------------------
    from vsearch.serve import page_routes

    app.include_router(page_routes.photo_router(collection.catalog, queue))
    if faces_router is not None:
        app.include_router(page_routes.faces_router(collection.catalog, faces_router.face_service, queue,
                                                    require_token, faces_router.index_lock))

    # -- page and docs ---------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY",
                                     "Cache-Control": "no-cache"})

    _mount_docs(app)  # before /static: the first matching mount wins
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the swagger-ui-bundle package's files (FastAPI's default page
    loads them from a CDN, which a machine on a closed network cannot reach)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # still usable: the page then tries the CDN
        swagger_ui_path = None
    if swagger_ui_path is not None:
        app.mount("/static/swagger", StaticFiles(directory=str(swagger_ui_path)), name="swagger")
        assets = {"swagger_js_url": "/static/swagger/swagger-ui-bundle.js",
                  "swagger_css_url": "/static/swagger/swagger-ui.css",
                  "swagger_favicon_url": "/static/swagger/favicon-32x32.png"}
    else:
        assets = {}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="vsearch API", **assets)
