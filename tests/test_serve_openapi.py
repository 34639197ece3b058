"""The server and its published OpenAPI document agree: Schemathesis generates requests from
`/openapi.json` (valid ones, invalid ones, methods the document does not list) and checks every
answer against the document: status codes, bodies, content types, `Allow` on 405, that valid
requests are accepted and invalid ones refused.

In-process over ASGI (no socket), a few examples per operation, a fixed seed and deterministic
generation: the same requests on every run. A larger run is marked slow."""
from __future__ import annotations

import shutil
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from schemathesis.engine import events, from_schema  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

import vsearch  # noqa: E402
from vsearch.serve import LOOPBACK_HOSTS, ServeSettings, create_app  # noqa: E402

TOKEN = "test-token-" + "x" * 24
# Answers to requests that match the document but that no OpenAPI document can refuse: random
# bytes match `format: binary` but are not a photo (with one face), and rules across query
# parameters have no schema (GET /v1/search needs one of q, like, plus, and terms that cancel out,
# such as plus=cat=0, are a 400; its description says both).
IMAGE_ERRORS = {"bad_image", "no_face", "multiple_faces"}


@schemathesis.check
def valid_requests_accepted(ctx, response, case):
    """Schemathesis' positive_data_acceptance, less the answers no schema can rule out."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except AssertionError:
        try:
            code = response.json().get("error")
        except ValueError:
            code = None
        if response.status_code == 422 and code in IMAGE_ERRORS:
            return None
        sent = parse_qs(urlsplit(response.request.url).query)  # what went out (an empty list sends nothing)
        if (case.method, case.path, code) == ("GET", "/v1/search", "bad_query") and (
                not {"q", "like", "plus"} & set(sent) or "cancel out" in response.json()["detail"]):
            return None
        raise


@pytest.fixture(scope="module")
def app(tmp_path_factory, photo_dir, tiny_clip_spec):
    root = tmp_path_factory.mktemp("openapi")
    shutil.copytree(photo_dir, root / "photos")
    with vsearch.open(root / "db", model=tiny_clip_spec) as coll:
        coll.index([str(root / "photos")], workers=0)
    # TestClient's host is "testserver"; the Host check itself is tested in test_serve.py
    return create_app(root / "db", token=TOKEN,
                      settings=ServeSettings(workers=2, queue_depth=64, index_check_seconds=0.0,
                                             index_level_seconds=3600.0,
                                             allowed_hosts=(*LOOPBACK_HOSTS, "testserver")))


def run_schemathesis(app, max_examples: int) -> tuple[list[str], int]:
    """(failures, requests sent): every phase (examples, coverage, fuzzing, stateful)."""
    config = schemathesis.Config.from_str(f"""
seed = 20240601
continue-on-failure = true
[generation]
max-examples = {max_examples}
deterministic = true
no-shrink = true
database = "none"
[checks.positive_data_acceptance]
enabled = false
[headers]
Authorization = "Bearer {TOKEN}"
""")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    failures, seen, requests = [], set(), 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            requests += len(event.recorder.interactions)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    key = (failure.operation, failure.title)
                    if key not in seen:
                        seen.add(key)
                        exchange = event.recorder.interactions.get(case_id)
                        request = f"{exchange.request.method} {exchange.request.uri}" if exchange else ""
                        if exchange and exchange.response is not None:
                            request += f" -> {exchange.response.status_code} {exchange.response.content[:200]!r}"
                        failures.append(f"{failure.operation}: {failure.title}: {failure.message} [{request}]")
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            failures.append(f"error: {getattr(event, 'value', None) or getattr(event, 'exception', None)}")
    return failures, requests


def test_server_answers_as_its_openapi_document_says(app):
    failures, requests = run_schemathesis(app, max_examples=5)
    assert requests > 300  # every operation was exercised, not skipped
    assert failures == []


@pytest.mark.slow
def test_server_answers_as_its_openapi_document_says_at_length(app):
    failures, requests = run_schemathesis(app, max_examples=100)
    assert failures == []
