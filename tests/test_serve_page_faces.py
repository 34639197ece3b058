"""The face routes behind the web page's faces tab and photo view (TestClient): a photo's faces,
face crops, a person's face from the collection, and naming a group of faces — all behind the token."""
from __future__ import annotations

import io
import os
import shutil
import time

import pytest
from PIL import Image, ImageOps

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("vsearch.faces")
from fastapi.testclient import TestClient  # noqa: E402

import vsearch  # noqa: E402
from vsearch.serve import ServeSettings, create_app  # noqa: E402

TOKEN = "page-token-" + "z" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def jpeg_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory, photo_dir, tiny_clip_spec):
    """The photos plus two more of Eileen Collins, faces indexed and grouped."""
    from tests.conftest import skimage_rgb
    from vsearch.faces.extractor import FaceExtractor
    from vsearch.faces.service import FaceService

    root = tmp_path_factory.mktemp("page-faces")
    shutil.copytree(photo_dir, root / "photos")
    collins = skimage_rgb("astronaut").crop((40, 0, 440, 300))
    collins.save(root / "photos" / "collins.jpg", quality=90)
    ImageOps.mirror(collins).save(root / "photos" / "collins-mirror.jpg", quality=90)
    with vsearch.open(root / "db", model=tiny_clip_spec) as coll:
        coll.index([str(root / "photos")], workers=0, extractors=[FaceExtractor()])
        FaceService(coll.catalog).cluster()
    app = create_app(root / "db", token=TOKEN, faces=True,
                     settings=ServeSettings(workers=2, queue_depth=8, index_check_seconds=0.0))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        ids = {h["name"]: h["media_id"] for h in
               client.get("/v1/search", params={"q": "a photo", "k": 50}).json()["results"]}
        yield client, ids, collins


@pytest.mark.parametrize("method,url", [
    ("get", "/v1/faces/photos/1"), ("get", "/v1/faces/crops/1"), ("get", "/v1/faces/clusters"),
    ("get", "/v1/faces/people/someone/face"), ("post", "/v1/faces/clusters/1/name"),
])
def test_page_face_routes_need_the_token(served, method, url):
    client, _, _ = served
    r = client.request(method, url, data={"name": "x"} if method == "post" else None)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_photo_faces_crops_groups_and_naming(served):
    client, ids, collins = served
    found = client.get(f"/v1/faces/photos/{ids['collins.jpg']}", headers=AUTH).json()
    assert (found["width"], found["height"]) == collins.size and len(found["faces"]) == 1
    face = found["faces"][0]
    x0, y0, x1, y1 = face["face_box"]
    assert 0 <= x0 < x1 <= collins.width and 0 <= y0 < y1 <= collins.height and face["name"] is None
    assert client.get(f"/v1/faces/photos/{ids['coffee.jpg']}", headers=AUTH).json()["faces"] == []
    assert client.get("/v1/faces/photos/99999", headers=AUTH).status_code == 404

    crop = client.get(f"/v1/faces/crops/{face['face_id']}", params={"size": 96}, headers=AUTH)
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(crop.content)).size) <= 96
    assert client.get("/v1/faces/crops/99999", headers=AUTH).json()["error"] == "unknown_face"

    # the three photos of her (astronaut.jpg and the two copies) are one group
    groups = client.get("/v1/faces/clusters", headers=AUTH).json()["clusters"]
    assert [g["size"] for g in groups] == [3] and face["cluster"] == groups[0]["cluster"]
    assert {f["media_id"] for f in groups[0]["faces"]} == {ids["collins.jpg"], ids["collins-mirror.jpg"], ids["astronaut.jpg"]}

    # enrolled from an upload, before any photo is labelled: her face is the nearest in the collection
    r = client.post("/v1/faces/enroll", headers=AUTH, data={"name": "Uploaded"},
                    files={"image": ("c.jpg", jpeg_bytes(collins), "image/jpeg")})
    assert r.status_code == 200, r.text
    assert client.get("/v1/faces/people/Uploaded/face", headers=AUTH).headers["content-type"] == "image/jpeg"
    assert client.get("/v1/faces/people/nobody/face", headers=AUTH).json()["error"] == "unknown_person"

    assert client.post("/v1/faces/clusters/999/name", headers=AUTH, data={"name": "x"}).status_code == 404
    # the group verifies against "Uploaded": the page is told so, as the merge it may offer
    listed = client.get("/v1/faces", headers=AUTH).json()
    assert listed["groups"] == [{"cluster": groups[0]["cluster"], "person": "Uploaded",
                                 "score": pytest.approx(listed["groups"][0]["score"])}]
    assert listed["people"][0]["photos"] == 3 and listed["faces"] == {"total": 3, "grouped": 3, "named": 0}
    r = client.post(f"/v1/faces/clusters/{groups[0]['cluster']}/name", headers=AUTH, data={"name": "Eileen Collins"})
    assert r.status_code == 409 and r.json()["error"] == "looks_like" and "looks like Uploaded" in r.json()["detail"]
    named = client.post(f"/v1/faces/clusters/{groups[0]['cluster']}/name", headers=AUTH,
                        data={"name": "Eileen Collins", "new_person": "true"}).json()
    assert named == {"name": "Eileen Collins", "added": 3, "templates": 3, "created": True, "already_enrolled": []}
    assert client.get("/v1/faces/clusters", headers=AUTH).json()["clusters"] == []
    found = client.get(f"/v1/faces/photos/{ids['collins.jpg']}", headers=AUTH).json()
    assert found["faces"][0]["name"] == "Eileen Collins"
    people = {p["name"]: p for p in client.get("/v1/faces", headers=AUTH).json()["people"]}
    assert people["Eileen Collins"]["faces_in_collection"] == 3
    assert client.get("/v1/faces/people/Eileen Collins/face", headers=AUTH).status_code == 200


def test_a_person_in_no_photo_has_no_face_picture(served):
    client, _, _ = served
    cbook = pytest.importorskip("matplotlib.cbook")
    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    r = client.post("/v1/faces/enroll", headers=AUTH, data={"name": "Grace Hopper"},
                    files={"image": ("h.jpg", jpeg_bytes(hopper), "image/jpeg")})
    assert r.status_code == 200, r.text
    r = client.get("/v1/faces/people/Grace Hopper/face", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"] == "no_photo"


def test_find_groups_runs_in_a_worker_and_new_faces_show_up(tmp_path, photo_dir, tiny_clip_spec):
    """The faces tab's "find groups" starts the clustering as a job and follows its progress; faces
    indexed by another process while the server runs are counted, grouped and linked to the
    enrolled person without any command."""
    from tests.conftest import skimage_rgb
    from vsearch.faces.extractor import FaceExtractor

    shutil.copytree(photo_dir, tmp_path / "photos")
    collins = skimage_rgb("astronaut").crop((40, 0, 440, 300))
    collins.save(tmp_path / "photos" / "collins.jpg", quality=90)
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(tmp_path / "photos")], workers=0, extractors=[FaceExtractor()])
    app = create_app(tmp_path / "db", token=TOKEN, faces=True,
                     settings=ServeSettings(workers=2, queue_depth=8, index_check_seconds=0.0))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/v1/faces/clusters/find", headers=AUTH).json()["state"] == "idle"
        r = client.post("/v1/faces/enroll", headers=AUTH,
                        data={"name": "collins"}, files={"image": ("c.jpg", jpeg_bytes(collins), "image/jpeg")})
        assert r.status_code == 200, r.text
        body = client.get("/v1/faces", headers=AUTH).json()
        assert body["faces"] == {"total": 2, "grouped": 0, "named": 0}  # astronaut.jpg and collins.jpg
        assert body["people"][0]["photos"] == 2

        # another process indexes two more photos of her while the server runs
        more = tmp_path / "more"
        more.mkdir()
        ImageOps.mirror(collins).save(more / "collins-mirror.jpg", quality=90)
        cbook = pytest.importorskip("matplotlib.cbook")
        shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), more / "hopper.jpg")
        with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
            coll.index([str(more)], workers=0, extractors=[FaceExtractor()])
        body = client.get("/v1/faces", headers=AUTH).json()
        assert body["faces"]["total"] == 4 and body["people"][0]["photos"] == 3

        r = client.post("/v1/faces/clusters/find", headers=AUTH)
        assert r.status_code == 202 and r.json()["state"] in ("running", "done")
        for _ in range(200):
            job = client.get("/v1/faces/clusters/find", headers=AUTH).json()
            if job["state"] != "running":
                break
            time.sleep(0.05)
        assert job["state"] == "done" and job["groups"] == 1 and job["done"] == job["total"] == 4, job
        groups = client.get("/v1/faces/clusters", headers=AUTH).json()["clusters"]
        assert [g["size"] for g in groups] == [3]
        body = client.get("/v1/faces", headers=AUTH).json()
        assert body["groups"][0]["person"] == "collins" and body["faces"]["grouped"] == 3
        assert client.post("/v1/faces/clusters/find").status_code == 401


def test_faces_tab_find_groups_in_headless_chromium(tmp_path, photo_dir, tiny_clip_spec):
    """The faces tab in a real browser against a real `vsearch serve`: "Find groups" runs the
    grouping and the group of the enrolled person is offered as her."""
    from tests.test_serve_e2e import CHROMIUM, CHROMIUM_ARGS, Server

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    from tests.conftest import skimage_rgb
    from vsearch.faces.extractor import FaceExtractor
    from vsearch.faces.service import FaceService

    shutil.copytree(photo_dir, tmp_path / "photos")
    collins = skimage_rgb("astronaut").crop((40, 0, 440, 300))
    collins.save(tmp_path / "photos" / "collins.jpg", quality=90)
    ImageOps.mirror(collins).save(tmp_path / "photos" / "collins-mirror.jpg", quality=90)
    collins.save(tmp_path / "enroll.jpg", quality=95)
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(tmp_path / "photos")], workers=0, extractors=[FaceExtractor()])
        FaceService(coll.catalog).enroll("collins", [str(tmp_path / "enroll.jpg")])
    server = Server(tmp_path / "db", tmp_path / "serve.token", tmp_path / "server.log", "--face-processes", "0")
    errors: list[str] = []
    try:
        server.wait_ready(timeout=300)
        token = (tmp_path / "serve.token").read_text().strip()
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
                page.goto(server.url + "/?tab=faces")
                page.fill("#token", token)
                page.press("#token", "Enter")
                expect(page.locator("#people .person")).to_have_count(1)
                expect(page.locator("#people .person")).to_contain_text("in 3 photos")
                expect(page.locator("#faces-counts")).to_contain_text("3 faces in your photos · 3 not in a group yet")
                page.click("#find-groups")
                expect(page.locator("#groups-progress")).to_contain_text("1 group found among 3 faces", timeout=60_000)
                card = page.locator("#clusters .cluster")
                expect(card).to_have_count(1)
                expect(card).to_contain_text("3 faces · looks like collins")
                expect(card.locator("button[type=submit]")).to_have_text("Add to collins")
                card.locator("input[type=text]").fill("Eileen")
                card.locator("button[type=submit]").click()
                expect(card.locator(".status")).to_contain_text("looks like collins")
                expect(card.locator("input[type=checkbox]")).to_have_count(1)  # "someone else", offered now
                card.locator("input[type=text]").fill("collins")
                card.locator("button[type=submit]").click()
                expect(page.locator("#clusters .cluster")).to_have_count(0)
                expect(page.locator("#people .person")).to_contain_text("4 templates · in 3 photos")
            finally:
                browser.close()
    finally:
        server.stop()
    assert not errors, errors
