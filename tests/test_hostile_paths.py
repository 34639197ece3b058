"""Catalogs and caches in bad shape, met through the read-only search path and the catalog: a
folder that cannot be written, a file that is not a database, damaged ONNX graph copies. Each
either answers (a search only reads) or stops with one line naming the file, never a traceback."""
import copy
import io
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app
from tests.conftest import media_records, unit
from vsearch.catalog import Catalog, open_reader
from vsearch.errors import CatalogError
from vsearch.schema import SCHEMA_VERSION

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

runner = CliRunner()


@pytest.fixture
def db(tmp_path):
    """A SQLite catalog of 20 photos (8-d vectors), closed: no -wal or -shm file left."""
    rng = np.random.default_rng(0)
    with Catalog(tmp_path / "db") as cat:
        cat.bind_space("image", "test-model", 8)
        cat.add_media(media_records(20), unit(rng.normal(size=(20, 8))))
    return tmp_path / "db"


@pytest.fixture
def read_only(db):
    """``db`` made read-only as ``chmod -R a-w`` does for its owner; as root (whom modes do not
    stop) the folder is made immutable instead, or the test is skipped."""
    folder = str(db)
    if os.geteuid() != 0:
        os.chmod(folder, 0o500)
        yield db
        os.chmod(folder, 0o700)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", folder], capture_output=True).returncode:
        pytest.skip("cannot make a folder read-only for root here (no chattr)")
    try:
        yield db
    finally:
        subprocess.run(["chattr", "-i", folder], check=True)


def test_a_read_only_catalog_folder_is_still_searched(read_only):
    before = sorted(os.listdir(read_only))
    reader = open_reader(read_only)
    assert reader is not None  # not handed to the catalog, which would need to write
    with reader:
        assert reader.get_meta("schema_version") == str(SCHEMA_VERSION)
        query = reader.vectors("image", reader.vector_ids("image")[:1])[1]
        hits = reader.search(query, k=3)[0]
        assert len(hits) == 3 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert sorted(os.listdir(read_only)) == before


def test_a_read_only_catalog_folder_is_one_line_for_the_catalog(read_only):
    with pytest.raises(CatalogError, match=r"catalog\.sqlite.*read-only"):
        Catalog(read_only, create=False)
    result = runner.invoke(app, ["verify", "--db", str(read_only)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert "read-only" in result.output


@pytest.mark.parametrize("content", [b"not a database at all" * 100, os.urandom(8192)])
def test_a_file_that_is_not_a_database_is_one_line_naming_it(tmp_path, content):
    (tmp_path / "db").mkdir()
    path = tmp_path / "db" / "catalog.sqlite"
    path.write_bytes(content)
    with pytest.raises(CatalogError, match="catalog.sqlite"):
        Catalog(tmp_path / "db", create=False)
    result = runner.invoke(app, ["verify", "--db", str(tmp_path / "db")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert str(path) in result.output.replace("\n", "")
    assert path.read_bytes() == content  # left as it was, for the user to look at


def test_an_image_query_of_a_catalogued_photo_reads_through_the_view(tmp_path):
    """``search --image`` with a photo the catalog holds takes its stored vector through the
    read-only view: no full catalog (which writes) is opened, so a read-only folder answers too."""
    import vsearch

    photo = tmp_path / "photos" / os.fsdecode(b"caf\xe9 " + b"x" * 200 + b".jpg")  # not UTF-8, long
    photo.parent.mkdir()
    photo.write_bytes(b"not decoded: its stored vector is used")
    st = photo.stat()
    rng = np.random.default_rng(1)
    vectors = unit(rng.normal(size=(3, 8)))
    from vsearch.catalog import MediaRecord

    records = [MediaRecord(str(photo), st.st_size, st.st_mtime)] + media_records(2)
    with Catalog(tmp_path / "db") as cat:
        cat.bind_space("image", "test-model", 8)
        cat.add_media(records, vectors)
    with vsearch.open(tmp_path / "db", create=False) as coll:
        assert np.allclose(coll.embed_image_file(str(photo)), vectors[0])
        hits = coll.search(image=str(photo), k=1)
        assert hits[0].path == str(photo) and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert coll._catalog is None  # answered by the read-only view alone


# -- the ONNX cache ------------------------------------------------------------------------------
@pytest.fixture
def tiny_torch(tiny_clip_spec):
    from vsearch.encoders import canonical_spec, load_encoder

    spec = canonical_spec(tiny_clip_spec)
    # a copy: a fallback test marks it with a notice, which the process-wide cached one must not keep
    return spec, copy.copy(load_encoder(spec, runtime="torch"))


def test_an_optimized_graph_copy_is_on_disk_before_it_is_moved_in(tiny_torch, tmp_path, monkeypatch):
    """A copy moved in place before its bytes reach the disk is, after a power cut, a file of the
    right size full of zeros on several file systems: a session would load it and answer wrongly.
    Each file is synced before its rename."""
    import onnxruntime as ort

    from vsearch.encoders.onnx_loader import load_onnx
    from vsearch.encoders.onnx_session import open_session, optimized_dir

    monkeypatch.setenv("VSEARCH_ONNX_CACHE", str(tmp_path / "cache"))
    spec, torch_enc = tiny_torch
    enc = load_onnx(spec, lambda _d: torch_enc)
    shutil.rmtree(optimized_dir(enc.directory, ort.__version__), ignore_errors=True)
    synced, moved = set(), []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        synced.add(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    def replace(src, dst):
        moved.append((os.path.realpath(src), src in synced or os.path.realpath(src) in synced))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    open_session(enc.directory, "text")
    assert moved and all(was_synced for _, was_synced in moved), moved


def test_an_onnx_cache_that_cannot_be_written_falls_back_to_torch_with_one_notice(tiny_torch, tmp_path, monkeypatch,
                                                                                  caplog):
    import logging

    from vsearch.encoders.onnx_loader import load_onnx

    (tmp_path / "file").write_text("a file where the cache folder would go")
    monkeypatch.setenv("VSEARCH_ONNX_CACHE", str(tmp_path / "file" / "onnx"))
    spec, torch_enc = tiny_torch
    with caplog.at_level(logging.WARNING, logger="vsearch"):
        enc = load_onnx(spec, lambda _d: torch_enc)
    assert enc is torch_enc
    assert [r.getMessage() for r in caplog.records if r.name.startswith("vsearch")] == [enc.runtime_notice]
    assert "runtime: torch" in enc.runtime_notice and str(tmp_path / "file") in enc.runtime_notice
    assert len(enc.runtime_notice.splitlines()) == 1


# -- the server ----------------------------------------------------------------------------------
@pytest.fixture
def onnx_catalog(tmp_path, photo_dir, tiny_clip_spec, monkeypatch):
    """Three photos indexed with the tiny CLIP on ONNX Runtime (the runtime a CPU server uses)."""
    import vsearch

    monkeypatch.setenv("VSEARCH_RUNTIME", "onnx")
    monkeypatch.setenv("VSEARCH_ONNX_CACHE", str(tmp_path / "onnx"))
    (tmp_path / "photos").mkdir()
    for name in sorted(os.listdir(photo_dir))[:3]:
        shutil.copy(photo_dir / name, tmp_path / "photos" / name)
    with vsearch.open(tmp_path / "db", model=tiny_clip_spec) as coll:
        coll.index([str(tmp_path / "photos")], workers=0)
    return tmp_path


def _client(db):
    from fastapi.testclient import TestClient

    from vsearch.serve import ServeSettings, create_app

    settings = ServeSettings(workers=1, queue_depth=4, index_check_seconds=0.0, index_level_seconds=3600.0)
    return TestClient(create_app(db, token="t" * 32, settings=settings), base_url="http://127.0.0.1")


def test_the_server_searches_by_an_uploaded_image_on_onnx(onnx_catalog, monkeypatch):
    """In a server process without torch (`vsearch serve` on a CPU, ONNX Runtime), the ONNX
    encoder's pixels are a numpy array, not a tensor."""
    import sys

    photo = sorted((onnx_catalog / "photos").iterdir())[1]
    with _client(onnx_catalog / "db") as c:
        monkeypatch.delitem(sys.modules, "torch")  # as in that process (put back after the test)
        r = c.post("/v1/search", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}, data={"k": "1"})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["path"] == str(photo)


def test_the_server_rebuilds_a_damaged_index_file_from_sql(onnx_catalog):
    index_file = onnx_catalog / "db" / "image.faiss"
    damaged = index_file.read_bytes()[:100]
    index_file.write_bytes(damaged)
    with _client(onnx_catalog / "db") as c:
        r = c.get("/v1/search", params={"q": "a photo", "k": 3})
    assert r.status_code == 200, r.text
    assert len(r.json()["results"]) == 3 and r.json()["photos_in_index"] == 3
    assert index_file.read_bytes() == damaged  # the server writes no index file


def test_a_zero_byte_catalog_file_is_reported_not_silently_made_anew(db):
    """A truncated database (0 bytes) beside an index file of 20 vectors: a search or a check
    says so in one line and leaves the files as they are, rather than answering "no results"
    from fresh empty tables written into it."""
    (db / "catalog.sqlite").write_bytes(b"")
    before = (db / "image.faiss").read_bytes()
    with pytest.raises(CatalogError, match=r"catalog\.sqlite.*empty"):
        Catalog(db, create=False)
    for args in (["verify"], ["tags"]):
        result = runner.invoke(app, [*args, "--db", str(db)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "empty" in result.output
    assert (db / "catalog.sqlite").stat().st_size == 0 and (db / "image.faiss").read_bytes() == before


def test_an_unreachable_database_server_is_one_line_without_the_password(tmp_path):
    (tmp_path / "db").mkdir()
    url = "postgresql+psycopg://vsearch:secret-word@127.0.0.1:1/nothing"  # port 1: nothing listens
    result = runner.invoke(app, ["verify", "--db", str(tmp_path / "db"), "--db-url", url])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "127.0.0.1" in result.output
    assert "secret-word" not in result.output


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_stored_vector_is_found_by_path_size_and_mtime_on_both_databases(tmp_path, backend, request):
    """The read query behind an image query of a catalogued photo: the same on the catalog's two
    databases, for a name that is not UTF-8; a changed size or mtime means "not stored"."""
    from vsearch.catalog import MediaRecord

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    path = "/photos/" + os.fsdecode(b"caf\xe9.jpg")
    vectors = unit(np.random.default_rng(3).normal(size=(3, 8)))
    with Catalog(tmp_path / "db", url=url) as cat:
        cat.bind_space("image", "test-model", 8)
        cat.add_media([MediaRecord(path, 1234, 1_700_000_000.123456)] + media_records(2), vectors)
        assert np.allclose(cat.stored_vector_of_file(path, 1234, 1_700_000_000.123456), vectors[0])
        assert cat.stored_vector_of_file(path, 1235, 1_700_000_000.123456) is None
        assert cat.stored_vector_of_file(path, 1234, 1_700_000_001.0) is None
        assert cat.stored_vector_of_file("/photos/other.jpg", 1234, 1_700_000_000.123456) is None
    if url is None:
        with open_reader(tmp_path / "db") as reader:
            assert np.allclose(reader.stored_vector_of_file(path, 1234, 1_700_000_000.123456), vectors[0])


# -- printing names that are not UTF-8, where stdout is strict UTF-8 (en_US.UTF-8 and the like) ------
def test_search_prints_non_utf8_names_on_a_strict_utf8_stdout(tmp_path, tiny_clip_spec):
    """A terminal or pipe in a UTF-8 locale refuses lone surrogates: search prints, never crashes.
    Piped rows carry the name's own bytes (so `xargs` finds the file); JSON stays valid UTF-8 and
    shows undecodable bytes as \\xNN, as the server does."""
    import json as _json
    import sys

    folder = tmp_path / "odd"
    folder.mkdir()
    Image.new("RGB", (32, 32), "red").save(os.path.join(os.fsencode(folder), b"caf\xe9.png"), format="PNG")
    db = tmp_path / "db"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "VSEARCH_RUNTIME": "torch"}
    run = lambda *a: subprocess.run([sys.executable, "-c", "from cli import app; app()", *map(str, a)],  # noqa: E731
                                    env=env, cwd=str(ROOT), capture_output=True)
    done = run("index", folder, "--db", db, "--model", tiny_clip_spec, "-w", "0", "-q")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-800:]
    rows = run("search", "red", "--db", db, "-k", "1")
    assert rows.returncode == 0 and b"caf\xe9.png" in rows.stdout, rows.stderr.decode(errors="replace")[-800:]
    paths = run("search", "red", "--db", db, "-k", "1", "--paths")
    assert paths.returncode == 0 and os.path.exists(paths.stdout.rstrip(b"\n")), paths.stderr[-800:]
    as_json = run("search", "red", "--db", db, "-k", "1", "--json")
    assert as_json.returncode == 0, as_json.stderr.decode(errors="replace")[-800:]
    hits = _json.loads(as_json.stdout.decode("utf-8"))  # valid UTF-8
    assert hits[0]["path"].endswith("caf\\xe9.png")


@pytest.mark.parametrize("size, box", [((8000, 1), [3000, 0, 5000, 1]), ((1, 8000), [0, 3000, 1, 5000])])
def test_thumbnails_of_a_strip_photo_with_its_box(tmp_path, size, box):
    """A stored strip photo shrinks to a thumbnail under a pixel high (or wide): its region box is
    still drawn, on the page and over HTTP alike."""
    from vsearch.explain import Explanation, explained_thumbnail_jpeg
    from vsearch.report import thumbnail_jpeg

    path = tmp_path / "strip.png"
    Image.new("RGB", size, "white").save(path)
    for jpeg in (thumbnail_jpeg(str(path), 256, box=box),
                 explained_thumbnail_jpeg(str(path), Explanation("region", tuple(box), 0.5))):
        assert Image.open(io.BytesIO(jpeg)).size == tuple(max(1, round(v * 256 / 8000)) for v in size)
