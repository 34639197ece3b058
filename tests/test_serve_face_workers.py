"""The face worker processes of `vsearch serve` start with the first face request, not with the
server: an idle server holds no worker (and no torch or dlib in one)."""
from __future__ import annotations

import multiprocessing
import shutil
import threading

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("vsearch.faces")
from fastapi.testclient import TestClient  # noqa: E402

import vsearch  # noqa: E402
from tests.test_serve_faces import AUTH, TOKEN, jpeg, people  # noqa: E402,F401 - the people fixture
from vsearch.serve import ServeSettings, create_app  # noqa: E402


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory, photo_dir, tiny_clip_spec):
    root = tmp_path_factory.mktemp("face-workers")
    shutil.copytree(photo_dir, root / "photos")
    with vsearch.open(root / "db", model=tiny_clip_spec) as coll:
        coll.index([str(root / "photos")], workers=0)
    return root / "db"


def pooled_app(db, processes: int = 1):
    return create_app(db, token=TOKEN, faces=True,
                      settings=ServeSettings(workers=2, queue_depth=8, face_processes=processes))


def test_no_face_worker_runs_after_start_up(catalog_dir):
    before = set(multiprocessing.active_children())
    app = pooled_app(catalog_dir, processes=2)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert set(multiprocessing.active_children()) == before  # no process started for faces
        assert app.state.face_pool.pids() == []
        health = client.get("/healthz").json()
        assert health["faces"] is True and health["face_workers"] == "not started"
        # requests that need no worker leave it so
        assert client.get("/v1/faces", headers=AUTH).status_code == 200
        assert client.get("/v1/search", params={"q": "a cat"}).status_code == 200
        assert app.state.face_pool.pids() == []
    assert app.state.face_pool.state == "stopped"  # a shutdown with nothing started


def test_healthz_says_face_calls_run_in_the_server_without_workers(catalog_dir):
    app = pooled_app(catalog_dir, processes=0)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/healthz").json()["face_workers"] == "none"


@pytest.mark.slow  # one worker start-up (dlib, torch): ~10 s
def test_the_first_face_requests_start_the_workers_once(catalog_dir, people):
    app = pooled_app(catalog_dir, processes=1)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        pool = app.state.face_pool
        starts = []
        start = pool._start

        def counted():
            starts.append(threading.get_ident())
            return start()

        pool._start = counted
        probe = {"image": ("door.jpg", jpeg(people["collins"], 360, 70), "image/jpeg")}
        answers = []

        def identify():
            answers.append(client.post("/v1/faces/identify", headers=AUTH, files=probe).status_code)

        callers = [threading.Thread(target=identify) for _ in range(3)]
        for t in callers:
            t.start()
        for t in callers:
            t.join()
        assert answers == [200, 200, 200] and len(starts) == 1  # concurrent first calls: one start
        assert len(pool.pids()) == 1
        assert client.get("/healthz").json()["face_workers"] == "running"
        workers = list(pool._executor._processes.values())
    assert workers and not any(w.is_alive() for w in workers)  # the server's shutdown ended them
    assert pool.state == "stopped"


@pytest.mark.slow  # a real server and one worker start-up: ~40 s
def test_ctrl_c_while_the_first_face_request_starts_the_workers_stops_in_one_line(tmp_path, photo_dir,
                                                                                 tiny_clip_spec):
    """The workers start while the server runs; Ctrl-C reaches them while they import: the request
    in flight is answered and the server stops with its one line, no worker traceback."""
    import os
    import signal
    import time

    import httpx

    from tests.test_serve_e2e import Server

    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(photo_dir / "astronaut.jpg")], workers=0)
    server = Server(tmp_path / "db", tmp_path / "serve.token", tmp_path / "server.log", "--face-processes", "2",
                    own_group=True)
    answers = []
    try:
        server.wait_ready(timeout=300)
        token = (tmp_path / "serve.token").read_text().strip()
        photo = (photo_dir / "astronaut.jpg").read_bytes()

        def identify():
            answers.append(httpx.post(server.url + "/v1/faces/identify", headers={"Authorization": f"Bearer {token}"},
                                      files={"image": ("a.jpg", photo, "image/jpeg")}, timeout=300).status_code)

        caller = threading.Thread(target=identify)
        caller.start()
        time.sleep(1.5)  # the workers are importing (their start takes several seconds)
        os.killpg(server.proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: every process of the group
        code = server.proc.wait(timeout=120)
        caller.join()
        output = server.output()
    finally:
        server.stop()
    after = output.split("Ctrl-C stops", 1)[1].strip().splitlines()
    assert code == 0 and after == ["stopped serving"] and answers == [200], output
