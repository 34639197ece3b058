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
    def __init__(self, db, token_file, log_path, *extra: str, own_group: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--db", str(db), "--port", str(self.port),
             "--token-file", str(token_file), *extra],
            cwd=REPO, env=cli_env(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=own_group)

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


def test_ctrl_c_stops_the_server_and_its_face_workers_in_one_line(tmp_path, photo_dir, tiny_clip_spec):
    if not faces_installed():
        pytest.skip("the faces feature is not installed")
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(photo_dir / "chelsea.jpg"), str(photo_dir / "astronaut.jpg")], workers=0)
    server = Server(tmp_path / "db", tmp_path / "serve.token", tmp_path / "server.log", "--face-processes", "1",
                    own_group=True)
    try:
        server.wait_ready(timeout=300)
        assert httpx.get(server.url + "/healthz").json()["face_workers"] == "not started"
        token = (tmp_path / "serve.token").read_text().strip()
        with open(photo_dir / "astronaut.jpg", "rb") as fh:  # the first face request starts the workers
            httpx.post(server.url + "/v1/faces/identify", headers={"Authorization": f"Bearer {token}"},
                       files={"image": ("a.jpg", fh.read(), "image/jpeg")}, timeout=300)
        assert httpx.get(server.url + "/healthz").json()["face_workers"] == "running"
        os.killpg(server.proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: every process of the group
        code = server.proc.wait(timeout=60)
        output = server.output()
    finally:
        server.stop()
    after = output.split("Ctrl-C stops", 1)[1].strip().splitlines()
    assert code == 0 and after == ["stopped serving"], output


def test_a_heic_original_opens_in_the_browser_as_a_jpeg(tmp_path, photo_dir, tiny_clip_spec):
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from vsearch.serve import ServeSettings, create_app

    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    (tmp_path / "lib").mkdir()
    Image.open(photo_dir / "chelsea.jpg").save(tmp_path / "lib" / "cat.heic", quality=90)
    shutil.copy(photo_dir / "coffee.jpg", tmp_path / "lib" / "coffee.jpg")
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(tmp_path / "lib")], workers=0)
    app = create_app(tmp_path / "db", token="t" * 32, settings=ServeSettings(workers=1, queue_depth=4, face_processes=0))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        hits = {h["name"]: h["media_id"] for h in c.get("/v1/search", params={"q": "a photo", "k": 5}).json()["results"]}
        r = c.get(f"/v1/media/{hits['cat.heic']}/original")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert "attachment" not in r.headers.get("content-disposition", "")
        assert Image.open(io.BytesIO(r.content)).size == Image.open(photo_dir / "chelsea.jpg").size
        r = c.get(f"/v1/media/{hits['coffee.jpg']}/original")  # what browsers show is sent as it is
        assert r.headers["content-type"] == "image/jpeg" and r.content == (photo_dir / "coffee.jpg").read_bytes()


def enroll_collins(url: str, token: str) -> None:
    import io

    from tests.conftest import skimage_rgb

    buf = io.BytesIO()
    skimage_rgb("astronaut").crop((40, 0, 440, 300)).save(buf, format="JPEG", quality=90)  # the face, not the suit
    r = httpx.post(url + "/v1/faces/enroll", data={"name": "Eileen Collins"}, timeout=60,
                   files={"image": ("collins.jpg", buf.getvalue(), "image/jpeg")},
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text


SCREENSHOTS = os.environ.get("VSEARCH_SCREENSHOTS", os.path.join(REPO, ".screenshots"))  # git-ignored
PHONE = {"width": 390, "height": 844}


def faces_installed() -> bool:
    try:
        from vsearch.faces.service import FaceService  # noqa: F401
        from vsearch.faces.extractor import FaceExtractor  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, photo_dir, tiny_clip_spec):
    """The 10 photos, two of Eileen Collins in a subfolder, and in ``copies/`` a half-size copy
    of coffee.jpg and a zoomed re-shoot of chelsea.jpg (its middle two thirds, enlarged): tagged,
    with their faces indexed and grouped (when the faces feature is installed), served by a real
    `vsearch serve`."""
    from PIL import Image, ImageOps

    from tests.conftest import skimage_rgb
    from vsearch.tags import TaggingConfig, tag_collection

    root = tmp_path_factory.mktemp("gallery")
    photos = root / "photos"
    shutil.copytree(photo_dir, photos)
    (photos / "people").mkdir()
    collins = skimage_rgb("astronaut").crop((40, 0, 440, 300))  # the face, not the suit's badge
    collins.save(photos / "people" / "collins.jpg", quality=90)
    ImageOps.mirror(collins).resize((300, 225)).save(photos / "people" / "collins-small.jpg", quality=90)
    (photos / "copies").mkdir()
    coffee = skimage_rgb("coffee")
    coffee.resize((coffee.width // 2, coffee.height // 2), Image.LANCZOS).save(photos / "copies" / "coffee-small.jpg",
                                                                                quality=85)
    cat = skimage_rgb("chelsea")
    w, h = cat.size
    cat.crop((w // 6, h // 6, w - w // 6, h - h // 6)).resize((w, h), Image.LANCZOS).save(
        photos / "copies" / "chelsea-zoomed.jpg", quality=92)
    faces = faces_installed()
    with vsearch.open(root / "db", model=tiny_clip_spec) as coll:
        extractors = []
        if faces:
            from vsearch.faces.extractor import FaceExtractor

            extractors = [FaceExtractor()]
        coll.index([str(photos)], workers=0, extractors=extractors)
        tag_collection(coll, TaggingConfig(("a cat", "a person", "a machine"), ("a photo of {}.",), 0.0, 1))
        if faces:
            from vsearch.faces.service import FaceService

            FaceService(coll.catalog).cluster()
    # face calls in the server's own threads: worker processes would each load dlib at start
    server = Server(root / "db", root / "secret" / "serve.token", root / "server.log", "--face-processes", "0")
    try:
        server.wait_ready(timeout=300)  # the machine may be busy
        yield root, server, faces
    finally:
        server.stop()


def names(page) -> list[str]:
    return page.locator("#grid .hit .name").all_text_contents()


def shoot(page, name: str, full_page: bool = True) -> None:
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.wait_for_function("() => [...document.querySelectorAll('img')].every(i => !i.src || i.complete)")
    page.screenshot(path=os.path.join(SCREENSHOTS, name), full_page=full_page)


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing: apt-get install chromium")
def test_web_page_in_headless_chromium(gallery):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    root, server, faces = gallery
    n = httpx.get(server.url + "/healthz").json()["photos_in_index"]
    assert n == 14 and httpx.get(server.url + "/healthz").json()["faces"] == faces
    token = (root / "secret" / "serve.token").read_text().strip()
    tags = httpx.get(server.url + "/v1/tags").json()["tags"]
    errors: list[str] = []

    def on_console(message):
        # a person with no indexed photo has no face picture: that 404 is expected, and shown as initials
        if message.type == "error" and "/people/" not in (message.location or {}).get("url", ""):
            errors.append(f"console: {message.text} at {message.location}")

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("console", on_console)
            page.goto(server.url + "/")
            expect(page.locator("#health")).to_contain_text(f"{n} photos")

            # search by text: the query goes into the URL
            page.fill("#q", "a horse")
            page.press("#q", "Enter")
            cards = page.locator("#grid .hit")
            expect(cards).to_have_count(n)
            expect(page.locator("#status")).to_contain_text(f"{n} results for “a horse”")
            assert "q=a+horse" in page.url
            horse = names(page)
            scores = [float(s) for s in page.locator("#grid .hit .score").all_text_contents()]
            assert scores == sorted(scores, reverse=True)
            # the folder under each name tells the two folders apart
            folders = page.locator("#grid .hit .folder").all_text_contents()
            assert sum(f.strip("\u200e").endswith("/people") for f in folders) == 2
            shoot(page, "desktop-search.png")

            # a second search, then Back: the first query and its results come back
            page.fill("#q", "a cup of coffee")
            page.click("#search-form button[type=submit]")
            expect(page.locator("#status")).to_contain_text("results for “a cup of coffee”")
            coffee = names(page)
            assert coffee != horse
            page.go_back()
            expect(page.locator("#status")).to_contain_text("results for “a horse”")
            assert page.input_value("#q") == "a horse" and names(page) == horse
            page.go_forward()
            expect(page.locator("#status")).to_contain_text("results for “a cup of coffee”")
            assert names(page) == coffee

            # the full view: facts, the original by id, similar photos; Back closes it
            first = coffee[0]
            cards.first.click()
            viewer = page.locator("#viewer")
            expect(viewer).to_be_visible()
            expect(page.locator("#viewer-name")).to_have_text(first)
            assert "photo=" in page.url
            expect(page.locator("#viewer-facts")).to_contain_text(str(photos_path(root, first)))
            expect(page.locator("#viewer-facts")).to_contain_text("Tags")
            original = page.get_attribute("#viewer-original", "href")
            assert original.startswith("/v1/media/") and original.endswith("/original")
            assert httpx.get(server.url + original).content == photos_path(root, first).read_bytes()
            similar = page.locator("#viewer-similar .hit")
            expect(similar).to_have_count(8)
            assert first not in page.locator("#viewer-similar .hit .name").all_text_contents()
            shoot(page, "desktop-photo.png", full_page=False)  # the view covers the window
            page.go_back()
            expect(viewer).to_be_hidden()
            assert names(page) == coffee

            # from the full view to all photos similar to it
            cards.first.click()
            expect(similar).to_have_count(8)
            next_name = page.locator("#viewer-similar .hit .name").first.text_content()
            similar.first.click()  # another photo in the same view
            expect(page.locator("#viewer-name")).to_have_text(next_name)
            page.click("#viewer-all-similar")
            expect(viewer).to_be_hidden()
            expect(page.locator("#status")).to_contain_text(f"results for photos similar to {next_name}")
            expect(cards).to_have_count(n - 1)
            assert "like=" in page.url and next_name not in names(page)

            # the tag filter, kept in the URL and restored by a reload (as from a bookmark)
            label, count = tags[0]["label"], tags[0]["photos"]
            page.fill("#q", "a photo")
            page.press("#q", "Enter")
            expect(cards).to_have_count(n)
            page.select_option("#tag", label)
            expect(page.locator("#status")).to_contain_text(f"results for “a photo” tagged {label}")
            expect(cards).to_have_count(count)
            page.reload()
            expect(page.locator("#status")).to_contain_text(f"results for “a photo” tagged {label}")
            expect(cards).to_have_count(count)
            assert page.input_value("#tag") == label
            # plus/minus terms and the minimum score come from the URL too
            page.goto(server.url + "/?q=a+photo&plus=a+cat&minus=a+machine&min=-1")
            expect(page.locator("#status")).to_contain_text("results for “a photo” + a cat − a machine")
            assert page.input_value("#plus") == "a cat" and page.input_value("#minus") == "a machine"
            best = float(page.locator("#grid .hit .score").first.text_content())
            page.fill("#min", f"{best - 1e-4:.4f}")
            page.dispatch_event("#min", "change")
            expect(page.locator("#status")).to_contain_text("below the minimum score")
            assert cards.count() >= 1 and cards.count() < n

            # search by an example image (the drop zone's file chooser); Back returns to the text query
            page.goto(server.url + "/?q=a+horse")
            expect(page.locator("#status")).to_contain_text("results for “a horse”")
            page.set_input_files("#file", str(root / "photos" / "chelsea.jpg"))
            expect(page.locator("#status")).to_contain_text("results for the image chelsea.jpg")
            expect(page.locator("#grid .hit .name").first).to_have_text("chelsea.jpg")
            page.go_back()
            expect(page.locator("#status")).to_contain_text("results for “a horse”")
            assert names(page) == horse

            # the faces tab: the token is asked once, then enroll and verify
            page.click("#tab-faces")
            assert "tab=faces" in page.url
            if faces:
                from tests.test_serve_faces import jpeg  # the same door-camera-like probes
                import matplotlib.cbook as cbook
                from PIL import Image

                hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
                (root / "hopper.jpg").write_bytes(jpeg(hopper, 600))
                (root / "hopper-probe.jpg").write_bytes(jpeg(hopper.transpose(Image.FLIP_LEFT_RIGHT), 400, 80))
                expect(page.locator("#faces-status")).to_contain_text("enter the access token")
                page.fill("#token", token)
                page.click("#token-form button")
                expect(page.locator("#token-form")).to_be_hidden()
                expect(page.locator("#faces-status")).to_contain_text("nobody is enrolled")
                # the three photos of Collins (astronaut.jpg and people/) form one unnamed group
                group = page.locator("#clusters .cluster")
                expect(group).to_have_count(1)
                expect(group).to_contain_text("3 faces")
                expect(group.locator("img")).to_have_count(3)
                shoot(page, "desktop-faces-groups.png")

                page.fill("#enroll-name", "Grace Hopper")
                page.set_input_files("#enroll-file", str(root / "hopper.jpg"))
                page.click("#enroll-form button")
                expect(page.locator("#enroll-status")).to_contain_text("enrolled Grace Hopper")
                expect(page.locator("#people .person")).to_have_count(1)
                expect(page.locator("#people .placeholder")).to_have_text("GH")  # in no indexed photo

                page.select_option("#verify-name", "Grace Hopper")
                page.set_input_files("#verify-file", str(root / "hopper-probe.jpg"))
                page.click("#verify-form button")
                expect(page.locator("#verify-status")).to_contain_text("✓ match")

                group.locator("input").fill("Eileen Collins")
                group.locator("button[type=submit]").click()
                expect(page.locator("#people .person")).to_have_count(2)
                expect(group).to_have_count(0)
                collins = page.locator("#people .person", has_text="Eileen Collins")
                expect(collins.locator("img.face-img")).to_have_count(1)  # her face from a photo
                page.wait_for_function("() => [...document.querySelectorAll('#people img')].every(i => i.naturalWidth > 0)")
                shoot(page, "desktop-faces.png")

                # the token is kept for the tab's life: a reload does not ask again
                page.reload()
                expect(page.locator("#people .person")).to_have_count(2)
                expect(page.locator("#token-form")).to_be_hidden()
                # the full view of her photo shows her face with her name
                page.goto(server.url + "/?q=an+astronaut")
                mid = httpx.get(server.url + "/v1/search", params={"q": "x", "k": 20}).json()["results"]
                collins_id = next(h["media_id"] for h in mid if h["name"] == "collins.jpg")
                page.goto(server.url + f"/?q=an+astronaut&photo={collins_id}")
                expect(page.locator("#viewer-frame .face")).to_have_count(1)
                expect(page.locator("#viewer-frame .face")).to_contain_text("Eileen Collins")
                shoot(page, "desktop-photo-faces.png", full_page=False)
            else:
                expect(page.locator("#faces-status")).to_contain_text("not available")
                shoot(page, "desktop-faces.png")

            # the duplicates tab: rows of thumbnails, the groups of copies first (the copy to keep
            # first in each), then the similar shots, where nothing is marked to keep. At the model's
            # threshold the page shows what the server found: the half-size coffee and the Collins
            # crop (all inside astronaut.jpg) are copies, the zoomed cat shows less of the scene with
            # fewer pixels, so it is a similar shot. The tiny random model puts different photos
            # 0.92-0.99 apart, and the motion-blurred clock.jpg has too few keypoints to be checked,
            # so here the vectors alone may pair it with another photo.
            answer = httpx.get(server.url + "/v1/duplicates", timeout=120).json()
            found, alike = api_rows(answer["groups"]), api_rows(answer["similar"])
            assert ["coffee.jpg", "coffee-small.jpg"] in found and ["astronaut.jpg", "collins.jpg"] in found
            assert ["chelsea.jpg", "chelsea-zoomed.jpg"] in alike
            page.goto(server.url + "/")
            page.click("#tab-duplicates")
            assert "tab=duplicates" in page.url
            status = page.locator("#dups-status")
            groups = page.locator("#dups .dup-group:not(.similar)")
            shots = page.locator("#dups .dup-group.similar")
            expect(status).to_contain_text(f"{len(found)} groups among {n} photos")
            shots_text = f"{len(alike)} group{'s' if len(alike) > 1 else ''} of similar shots (keep all)"
            expect(status).to_contain_text(shots_text)
            assert page.input_value("#dups-threshold") == "0.92"  # the model's default, filled in
            assert dup_rows(groups) == found and dup_rows(shots) == alike
            kinds = page.locator("#dups .dup-group").evaluate_all("rs => rs.map(r => r.classList.contains('similar'))")
            assert kinds == sorted(kinds)  # the similar shots below every group of copies
            for row in groups.all():
                expect(row.locator(".hit").first.locator(".badge")).to_have_text("keep")
                expect(row.locator(".badge.keep")).to_have_count(1)
                expect(row.locator("h3")).to_contain_text("besides the copy to keep")
            for row in shots.all():
                expect(row.locator("h3")).to_contain_text("Similar shots — keep all")
                expect(row.locator("h3")).not_to_contain_text("besides")
                expect(row.locator(".badge")).to_have_count(0)
                expect(row.locator(".hit .score")).to_have_count(row.locator(".hit").count() - 1)
            outline = "e => getComputedStyle(e).borderTopColor"  # the copy to keep stands out; no shot does
            first_card = [rows.first.locator(".hit").first.evaluate(outline) for rows in (groups, shots)]
            assert first_card[0] != first_card[1]
            dims = groups.locator(".hit .dims").first.text_content()
            assert " px · " in dims
            shoot(page, "desktop-duplicates.png")

            # above what the random model gives different photos: exactly the copy, the crop and
            # the zoomed shot
            page.fill("#dups-threshold", "0.98")
            page.click("#dups-form button[type=submit]")
            expect(status).to_contain_text("similarity ≥ 0.98")
            assert "threshold=0.98" in page.url
            expect(status).to_contain_text(f"2 groups among {n} photos")
            expect(status).to_contain_text("1 group of similar shots (keep all)")
            exact = [["astronaut.jpg", "collins.jpg"], ["coffee.jpg", "coffee-small.jpg"]]
            assert dup_rows(groups) == exact and dup_rows(shots) == [["chelsea.jpg", "chelsea-zoomed.jpg"]]
            # at 1 no vectors are alike (and the gallery has no byte copies): nothing at all
            page.fill("#dups-threshold", "1")
            page.click("#dups-form button[type=submit]")
            expect(status).to_contain_text(f"no duplicates among {n} photos")
            expect(status).not_to_contain_text("similar shots")
            expect(page.locator("#dups .dup-group")).to_have_count(0)
            assert "threshold=1" in page.url
            page.go_back()
            expect(status).to_contain_text("similarity ≥ 0.98")
            assert dup_rows(groups) == exact and page.input_value("#dups-threshold") == "0.98"
            page.go_forward()
            expect(status).to_contain_text(f"no duplicates among {n} photos")
            expect(page.locator("#dups .dup-group")).to_have_count(0)
            page.go_back()
            expect(status).to_contain_text("similarity ≥ 0.98")
            # a thumbnail opens the full view over the tab; closing it returns to the groups
            zoomed = shots.locator(".hit").nth(1)
            expect(zoomed.locator(".name")).to_have_text("chelsea-zoomed.jpg")
            zoomed.click()
            expect(page.locator("#viewer")).to_be_visible()
            expect(page.locator("#viewer-name")).to_have_text("chelsea-zoomed.jpg")
            assert "tab=duplicates" in page.url and "photo=" in page.url
            page.click("#viewer-close")
            expect(page.locator("#viewer")).to_be_hidden()
            assert dup_rows(groups) == exact and dup_rows(shots) == [["chelsea.jpg", "chelsea-zoomed.jpg"]]
            context.close()

            # a phone's width: the same page, readable
            phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
            page = phone.new_page()
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("console", on_console)
            page.goto(server.url + "/?q=a+horse")
            expect(page.locator("#grid .hit")).to_have_count(n)
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            shoot(page, "phone-search.png")
            page.locator("#grid .hit").first.click()
            expect(page.locator("#viewer-similar .hit")).to_have_count(8)
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            shoot(page, "phone-photo.png", full_page=False)
            page.goto(server.url + "/?tab=faces")
            if faces:
                page.fill("#token", token)
                page.click("#token-form button")
                expect(page.locator("#people .person")).to_have_count(2)
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            shoot(page, "phone-faces.png")
            page.goto(server.url + "/?tab=duplicates")
            expect(page.locator("#dups .dup-group .hit")).to_have_count(sum(map(len, found + alike)))
            expect(page.locator("#dups .dup-group.similar")).to_have_count(len(alike))
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
            shoot(page, "phone-duplicates.png")
            phone.close()
        finally:
            browser.close()
    assert not errors, errors


def api_rows(groups: list[dict]) -> list[list[str]]:
    """The file names of each group of a `/v1/duplicates` answer, the first photo first."""
    return [[copy["name"] for copy in (g["best"], *g["others"])] for g in groups]


def dup_rows(rows) -> list[list[str]]:
    """The file names in each row of the duplicates tab that ``rows`` (a locator) finds."""
    return [row.locator(".hit .name").all_text_contents() for row in rows.all()]


def photos_path(root, name):
    found = [p for p in (root / "photos").rglob(name)]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing: apt-get install chromium")
def test_web_page_dates_tag_from_the_url_and_a_stopped_server(tmp_path, photo_dir, tiny_clip_spec):
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    from PIL import Image

    from vsearch.tags import TaggingConfig, tag_collection

    shutil.copytree(photo_dir, tmp_path / "photos")
    with Image.open(photo_dir / "rocket.jpg") as im:  # a capture date in its EXIF
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = "2021:06:05 14:30:00"
        im.save(tmp_path / "photos" / "rocket.jpg", exif=exif.tobytes())
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(tmp_path / "photos")], workers=0)
        tag_collection(coll, TaggingConfig(("a cat", "a machine"), ("a photo of {}.",), 0.0, 1))
    server = Server(tmp_path / "db", tmp_path / "serve.token", tmp_path / "server.log", "--face-processes", "0")
    try:
        server.wait_ready(timeout=300)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                # the tag menu shows the URL's tag, whatever its case
                page.goto(server.url + "/?q=a+photo&tag=A+MACHINE")
                expect(page.locator("#status")).to_contain_text("tagged A MACHINE")
                expect(page.locator("#tag-label")).to_be_visible()
                expect(page.locator("#tag")).to_have_value("a machine")

                # one local format for the capture date and the file's date
                page.goto(server.url + "/?q=a+rocket&k=10")
                page.locator("#grid .hit", has_text="rocket.jpg").click()
                facts = page.locator("#viewer-facts")
                expect(facts).to_contain_text("Taken")
                taken = facts.locator("dt:text-is('Taken') + dd").text_content()
                modified = facts.locator("dt:text-is('Modified') + dd").text_content()
                fmt = "new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'short'}).format"
                assert taken == page.evaluate(f"{fmt}(new Date('2021-06-05T14:30:00'))")
                mtime = os.stat(tmp_path / "photos" / "rocket.jpg").st_mtime
                assert modified == page.evaluate(f"{fmt}(new Date({mtime * 1000}))")
                page.keyboard.press("Escape")
                expect(page.locator("#viewer")).to_be_hidden()

                # the server stops: the page says so and keeps what it showed
                shown = names(page)
                assert server.stop() == 0
                page.fill("#q", "a cup of coffee")
                page.press("#q", "Enter")
                expect(page.locator("#status")).to_contain_text("server is not answering")
                assert "Failed to fetch" not in page.locator("#status").text_content()
                assert names(page) == shown
            finally:
                browser.close()
    finally:
        server.stop()
