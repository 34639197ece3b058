"""`search --explain`: where in a photo the query matched, from regions or by occlusion."""
import io
import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cli import app
from tests.conftest import skimage_rgb
from vsearch.explain import explained_thumbnail_jpeg, occlusion_explanation
from vsearch.images import MAX_ASPECT

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def collage(path):
    """The cat in the top-left quarter; coins, the moon and the cameraman elsewhere."""
    canvas = Image.new("RGB", (600, 400))
    for (x, y), name in zip([(0, 0), (300, 0), (0, 200), (300, 200)], ["chelsea", "coins", "moon", "camera"]):
        canvas.paste(skimage_rgb(name).resize((300, 200)), (x, y))
    canvas.save(path, quality=92)


def test_occlusion_finds_the_cat_in_a_collage(tmp_path, packaged_encoder):
    collage(tmp_path / "collage.jpg")
    query = packaged_encoder.encode_text(["a photo of a cat"])[0]
    e = occlusion_explanation(packaged_encoder, str(tmp_path / "collage.jpg"), query)
    assert e.source == "occlusion" and len(e.heatmap) == 4 and max(max(r) for r in e.heatmap) == 1.0
    x1, y1, x2, y2 = e.box
    assert x2 <= 300 and y2 <= 200  # inside the cat's quarter
    heat = np.asarray(e.heatmap)
    assert heat[:2, :2].sum() > heat.sum() - heat[:2, :2].sum()


def test_search_explain_json_and_html(tmp_path, packaged_encoder):
    d = tmp_path / "photos"
    d.mkdir()
    collage(d / "collage.jpg")
    skimage_rgb("coffee").save(d / "coffee.jpg")
    db = tmp_path / "db"
    assert invoke("index", d, "--db", db, "--model", "packaged", "--workers", "0", "-q").exit_code == 0
    r = invoke("search", "a cat", "--explain", "--json", "-k", "1", "--db", db, "--html", tmp_path / "out.html")
    assert r.exit_code == 0, r.output
    hit = json.loads(r.stdout)[0]
    assert hit["path"].endswith("collage.jpg") and hit["explain"]["source"] == "occlusion"
    assert hit["explain"]["box"][2] <= 300 and len(hit["explain"]["heatmap"]) == 4
    assert "data:image/jpeg;base64" in (tmp_path / "out.html").read_text()
    r = invoke("search", "a cat", "--explain", "-k", "1", "--db", db)
    # piped: rank, score, path and the matched box as one tab-separated line
    assert r.output.rstrip("\n").split("\t")[3] == "[" + ", ".join(f"{v:.0f}" for v in hit["explain"]["box"]) + "]"


def test_explain_uses_stored_regions(tmp_path, packaged_encoder):
    d = tmp_path / "photos"
    d.mkdir()
    collage(d / "collage.jpg")
    db = tmp_path / "db"
    r = invoke("index", d, "--db", db, "--model", "packaged", "--workers", "0", "-q", "--regions", "proposals",
               "--max-regions", "6")
    assert r.exit_code == 0, r.output
    r = invoke("search", "a cat", "--explain", "--json", "-k", "1", "--db", db)
    e = json.loads(r.stdout)[0]["explain"]
    assert e["source"] == "region" and "heatmap" not in e
    x1, y1, x2, y2 = e["box"]
    assert 0 <= x1 < x2 <= 600 and 0 <= y1 < y2 <= 400


class _AspectGuard:
    """The encoder, refusing to preprocess an image longer than MAX_ASPECT:1 (what made a 1×8000
    strip cost gigabytes) and counting what it is shown."""

    def __init__(self, encoder):
        self.encoder, self.info, self.shown = encoder, encoder.info, []

    def preprocess(self, image):
        w, h = image.size
        assert max(w, h) <= MAX_ASPECT * min(w, h), f"{w}×{h} handed to the encoder"
        self.shown.append(image.size)
        return self.encoder.preprocess(image)

    def encode_pixels(self, pixels):
        return self.encoder.encode_pixels(pixels)


def test_occlusion_over_a_thin_photo_stays_within_the_aspect_limit(tmp_path, packaged_encoder):
    query = packaged_encoder.encode_text(["a photo of a cat"])[0]
    rng = np.random.default_rng(0)
    for size in [(1, 8000), (8000, 1), (30, 3000)]:
        path = tmp_path / f"strip_{size[0]}x{size[1]}.png"
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        guard = _AspectGuard(packaged_encoder)
        e = occlusion_explanation(guard, str(path), query)
        assert e.source == "occlusion" and np.asarray(e.heatmap).shape == (4, 4)
        assert 1 < len(guard.shown) <= 17  # the whole, then only the cells inside what it is shown
        x1, y1, x2, y2 = e.box
        assert 0 <= x1 < x2 <= size[0] and 0 <= y1 < y2 <= size[1]
        jpeg = explained_thumbnail_jpeg(str(path), e)
        assert Image.open(io.BytesIO(jpeg)).size == tuple(max(1, round(v * 256 / max(size))) for v in size)


def test_occlusion_of_a_normal_photo_hides_every_cell(tmp_path, packaged_encoder):
    collage(tmp_path / "collage.jpg")
    guard = _AspectGuard(packaged_encoder)
    occlusion_explanation(guard, str(tmp_path / "collage.jpg"), packaged_encoder.encode_text(["a cat"])[0])
    assert guard.shown == [(600, 400)] * 17
