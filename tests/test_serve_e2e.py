"""`vsearch serve` as a real process on a free loopback port: HTTP over sockets while
`vsearch index` (another process) adds photos, and the web page in headless Chromium."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

import vsearch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get("VSEARCH_CHROMIUM", "/usr/bin/chromium")
# The network is closed here: without these, Chromium spends its start on refused connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env() -> dict:
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
                VSEARCH_OFFLINE="1", HF_HUB_OFFLINE="1")


class Server:
    def __init__(self, db, token_file, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--db", str(db), "--port", str(self.port),
             "--token-file", str(token_file)],
            cwd=REPO, env=cli_env(), stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self._log.flush()
        with open(self.log_path) as fh:
            return fh.read()

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"vsearch serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        pytest.fail(f"vsearch serve did not answer within {timeout:.0f}s:\n{self.output()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends: uvicorn shuts down cleanly
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def served(tmp_path_factory, photo_dir, tiny_clip_spec):
    """A catalog of 5 photos (5 more wait in ``later/``) served by a real `vsearch serve`."""
    root = tmp_path_factory.mktemp("served")
    photos, later = root / "photos", root / "later"
    shutil.copytree(photo_dir, photos)
    later.mkdir()
    for p in sorted(photos.iterdir())[5:]:
        shutil.move(str(p), later / p.name)
    with vsearch.open(root / "db", model=tiny_clip_spec) as coll:
        coll.index([str(photos)], workers=0)
    server = Server(root / "db", root / "secret" / "serve.token", root / "server.log")
    try:
        server.wait_ready()
        yield root, server
    finally:
        server.stop()


def test_real_server_keeps_answering_while_vsearch_index_adds_photos(served):
    root, server = served
    token_file = root / "secret" / "serve.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert str(token_file) in server.output() and token_file.read_text().strip() not in server.output()
    assert httpx.get(server.url + "/healthz").json()["photos_in_index"] == 5

    statuses, stop = [], threading.Event()

    def hammer():  # a client searching the whole time the indexer runs
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                r = c.get("/v1/search", params={"q": "a photo", "k": 20})
                statuses.append((r.status_code, len(r.json().get("results", []))))
                time.sleep(0.05)  # steady traffic, not a CPU hog competing with the indexer

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for p in (root / "later").iterdir():
            shutil.move(str(p), root / "photos" / p.name)
        index = subprocess.run([sys.executable, "-m", "cli", "index", str(root / "photos"), "--db", str(root / "db"),
                                "--workers", "0", "--quiet"], cwd=REPO, env=cli_env(), capture_output=True,
                               text=True, timeout=300)
        assert index.returncode == 0, index.stderr
        assert "added 5" in index.stderr
        deadline = time.monotonic() + 10
        while httpx.get(server.url + "/healthz").json()["photos_in_index"] != 10:
            assert time.monotonic() < deadline, "the server did not pick up the saved index"
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    assert statuses and all(code == 200 for code, _ in statuses)
    assert {n for _, n in statuses} <= {5, 10}  # a whole snapshot each time: before or after a save
    assert len(httpx.get(server.url + "/v1/search", params={"q": "a photo", "k": 20}).json()["results"]) == 10


def test_real_server_limits_and_media_over_sockets(served):
    root, server = served
    with httpx.Client(base_url=server.url, timeout=30) as c:
        big = os.urandom(11 << 20)  # over the default 10 MiB: refused from its Content-Length
        r = c.post("/v1/search", files={"image": ("big.jpg", big, "image/jpeg")})
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        photo = (root / "photos" / "coffee.jpg").read_bytes()
        r = c.post("/v1/search", files={"image": ("coffee.jpg", photo, "image/jpeg")}, data={"k": "1"})
        assert r.status_code == 200 and r.json()["results"][0]["name"] == "coffee.jpg"
        mid = r.json()["results"][0]["media_id"]
        thumb = c.get(f"/v1/media/{mid}/thumbnail")
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        # a non-loopback Host header is refused even on the loopback socket
        assert c.get("/healthz", headers={"host": "attacker.example"}).status_code == 400


def enroll_collins(url: str, token: str) -> None:
    import io

    from tests.conftest import skimage_rgb

    buf = io.BytesIO()
    skimage_rgb("astronaut").crop((40, 0, 440, 300)).save(buf, format="JPEG", quality=90)  # the face, not the suit
    r = httpx.post(url + "/v1/faces/enroll", data={"name": "Eileen Collins"}, timeout=60,
                   files={"image": ("collins.jpg", buf.getvalue(), "image/jpeg")},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing: apt-get install chromium")
def test_web_page_in_headless_chromium(served, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    root, server = served
    health = httpx.get(server.url + "/healthz").json()
    n, faces = health["photos_in_index"], health["faces"]
    if faces:
        enroll_collins(server.url, (root / "secret" / "serve.token").read_text().strip())
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(server.url + "/")
            sync_api.expect(page.locator("#health")).to_contain_text(f"{n} photos")

            page.fill("#q", "a horse")
            page.press("#q", "Enter")
            cards = page.locator("#grid .hit")
            sync_api.expect(cards).to_have_count(n)
            sync_api.expect(page.locator("#status")).to_contain_text(f"{n} results for “a horse”")
            scores = [float(s) for s in page.locator("#grid .hit .score").all_text_contents()]
            assert scores == sorted(scores, reverse=True)
            page.wait_for_function("() => [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(tmp_path / "search.png"), full_page=True)

            # click a result: photos similar to it, without itself
            first = page.locator("#grid .hit .name").first.text_content()
            cards.first.click()
            sync_api.expect(page.locator("#status")).to_contain_text(f"similar to {first}")
            sync_api.expect(cards).to_have_count(n - 1)
            assert first not in page.locator("#grid .hit .name").all_text_contents()

            # the drop zone's file chooser: search by an example image
            page.set_input_files("#file", str(root / "photos" / "chelsea.jpg"))
            sync_api.expect(page.locator("#status")).to_contain_text("the image chelsea.jpg")
            sync_api.expect(page.locator("#grid .hit .name").first).to_have_text("chelsea.jpg")

            page.click("#tab-faces")
            assert page.locator("#panel-search").is_hidden() and page.locator("#panel-faces").is_visible()
            if faces:  # the faces tab lists enrolled people once the token is given
                sync_api.expect(page.locator("#faces-status")).to_contain_text("enter the access token")
                page.fill("#token", (root / "secret" / "serve.token").read_text().strip())
                page.click("#token-form button")
                sync_api.expect(page.locator("#people tbody tr")).to_have_count(1)
                sync_api.expect(page.locator("#people tbody tr")).to_contain_text("Eileen Collins")
                sync_api.expect(page.locator("#faces-status")).to_contain_text("1 enrolled person")
            else:
                sync_api.expect(page.locator("#faces-status")).to_contain_text("not available")
            page.screenshot(path=str(tmp_path / "faces.png"), full_page=True)
        finally:
            browser.close()
    shots = os.environ.get("VSEARCH_SCREENSHOTS")
    if shots:  # for a person to look at
        os.makedirs(shots, exist_ok=True)
        for name in ("search.png", "faces.png"):
            shutil.copy(tmp_path / name, os.path.join(shots, name))
    assert not errors, errors
