"""`Collection.index(..., faces=True)` from Python gives what `vsearch index --faces` gives, and
every `vsearch faces ... --json` keeps a non-ASCII name as it is written."""
import json
import os
import shutil

from typer.testing import CliRunner

import vsearch
from cli import app
from tests.faces.conftest import OBAMA

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _same_run(summary: dict) -> dict:
    """An index summary without its timings."""
    return {k: v for k, v in summary.items() if k not in ("seconds", "images_per_second", "timings")}


def test_collection_index_with_faces_is_what_index_faces_gives(tmp_path, face_images, tiny_clip_spec):
    album = tmp_path / "album"
    album.mkdir()
    for n in OBAMA + ["biden.jpg"]:
        shutil.copy(os.path.join(face_images, n), album / n)
    probe = os.path.join(face_images, "obama_partial_face2.jpg")
    r = run("index", album, "--faces", "--db", tmp_path / "cli", "--model", tiny_clip_spec, "-w", "0", "-q", "--json")
    assert r.exit_code == 0, r.output
    by_cli = json.loads(r.stdout)
    with vsearch.open(tmp_path / "api", model=tiny_clip_spec) as coll:
        summary = coll.index([str(album)], workers=0, faces=True)
        api_hits = [(os.path.basename(h.path), round(h.score, 5)) for h in coll.search(face=probe)]
        again = coll.index([str(album)], workers=0, faces=True)  # the face models are built once per collection
        assert len(coll._extractors) == 1
    assert _same_run(summary.to_json()) == _same_run(by_cli) and summary.added == len(OBAMA) + 1
    assert again.unchanged == len(OBAMA) + 1 and again.revisited == 0
    r = run("search", "--face", probe, "--json", "--db", tmp_path / "cli")
    cli_hits = [(os.path.basename(h["path"]), round(h["score"], 5)) for h in json.loads(r.stdout)]
    assert api_hits == cli_hits and sorted(n for n, _ in api_hits) == sorted(OBAMA)


def test_faces_json_keeps_non_ascii_names(tmp_path, face_images):
    db = tmp_path / "db"
    assert run("faces", "enroll", "Zoë Ñúñez", os.path.join(face_images, "obama.jpg"), "--db", db).exit_code == 0
    r = run("faces", "verify", "Zoë Ñúñez", os.path.join(face_images, "obama3.jpg"), "--json", "--db", db)
    assert r.exit_code == 0 and json.loads(r.stdout)["match"] is True
    r = run("faces", "verify", "Zoé", os.path.join(face_images, "obama3.jpg"), "--json", "--db", db)
    assert r.exit_code == 2 and "Zoé" in r.stdout and "\\u" not in r.stdout  # UTF-8 as is, like print_json
    r = run("faces", "list", "--json", "--db", db)
    assert '"Zoë Ñúñez"' in r.stdout and json.loads(r.stdout)[0]["name"] == "Zoë Ñúñez"
