"""Reading text in photos end to end, with the real OCR models on a few small drawn images (about
a second each on two cores): `vsearch ocr PHOTO`, `index --ocr`, `vsearch ocr --db`, and search by
the words (`--text-in`, plain queries)."""
from __future__ import annotations

import json
import os
import shutil

import matplotlib
import pytest
from PIL import Image, ImageDraw, ImageFont
from typer.testing import CliRunner

import vsearch
from cli import app
from tests.conftest import SKIMAGE_PHOTOS, skimage_rgb
from vsearch.ocr.search import TEXT_MATCH_BONUS, TextHit

pytest.importorskip("rapidocr_onnxruntime")
runner = CliRunner()
FONTS = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def draw(path, lines, size=(480, 240), font="DejaVuSans-Bold.ttf", px=36, background=(235, 225, 200)):
    """A photo of a sign: dark text on a plain ground, one line each."""
    image = Image.new("RGB", size, background)
    pen = ImageDraw.Draw(image)
    face = ImageFont.truetype(os.path.join(FONTS, font), px)
    for i, line in enumerate(lines):
        pen.text((20, 20 + i * (px + 16)), line, fill=(25, 25, 25), font=face)
    image.save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Two signs and two photos without text (a cat, a coffee cup)."""
    d = tmp_path_factory.mktemp("ocr_photos")
    draw(d / "bakery.jpg", ["BAKERY LUMIÈRE", "2croissants 3.50"])
    draw(d / "wifi.jpg", ["WiFi password:", "sunflower42"], font="DejaVuSerif.ttf")
    skimage_rgb("chelsea").save(d / "chelsea.jpg")
    skimage_rgb("coffee").save(d / "coffee.jpg")
    return d


@pytest.fixture(scope="module")
def indexed(library, tmp_path_factory, tiny_clip_spec):
    db = tmp_path_factory.mktemp("ocr_db") / "db"
    r = invoke("index", library, "--db", db, "--model", tiny_clip_spec, "-w", "0", "-q", "--ocr", "--json")
    assert r.exit_code == 0, r.output
    return db, json.loads(r.stdout)


def _paths(db, *args):
    r = invoke("search", *args, "--db", db, "--json")
    assert r.exit_code == 0, r.output
    return [os.path.basename(h["path"]) for h in json.loads(r.stdout)], json.loads(r.stdout)


def test_ocr_prints_the_text_of_one_photo(library):
    r = invoke("ocr", library / "bakery.jpg", "--json")
    assert r.exit_code == 0, r.output
    (photo,) = json.loads(r.stdout)
    texts = [line["text"] for line in photo["lines"]]
    assert len(texts) == 2 and texts[0].replace(" ", "").upper() == "BAKERYLUMIERE" and "croissants" in texts[1]
    assert all(line["score"] >= 0.8 and len(line["box"]) == 4 for line in photo["lines"])
    x1, y1, x2, y2 = photo["lines"][0]["box"]
    assert 5 <= x1 < x2 <= 480 and 5 <= y1 < y2 <= 80  # the first line's place in the photo


def test_ocr_of_a_bad_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image" * 10)
    r = invoke("ocr", bad)
    assert r.exit_code == 2
    assert str(bad) in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_index_ocr_stores_the_text_of_photos_with_text_only(indexed):
    db, summary = indexed
    assert summary["added"] == 4
    text = summary["text"]
    assert text["read"] == 4 and text["with_text"] == 2 and text["failed"] == [] and text["lines"] >= 4
    assert text["gated"] >= 1  # the cat never reached the recognizer


def test_text_in_finds_words_substrings_accents_and_phrases(indexed):
    db, _ = indexed
    for word in ["lumiere", "LUMIÈRE", "croissants", "bakery lumiere", "Bakery Lumière"]:
        assert _paths(db, "--text-in", word)[0] == ["bakery.jpg"], word
    assert _paths(db, "--text-in", "sunflower")[0] == ["wifi.jpg"]
    assert _paths(db, "--text-in", "wifi password")[0] == ["wifi.jpg"]  # across the space, any case
    assert _paths(db, "--text-in", "giraffe")[0] == []
    assert _paths(db, "--text-in", "sunflower", "--text-in", "bakery")[0] == []  # every term must match
    r = invoke("search", "--text-in", "!!", "--db", db)  # nothing to look for: one line, exit 2
    assert r.exit_code == 2 and "--text-in '!!'" in r.output and len(r.output.strip().splitlines()) == 1
    _, hits = _paths(db, "--text-in", "croissants")
    assert "croissants" in hits[0]["text"] and len(hits[0]["box"]) == 4 and hits[0]["score"] == 0.0


def test_text_in_filters_a_query_and_a_plain_query_puts_text_matches_first(indexed):
    db, _ = indexed
    names, hits = _paths(db, "a cat", "--text-in", "sunflower")
    assert names == ["wifi.jpg"] and "sunflower" in hits[0]["text"]
    names, hits = _paths(db, "wifi password", "-k", "4")
    assert names[0] == "wifi.jpg" and hits[0]["score"] > TEXT_MATCH_BONUS - 1 and "text" in hits[0]
    assert all("text" not in h for h in hits[1:])
    with vsearch.open(db, create=False) as coll:  # the Python API gives the same, as TextHits
        (hit,) = coll.search(text_in=["Lumiere"], k=5)
        assert isinstance(hit, TextHit) and os.path.basename(hit.path) == "bakery.jpg"


def test_a_query_matching_no_text_ranks_as_without_text(indexed, library, tmp_path, tiny_clip_spec):
    db, _ = indexed
    plain = tmp_path / "plain"
    assert invoke("index", library, "--db", plain, "--model", tiny_clip_spec, "-w", "0", "-q").exit_code == 0
    for query in ["a cat", "a cup of coffee", "giraffe on a beach"]:
        with_text, without = _paths(db, query, "-k", "4")[1], _paths(plain, query, "-k", "4")[1]
        assert with_text == without, query


def test_ocr_on_a_catalog_reads_only_what_is_new_or_changed(library, tmp_path, tiny_clip_spec):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(library / "bakery.jpg", photos)
    shutil.copy(library / "chelsea.jpg", photos)
    db = tmp_path / "db"
    assert invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "-w", "0", "-q").exit_code == 0
    assert _paths(db, "--text-in", "bakery")[0] == []  # indexed without --ocr: no text yet

    r = invoke("ocr", "--db", db, "-q", "--json")  # adds the text, embeds nothing again
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["read"] == 2 and _paths(db, "--text-in", "bakery")[0] == ["bakery.jpg"]

    r = invoke("ocr", "--db", db, "-q", "--json")  # nothing changed: nothing read
    assert json.loads(r.stdout)["read"] == 0 and json.loads(r.stdout)["already"] == 2

    draw(photos / "bakery.jpg", ["FLORIST", "tulips 4.20"])  # the same file, new content
    r = invoke("index", photos, "--db", db, "-q", "--ocr", "--json")
    text = json.loads(r.stdout)["text"]
    assert text["read"] == 1 and text["already"] == 1
    assert _paths(db, "--text-in", "bakery")[0] == [] and _paths(db, "--text-in", "tulips")[0] == ["bakery.jpg"]


@pytest.mark.slow
def test_photos_without_text_store_no_text(tmp_path, tiny_clip_spec):
    """The confidence threshold and the gate on scikit-image's photos: none keeps any text."""
    from vsearch.ocr.engine import TextReader

    reader = TextReader()
    for name in SKIMAGE_PHOTOS:
        if name == "clock":  # a real clock face with its numbers
            continue
        assert reader.read(skimage_rgb(name)).lines == (), name
        assert reader.read(skimage_rgb(name), gate=False).lines == (), name



def test_index_watch_ocr_reads_the_text_of_a_new_photo(tmp_path, tiny_clip_spec):
    """`index --watch --ocr`: a sign saved while watching is found by its words, with no second command."""
    import signal
    import subprocess
    import sys
    import time

    lib = tmp_path / "lib"
    lib.mkdir()
    skimage_rgb("chelsea").save(lib / "cat.jpg")
    db = tmp_path / "db"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    proc = subprocess.Popen([sys.executable, "-c", "from cli import app; app()", "index", str(lib), "--db", str(db),
                             "--model", tiny_clip_spec, "--workers", "0", "-q", "--watch", "--debounce", "0.3", "--ocr"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def found():
        r = invoke("search", "--text-in", "sunflower", "--db", db, "--json")
        return r.exit_code == 0 and [os.path.basename(h["path"]) for h in json.loads(r.stdout)] == ["wifi.jpg"]

    try:
        deadline = time.monotonic() + 120
        while not (db / "image.faiss").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # the observer is running once the first run has saved
        draw(lib / "wifi.jpg", ["WiFi password:", "sunflower42"], font="DejaVuSerif.ttf")
        deadline = time.monotonic() + 90
        while not found() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert found()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in out, out


def test_explain_draws_the_box_of_the_words_that_matched(indexed, tmp_path):
    db, _ = indexed
    for args in (("--text-in", "sunflower"), ("wifi password",)):  # text alone needs no query vector
        r = invoke("search", *args, "--db", db, "--explain", "--json", "--html", tmp_path / "out.html", "-k", "1")
        assert r.exit_code == 0, r.output
        hit = json.loads(r.stdout)[0]
        assert os.path.basename(hit["path"]) == "wifi.jpg"
        assert hit["explain"]["source"] == "text" and hit["explain"]["box"] == hit["box"]
        assert "sunflower" in hit["text"].lower() or "password" in hit["text"].lower()


def test_the_photo_view_of_the_server_shows_the_text_read_in_it(indexed):
    """`GET /v1/media/{id}`: the web page's photo view lists each line read and draws its box."""
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from vsearch.serve import ServeSettings, create_app

    db, _ = indexed
    app_ = create_app(db, token="t" * 32, settings=ServeSettings(workers=1, index_check_seconds=0.0))
    with TestClient(app_, base_url="http://127.0.0.1") as client:
        found = {}
        for hit in client.get("/v1/search", params={"q": "a photo", "k": 10}).json()["results"]:
            details = client.get(f"/v1/media/{hit['media_id']}")
            assert details.status_code == 200, details.text
            found[details.json()["name"]] = details.json()["text"]
    assert found["chelsea.jpg"] == [] and found["coffee.jpg"] == []
    wifi = found["wifi.jpg"]
    assert any("sunflower" in line["text"].lower() for line in wifi)
    assert all(len(line["box"]) == 4 and 0 < line["score"] <= 1 for line in wifi)


def test_serve_watch_ocr_reads_the_text_of_a_new_photo(tmp_path, tiny_clip_spec):
    """`serve --watch PATH --ocr`: the server's watcher reads the text of what arrives."""
    import time

    from vsearch.commands.library import start_background_watch

    lib = tmp_path / "lib"
    lib.mkdir()
    skimage_rgb("coffee").save(lib / "coffee.jpg")
    db = tmp_path / "db"
    with vsearch.open(db, model=tiny_clip_spec) as coll:
        coll.index([str(lib)], workers=0)
    stop = start_background_watch(str(db), None, "cpu", [str(lib)], ocr=True)
    try:
        time.sleep(1.0)
        draw(lib / "bakery.jpg", ["BAKERY LUMIÈRE", "2croissants 3.50"])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            r = invoke("search", "--text-in", "croissants", "--db", db, "--json")
            if r.exit_code == 0 and [os.path.basename(h["path"]) for h in json.loads(r.stdout)] == ["bakery.jpg"]:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the text of a photo that arrived while serving was never read")
    finally:
        stop()
    assert invoke("serve", "--ocr", "--db", db).exit_code == 2  # --ocr reads what a --watch brings


def test_a_plain_query_over_http_puts_the_photo_whose_text_matches_first(indexed):
    """`GET /v1/search?q=wifi password` ranks as `vsearch search "wifi password"` does."""
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from vsearch.serve import ServeSettings, create_app

    db, _ = indexed
    cli_names, cli_hits = _paths(db, "wifi password")
    app_ = create_app(db, token="t" * 32, settings=ServeSettings(workers=1, index_check_seconds=0.0))
    with TestClient(app_, base_url="http://127.0.0.1") as client:
        results = client.get("/v1/search", params={"q": "wifi password", "k": 10}).json()["results"]
    assert [r["name"] for r in results][0] == cli_names[0] == "wifi.jpg"
    assert results[0]["score"] == pytest.approx(cli_hits[0]["score"], abs=1e-5) and results[0]["score"] > 1
