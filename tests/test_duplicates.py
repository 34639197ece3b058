"""`vsearch duplicates`: FAISS range search + keypoint check on real photos and copies made here."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import vsearch
from cli import app
from tests.conftest import skimage_rgb
from vsearch.duplicates import (SAME, SIMILAR, GeometricCheck, connected_groups, find_duplicates, nearest_per_row,
                                similar_pairs, star_groups)

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


def test_nearest_per_row_keeps_each_rows_most_similar():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    i, j, s = similar_pairs(x, -1.0)  # every pair
    ki, kj, ks = nearest_per_row(i, j, s, 3)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    top = {r: set(np.argsort(-sims[r])[:3].tolist()) for r in range(60)}
    expected = {(a, b) for a, b in zip(i.tolist(), j.tolist()) if b in top[a] or a in top[b]}
    assert set(zip(ki.tolist(), kj.tolist())) == expected and len(expected) <= 60 * 3
    np.testing.assert_allclose(ks, sims[ki, kj], rtol=1e-5)


def test_star_groups_never_chain():
    """0 ≈ 1 and 1 ≈ 2 but 0 ≉ 2: 2 is not redundant through 1; 3 only looks like 0."""
    same = {(0, 1), (1, 2)}
    alike = {(0, 3)}

    def verdict(kept, other, cosine):
        pair = (min(kept, other), max(kept, other))
        return SAME if pair in same else SIMILAR if pair in alike else "different"

    pairs = np.array([[0, 1], [1, 2], [0, 2], [0, 3]])
    steps = []
    groups, similar = star_groups([0, 1, 2, 3], pairs[:, 0], pairs[:, 1], np.full(4, 0.9, np.float32), verdict,
                                  steps.append)
    assert groups == {0: [1]} and similar == {0: [3]} and sum(steps) == 4
    # 2 keeps no group: its only match (1) is already redundant to 0


def crops_of_coffee(d):
    """Three overlapping 60 % slices of a real photo (none contains another), a re-encode of one
    and a smaller crop inside another: {file: box in the photo}."""
    photo = skimage_rgb("coffee")  # 600 x 400
    boxes = {"left.png": (0, 0, 360, 400), "middle.png": (120, 0, 480, 400), "right.png": (240, 0, 600, 400),
             "inside_middle.png": (170, 40, 430, 360)}
    for name, box in boxes.items():
        photo.crop(box).save(d / name)
    photo.crop(boxes["left.png"]).save(d / "left_q40.jpg", quality=40)
    boxes["left_q40.jpg"] = boxes["left.png"]
    return boxes


def test_duplicates_never_chain_crops_into_one_group(tmp_path, packaged_encoder):
    """Overlapping slices of one photo used to join into one group whose files were all called
    redundant; now a file is redundant only when the copy kept shows all of it."""
    d = tmp_path / "photos"
    d.mkdir()
    boxes = crops_of_coffee(d)
    db = tmp_path / "db"
    assert invoke("index", d, "--db", db, "--model", "packaged", "--workers", "0", "-q").exit_code == 0
    r = invoke("duplicates", "--db", db, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    groups = {g["best"]["path"].rsplit("/", 1)[-1]: sorted(m["path"].rsplit("/", 1)[-1] for m in g["others"])
              for g in out["groups"]}
    assert groups == {"left.png": ["left_q40.jpg"], "middle.png": ["inside_middle.png"]}
    assert out["redundant_files"] == 2 and out["confirmed_pairs"] == 2
    for g in out["groups"]:
        kept = boxes[g["best"]["path"].rsplit("/", 1)[-1]]
        for m in g["others"]:
            box = boxes[m["path"].rsplit("/", 1)[-1]]
            assert kept[0] <= box[0] and kept[1] <= box[1] and box[2] <= kept[2] and box[3] <= kept[3]
            assert m["similarity"] >= out["threshold"]
    # the slices that overlap without one containing the other are similar shots, none redundant
    shots = [{g["best"]["path"].rsplit("/", 1)[-1], *(m["path"].rsplit("/", 1)[-1] for m in g["others"])}
             for g in out["similar"]]
    assert shots and all(g["kind"] == "similar" and g["redundant_bytes"] == 0 for g in out["similar"])
    assert all(s <= {"left.png", "middle.png", "right.png"} for s in shots)
    assert out["similar_groups"] == len(shots)
    text = invoke("duplicates", "--db", db).output
    assert "similar shots, keep all" in text and "2 redundant files" in text


def test_find_duplicates_reports_progress(tmp_path, packaged_encoder):
    d = tmp_path / "photos"
    d.mkdir()
    crops_of_coffee(d)
    with vsearch.open(tmp_path / "db", model="packaged") as coll:
        coll.index([str(d)], workers=0)
        seen = {"total": None, "done": 0}

        class Recorder:
            def start(self, total):
                seen["total"] = total

            def advance(self, n):
                seen["done"] += n

        report = find_duplicates(coll.catalog, progress=Recorder())
    assert seen["total"] and seen["done"] == seen["total"]
    assert report.checked_pairs <= report.candidate_pairs


def test_duplicates_prints_plain_progress_lines_off_a_terminal(tmp_path, packaged_encoder, monkeypatch):
    from vsearch.commands.library import DuplicatesProgress

    d = tmp_path / "photos"
    d.mkdir()
    crops_of_coffee(d)
    db = tmp_path / "db"
    assert invoke("index", d, "--db", db, "--model", "packaged", "--workers", "0", "-q").exit_code == 0
    monkeypatch.setattr(DuplicatesProgress, "EVERY", 0.0)
    r = invoke("duplicates", "--db", db, "--json")
    assert r.exit_code == 0
    lines = [line for line in r.stderr.splitlines() if line.startswith("finding duplicates:")]
    assert lines and all("steps" in line and "\x1b" not in line for line in lines)
    json.loads(r.stdout)  # stdout stays JSON
    assert "finding duplicates" not in invoke("duplicates", "--db", db, "--json", "-q").stderr


def thin_photo_and_copy(d):
    """A 1 x 8000 strip and the same pixels saved again (other bytes), beside two ordinary photos."""
    rng = np.random.default_rng(5)
    strip = Image.fromarray((rng.random((8000, 1, 3)) * 255).astype(np.uint8))
    strip.save(d / "strip.png")
    strip.save(d / "strip copy.png", compress_level=1)
    for name in ["chelsea", "coffee"]:
        skimage_rgb(name).save(d / f"{name}.jpg", quality=92)


def test_duplicates_with_a_thin_photo_and_its_copy(tmp_path, packaged_encoder):
    d = tmp_path / "photos"
    d.mkdir()
    thin_photo_and_copy(d)
    assert (d / "strip.png").read_bytes() != (d / "strip copy.png").read_bytes()
    db = tmp_path / "db"
    assert invoke("index", d, "--db", db, "--model", "packaged", "--workers", "0", "-q").exit_code == 0
    r = runner.invoke(app, ["duplicates", "--db", str(db), "--json"])
    assert r.exit_code == 0 and r.exception is None, r.output
    out = json.loads(r.stdout)
    assert [sorted([g["best"]["path"].rsplit("/", 1)[-1], *(m["path"].rsplit("/", 1)[-1] for m in g["others"])])
            for g in out["groups"]] == [["strip copy.png", "strip.png"]]


def test_duplicates_route_with_a_thin_photo_and_its_copy(tmp_path, packaged_encoder):
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from vsearch.serve import ServeSettings, create_app

    d = tmp_path / "photos"
    d.mkdir()
    thin_photo_and_copy(d)
    with vsearch.open(tmp_path / "db", model="packaged") as coll:
        coll.index([str(d)], workers=0)
    app_ = create_app(tmp_path / "db", token="t" * 32, settings=ServeSettings(workers=1, index_check_seconds=0.0))
    with TestClient(app_, base_url="http://127.0.0.1") as client:
        r = client.get("/v1/duplicates")
        assert r.status_code == 200, r.text
        [group] = r.json()["groups"]
        assert {group["best"]["name"], group["others"][0]["name"]} == {"strip.png", "strip copy.png"}


def test_keypoint_check_calls_only_what_the_kept_copy_shows_redundant(tmp_path):
    """A re-encode and crops inside the photo are the same picture as it; a zoomed re-shoot, a
    shot with part of the scene moved, and the whole photo against a part of it (it shows more)
    are similar shots."""
    from vsearch.duplicates import DIFFERENT

    photo = skimage_rgb("astronaut")  # 512 x 512
    photo.save(tmp_path / "photo.png")
    photo.save(tmp_path / "reencoded.jpg", quality=40)
    photo.crop((100, 100, 400, 400)).save(tmp_path / "inside.png")
    photo.crop((0, 0, 300, 300)).save(tmp_path / "corner.png")
    photo.crop((150, 0, 512, 512)).save(tmp_path / "right.png")
    photo.crop((64, 64, 448, 448)).resize((512, 512)).save(tmp_path / "zoomed.png")
    moved = photo.copy()
    moved.paste(photo.crop((60, 60, 188, 188)), (80, 70))  # a quarter-size patch moved by 4 %
    moved.save(tmp_path / "burst.png")
    skimage_rgb("coffee").save(tmp_path / "other.png")
    check = GeometricCheck()
    verdict = {name: check.compare(str(tmp_path / "photo.png"), str(tmp_path / name)).verdict
               for name in ["reencoded.jpg", "inside.png", "corner.png", "right.png", "zoomed.png", "burst.png", "other.png"]}
    assert verdict == {"reencoded.jpg": SAME, "inside.png": SAME, "corner.png": SAME, "right.png": SAME,
                       "zoomed.png": SIMILAR, "burst.png": SIMILAR, "other.png": DIFFERENT}
    # the other way round: the right part does not show the whole photo
    assert check.compare(str(tmp_path / "right.png"), str(tmp_path / "photo.png")).verdict == SIMILAR


def test_keypoints_decide_with_a_clip_model_too(tmp_path, tiny_clip_spec):
    """With a CLIP model every photo pair over the threshold is a candidate, and the keypoint check
    (on by default for every model) still keeps slices and other photos out of the groups."""
    d = tmp_path / "photos"
    d.mkdir()
    crops_of_coffee(d)
    skimage_rgb("chelsea").save(d / "chelsea.jpg")
    db = tmp_path / "db"
    assert invoke("index", d, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q").exit_code == 0
    out = json.loads(invoke("duplicates", "--db", db, "--json", "--threshold", "-1").stdout)
    assert out["geometric_check"] is True and out["candidate_pairs"] == 15
    groups = {g["best"]["path"].rsplit("/", 1)[-1]: sorted(m["path"].rsplit("/", 1)[-1] for m in g["others"])
              for g in out["groups"]}
    assert groups == {"left.png": ["left_q40.jpg"], "middle.png": ["inside_middle.png"]}
    unchecked = json.loads(invoke("duplicates", "--db", db, "--json", "--threshold", "-1", "--no-geometric").stdout)
    assert unchecked["geometric_check"] is False and unchecked["redundant_files"] == 5  # one star: all of them


def test_a_pair_the_keypoints_cannot_check_is_similar_never_redundant(tmp_path, tiny_clip_spec, monkeypatch):
    """A blurred or texture-less photo has too few keypoints to check: however close its vector is
    to another photo's, the pair is shown as similar shots (keep all), never as a redundant file."""
    import vsearch.duplicates as dups

    d = tmp_path / "photos"
    d.mkdir()
    skimage_rgb("chelsea").save(d / "chelsea.jpg")
    skimage_rgb("coffee").save(d / "coffee.jpg")
    db = tmp_path / "db"
    assert invoke("index", d, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q").exit_code == 0
    monkeypatch.setattr(dups.GeometricCheck, "compare", lambda self, a, b: None)  # neither can be checked
    monkeypatch.setattr(dups, "UNCHECKABLE_THRESHOLD", -1.0)  # and the vectors call them close
    out = json.loads(invoke("duplicates", "--db", db, "--json", "--threshold", "-1").stdout)
    assert out["redundant_files"] == 0 and out["groups"] == []
    assert sorted(p["path"].rsplit("/", 1)[-1] for g in out["similar"] for p in [g["best"], *g["others"]]) == [
        "chelsea.jpg", "coffee.jpg"]
