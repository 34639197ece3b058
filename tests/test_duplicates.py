"""`vsearch duplicates`: FAISS range search + keypoint check on real photos and copies made here."""
import json
import shutil

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cli import app
from tests.conftest import skimage_rgb
from vsearch.duplicates import GeometricCheck, connected_groups, similar_pairs

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def brute_pairs(x, t):
    s = x @ x.T
    i, j = np.nonzero(np.triu(s >= t, k=1))
    return set(zip(i.tolist(), j.tolist()))


def test_range_search_pairs_equal_brute_force_flat_and_ivf():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(600, 32)).astype(np.float32)
    x = np.concatenate([base, base[:100] + rng.normal(scale=0.05, size=(100, 32)).astype(np.float32)])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = brute_pairs(x, 0.9)
    assert len(truth) >= 100
    i, j, s = similar_pairs(x, 0.9)
    assert set(zip(i.tolist(), j.tolist())) == truth
    np.testing.assert_allclose(s, np.sum(x[i] * x[j], axis=1), rtol=1e-5)
    i, j, _ = similar_pairs(x, 0.9, exact_below=100, nprobe=4, batch=128)  # the IVF path
    found = set(zip(i.tolist(), j.tolist()))
    assert found <= truth and len(found) >= 0.95 * len(truth)


def test_connected_groups():
    groups = connected_groups(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert sorted(sorted(g.tolist()) for g in groups) == [[0, 1, 2], [4, 5]]


def test_geometric_check_tells_edits_from_other_photos(tmp_path):
    cat = skimage_rgb("chelsea")
    cat.save(tmp_path / "cat.jpg", quality=92)
    cat.crop((45, 30, 406, 270)).resize((240, 160)).save(tmp_path / "cat_crop_small.jpg", quality=60)
    skimage_rgb("coffee").save(tmp_path / "coffee.jpg")
    check = GeometricCheck()
    assert check.same_picture(str(tmp_path / "cat.jpg"), str(tmp_path / "cat_crop_small.jpg"))
    assert not check.same_picture(str(tmp_path / "cat.jpg"), str(tmp_path / "coffee.jpg"))


def test_duplicates_cli_groups_copies_and_names_the_best(tmp_path, packaged_encoder):
    d = tmp_path / "photos"
    d.mkdir()
    for name in ["chelsea", "coffee", "rocket", "astronaut"]:
        skimage_rgb(name).save(d / f"{name}.jpg", quality=92)
    cat = Image.open(d / "chelsea.jpg")
    cat.save(d / "chelsea_reencoded.jpg", quality=35)
    cat.resize((225, 150)).save(d / "chelsea_small.png")
    coffee = Image.open(d / "coffee.jpg")
    coffee.crop((60, 40, 540, 360)).save(d / "coffee_cropped.jpg", quality=90)
    (d / "sub").mkdir()
    shutil.copy(d / "rocket.jpg", d / "sub" / "rocket copy.jpg")
    db = tmp_path / "db"
    assert invoke("index", d, "--db", db, "--model", "packaged", "--workers", "0", "-q").exit_code == 0
    html = tmp_path / "dups.html"
    r = invoke("duplicates", "--db", db, "--json", "--html", html)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    groups = {g["best"]["path"].rsplit("/", 1)[-1]: sorted(m["path"].rsplit("/", 1)[-1] for m in g["others"])
              for g in out["groups"]}
    assert groups == {"chelsea.jpg": ["chelsea_reencoded.jpg", "chelsea_small.png"],
                      "coffee.jpg": ["coffee_cropped.jpg"],
                      "rocket.jpg": ["rocket copy.jpg"]}  # astronaut has no duplicate
    kinds = {g["best"]["path"].rsplit("/", 1)[-1]: g["kind"] for g in out["groups"]}
    assert kinds == {"chelsea.jpg": "near", "coffee.jpg": "near", "rocket.jpg": "exact"}
    assert out["exact_copies"] == 1 and out["redundant_files"] == 4 and out["photos"] == 8
    page = html.read_text()
    assert page.count("<section>") == 3 and "best copy" in page and "data:image/jpeg;base64" in page
    text = invoke("duplicates", "--db", db).output
    assert "keep" in text and "same bytes" in text and "rocket copy.jpg" in text
