"""The query language wired into search: the Python API, `vsearch search` and GET /v1/search, on
a small real catalog (tiny CLIP, skimage photos with EXIF capture dates written by Pillow)."""
import json
import os
import shutil

import pytest
from typer.testing import CliRunner

import vsearch
from cli import app
from tests.conftest import skimage_rgb

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from vsearch.errors import QueryError  # noqa: E402
from vsearch.serve import ServeSettings, create_app  # noqa: E402

TOKEN = "query-token-" + "z" * 24
# photo -> (sub-folder, file type, EXIF DateTimeOriginal or None)
PHOTOS = {
    "chelsea": ("2019", "jpg", "2019:07:14 10:00:00"),
    "coffee": ("2019", "jpeg", "2019:12:31 23:59:59"),
    "rocket": ("2020", "jpg", "2020:02:29 08:00:00"),
    "astronaut": ("2020", "webp", "2020:03:01 12:00:00"),
    "camera": ("old", "png", None),  # no capture date: dated by its file's time (set to 2018-05-05)
}


def write_photo(path, name, taken):
    img = skimage_rgb(name)
    exif = img.getexif()
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    img.save(path, exif=exif)


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_clip_spec):
    root = tmp_path_factory.mktemp("query")
    for name, (folder, ext, taken) in PHOTOS.items():
        os.makedirs(root / "photos" / folder, exist_ok=True)
        write_photo(root / "photos" / folder / f"{name}.{ext}", name, taken)
    os.utime(root / "photos" / "old" / "camera.png", (1525521600, 1525521600))  # 2018-05-05 12:00 UTC
    with vsearch.open(root / "db", model=tiny_clip_spec) as coll:
        coll.index([str(root / "photos")], workers=0)
    return root


@pytest.fixture(scope="module")
def coll(library, tiny_clip_spec):
    with vsearch.open(library / "db", model=tiny_clip_spec, create=False) as c:
        yield c


def names(hits):
    return [os.path.basename(getattr(h, "path", None) or h["path"]).split(".")[0] for h in hits]


@pytest.mark.parametrize("query, expected", [
    ("year:2019", ["coffee", "chelsea"]),  # newest first
    ("year:2020", ["astronaut", "rocket"]),
    ("-year:2020", ["coffee", "chelsea", "camera"]),
    ("month:2020-02", ["rocket"]),
    ("date:2019-12-31", ["coffee"]),
    ("after:2019-12-31 before:2020-02-29", ["rocket", "coffee"]),  # both ends inclusive
    ("year:2018", ["camera"]),  # the file's time stands in for a missing capture date
    ("type:jpeg", ["rocket", "coffee", "chelsea"]),
    ("type:PNG", ["camera"]),
    ("type:webp", ["astronaut"]),
    ("-type:jpg -type:webp", ["camera"]),
    ("type:raw", []),
])
def test_filters_alone_list_newest_first_without_a_score(coll, query, expected):
    hits = coll.search(query, k=10)
    assert names(hits) == expected
    assert all(h.score == 0.0 for h in hits) and [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_folder_is_a_whole_folder_prefix(coll, library):
    assert set(names(coll.search(f"folder:{library / 'photos' / '2019'}", k=10))) == {"chelsea", "coffee"}
    assert names(coll.search(f"folder:{library / 'photos' / '201'}", k=10)) == []  # not a part of a name
    quoted = coll.search(f'folder:"{library / "photos"}" -folder:{library / "photos" / "2020"}', k=10)
    assert set(names(quoted)) == {"chelsea", "coffee", "camera"}


def test_text_with_filters_ranks_only_photos_that_pass(coll):
    everything = coll.search("a cat", k=10)
    assert len(everything) == 5
    filtered = coll.search("a cat year:2020", k=10)
    assert set(names(filtered)) == {"rocket", "astronaut"} and all(h.score != 0.0 for h in filtered)
    order = [n for n in names(everything) if n in {"rocket", "astronaut"}]
    assert names(filtered) == order  # ranked as the unfiltered search ranks them
    assert len(coll.search("a cat -year:2019", k=2)) == 2  # -k photos that pass, never fewer


@pytest.mark.parametrize("query, says", [
    ("year:20x9", "year"), ("after:yesterday", "after"), ("colour:red", "unknown search key 'colour'"),
    ("place:lisbon", "not supported yet: this catalog stores no places"),
    ("near:38.7,-9.1", "stores no places"), ("camera:pixel", "stores no cameras"), ("cat lens:50mm", "stores no lenses"),
])
def test_bad_or_unsupported_terms_are_query_errors(coll, query, says):
    with pytest.raises(QueryError, match=says):
        coll.search(query)


def test_tags_as_terms_and_as_the_tag_option(library, tiny_clip_spec):
    db = library / "tagged"
    shutil.copytree(library / "db", db)
    with vsearch.open(db, model=tiny_clip_spec, create=False) as c:
        from vsearch.tags import TaggingConfig, tag_collection

        tag_collection(c, TaggingConfig(("cat", "rocket"), ("a photo of {}.",), threshold=0.0, max_tags=1))
        tagged = {label: set(names(c.search(f"tag:{label}", k=10))) for label in ("cat", "rocket")}
        assert tagged["cat"] | tagged["rocket"] == set(PHOTOS) and not tagged["cat"] & tagged["rocket"]
        assert set(names(c.search("x", tags=["cat"], k=10))) == tagged["cat"]  # --tag: the same term
        assert set(names(c.search("x TAG:cat", k=10))) == tagged["cat"]
        assert set(names(c.search("-tag:cat", k=10))) == tagged["rocket"]
        with pytest.raises(QueryError, match='no tag "horse"'):
            c.search("tag:horse")


def test_person_without_faces_is_a_clear_error(coll):
    with pytest.raises(QueryError):
        coll.search("person:anna")


# -- the command line --------------------------------------------------------------------------------
def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_cli_search_takes_the_query_language(library, tiny_clip_spec):
    db = library / "db"
    r = invoke("search", "year:2019", "--db", db, "--model", tiny_clip_spec, "--json")
    assert r.exit_code == 0, r.output
    assert names(json.loads(r.stdout)) == ["coffee", "chelsea"]
    r = invoke("search", "a cat type:jpeg", "--db", db, "--model", tiny_clip_spec, "--paths")
    assert r.exit_code == 0 and {os.path.basename(p) for p in r.stdout.split()} == {"chelsea.jpg", "coffee.jpeg", "rocket.jpg"}
    r = invoke("search", "year:2019", "--db", db, "--model", tiny_clip_spec)
    assert r.exit_code == 0 and "-" in r.stdout and "0.000" not in r.stdout  # no score for a listing


@pytest.mark.parametrize("query, says", [("year:20x9", "year"), ("place:lisbon", "stores no places"),
                                         ("foo:bar", "unknown search key 'foo'")])
def test_cli_bad_query_is_one_line_and_exit_2(library, tiny_clip_spec, query, says):
    r = invoke("search", query, "--db", library / "db", "--model", tiny_clip_spec)
    assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


# -- HTTP ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(library):
    settings = ServeSettings(workers=1, queue_depth=4, index_check_seconds=0.0, index_level_seconds=3600.0)
    with TestClient(create_app(library / "db", token=TOKEN, settings=settings), base_url="http://127.0.0.1") as c:
        yield c


def test_http_search_takes_the_query_language(client):
    r = client.get("/v1/search", params={"q": "year:2020"})
    assert r.status_code == 200, r.text
    assert names(r.json()["results"]) == ["astronaut", "rocket"] and {h["score"] for h in r.json()["results"]} == {0.0}
    r = client.get("/v1/search", params={"q": "a cat -year:2020", "k": 10})
    assert r.status_code == 200 and set(names(r.json()["results"])) == {"chelsea", "coffee", "camera"}


@pytest.mark.parametrize("q, says", [("year:20x9", "year"), ("colour:red", "unknown search key"),
                                     ("camera:pixel", "stores no cameras")])
def test_http_bad_query_is_422(client, q, says):
    r = client.get("/v1/search", params={"q": q})
    assert r.status_code == 422 and says in r.json()["detail"]


def test_http_person_needs_the_token(client):
    r = client.get("/v1/search", params={"q": "person:anna"})
    assert r.status_code == 401
    r = client.get("/v1/search", params={"q": "person:anna"}, headers={"Authorization": "Bearer wrong-" + "w" * 20})
    assert r.status_code == 401
    r = client.get("/v1/search", params={"q": "person:anna"}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code != 401 and r.status_code in (400, 422)  # authorised, but no faces to look in


def test_cli_explain_leaves_the_filters_out_of_the_query(library, tiny_clip_spec):
    r = invoke("search", "a cat year:2019", "--explain", "--json", "--db", library / "db", "--model", tiny_clip_spec)
    assert r.exit_code == 0, r.output
    assert names(json.loads(r.stdout)) and set(names(json.loads(r.stdout))) <= {"chelsea", "coffee"}
    r = invoke("search", "year:2019", "--explain", "--json", "--db", library / "db", "--model", tiny_clip_spec)
    assert r.exit_code == 0, r.output
    assert [h["explain"]["source"] for h in json.loads(r.stdout)] == ["none", "none"]  # nothing to explain by
