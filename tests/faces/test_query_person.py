"""`person:` in the query language: the photos of an enrolled person, through the Python API, the
command line and HTTP (the bearer token guards it there)."""
import json
import os
import shutil

import pytest
from typer.testing import CliRunner

import vsearch
from cli import app
from vsearch.errors import QueryError

TOKEN = "person-token-" + "p" * 24


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def album_db(tmp_path_factory, face_images, other_people, tiny_clip_spec):
    root = tmp_path_factory.mktemp("person")
    album = root / "album"
    album.mkdir()
    for n in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        shutil.copy(os.path.join(face_images, n), album / n)
    shutil.copy(other_people["collins"], album / "collins.jpg")
    db = root / "db"
    r = run("index", album, "--faces", "--db", db, "--model", tiny_clip_spec, "-w", "0", "-q")
    assert r.exit_code == 0, r.output
    for name, photo in (("obama", os.path.join(face_images, "obama3.jpg")), ("collins", other_people["collins"])):
        r = run("faces", "enroll", name, photo, "--db", db)
        assert r.exit_code == 0, r.output
    return db


def names(hits):
    return sorted(os.path.basename(getattr(h, "path", None) or h["path"]) for h in hits)


def test_person_terms_in_the_python_api(album_db, tiny_clip_spec):
    with vsearch.open(album_db, model=tiny_clip_spec, create=False) as coll:
        assert names(coll.search("person:obama", k=10)) == ["obama.jpg", "obama2.jpg"]
        assert names(coll.search("person:Collins", k=10)) == ["collins.jpg"]  # a name in any case
        assert names(coll.search("-person:obama", k=10)) == ["biden.jpg", "collins.jpg"]
        assert names(coll.search("person:obama person:collins", k=10)) == []  # all of them in one photo
        ranked = coll.search("a man in a suit person:obama", k=10)
        assert names(ranked) == ["obama.jpg", "obama2.jpg"] and all(h.score != 0.0 for h in ranked)
        with pytest.raises(QueryError, match="person:nobody: no one of that name is enrolled"):
            coll.search("person:nobody")


def test_person_on_the_command_line(album_db, tiny_clip_spec):
    r = run("search", "person:obama", "--db", album_db, "--model", tiny_clip_spec, "--json")
    assert r.exit_code == 0, r.output
    assert names(json.loads(r.stdout)) == ["obama.jpg", "obama2.jpg"]
    r = run("search", "person:nobody", "--db", album_db, "--model", tiny_clip_spec)
    assert r.exit_code == 2 and "no one of that name is enrolled" in r.output


def test_person_over_http_needs_the_token(album_db):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vsearch.serve import ServeSettings, create_app

    settings = ServeSettings(workers=1, queue_depth=4, index_check_seconds=0.0, index_level_seconds=3600.0)
    with TestClient(create_app(album_db, token=TOKEN, settings=settings, faces=True), base_url="http://127.0.0.1") as c:
        assert c.get("/v1/search", params={"q": "person:obama"}).status_code == 401
        r = c.get("/v1/search", params={"q": "person:obama"}, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200, r.text
        assert names(r.json()["results"]) == ["obama.jpg", "obama2.jpg"]
        assert c.get("/v1/search", params={"q": "-year:1990"}).status_code == 200  # other keys need no token
