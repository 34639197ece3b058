"""Back-pressure and input limits.

* :class:`WorkQueue` runs CPU-heavy calls (model inference, FAISS, decoding) in worker threads so
  the event loop keeps answering, and refuses work beyond a fixed depth with 503: a server that
  queues without bound answers everyone late instead of answering most callers on time.
* :class:`BodySizeLimit` refuses request bodies above a byte limit *while they arrive*, before
  FastAPI spools a multipart upload to disk.
* :class:`QueryStringLimit` refuses query strings of thousands of parameters before they are
  parsed.
* :func:`check_pixels` reads an image's header and refuses images with too many pixels before
  any pixel is decoded.
"""
from __future__ import annotations

import io
import warnings
from typing import Callable, TypeVar

import anyio
import anyio.to_thread
from PIL import Image, UnidentifiedImageError
from starlette.exceptions import HTTPException as StarletteHTTPException

from vsearch.serve.errors import ApiError, error_response

T = TypeVar("T")


class WorkQueue:
    """At most ``workers`` calls run at once; at most ``depth`` more wait; the rest get 503.

    Admission is counted on the event loop's thread (every ``run`` starts there), so the counter
    needs no lock. Waiting calls hold no thread: they wait on anyio's capacity limiter.

    Costly calls (``heavy=True``: a search of many long texts, a classifier of many labels) run
    in a lane of ``workers - 1`` threads (at least one): a caller sending them back to back
    cannot take every worker, and ordinary calls keep one.
    """

    def __init__(self, workers: int, depth: int):
        if workers < 1 or depth < 0:
            raise ValueError("workers must be >= 1 and depth >= 0")
        self.workers, self.depth = workers, depth
        self.limiter = anyio.CapacityLimiter(workers)
        self.heavy_lane = anyio.CapacityLimiter(max(1, workers - 1))
        self.admitted = 0
        self.rejected = 0
        self.abandoned = 0

    @property
    def capacity(self) -> int:
        return self.workers + self.depth

    def stats(self) -> dict:
        running = int(self.limiter.borrowed_tokens)
        return {"running": running, "waiting": self.admitted - running, "workers": self.workers,
                "capacity": self.capacity, "rejected": self.rejected, "abandoned": self.abandoned}

    async def run(self, fn: Callable[..., T], *args, request=None, heavy: bool = False) -> T:
        """Run ``fn(*args)`` in a worker thread once one is free; 503 at once when full.

        ``request``: when its client has gone by the time a worker is free (it gave up waiting),
        the call is dropped instead of computed for nobody; an overloaded server thus sheds
        abandoned work instead of falling further behind.
        """
        if self.admitted >= self.capacity:
            self.rejected += 1
            raise ApiError(503, "overloaded",
                           f"the server is busy ({self.admitted} requests in progress or queued, the limit is "
                           f"{self.capacity}); retry shortly", headers={"Retry-After": "1"})
        self.admitted += 1
        try:
            async with self.heavy_lane if heavy else _NO_LANE, self.limiter:  # a worker slot; the thread
                # below is anyio's, limited by this slot
                if request is not None and await request.is_disconnected():
                    self.abandoned += 1
                    raise ApiError(499, "client_closed_request", "the client closed the connection before "
                                   "its request was computed")
                return await anyio.to_thread.run_sync(fn, *args)
        finally:
            self.admitted -= 1


class _NoLane:
    async def __aenter__(self):
        return None

    async def __aexit__(self, *exc):
        return False


_NO_LANE = _NoLane()


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive``: an HTTPException, so that FastAPI's body parsing passes it on
    unchanged (it turns other exceptions into a vague 400) and the error handlers answer 413."""


class _BodyTimeout(StarletteHTTPException):
    """Raised from ``receive`` when the client stops sending its body (answered 408)."""


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by its Content-Length when it declares
    one, else by counting the chunks as they arrive (chunked transfer); 408 when the next part of
    the body takes more than ``timeout_s`` to arrive (a body that never finishes would otherwise
    hold a connection and a request slot for ever)."""

    def __init__(self, app, max_bytes: int, timeout_s: float = 30.0):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    def _too_large(self) -> ApiError:
        mib = self.max_bytes / (1 << 20)
        return ApiError(413, "too_large", f"the request body is larger than the server's limit of {mib:g} MiB")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    err = self._too_large()
                    return await error_response(err.status, err.code, err.detail,
                                                {"Connection": "close"})(scope, receive, send)
        seen = 0
        started = False
        body_done = False

        async def counting_receive():
            nonlocal seen, body_done
            if body_done:  # after the body, receive() waits for a disconnect: no time limit
                return await receive()
            try:
                with anyio.fail_after(self.timeout_s):
                    message = await receive()
            except TimeoutError:
                raise _BodyTimeout(408, f"the request body did not arrive within {self.timeout_s:g} s") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > self.max_bytes:
                    raise _BodyTooLarge(413, self._too_large().detail)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:  # too late to answer differently; the connection just ends
                raise
            err = self._too_large()
            await error_response(err.status, err.code, err.detail, {"Connection": "close"})(scope, receive, send)
        except _BodyTimeout as exc:
            if started:
                raise
            await error_response(408, "request_timeout", exc.detail, {"Connection": "close"})(scope, receive, send)


class QueryStringLimit:
    """ASGI middleware: 422 for a query string of more than ``max_params`` parameters or
    ``max_bytes`` bytes, from its raw bytes, before anything parses it.

    Parsing is not free: Starlette's parser spends ~50 ms of the event loop's time on the 5,000
    ``plus`` terms of one URL (measured on the 2-core VM), a few such requests a second and every
    other caller waits. The route's own bounds (16 terms) still answer the requests in between.
    """

    def __init__(self, app, max_params: int, max_bytes: int):
        self.app, self.max_params, self.max_bytes = app, max_params, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            raw = scope.get("query_string", b"")
            params = raw.count(b"&") + 1 if raw else 0
            if params > self.max_params or len(raw) > self.max_bytes:
                what = (f"{params} parameters" if params > self.max_params else f"{len(raw)} bytes")
                limit = (f"{self.max_params} parameters" if params > self.max_params else f"{self.max_bytes} bytes")
                detail = f"the query string has {what}; this server reads at most {limit}"
                response = error_response(422, "invalid_request", detail, fields=[{"field": "query", "message": detail}])
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def check_pixels(data: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the image header; 413 above ``max_pixels``, 422 when not an image.

    Only the header is read: a small file that would decode to gigabytes is refused for free.
    """
    if not data:
        raise ApiError(422, "bad_image", "the uploaded file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiError(413, "too_many_pixels", "the image has more pixels than this server decodes "
                       f"(limit {max_pixels / 1e6:g} megapixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ApiError(422, "bad_image", "the uploaded file is not an image in a format this server reads "
                       "(JPEG, PNG, WebP, GIF, BMP, TIFF)") from None
    if width * height > max_pixels:
        raise ApiError(413, "too_many_pixels", f"the image is {width}×{height} = {width * height / 1e6:.1f} "
                       f"megapixels; the limit is {max_pixels / 1e6:g} megapixels")
    return width, height
