"""The published OpenAPI document, made to say what the server answers.

FastAPI writes the document from the routes' signatures; a few things it writes differ from what
the server does, whichever route they come from, so they are corrected here once for all routes
(``tests/test_serve_openapi.py`` runs Schemathesis against the result):

* every operation may answer 422 (a query string over the server's bounds is refused before
  routing), and every 422 has the service's error shape (:class:`~vsearch.serve.models.ValidationErrorBody`),
  never FastAPI's ``{"detail": [...]}``, which no answer of this server has;
* an operation with a request body may answer 400 (a malformed multipart or form body), 408 (a
  body that stops arriving) and 413 (a body over the limit): the middlewares and the form parser
  answer those before any route runs;
* a form field or a query parameter is absent or a text: ``null`` is not a value it can take,
  so the ``anyOf [..., null]`` that an optional parameter gets is reduced to its other branch,
  and an empty form value is no value (a text form field has ``minLength`` 1, a list ``minItems`` 1);
* an integer bound written as a float (``9.223372036854776e18``) is written exactly;
* an operation may require exactly one of some body fields (``EXACTLY_ONE_OF``).

The server routes as the document reads: a path without parameters is matched before a templated
one, for every method (:class:`ConcretePathsFirst`).
"""
from __future__ import annotations

from typing import Any, Callable

from fastapi import FastAPI

from vsearch.serve.errors import error_response
from vsearch.serve.models import ValidationErrorBody

# (path, method) -> body fields of which a request gives exactly one
EXACTLY_ONE_OF: dict[tuple[str, str], tuple[str, ...]] = {("/v1/classify", "post"): ("image", "media_id")}
MAX_SQL_INT = 2**63 - 1
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
BODY_ERRORS = {400: "Malformed request body (a multipart or form body that cannot be parsed)",
               408: "The request body stopped arriving",
               413: "Request body too large"}


class ConcretePathsFirst:
    """ASGI middleware: a path without parameters answers only its own methods, as OpenAPI
    resolves paths (concrete before templated). Without it, ``DELETE /v1/faces/enroll`` would reach
    ``DELETE /v1/faces/{name}`` while the document says /v1/faces/enroll takes only POST."""

    def __init__(self, app, document: Callable[[], dict[str, Any]]):
        self.app, self.document = app, document
        self._concrete: dict[str, list[str]] | None = None

    def concrete(self) -> dict[str, list[str]]:
        if self._concrete is None:
            self._concrete = {path: sorted(m.upper() for m in ops) for path, ops in self.document()["paths"].items()
                              if "{" not in path}
        return self._concrete

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            methods = self.concrete().get(scope["path"])
            if methods is not None and scope["method"] not in methods:
                response = error_response(405, "method_not_allowed", f"{scope['method']} is not served at "
                                          f"{scope['path']}; it answers {', '.join(methods)}",
                                          {"Allow": ", ".join(methods)})
                return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """Serve the corrected document at ``app.openapi_url`` (built once, on first request), and
    route as it says (:class:`ConcretePathsFirst`)."""
    app.add_middleware(ConcretePathsFirst, document=lambda: app.openapi())

    built = app.openapi  # FastAPI's: builds the document once and keeps it in app.openapi_schema

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            corrected(built())  # in place: the kept document is the corrected one
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def corrected(doc: dict[str, Any]) -> dict[str, Any]:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ValidationErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas[ValidationErrorBody.__name__] = error_schema
    error_ref = {"$ref": f"#/components/schemas/{ValidationErrorBody.__name__}"}
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            responses.setdefault("422", {"description": "Invalid parameters (also: a query string of more "
                                                        "parameters or bytes than the server reads)"})
            responses["422"]["content"] = {"application/json": {"schema": dict(error_ref)}}
            for param in op.get("parameters", []):
                param["schema"] = _without_null(param.get("schema", {}))
            body = op.get("requestBody")
            if body is None:
                continue
            for status, text in BODY_ERRORS.items():
                responses.setdefault(str(status), {"description": text, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
            for media_type, content in body.get("content", {}).items():
                if media_type not in FORM_TYPES:
                    continue
                form = _resolve(doc, content.get("schema", {}))
                for name, prop in list(form.get("properties", {}).items()):
                    prop = form["properties"][name] = _without_null(prop)
                    if prop.get("type") == "string" and "contentMediaType" not in prop:
                        prop.setdefault("minLength", 1)  # an empty form value reads as no value
                    if prop.get("type") == "array":
                        prop.setdefault("minItems", 1)  # a form cannot send an empty list, only no field
                one_of = EXACTLY_ONE_OF.get((path, method))
                if one_of:
                    form["oneOf"] = [{"required": [name]} for name in one_of]
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)  # no answer of this server has FastAPI's validation shape
    _exact_integer_bounds(doc)
    return doc


def _resolve(doc: dict, schema: dict) -> dict:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def _without_null(schema: dict) -> dict:
    """``anyOf [X, {"type": "null"}]`` -> X, keeping the outer keys (description, default...)."""
    branches = schema.get("anyOf")
    if not branches:
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == len(branches):
        return schema
    outer = {k: v for k, v in schema.items() if k != "anyOf"}
    if outer.get("default", 0) is None:
        outer.pop("default")
    if len(kept) == 1:
        return {**outer, **kept[0]}
    return {**outer, "anyOf": kept}


def _exact_integer_bounds(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum"):
                value = node.get(key)
                if isinstance(value, float):
                    node[key] = MAX_SQL_INT if value == float(MAX_SQL_INT) else int(value)
        for value in node.values():
            _exact_integer_bounds(value)
    elif isinstance(node, list):
        for value in node:
            _exact_integer_bounds(value)
