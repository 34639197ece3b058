"""`vsearch faces ...` and `vsearch search --face` through typer's CliRunner: exit codes and output."""
import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def db(tmp_path, face_images):
    d = tmp_path / "db"
    r = run("faces", "enroll", "obama", os.path.join(face_images, "obama.jpg"), "--db", d)
    assert r.exit_code == 0 and "enrolled obama: 1 template(s)" in r.output
    return d


def test_verify_exit_codes_and_json(db, face_images, other_people, tmp_path):
    r = run("faces", "verify", "obama", os.path.join(face_images, "obama3.jpg"), "--json", "--db", db)
    assert r.exit_code == 0
    out = json.loads(r.stdout)
    assert {"match", "score", "threshold", "far_estimate", "face_box", "latency_ms"} <= set(out)
    assert out["match"] is True and out["threshold"] == 0.915 and out["far_estimate"] is None
    r = run("faces", "verify", "obama", other_people["hopper"], "--db", db)
    assert r.exit_code == 1 and "NO MATCH" in r.output
    r = run("faces", "verify", "nobody", os.path.join(face_images, "obama3.jpg"), "--json", "--db", db)
    assert r.exit_code == 2 and "not enrolled" in json.loads(r.stdout)["error"]
    from skimage import data
    from PIL import Image

    Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg")
    r = run("faces", "verify", "obama", tmp_path / "coffee.jpg", "--db", db)
    assert r.exit_code == 2 and "no face found" in r.output
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    r = run("faces", "verify", "obama", tmp_path / "corrupt.jpg", "--db", db)
    assert r.exit_code == 2 and "error" in r.output
    r = run("faces", "verify", "obama", tmp_path / "missing.jpg", "--db", db)
    assert r.exit_code == 2 and f"not found: {tmp_path / 'missing.jpg'}" in r.output
    r = run("faces", "verify", "obama", tmp_path, "--json", "--db", db)
    assert r.exit_code == 2 and json.loads(r.stdout) == {"error": f"is a folder: {tmp_path}"}


def test_enroll_refusal_list_remove_identify(db, face_images, tmp_path):
    from skimage import data
    from PIL import Image

    Image.fromarray(data.rocket()).save(tmp_path / "rocket.jpg")
    r = run("faces", "enroll", "biden", os.path.join(face_images, "biden.jpg"), tmp_path / "rocket.jpg", "--db", db)
    assert r.exit_code == 2 and "rocket.jpg: no face found" in r.output and "Nothing was enrolled" in r.output
    r = run("faces", "enroll", "biden", os.path.join(face_images, "biden.jpg"), "--db", db)
    assert r.exit_code == 0
    r = run("faces", "list", "--json", "--db", db)
    assert [p["name"] for p in json.loads(r.stdout)] == ["biden", "obama"]
    r = run("faces", "identify", os.path.join(face_images, "obama2.jpg"), "-k", "2", "--json", "--db", db)
    (face,) = json.loads(r.stdout)
    assert r.exit_code == 0 and face["name"] == "obama" and len(face["candidates"]) == 2
    # no face: --json still prints one JSON object, as verify does
    r = run("faces", "identify", tmp_path / "rocket.jpg", "--json", "--db", db)
    assert r.exit_code == 2 and "no face found" in json.loads(r.stdout)["error"]
    r = run("faces", "identify", tmp_path / "missing.jpg", "--json", "--db", db)
    assert r.exit_code == 2 and json.loads(r.stdout) == {"error": f"not found: {tmp_path / 'missing.jpg'}"}
    r = run("faces", "remove", "obama", "--db", db)
    assert r.exit_code == 0 and "removed obama (1 template(s))" in r.output
    r = run("faces", "remove", "obama", "--db", db)
    assert r.exit_code == 2
    r = run("verify", "--db", db)
    assert r.exit_code == 0 and "face_enrolled: ok — 1 in database, 1 in index file" in r.output


def test_calibrate_writes_plot_and_verify_reports_far(identity_folder, face_images, tmp_path):
    d = tmp_path / "db"
    png = tmp_path / "roc.png"
    r = run("faces", "calibrate", identity_folder, "--target-far", "0.1", "--plot", png, "--db", d)
    assert r.exit_code == 0, r.output
    assert "10 genuine and 18 impostor pairs" in r.output and "ROC AUC 1.0000" in r.output
    assert "TAR at FAR 0.01: n/a" in r.output and "(empirical) — stored" in r.output
    assert "at it: TAR 100.00%, 1 of 18 impostor pairs accepted, FAR at most 0.238" in r.stdout
    assert "resampling the 4 people (1000 draws)" in r.stdout
    assert "warning: only 4 people" in r.output and "WARNING: the calibrated threshold" in r.output
    r = run("faces", "calibrate", identity_folder, "--target-far", "0.1", "--plot", png, "--db", d, "--json",
            "--dry-run")
    rep = json.loads(r.stdout)
    assert rep["far_basis"] == {"method": "clopper-pearson upper bound", "confidence": 0.95, "false_accepts": 1,
                                "impostor_pairs": 18, "identities": 4}
    assert rep["far_estimate"] == pytest.approx(0.2377, abs=1e-4) and rep["tar_at_threshold"] == 1.0
    assert rep["looser_than_default"] and rep["bootstrap"]["resampled"] == "identities"
    assert rep["extrapolated"]["0.01"]["method"] == "normal-tail extrapolation"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run("faces", "enroll", "obama", os.path.join(face_images, "obama.jpg"), "--db", d)
    out = json.loads(run("faces", "verify", "obama", os.path.join(face_images, "obama2.jpg"), "--json", "--db", d).stdout)
    # FAR 0.1 from 18 impostor pairs: 0 accepted at obama2's score, so 0 of 18, bounded at about 0.15
    assert out["match"] and out["threshold"] < 0.915
    assert out["far_estimate"] == pytest.approx(1 - 0.05 ** (1 / 18), rel=1e-4)
    assert out["far_basis"] == {"method": "clopper-pearson upper bound", "confidence": 0.95, "false_accepts": 0,
                                "impostor_pairs": 18, "identities": 4}


def test_index_faces_search_face_cluster_name(tmp_path, face_images, tiny_clip_spec):
    album = tmp_path / ("album-with-a-long-name-so-that-paths-pass-80-columns-" + "x" * 40)  # piped: no wrapping
    album.mkdir()
    for n in ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]:
        shutil.copy(os.path.join(face_images, n), album / n)
    d = tmp_path / "db"
    r = run("index", album, "--faces", "--db", d, "--model", tiny_clip_spec, "-w", "0", "-q")
    assert r.exit_code == 0, r.output
    r = run("search", "--face", os.path.join(face_images, "obama_partial_face2.jpg"), "--json", "--db", d)
    assert r.exit_code == 0, r.output
    assert sorted(os.path.basename(h["path"]) for h in json.loads(r.stdout)) == ["obama.jpg", "obama2.jpg", "obama3.jpg"]
    r = run("search", "a cat", "--face", os.path.join(face_images, "obama.jpg"), "--db", d)
    assert r.exit_code == 2 and "does not combine" in r.output
    import vsearch  # the Python API answers the same question the same way

    coll = vsearch.open(str(d))
    try:
        hits = coll.search(face=os.path.join(face_images, "obama_partial_face2.jpg"))
    finally:
        coll.close()
    assert sorted(os.path.basename(h.path) for h in hits) == ["obama.jpg", "obama2.jpg", "obama3.jpg"]
    r = run("faces", "cluster", "--db", d)
    assert r.exit_code == 0 and "cluster 2" not in r.output
    (line,) = [ln for ln in r.stdout.splitlines() if ln.startswith("cluster 1: 3 face(s)")]
    assert all(str(album / n) in line for n in ["obama.jpg", "obama2.jpg", "obama3.jpg"])
    r = run("faces", "cluster", "--json", "--db", d)
    assert r.exit_code == 0 and json.loads(r.stdout) == [
        {"cluster": 1, "size": 3, "photos": [str(album / n) for n in ["obama.jpg", "obama2.jpg", "obama3.jpg"]],
         "person": None, "score": None}]
    r = run("faces", "name", "1", "obama", "--db", d)
    assert r.exit_code == 0 and "3 template(s) from cluster 1" in r.output
    r = run("faces", "verify", "obama", os.path.join(face_images, "obama_partial_face.jpg"), "--db", d)
    assert r.exit_code == 0
    r = run("faces", "name", "7", "x", "--db", d)
    assert r.exit_code == 2 and "no cluster 7" in r.output


def test_face_results_carry_what_list_identify_and_cluster_json_print(db, face_images, tmp_path, tiny_clip_spec):
    from vsearch.catalog import Catalog
    from vsearch.faces.service import FaceService

    album = tmp_path / "album"
    album.mkdir()
    for n in ["obama2.jpg", "obama3.jpg", "biden.jpg"]:
        shutil.copy(os.path.join(face_images, n), album / n)
    assert run("faces", "enroll", "biden", os.path.join(face_images, "biden.jpg"), "--db", db).exit_code == 0
    assert run("index", album, "--faces", "--db", db, "--model", tiny_clip_spec, "-w", "0", "-q").exit_code == 0
    listed = run("faces", "list", "--json", "--db", db)
    identified = run("faces", "identify", os.path.join(face_images, "obama.jpg"), "-k", "2", "--json", "--db", db)
    clustered = run("faces", "cluster", "--json", "--db", db)
    assert listed.exit_code == identified.exit_code == clustered.exit_code == 0
    catalog = Catalog(db, create=False)
    try:
        svc = FaceService(catalog)
        people, found, groups = svc.people(), svc.identify(os.path.join(face_images, "obama.jpg"), k=2), svc.cluster()
    finally:
        catalog.close()
    assert [p.to_json() for p in people] == json.loads(listed.stdout)
    assert [f.to_json() for f in found] == json.loads(identified.stdout)
    assert found[0].name == "obama" and [c.name for c in found[0].candidates] == ["obama", "biden"]
    assert [g.to_json() for g in groups] == json.loads(clustered.stdout)
    assert groups[0].photos == [str(album / "obama2.jpg"), str(album / "obama3.jpg")]


def test_enroll_remove_name_print_json_and_groups_of_enrolled_people(db, face_images, tmp_path, tiny_clip_spec):
    obama = os.path.join(face_images, "obama.jpg")
    r = run("faces", "enroll", "obama", obama, os.path.join(face_images, "obama2.jpg"), "--json", "--db", db)
    assert r.exit_code == 0 and json.loads(r.stdout) == {
        "name": "obama", "added": 1, "templates": 2, "created": False, "already_enrolled": [obama]}
    r = run("faces", "enroll", "obama", obama, "--db", db)
    assert r.exit_code == 0 and "already enrolled as obama, skipped" in r.output and "nothing added" in r.output
    r = run("faces", "enroll", "barack", obama, "--json", "--db", db)
    assert r.exit_code == 2 and "already enrolled as obama" in json.loads(r.stdout)["error"]
    album = tmp_path / "album"
    album.mkdir()
    for n in ["obama2.jpg", "obama3.jpg", "biden.jpg"]:
        shutil.copy(os.path.join(face_images, n), album / n)
    assert run("index", album, "--faces", "--db", db, "--model", tiny_clip_spec, "-w", "0", "-q").exit_code == 0
    r = run("faces", "list", "--db", db)
    assert "obama\t2 template(s)\tin 2 photo(s) of the collection" in r.stdout
    r = run("faces", "cluster", "--db", db)  # piped: progress as plain lines on stderr
    assert r.exit_code == 0 and "grouping faces: 3/3" in r.stderr
    assert "cluster 1: 2 face(s) of obama (enrolled, " in r.stdout
    r = run("faces", "name", "1", "barack", "--json", "--db", db)
    body = json.loads(r.stdout)
    assert r.exit_code == 2 and body["looks_like"]["name"] == "obama" and "looks like obama" in body["error"]
    r = run("faces", "name", "1", "obama", "--json", "--db", db)
    assert r.exit_code == 0 and json.loads(r.stdout) == {
        "name": "obama", "added": 2, "templates": 4, "created": False, "already_enrolled": []}
    r = run("faces", "remove", "obama", "--json", "--db", db)
    assert r.exit_code == 0 and json.loads(r.stdout) == {"name": "obama", "removed_templates": 4}
    r = run("faces", "remove", "obama", "--json", "--db", db)
    assert r.exit_code == 2 and "not enrolled" in json.loads(r.stdout)["error"]


def test_calibrate_shows_progress(identity_folder, tmp_path):
    r = run("faces", "calibrate", identity_folder, "--dry-run", "--plot", tmp_path / "roc.png", "--db", tmp_path / "db")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("embedding faces: ")]
    assert lines[0] == "embedding faces: 0/8" and lines[-1] == "embedding faces: 8/8"
