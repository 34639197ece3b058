"""One JSON shape for every error the service answers: ``{"error": CODE, "detail": MESSAGE}``.

Library exceptions are typed (:mod:`vsearch.errors`); here, and only here, they become HTTP
status codes. FastAPI's own validation and routing errors are reshaped the same way, so a client
has one thing to parse.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from vsearch.errors import CatalogError, ImageDecodeError, ModelMismatchError, QueryError, VSearchError

log = logging.getLogger("vsearch.serve")


class ApiError(Exception):
    """An error answered as-is: its status, a short machine-readable code and a sentence for people."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None,
                 fields: list[dict] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers
        self.fields = fields  # for 422: [{"field": name, "message": why}], as validation errors have


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
                   **extra) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status, headers=headers)


# Library errors by class, most specific first (the first isinstance match wins).
_LIBRARY_ERRORS: list[tuple[type[Exception], int, str]] = [
    (ImageDecodeError, 422, "bad_image"),
    (QueryError, 400, "bad_query"),
    (ModelMismatchError, 409, "model_mismatch"),
    (CatalogError, 503, "catalog_unavailable"),
]



def register_error(cls: type[Exception], status: int, code: str) -> None:
    """Map a library exception class (of an optional feature, such as faces) to a status and code."""
    if not any(c is cls for c, _, _ in _LIBRARY_ERRORS):
        _LIBRARY_ERRORS.insert(0, (cls, status, code))


_HTTP_CODES = {400: "bad_request", 404: "not_found", 408: "request_timeout", 405: "method_not_allowed", 413: "too_large",
               415: "unsupported_media_type"}


def _field_messages(exc: RequestValidationError) -> list[dict]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        out.append({"field": ".".join(loc) or "request", "message": err.get("msg", "invalid")})
    return out


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(app, scope: dict) -> list[str]:
    """The methods the app serves at this request's path, asked of its router method by method.
    (Starlette's 405 names those of the first route that matched the path alone: for
    /v1/faces/clusters that is DELETE /v1/faces/{name}, not the GET that serves it.)"""
    allowed = []
    for method in METHODS:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        extra = {"fields": exc.fields} if exc.fields is not None else {}
        return error_response(exc.status, exc.code, exc.detail, exc.headers, **extra)

    @app.exception_handler(VSearchError)
    async def _library_error(_request: Request, exc: VSearchError):
        for cls, status, code in _LIBRARY_ERRORS:
            if isinstance(exc, cls):
                if status >= 500:
                    log.error("%s: %s", code, exc)
                return error_response(status, code, str(exc))
        # any other deliberate library error is about the request (labels, unknown person, ...)
        return error_response(400, "bad_request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        fields = _field_messages(exc)
        detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "invalid request"
        return error_response(422, "invalid_request", detail, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            allowed = allowed_methods(request.app, request.scope)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            detail = f"{request.method} is not served at {request.url.path}; it answers {', '.join(allowed)}"
        return error_response(exc.status_code, _HTTP_CODES.get(exc.status_code, "error"), detail, headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception):
        # the traceback goes to the server's log, not to the client
        log.exception("unhandled error")
        return error_response(500, "internal", "internal server error; the server log has the details")
