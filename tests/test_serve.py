"""`vsearch serve` through FastAPI's TestClient: every endpoint, limits, errors, back-pressure and
index reloads while the catalog changes underneath."""
from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import stat
import threading

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

import vsearch  # noqa: E402
from vsearch.catalog import IMAGE_SPACE, Catalog, MediaRecord  # noqa: E402
from vsearch.serve import ServeSettings, create_app  # noqa: E402
from vsearch.serve.auth import TokenFileError, load_or_create_token  # noqa: E402
from vsearch.serve.limits import WorkQueue  # noqa: E402

TOKEN = "test-token-" + "x" * 24
BASE = "http://127.0.0.1"


def settings(**kw) -> ServeSettings:
    kw.setdefault("workers", 2)
    kw.setdefault("queue_depth", 8)
    kw.setdefault("index_check_seconds", 0.0)  # tests see a saved index at once
    kw.setdefault("index_level_seconds", 3600.0)  # and only the saved one, unless a test asks
    return ServeSettings(**kw)


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory, photo_dir, tiny_clip_spec):
    """A catalog of the 10 photos, built with the tiny CLIP (shared read-only by this module)."""
    root = tmp_path_factory.mktemp("serve")
    shutil.copytree(photo_dir, root / "photos")
    with vsearch.open(root / "db", model=tiny_clip_spec) as coll:
        coll.index([str(root / "photos")], workers=0)
    return root


@pytest.fixture(scope="module")
def client(catalog_dir):
    app = create_app(catalog_dir / "db", token=TOKEN, settings=settings())
    with TestClient(app, base_url=BASE) as c:
        yield c


def stored_vectors(db) -> tuple[dict[int, str], dict[int, np.ndarray]]:
    cat = Catalog(db, create=False)
    paths, vectors = {}, {}
    for path, state in cat.media_under(["/"]).items():
        paths[state.id] = path
        vectors[state.id] = cat.media_vector(state.id)
    cat.engine.dispose()
    return paths, vectors


def png_bytes(size=(64, 48), color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


# -- status, page, docs ----------------------------------------------------------------------------
def test_healthz_reports_model_index_and_queue(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["model"].startswith("clip:") and body["dim"] == 32
    assert body["photos_in_index"] == 10
    assert body["queue"] == {"running": 0, "waiting": 0, "workers": 2, "capacity": 10, "rejected": 0, "abandoned": 0}


def test_page_docs_and_openapi_work_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and 'id="grid"' in page.text and "/static/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/app.js").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/swagger/swagger-ui-bundle.js" in docs.text
    assert client.get("/static/swagger/swagger-ui-bundle.js").status_code == 200  # no CDN needed
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/v1/search", "/v1/classify", "/v1/media/{media_id}/thumbnail"} <= set(paths)
    assert {"get", "post"} <= set(paths["/v1/search"])


def test_foreign_host_header_is_refused(client):
    # a DNS-rebinding page reaches 127.0.0.1 under its own name; the Host header gives it away
    r = client.get("/v1/search", params={"q": "cat"}, headers={"host": "evil.example:8000"})
    assert r.status_code == 400 and r.json()["error"] == "bad_host"
    assert client.get("/healthz", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/healthz", headers={"host": "[::1]:8000"}).status_code == 200


# -- search ----------------------------------------------------------------------------------------
def test_text_search_ranks_all_photos_by_score(client, catalog_dir):
    r = client.get("/v1/search", params={"q": "a horse in a field", "k": 50})
    assert r.status_code == 200
    body = r.json()
    hits = body["results"]
    assert len(hits) == 10 and body["photos_in_index"] == 10 and body["k"] == 50
    assert [h["rank"] for h in hits] == list(range(1, 11))
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert {h["name"] for h in hits} == {p.name for p in (catalog_dir / "photos").iterdir()}
    assert not any("path_bytes" in h for h in hits)  # UTF-8 names: "path" is exact
    assert all(h["thumbnail"] == f"/v1/media/{h['media_id']}/thumbnail" for h in hits)


def test_similar_photos_match_brute_force_and_leave_the_photo_out(client, catalog_dir):
    paths, vectors = stored_vectors(catalog_dir / "db")
    query_id = next(i for i, p in paths.items() if p.endswith("horse.jpg"))
    r = client.get("/v1/search", params={"like": query_id, "k": 4})
    assert r.status_code == 200
    got = [h["media_id"] for h in r.json()["results"]]
    q = vectors[query_id]
    expected = sorted((i for i in vectors if i != query_id), key=lambda i: -float(vectors[i] @ q))[:4]
    assert got == expected


def test_image_upload_finds_the_same_photo_first(client, catalog_dir):
    data = (catalog_dir / "photos" / "chelsea.jpg").read_bytes()
    r = client.post("/v1/search", files={"image": ("query.jpg", data, "image/jpeg")}, data={"k": "3"})
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert len(hits) == 3 and hits[0]["name"] == "chelsea.jpg" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_search_errors_are_json_with_clear_messages(client):
    r = client.get("/v1/search")
    assert r.status_code == 400 and r.json() == {"error": "bad_query",
                                                 "detail": "give q (a text), like (a photo id) or plus terms"}
    r = client.get("/v1/search", params={"q": "   "})
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = client.get("/v1/search", params={"q": "cat", "k": 0})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "k"
    r = client.get("/v1/search", params={"like": 99999})
    assert r.status_code == 404 and r.json()["error"] == "unknown_media"
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


@pytest.mark.parametrize("payload, reason", [
    (b"this is not an image", "not an image"),
    (b"", "empty"),
    (png_bytes()[:40], "not an image"),  # PNG header, then nothing: Pillow cannot even read the size
])
def test_bad_upload_is_422_with_reason(client, payload, reason):
    r = client.post("/v1/search", files={"image": ("x.png", payload, "image/png")})
    assert r.status_code == 422 and r.json()["error"] == "bad_image" and reason in r.json()["detail"]


def test_truncated_jpeg_is_422_not_500(client, catalog_dir):
    data = (catalog_dir / "photos" / "astronaut.jpg").read_bytes()
    r = client.post("/v1/search", files={"image": ("cut.jpg", data[: len(data) // 3], "image/jpeg")})
    assert r.status_code == 422 and "truncated" in r.json()["detail"]


# -- limits ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_limits_client(catalog_dir):
    app = create_app(catalog_dir / "db", token=TOKEN,
                     settings=settings(max_upload_bytes=50_000, max_pixels=1_000_000))
    with TestClient(app, base_url=BASE) as c:
        yield c


def test_oversized_upload_is_413_by_content_length(small_limits_client, catalog_dir):
    data = (catalog_dir / "photos" / "astronaut.jpg").read_bytes()
    assert len(data) > 50_000
    r = small_limits_client.post("/v1/search", files={"image": ("big.jpg", data, "image/jpeg")})
    assert r.status_code == 413 and r.json()["error"] == "too_large" and "MiB" in r.json()["detail"]


def test_oversized_chunked_upload_is_413_while_streaming(small_limits_client):
    """No Content-Length: the limit is enforced on the bytes as they arrive, and the server stops
    reading once it is passed (driven at the ASGI level to count what was read)."""
    app = small_limits_client.app
    pulled, sent = [], []

    head = (b'--zzz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n")

    async def receive():  # a well-formed multipart upload that never ends (1 MB in 10 kB chunks)
        pulled.append(1)
        body = head if len(pulled) == 1 else b"x" * 10_000
        return {"type": "http.request", "body": body, "more_body": len(pulled) < 100}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/search", "raw_path": b"/v1/search", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"transfer-encoding", b"chunked"),
                         (b"content-type", b"multipart/form-data; boundary=zzz")]}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 413 and b'"too_large"' in body
    assert len(pulled) <= 7  # 50 kB limit / 10 kB chunks: stopped right after the limit


def test_too_many_pixels_is_413_before_decoding(small_limits_client):
    data = png_bytes(size=(2000, 1000))  # 2 MP of one colour: a few KB on the wire
    assert len(data) < 50_000
    r = small_limits_client.post("/v1/search", files={"image": ("wide.png", data, "image/png")})
    assert r.status_code == 413 and r.json()["error"] == "too_many_pixels" and "2000×1000" in r.json()["detail"]
    ok = small_limits_client.post("/v1/search", files={"image": ("small.png", png_bytes((800, 600)), "image/png")})
    assert ok.status_code == 200


# -- classify ----------------------------------------------------------------------------------------
def test_classify_upload_and_media_id_agree_with_the_library(client, catalog_dir):
    """The server decides as `vsearch classify` does: open set by default, closed set on request."""
    from vsearch.encoders import load_encoder
    from vsearch.zeroshot import build_zero_shot_classifier, calibration_for, classify_vectors, load_templates

    data = (catalog_dir / "photos" / "horse.jpg").read_bytes()
    form = {"labels": "horse, cat,rocket,Cat", "k": "3", "templates": "plain"}
    r = client.post("/v1/classify", files={"image": ("h.jpg", data, "image/jpeg")}, data=form)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ignored_duplicates"] == ["Cat"]
    got = {x["label"]: x["p"] for x in body["labels"]}
    assert set(got) == {"horse", "cat", "rocket"} and sum(got.values()) + body["none"] == pytest.approx(1.0, abs=1e-4)
    assert list(got.values()) == sorted(got.values(), reverse=True)

    encoder = load_encoder(body["model"])
    paths, vectors = stored_vectors(catalog_dir / "db")
    horse = next(i for i, p in paths.items() if p.endswith("horse.jpg"))
    labels = ["horse", "cat", "rocket"]
    classifier = build_zero_shot_classifier(encoder, labels, load_templates("plain"))
    for closed_set in (False, True):
        [want] = classify_vectors(["h"], vectors[horse][None], classifier, labels, calibration_for(encoder), k=3,
                                  closed_set=closed_set)
        r = client.post("/v1/classify", files={"image": ("h.jpg", data, "image/jpeg")},
                        data={**form, "closed_set": str(closed_set).lower()})
        body = r.json()
        assert body["top"] == want.top and (body["none"] is None) == closed_set
        assert {x["label"]: x["p"] for x in body["labels"]} == pytest.approx(dict(want.labels), abs=1e-4)
    assert sum(x["p"] for x in body["labels"]) == pytest.approx(1.0, abs=1e-4)  # closed set: the labels alone

    by_id = client.post("/v1/classify", data={"labels": "horse,cat,rocket", "media_id": str(horse), "templates": "plain"})
    assert by_id.status_code == 200
    assert {x["label"]: x["p"] for x in by_id.json()["labels"]} == pytest.approx(got, abs=1e-4)


def test_classify_errors(client):
    one = {"image": ("a.png", png_bytes(), "image/png")}
    r = client.post("/v1/classify", data={"labels": "a,b"})
    assert r.status_code == 400 and "exactly one" in r.json()["detail"]
    r = client.post("/v1/classify", files=one, data={"labels": " , "})
    assert r.status_code == 400 and r.json()["error"] == "bad_labels"
    r = client.post("/v1/classify", files=one, data={"labels": ",".join(f"l{i}" for i in range(300))})
    assert r.status_code == 400 and r.json()["error"] == "too_many_labels"
    # templates are named sets only: a client never gets the server to open a file
    r = client.post("/v1/classify", files=one, data={"labels": "a,b", "templates": "/etc/passwd"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "templates"
    r = client.post("/v1/classify", data={"labels": "a,b", "media_id": "424242"})
    assert r.status_code == 404


def test_classify_with_the_real_packaged_model(tmp_path, catalog_dir, packaged_encoder):
    """Real weights: the cat photo is a cat among unrelated labels; no catalog photos needed."""
    coll = vsearch.open(tmp_path / "empty", model="packaged")
    app = create_app(collection=coll, token=TOKEN, settings=settings())
    with TestClient(app, base_url=BASE) as c:
        data = (catalog_dir / "photos" / "chelsea.jpg").read_bytes()
        r = c.post("/v1/classify", files={"image": ("cat.jpg", data, "image/jpeg")},
                   data={"labels": "rocket,cup of coffee,cat,horse", "k": "2"})
        assert r.status_code == 200, r.text
        assert r.json()["labels"][0]["label"] == "cat" and r.json()["top"] == "cat"
        # none of the labels fits: the server says so instead of naming the least bad one
        r = c.post("/v1/classify", files={"image": ("cat.jpg", data, "image/jpeg")},
                   data={"labels": "rocket,cup of coffee,horse", "k": "2"})
        assert r.json()["top"] is None and r.json()["none"] > 0.5, r.json()
        closed = c.post("/v1/classify", files={"image": ("cat.jpg", data, "image/jpeg")},
                        data={"labels": "rocket,cup of coffee,horse", "k": "2", "closed_set": "true"}).json()
        assert closed["top"] in {"rocket", "cup of coffee", "horse"} and closed["none"] is None
        empty = c.get("/v1/search", params={"q": "cat"}).json()
        assert empty["results"] == [] and empty["photos_in_index"] == 0


# -- thumbnails ----------------------------------------------------------------------------------------
def test_thumbnail_by_catalog_id_only(client, catalog_dir):
    paths, _ = stored_vectors(catalog_dir / "db")
    mid = next(i for i, p in paths.items() if p.endswith("rocket.jpg"))
    r = client.get(f"/v1/media/{mid}/thumbnail", params={"size": 100})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "JPEG" and max(img.size) == 100
    assert client.get("/v1/media/4242/thumbnail").json()["error"] == "unknown_media"
    assert client.get("/v1/media/4242/thumbnail").status_code == 404
    # no path ever reaches the file system: non-integer ids are refused by validation
    assert client.get("/v1/media/..%2F..%2Fetc%2Fpasswd/thumbnail").status_code in (404, 422)
    assert client.get("/v1/media/1/thumbnail", params={"size": 5000}).status_code == 422
    assert client.get("/static/../../../../etc/passwd").status_code == 404


def test_thumbnail_of_a_deleted_file_says_so(tmp_path, photos, tiny_clip_spec):
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(photos)], workers=0)
    paths, _ = stored_vectors(tmp_path / "db")
    mid, path = next((i, p) for i, p in paths.items() if p.endswith("coins.jpg"))
    app = create_app(tmp_path / "db", token=TOKEN, settings=settings())
    with TestClient(app, base_url=BASE) as c:
        assert c.get(f"/v1/media/{mid}/thumbnail").status_code == 200
        os.unlink(path)
        r = c.get(f"/v1/media/{mid}/thumbnail")
        assert r.status_code == 404 and r.json()["error"] == "file_missing" and "vsearch index" in r.json()["detail"]


# -- the page's photo view: details, original, tags ----------------------------------------------------
def test_photo_details_and_original_by_catalog_id(client, catalog_dir):
    paths, _ = stored_vectors(catalog_dir / "db")
    mid, path = next((i, p) for i, p in paths.items() if p.endswith("rocket.jpg"))
    body = client.get(f"/v1/media/{mid}").json()
    assert body["path"] == path and body["name"] == "rocket.jpg" and body["folder"] == os.path.dirname(path)
    assert body["bytes"] == os.path.getsize(path) and (body["width"], body["height"]) == Image.open(path).size
    assert body["original"] == f"/v1/media/{mid}/original" and body["tags"] == []
    r = client.get(body["original"])
    assert r.status_code == 200 and r.content == open(path, "rb").read()
    assert r.headers["content-type"] == "image/jpeg" and "sandbox" in r.headers["content-security-policy"]
    assert r.headers["content-disposition"].startswith("inline")
    for url in ("/v1/media/4242", "/v1/media/4242/original"):
        assert client.get(url).status_code == 404 and client.get(url).json()["error"] == "unknown_media"
    # ids beyond SQL's integer range are refused by validation, not by the database driver
    assert client.get(f"/v1/media/{2**64}/original").status_code == 422
    assert client.get("/v1/media/..%2Fetc%2Fpasswd/original").status_code in (404, 422)


def test_original_of_a_deleted_file_says_so(tmp_path, photos, tiny_clip_spec):
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(photos)], workers=0)
    paths, _ = stored_vectors(tmp_path / "db")
    mid, path = next((i, p) for i, p in paths.items() if p.endswith("coins.jpg"))
    app = create_app(tmp_path / "db", token=TOKEN, settings=settings())
    with TestClient(app, base_url=BASE) as c:
        os.unlink(path)
        r = c.get(f"/v1/media/{mid}/original")
        assert r.status_code == 404 and r.json()["error"] == "file_missing"


def test_tags_are_listed_and_shown_on_the_photo(tmp_path, photos, tiny_clip_spec):
    from vsearch.tags import TaggingConfig, tag_collection

    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(photos)], workers=0)
        summary = tag_collection(coll, TaggingConfig(("cat", "rocket", "coffee"), ("a photo of {}.",), 0.0, 1))
    app = create_app(tmp_path / "db", token=TOKEN, settings=settings())
    with TestClient(app, base_url=BASE) as c:
        listed = c.get("/v1/tags").json()["tags"]
        assert {t["label"]: t["photos"] for t in listed} == summary.counts
        label = listed[0]["label"]
        hits = c.get("/v1/search", params={"q": "a photo", "tag": label, "k": 20}).json()["results"]
        assert len(hits) == listed[0]["photos"]
        for hit in hits:  # each photo's view shows the tag it was found by
            assert [t["label"] for t in c.get(f"/v1/media/{hit['media_id']}").json()["tags"]] == [label]


# -- the page's duplicates tab ------------------------------------------------------------------------
def test_duplicates_groups_copies_best_first_and_reuses_the_answer(tmp_path, packaged_encoder):
    """The real packaged model and keypoint check, as `vsearch duplicates`: a cat photo, its
    re-encoded copy and its byte copy in another folder are one group; other photos are in none."""
    from tests.conftest import skimage_rgb

    d = tmp_path / "photos"
    (d / "backup").mkdir(parents=True)
    for name in ["chelsea", "coffee", "rocket"]:
        skimage_rgb(name).save(d / f"{name}.jpg", quality=92)
    Image.open(d / "chelsea.jpg").save(d / "chelsea_reencoded.jpg", quality=35)
    shutil.copy(d / "chelsea.jpg", d / "backup" / "chelsea.jpg")
    with vsearch.open(tmp_path / "db", model="packaged") as coll:
        coll.index([str(d)], workers=0)
    app = create_app(tmp_path / "db", token=TOKEN, settings=settings())
    with TestClient(app, base_url=BASE) as c:
        r = c.get("/v1/duplicates")  # no token: read-only, as search is
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["photos"] == 5 and body["threshold"] == 0.6 and body["geometric_check"] is True
        assert body["cached"] is False and body["near_groups"] == 1 and body["exact_groups"] == 0
        [group] = body["groups"]
        best, others = group["best"], group["others"]
        assert best["name"] == "chelsea.jpg" and (best["width"], best["height"]) == (451, 300)
        assert best["thumbnail"] == f"/v1/media/{best['media_id']}/thumbnail"
        assert c.get(best["thumbnail"]).status_code == 200
        by_name = {os.path.relpath(m["path"], d): m for m in others}
        byte_copy = by_name.pop("chelsea.jpg" if best["path"].endswith("backup/chelsea.jpg") else "backup/chelsea.jpg")
        assert byte_copy["same_bytes_as_best"] is True and byte_copy["same_bytes_as"] == best["path"]
        [reencoded] = by_name.values()
        assert reencoded["name"] == "chelsea_reencoded.jpg" and reencoded["same_bytes_as_best"] is False
        assert 0.6 <= reencoded["similarity"] < 1.0 and reencoded["size"] < best["size"]
        assert body["exact_copies"] == 1 and body["redundant_files"] == 2

        # the same question on the same catalog: the last answer; another threshold: computed again
        again = c.get("/v1/duplicates").json()
        assert again["cached"] is True and again["groups"] == body["groups"]
        strict = c.get("/v1/duplicates", params={"threshold": 1.0}).json()
        assert strict["cached"] is False and strict["threshold"] == 1.0
        assert [[m["name"] for m in g["others"]] for g in strict["groups"]] == [["chelsea.jpg"]]  # bytes only
        assert c.get("/v1/duplicates", params={"threshold": 2}).status_code == 422
        assert c.get("/v1/duplicates", params={"threshold": "high"}).status_code == 422

        # a photo indexed since: the catalog changed, so the answer is computed again
        shutil.copy(d / "rocket.jpg", d / "rocket copy.jpg")
        with vsearch.open(tmp_path / "db") as coll:
            coll.index([str(d)], workers=0)
        fresh = c.get("/v1/duplicates").json()
        assert fresh["cached"] is False and fresh["photos"] == 6 and fresh["exact_groups"] == 1
        assert "/v1/duplicates" in c.get("/openapi.json").json()["paths"]


# -- concurrency: the work queue ---------------------------------------------------------------------
def test_full_queue_answers_503_and_healthz_still_answers(catalog_dir):
    app = create_app(catalog_dir / "db", token=TOKEN, settings=settings(workers=1, queue_depth=1))
    queue: WorkQueue = app.state.queue
    release = threading.Event()

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            # one call runs (blocked), one waits: the queue is full
            blockers = [asyncio.create_task(queue.run(release.wait, 10)) for _ in range(2)]
            for _ in range(100):
                await asyncio.sleep(0.01)
                if queue.stats()["running"] == 1 and queue.stats()["waiting"] == 1:
                    break
            busy = await c.get("/v1/search", params={"q": "cat"})
            health = await c.get("/healthz")
            release.set()
            await asyncio.gather(*blockers)
            after = await c.get("/v1/search", params={"q": "cat"})
            return busy, health, after

    busy, health, after = asyncio.run(scenario())
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json()["error"] == "overloaded" and "retry" in busy.json()["detail"]
    assert health.status_code == 200 and health.json()["queue"]["rejected"] == 1
    assert health.json()["queue"]["running"] == 1 and health.json()["queue"]["waiting"] == 1
    assert after.status_code == 200 and len(after.json()["results"]) == 10


def test_queued_request_whose_client_left_is_dropped(catalog_dir):
    """A client that gives up while queued costs no computation: its call is dropped when a
    worker gets to it (as uvicorn reports it: receive() answers http.disconnect)."""
    app = create_app(catalog_dir / "db", token=TOKEN, settings=settings(workers=1, queue_depth=4))
    queue: WorkQueue = app.state.queue
    release = threading.Event()
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/v1/search", "raw_path": b"/v1/search", "query_string": b"q=cat", "root_path": "",
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "headers": [(b"host", b"127.0.0.1")]}

    async def scenario():
        blocker = asyncio.create_task(queue.run(release.wait, 10))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(app(scope, receive, send))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if queue.stats()["waiting"] == 1:
                break
        release.set()
        await asyncio.gather(blocker, gone)

    asyncio.run(scenario())
    assert queue.stats()["abandoned"] == 1
    assert next(m for m in sent if m["type"] == "http.response.start")["status"] == 499


def test_concurrent_requests_within_capacity_all_succeed(catalog_dir):
    app = create_app(catalog_dir / "db", token=TOKEN, settings=settings(workers=2, queue_depth=30))

    async def scenario():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
            calls = [c.get("/v1/search", params={"q": f"photo {i}", "k": 3}) for i in range(24)]
            calls += [c.get(f"/v1/media/{1 + i % 10}/thumbnail") for i in range(8)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 32
    assert app.state.queue.stats()["rejected"] == 0


# -- the catalog changes while serving ------------------------------------------------------------------
def test_new_photos_appear_after_the_index_is_saved_and_deleted_ones_vanish(tmp_path, photos, tiny_clip_spec):
    first = sorted(photos.iterdir())[:6]
    later = sorted(photos.iterdir())[6:]
    staging = tmp_path / "later"
    staging.mkdir()
    for p in later:
        shutil.move(str(p), staging / p.name)
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(photos)], workers=0)
        encoder = coll.encoder

    app = create_app(tmp_path / "db", token=TOKEN, settings=settings())
    with TestClient(app, base_url=BASE) as c:
        def names():
            body = c.get("/v1/search", params={"q": "anything", "k": 50}).json()
            return {h["name"] for h in body["results"]}, body["photos_in_index"]

        assert names() == ({p.name for p in first}, 6)

        # another process's writer: SQL commits first, the index file follows on save()
        writer = Catalog(tmp_path / "db")
        recs, vecs = [], []
        for p in later:
            dest = photos / p.name
            shutil.move(str(staging / p.name), dest)
            st = dest.stat()
            recs.append(MediaRecord(str(dest), st.st_size, st.st_mtime))
            vecs.append(_embed(encoder, dest))
        writer.add_media(recs, np.stack(vecs))
        # committed but not saved: readers keep the consistent snapshot of the last save
        assert names() == ({p.name for p in first}, 6)
        writer.save()
        assert names() == ({p.name for p in first} | {p.name for p in later}, 10)
        assert app.state.service.reader.reloads == 2

        # a removal committed in SQL but not yet saved: the stale id is dropped, never an error
        gone = writer.media_under([str(photos / first[0].name)])[str(photos / first[0].name)]
        writer.remove_media([gone.id])
        got, n = names()
        assert first[0].name not in got and len(got) == 9 and n == 10
        writer.close()  # saves
        assert names()[1] == 9


def _embed(encoder, path) -> np.ndarray:
    from vsearch.images import decode_image

    image = decode_image(str(path), draft_size=encoder.info.image_size).image
    return encoder.encode_pixels(encoder.preprocess(image).unsqueeze(0))[0]


def test_server_never_writes_the_index_file(catalog_dir, client):
    index_file = catalog_dir / "db" / f"{IMAGE_SPACE}.faiss"
    before = index_file.stat().st_mtime_ns
    for q in ("cat", "dog"):
        assert client.get("/v1/search", params={"q": q}).status_code == 200
    assert index_file.stat().st_mtime_ns == before


# -- token file -------------------------------------------------------------------------------------------
def test_token_file_is_created_private_and_reused(tmp_path):
    path = tmp_path / "sub" / "serve.token"
    token, created = load_or_create_token(str(path))
    assert created and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = load_or_create_token(str(path))
    assert again == token and not created_again


def test_token_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "serve.token"
    path.write_text("a-long-enough-token-value\n")
    path.chmod(0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        load_or_create_token(str(path))


def test_create_app_writes_token_next_to_catalog(catalog_dir, tmp_path):
    token_file = tmp_path / "t" / "tok"
    app = create_app(catalog_dir / "db", token_file=str(token_file), settings=settings())
    assert app.state.token_created and app.state.token_file == str(token_file)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


def test_serve_needs_an_existing_catalog(tmp_path):
    from vsearch.errors import CatalogError

    with pytest.raises(CatalogError, match="vsearch index"):
        create_app(tmp_path / "nothing", token=TOKEN)


def test_cli_serve_help_and_missing_catalog(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["serve", "--help"])
    assert r.exit_code == 0 and "--token-file" in r.output and "--face-processes" in r.output
    r = runner.invoke(app, ["serve", "--db", str(tmp_path / "none"), "--port", "1"])
    assert r.exit_code == 2 and "vsearch index" in r.output  # refused before binding any port


# -- edges: huge ids, slow bodies, an index file older than the database -------------------------------
@pytest.mark.parametrize("url", ["/v1/media/9223372036854775808/thumbnail", "/v1/media/99999999999999999999/thumbnail",
                                 "/v1/search?like=9223372036854775808", "/v1/search?like=-1"])
def test_ids_beyond_sql_integers_are_422_not_500(client, url):
    r = client.get(url)
    assert r.status_code == 422, r.text


def test_classify_media_id_beyond_sql_integers_is_422(client):
    r = client.post("/v1/classify", data={"labels": "cat,dog", "media_id": str(2**63)})
    assert r.status_code == 422, r.text


def test_largest_sql_id_is_404(client):
    assert client.get(f"/v1/media/{2**63 - 1}/thumbnail").status_code == 404
    assert client.get("/v1/search", params={"like": 2**63 - 1}).status_code == 404


def test_body_that_never_finishes_is_408(catalog_dir):
    app = create_app(catalog_dir / "db", token=TOKEN, settings=settings(body_timeout_s=0.2))
    sent = []
    pulled = []

    async def receive():  # the first part arrives, then the client goes silent
        pulled.append(1)
        if len(pulled) == 1:
            return {"type": "http.request", "body": b"--zzz\r\n", "more_body": True}
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/search", "raw_path": b"/v1/search", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"127.0.0.1:8000"), (b"transfer-encoding", b"chunked"),
                         (b"content-type", b"multipart/form-data; boundary=zzz")]}

    async def run():
        await asyncio.wait_for(app(scope, receive, send), 10)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 408
    assert b"request_timeout" in b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_server_reads_photos_a_crashed_indexer_committed_but_never_saved(tmp_path, photos, tiny_clip_spec):
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(photos)], workers=0)
    paths, vectors = stored_vectors(tmp_path / "db")
    crashed = Catalog(tmp_path / "db")  # an indexer that commits, then dies before its save
    copy = photos / "copy-of-coins.jpg"
    shutil.copy(photos / "coins.jpg", copy)
    st = copy.stat()
    coins = next(i for i, p in paths.items() if p.endswith("coins.jpg"))
    crashed.add_media([MediaRecord(str(copy), st.st_size, st.st_mtime, "f" * 64)], vectors[coins][None])
    crashed.engine.dispose()
    index_file = tmp_path / "db" / f"{IMAGE_SPACE}.faiss"
    before = index_file.stat().st_mtime_ns

    app = create_app(tmp_path / "db", token=TOKEN, settings=settings(index_level_seconds=0.0))
    with TestClient(app, base_url=BASE) as c:
        body = c.get("/v1/search", params={"like": coins, "k": 3}).json()
        assert body["photos_in_index"] == 11
        assert body["results"][0]["name"] == "copy-of-coins.jpg"
        # a writer that commits while the server runs: visible at the next check, before any save
        writer = Catalog(tmp_path / "db")
        gone = writer.media_under([str(copy)])[str(copy)]
        writer.remove_media([gone.id])
        writer.engine.dispose()
        assert c.get("/v1/search", params={"q": "x", "k": 50}).json()["photos_in_index"] == 10
    assert index_file.stat().st_mtime_ns == before  # levelled in memory only


def test_a_non_utf8_file_name_is_shown_and_served(tmp_path, photo_dir, tiny_clip_spec):
    from vsearch.fsutil import display_path

    if os.fsencode("\udce9") != b"\xe9":
        pytest.skip("needs a file system that takes any byte in names")
    folder = tmp_path / "photos"
    folder.mkdir()
    path = str(folder / os.fsdecode(b"caf\xe9.jpg"))  # Latin-1 bytes: not UTF-8
    try:
        shutil.copy(photo_dir / "coffee.jpg", path)
    except (OSError, UnicodeEncodeError):
        pytest.skip("the file system refuses this name")
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(folder)], workers=0)
    (mid,) = stored_vectors(tmp_path / "db")[0]
    app = create_app(tmp_path / "db", token=TOKEN, settings=settings())
    with TestClient(app, base_url=BASE) as c:
        # JSON cannot carry the undecodable byte: the name is shown as the terminal shows it,
        # never as the catalog's private-use stand-in for it
        r = c.get(f"/v1/media/{mid}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["path"] == display_path(path) and body["name"] == "caf\\xe9.jpg"
        assert body["folder"] == str(folder)
        r = c.get("/v1/search", params={"q": "a photo"})
        assert r.status_code == 200, r.text
        assert [(h["path"], h["name"]) for h in r.json()["results"]] == [(display_path(path), "caf\\xe9.jpg")]
        # a real backslash reads the same as that text: the exact bytes come apart
        assert base64.b64decode(r.json()["results"][0]["path_bytes"]) == os.fsencode(path)
        r = c.get(f"/v1/media/{mid}/original")
        assert r.status_code == 200 and r.content == open(path, "rb").read()


# -- what one request may cost -------------------------------------------------------------------------
def test_thousands_of_terms_are_refused_at_once(client):
    import time

    started = time.perf_counter()
    r = client.get("/v1/search", params={"q": "cat", "plus": [f"t{i}" for i in range(5000)]})  # a 60 kB URL
    elapsed = time.perf_counter() - started
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "query"
    assert r.json()["detail"] == "the query string has 5001 parameters; this server reads at most 64 parameters"
    assert elapsed < 1.0  # refused before the query string is parsed, before any text is encoded
    r = client.get("/v1/search", params={"q": "cat", "plus": [f"t{i}" for i in range(40)]})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] == "plus" and "at most 8" in r.json()["detail"]
    assert client.get("/healthz").json()["queue"]["rejected"] == 0  # neither reached the work queue


def test_query_string_bounds_are_checked_before_parsing():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from vsearch.serve.limits import QueryStringLimit

    inner = Starlette(routes=[Route("/", lambda request: PlainTextResponse(str(len(request.query_params.multi_items()))))])
    with TestClient(QueryStringLimit(inner, max_params=3, max_bytes=20)) as c:
        assert c.get("/?a=1&b=2&c=3").text == "3"
        r = c.get("/?a=1&b=2&c=3&d=4")
        assert r.status_code == 422 and r.json()["detail"].endswith("at most 3 parameters")
        r = c.get("/", params={"a": "x" * 30})
        assert r.status_code == 422 and r.json()["detail"] == "the query string has 32 bytes; this server reads at most 20 bytes"


@pytest.mark.parametrize("params, field", [
    ({"q": "cat", "minus": ["x"] * 9}, "minus"),
    ({"plus": ["a" * 61]}, "plus.0"),
    ({"q": "a" * 501}, "q"),
    ({"q": "cat", "k": 201}, "k"),
    ({"q": "cat", "tag": ["t"] * 17}, "tag"),
])
def test_search_bounds_are_422_naming_the_parameter(client, params, field):
    r = client.get("/v1/search", params=params)
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    assert r.json()["fields"][0]["field"] == field


def test_the_most_a_search_may_ask_is_served(client):
    r = client.get("/v1/search", params={"q": "a" * 500, "plus": [f"{i} " + "b" * 57 for i in range(8)],
                                         "minus": [f"{i} " + "c" * 53 + "=0.5" for i in range(8)], "k": 200})
    assert r.status_code == 200, r.text


def test_server_bounds_are_within_the_library_limits():
    """What the OpenAPI document lets through, the library's limits let through too."""
    from vsearch.search import QUERY_LIMITS
    from vsearch.serve import app as server

    assert 2 * server.MAX_TERMS_EACH <= QUERY_LIMITS.max_terms
    assert server.MAX_TERM_CHARS <= QUERY_LIMITS.max_text_chars and server.MAX_K <= QUERY_LIMITS.max_k
    assert QUERY_LIMITS.max_text_chars + 2 * server.MAX_TERMS_EACH * server.MAX_TERM_CHARS <= QUERY_LIMITS.max_total_chars


@pytest.mark.parametrize("term", ["snow=nan", "snow=inf", "snow=-inf", "snow=NaN", "snow=1e9", "snow=100", "snow=abc"])
@pytest.mark.parametrize("field", ["plus", "minus"])
def test_weights_that_are_not_numbers_are_422(client, term, field):
    r = client.get("/v1/search", params={"q": "cat", field: term})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_request" and body["fields"] == [{"field": field, "message": body["fields"][0]["message"]}]
    assert "must be a number" in body["detail"] and term in body["detail"]


def test_ordinary_weights_still_work(client):
    for term in ("snow=0.5", "snow=-2", "snow=99.5", "snow= .5 ", "E=mc=1"):
        r = client.get("/v1/search", params={"q": "cat", "plus": term})
        assert r.status_code == 200, (term, r.text)


def test_classify_label_texts_are_bounded(client):
    one = {"image": ("a.png", png_bytes(), "image/png")}
    labels = ",".join(f"l{i}" for i in range(65))
    r = client.post("/v1/classify", files=one, data={"labels": labels})  # 65 labels × 8 templates
    assert r.status_code == 400 and r.json()["error"] == "too_many_labels" and "520 texts" in r.json()["detail"]
    r = client.post("/v1/classify", files=one, data={"labels": labels, "templates": "plain"})
    assert r.status_code == 200, r.text


# -- the OpenAPI document says what the server answers ------------------------------------------------
def test_405_names_every_method_the_path_serves(client):
    r = client.options("/v1/search")
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST" and r.json()["error"] == "method_not_allowed"
    paths = client.get("/openapi.json").json()["paths"]
    if "/v1/faces/clusters" in paths:  # beside DELETE /v1/faces/{name}, which matches this path too
        r = client.options("/v1/faces/clusters")
        assert r.status_code == 405 and r.headers["allow"] == "GET"
        # a path without parameters is matched first, for every method, as OpenAPI reads paths:
        # DELETE /v1/faces/{name} does not answer for it
        r = client.delete("/v1/faces/enroll", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_every_422_is_documented_with_the_error_shape(client):
    doc = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if op.get("parameters") or op.get("requestBody"):
                assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ValidationErrorBody"}, (method, path)
            if op.get("requestBody"):
                assert {"400", "408", "413"} <= set(op["responses"]), (method, path)
    fields = doc["components"]["schemas"]["ValidationErrorBody"]["properties"]
    assert {"error", "detail", "fields"} <= set(fields)
    r = client.get("/v1/media/1/thumbnail", params={"size": 5})
    assert r.status_code == 422 and set(r.json()) == {"error", "detail", "fields"}


def test_malformed_multipart_is_a_documented_400(client):
    r = client.post("/v1/search", content=b"--x\r\nnot a part", headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    assert "400" in client.get("/openapi.json").json()["paths"]["/v1/search"]["post"]["responses"]


def test_costly_calls_leave_a_worker_to_ordinary_ones():
    """Back-to-back costly searches take at most workers - 1 threads: an ordinary call runs at once."""
    queue = WorkQueue(workers=2, depth=8)
    release = threading.Event()

    async def scenario():
        heavy = [asyncio.create_task(queue.run(release.wait, 10, heavy=True)) for _ in range(3)]
        await asyncio.sleep(0.2)
        running_heavy = queue.stats()["running"]
        ordinary = await asyncio.wait_for(queue.run(lambda: "served"), 5)
        release.set()
        await asyncio.gather(*heavy)
        return running_heavy, ordinary

    running_heavy, ordinary = asyncio.run(scenario())
    assert running_heavy == 1 and ordinary == "served"


def test_a_costly_search_runs_in_the_lane_for_costly_calls(client, monkeypatch):
    seen = []
    real_run = WorkQueue.run

    async def spy(self, fn, *args, request=None, heavy=False):
        seen.append(heavy)
        return await real_run(self, fn, *args, request=request, heavy=heavy)

    monkeypatch.setattr(WorkQueue, "run", spy)
    assert client.get("/v1/search", params={"q": "a cat", "plus": "snow"}).status_code == 200
    assert client.get("/v1/search", params={"q": "a cat " * 50}).status_code == 200
    assert seen == [False, True]
