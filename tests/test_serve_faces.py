"""The face endpoints of `vsearch serve` (TestClient): the token, and enroll → verify → identify →
remove on real face photos (Eileen Collins from scikit-image, Grace Hopper from matplotlib)."""
from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("vsearch.faces")
from fastapi.testclient import TestClient  # noqa: E402

import vsearch  # noqa: E402
from vsearch.serve import ServeSettings, create_app  # noqa: E402

TOKEN = "faces-token-" + "y" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VERIFY_KEYS = {"match", "score", "threshold", "far_estimate", "face_box", "latency_ms", "faces_in_probe"}


def jpeg(image: Image.Image, side: int | None = None, quality: int = 85) -> bytes:
    """As a door camera would send it: resized, re-encoded."""
    if side:
        image = image.copy()
        image.thumbnail((side, side))
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="module")
def people():
    cbook = pytest.importorskip("matplotlib.cbook")
    from tests.conftest import skimage_rgb

    hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    # the astronaut photo cropped above the suit: dlib's HOG detector also fires, weakly, on a
    # badge of the suit, and a photo with two "faces" cannot be enrolled
    return {"collins": skimage_rgb("astronaut").crop((40, 0, 440, 300)), "hopper": hopper.convert("RGB")}


@pytest.fixture(scope="module")
def served(tmp_path_factory, photo_dir, tiny_clip_spec):
    root = tmp_path_factory.mktemp("faces-serve")
    shutil.copytree(photo_dir, root / "photos")
    with vsearch.open(root / "db", model=tiny_clip_spec) as coll:
        coll.index([str(root / "photos")], workers=0)
    app = create_app(root / "db", token=TOKEN, faces=True,
                     settings=ServeSettings(workers=2, queue_depth=8, index_check_seconds=0.0))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield root, client


ENDPOINTS = [
    ("post", "/v1/faces/verify", {"data": {"name": "collins"}}),
    ("post", "/v1/faces/identify", {}),
    ("post", "/v1/faces/enroll", {"data": {"name": "mallory"}}),
    ("delete", "/v1/faces/collins", {}),
    ("get", "/v1/faces", {}),
]


@pytest.mark.parametrize("method, path, extra", ENDPOINTS)
def test_face_endpoints_refuse_callers_without_the_token(served, people, method, path, extra):
    _, client = served
    kwargs = dict(extra)
    if method == "post":
        kwargs["files"] = {"image": ("p.jpg", jpeg(people["hopper"], 400), "image/jpeg")}
    for headers, why in [({}, "needs the header"), ({"Authorization": "Bearer nope-" + "z" * 30}, "wrong"),
                         ({"Authorization": f"Basic {TOKEN}"}, "needs the header")]:
        r = getattr(client, method)(path, headers=headers, **kwargs)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"] == "unauthorized" and why in r.json()["detail"]
        assert r.headers["www-authenticate"].startswith("Bearer")
    # nothing was enrolled or removed by the refused calls
    assert client.get("/v1/faces", headers=AUTH).json()["people"] == []


def test_enroll_verify_identify_remove(served, people):
    root, client = served
    collins, hopper = people["collins"], people["hopper"]

    r = client.post("/v1/faces/enroll", headers=AUTH, data={"name": "collins"},
                    files=[("image", ("collins.jpg", jpeg(collins), "image/jpeg"))])
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "collins", "added": 1, "templates": 1, "created": True,
                        "already_enrolled": []}
    listed = client.get("/v1/faces", headers=AUTH).json()
    assert [p["name"] for p in listed["people"]] == ["collins"] and listed["people"][0]["templates"] == 1

    # the same person in a smaller, re-encoded probe: a match, with the CLI's JSON
    r = client.post("/v1/faces/verify", headers=AUTH, data={"name": "collins"},
                    files={"image": ("door.jpg", jpeg(collins, 360, 70), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == VERIFY_KEYS and body["match"] is True and body["score"] >= body["threshold"]
    left, top, right, bottom = body["face_box"]
    assert 0 <= left < right <= 360 and 0 <= top < bottom <= 270

    # another person: no match, still 200 (a clear answer, not an error)
    r = client.post("/v1/faces/verify", headers=AUTH, data={"name": "collins"},
                    files={"image": ("hopper.jpg", jpeg(hopper, 480), "image/jpeg")})
    assert r.status_code == 200 and r.json()["match"] is False and r.json()["score"] < r.json()["threshold"]

    r = client.post("/v1/faces/identify", headers=AUTH, files={"image": ("c.jpg", jpeg(collins, 400), "image/jpeg")})
    assert r.status_code == 200, r.text
    faces = r.json()["faces"]
    assert faces[0]["name"] == "collins" and faces[0]["candidates"][0]["name"] == "collins"
    r = client.post("/v1/faces/identify", headers=AUTH, files={"image": ("h.jpg", jpeg(hopper, 400), "image/jpeg")})
    assert r.json()["faces"][0]["name"] == "unknown"

    r = client.post("/v1/faces/verify", headers=AUTH, data={"name": "nobody"},
                    files={"image": ("c.jpg", jpeg(collins, 360), "image/jpeg")})
    assert r.status_code == 404 and r.json()["error"] == "unknown_person" and "nobody" in r.json()["detail"]

    no_face = (root / "photos" / "coffee.jpg").read_bytes()
    r = client.post("/v1/faces/verify", headers=AUTH, data={"name": "collins"},
                    files={"image": ("coffee.jpg", no_face, "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"] == "no_face"
    r = client.post("/v1/faces/enroll", headers=AUTH, data={"name": "collins"},
                    files=[("image", ("ok.jpg", jpeg(collins), "image/jpeg")),
                           ("image", ("coffee.jpg", no_face, "image/jpeg"))])
    assert r.status_code == 422 and "coffee.jpg" in r.json()["detail"] and "Nothing was enrolled" in r.json()["detail"]
    assert client.get("/v1/faces", headers=AUTH).json()["people"][0]["templates"] == 1  # all or nothing

    r = client.post("/v1/faces/verify", headers=AUTH, data={"name": "collins"},
                    files={"image": ("x.jpg", b"not an image", "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"] == "bad_image"

    r = client.delete("/v1/faces/collins", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"name": "collins", "removed_templates": 1}
    assert client.delete("/v1/faces/collins", headers=AUTH).status_code == 404
    r = client.post("/v1/faces/verify", headers=AUTH, data={"name": "collins"},
                    files={"image": ("door.jpg", jpeg(collins, 360), "image/jpeg")})
    assert r.status_code == 404


def test_identify_finds_people_enrolled_by_another_process(served, people):
    """`vsearch faces enroll` in another process while the server runs: found on the next call."""
    from vsearch.catalog import Catalog
    from vsearch.faces.service import FaceService

    root, client = served
    other = Catalog(root / "db")
    FaceService(other).enroll("grace", [jpeg(people["hopper"])])
    other.close()
    r = client.post("/v1/faces/identify", headers=AUTH, files={"image": ("h.jpg", jpeg(people["hopper"], 400), "image/jpeg")})
    assert r.status_code == 200 and r.json()["faces"][0]["name"] == "grace"
    assert client.delete("/v1/faces/grace", headers=AUTH).status_code == 200


def test_healthz_and_openapi_show_the_face_endpoints(served):
    _, client = served
    assert client.get("/healthz").json()["faces"] is True
    schema = client.get("/openapi.json").json()
    assert {"/v1/faces/verify", "/v1/faces/identify", "/v1/faces/enroll", "/v1/faces/{name}", "/v1/faces"} <= set(schema["paths"])
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


@pytest.mark.slow  # two worker start-ups (dlib, torch): ~20 s; the e2e server uses the pool by default
def test_face_calls_in_a_worker_process_survive_its_crash(served, people):
    """face_processes: verify/identify/enroll run in worker processes (dlib holds the GIL); a
    worker that dies costs one 503, and the next call is served by a new worker."""
    import os
    import signal

    root, _ = served
    app = create_app(root / "db", token=TOKEN, faces=True,
                     settings=ServeSettings(workers=2, queue_depth=8, face_processes=1))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        pool = app.state.face_pool
        r = client.post("/v1/faces/enroll", headers=AUTH, data={"name": "collins"},
                        files={"image": ("c.jpg", jpeg(people["collins"]), "image/jpeg")})
        assert r.status_code == 200 and r.json()["created"] is True
        probe = {"image": ("door.jpg", jpeg(people["collins"], 360, 70), "image/jpeg")}
        r = client.post("/v1/faces/verify", headers=AUTH, data={"name": "collins"}, files=probe)
        assert r.status_code == 200 and r.json()["match"] is True
        assert os.getpid() not in pool.pids()

        os.kill(pool.pids()[0], signal.SIGKILL)
        r = client.post("/v1/faces/verify", headers=AUTH, data={"name": "collins"}, files=probe)
        assert r.status_code == 503 and r.json()["error"] == "face_worker_crashed"
        r = client.post("/v1/faces/identify", headers=AUTH, files=probe)
        assert r.status_code == 200 and r.json()["faces"][0]["name"] == "collins"
        assert client.delete("/v1/faces/collins", headers=AUTH).status_code == 200
        r = client.post("/v1/faces/verify", headers=AUTH, data={"name": "collins"}, files=probe)
        assert r.status_code == 404  # the worker reads templates from SQL: the removal is seen at once
        workers = list(pool._executor._processes.values())
    assert workers and not any(w.is_alive() for w in workers)  # the server's shutdown ended them
