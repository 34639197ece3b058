"""The catalog's read-only view (sqlite3) against the catalog itself (SQLAlchemy): the same read
queries through two drivers give the same answers; the view levels a lagging index in memory,
writes nothing, and leaves catalogs of another schema version to the catalog."""
import os
import subprocess
import sys

import numpy as np
import pytest

import vsearch
from tests.conftest import unit as _unit
from vsearch.catalog import Catalog, MediaRecord, open_reader
from vsearch.catalog.queries import QUERIES_SCHEMA_VERSION
from vsearch.catalog.reader import CatalogReader
from vsearch.errors import CatalogError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _records(n, start=0):
    # one name that is not valid UTF-8 (stored as private-use characters, read back as surrogates)
    names = [f"{i}.jpg" if i != 3 else "caf\udce9.jpg" for i in range(start, start + n)]
    return [MediaRecord(f"/photos/{name}", 100 + i, 1.0 + i) for i, name in zip(range(start, start + n), names)]


@pytest.fixture
def db(tmp_path):
    """A SQLite catalog of 40 photos in two spaces (8-d image vectors, 4-d extra vectors), saved."""
    rng = np.random.default_rng(0)
    with Catalog(tmp_path / "db") as cat:
        cat.bind_space("image", "test-model", 8)
        cat.bind_space("extra", "other-model", 4)
        media = cat.add_media(_records(40), _unit(rng.normal(size=(40, 8))))
        cat.add_vectors("extra", _unit(rng.normal(size=(5, 4))), media[:5])
    return tmp_path / "db"


def test_both_drivers_give_the_same_answers(db):
    queries = _unit(np.random.default_rng(1).normal(size=(3, 8)))
    cat = Catalog(db, create=False)
    reader = open_reader(db)
    try:
        assert isinstance(reader, CatalogReader)
        for key in ("schema_version", "space.image.encoder", "space.extra.dim", "no.such.key"):
            assert reader.get_meta(key) == cat.get_meta(key)
        assert reader.spaces() == cat.spaces() == ["extra", "image"]
        assert reader.space_model("image") == cat.space_model("image") == ("test-model", 8)
        assert reader.space_model("nothing") is None
        for space in ("image", "extra"):
            assert sorted(reader.vector_ids(space).tolist()) == sorted(cat.vector_ids(space).tolist())
        wanted = cat.vector_ids("image")[::3]
        (ids_a, vec_a), (ids_b, vec_b) = reader.vectors("image", wanted), cat.vectors("image", wanted)
        assert np.array_equal(ids_a[np.argsort(ids_a)], ids_b[np.argsort(ids_b)])
        assert np.array_equal(vec_a[np.argsort(ids_a)], vec_b[np.argsort(ids_b)])
        hits_reader, hits_catalog = reader.search(queries, k=7), cat.search(queries, k=7)
        assert hits_reader == hits_catalog and len(hits_reader[0]) == 7
        assert any(h.path == "/photos/caf\udce9.jpg" for h in reader.search(queries, k=40)[0])
        # more ids than one IN list holds, unknown and empty (-1) slots skipped alike
        ids = np.array([[*range(1, 1000), 10_000_000, -1]], dtype=np.int64)
        scores = np.linspace(1, 0, ids.shape[1], dtype=np.float32)[None]
        assert reader.hits(scores, ids) == cat.hits(scores, ids)
        assert len(reader.hits(scores, ids)[0]) == 45
    finally:
        reader.close()
        cat.engine.dispose()


def test_reader_levels_a_lagging_index_in_memory_and_writes_nothing(db):
    rng = np.random.default_rng(2)
    new = _unit(rng.normal(size=(4, 8)))
    cat = Catalog(db, create=False)
    cat.add_media(_records(4, start=100), new)  # committed; the index file is not saved: "crash"
    gone = cat.media_at(["/photos/7.jpg"])["/photos/7.jpg"].id
    cat.remove_media([gone])
    cat.engine.dispose()
    index_file = db / "image.faiss"
    before = (index_file.stat().st_mtime_ns, index_file.read_bytes())
    files_before = sorted(os.listdir(db))

    with open_reader(db) as reader:
        hits = reader.search(new[2:3], k=1)[0]
        assert hits[0].path == "/photos/102.jpg" and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert sorted(reader.index("image").ids().tolist()) == sorted(reader.vector_ids("image").tolist())
        assert all(h.media_id != gone for h in reader.search(new, k=50)[0])
    assert (index_file.stat().st_mtime_ns, index_file.read_bytes()) == before  # levelled in memory only
    assert sorted(n for n in os.listdir(db) if not n.endswith(("-wal", "-shm"))) == \
        sorted(n for n in files_before if not n.endswith(("-wal", "-shm")))


def test_reader_refuses_to_write(db):
    with open_reader(db) as reader:
        with pytest.raises(CatalogError, match="readonly|read-only|query_only|attempt to write"):
            reader._sql.rows("DELETE FROM media")
        assert len(reader.vector_ids("image")) == 40


def test_reader_rebuilds_an_index_with_an_id_stored_twice(db):
    from vsearch.vector_index import VectorIndex

    vindex = VectorIndex.load(str(db / "image.faiss"), 8)
    ids = vindex.ids()
    vindex.add(np.stack([vindex.reconstruct(int(i)) for i in ids[:2]]), ids[:2])
    assert len(vindex) == 42
    vindex.save(str(db / "image.faiss"))
    with open_reader(db) as reader:
        assert sorted(reader.index("image").ids().tolist()) == sorted(reader.vector_ids("image").tolist())


def test_other_schema_versions_go_to_the_catalog(db):
    assert QUERIES_SCHEMA_VERSION == __import__("vsearch.schema").schema.SCHEMA_VERSION, (
        "the core schema changed: check the plain-SQL queries of vsearch/catalog/queries.py against it, "
        "then update QUERIES_SCHEMA_VERSION")
    with Catalog(db, create=False) as cat:
        cat.set_meta("schema_version", str(QUERIES_SCHEMA_VERSION + 1))
    assert open_reader(db) is None
    with pytest.raises(CatalogError, match="newer than this vsearch"):  # the catalog's own refusal
        vsearch.open(db, create=False)


def test_missing_catalog_is_one_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="no catalog at .*vsearch index"):
        vsearch.open(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()


def test_collection_reads_through_the_view_until_the_catalog_is_needed(db):
    query = _unit(np.random.default_rng(3).normal(size=(1, 8)))[0]
    with Catalog(db, create=False) as cat:
        expected = cat.search(query[None], k=5)[0]
    coll = vsearch.open(db, create=False)
    try:
        assert coll._catalog is None and isinstance(coll._reads, CatalogReader)
        from vsearch.search import top_media

        assert top_media(coll._searcher(), coll._reads, query, 5, distinct=False) == expected
        rng = np.random.default_rng(4)
        added = _unit(rng.normal(size=(1, 8)))
        coll.catalog.add_media(_records(1, start=500), added)  # the full catalog opens here
        assert coll._reader is None and coll._reads is coll.catalog
        assert top_media(coll._searcher(), coll._reads, added[0], 1, distinct=False)[0].path == "/photos/500.jpg"
    finally:
        coll.close()
    with open_reader(db) as reader:  # saved by the catalog on close
        assert len(reader.index("image")) == 41


def test_text_query_process_imports_no_sqlalchemy(db):
    """The read-only path in a process of its own: no SQLAlchemy, the same hits."""
    query = _unit(np.random.default_rng(5).normal(size=(1, 8)))
    with Catalog(db, create=False) as cat:
        expected = [h.path for h in cat.search(query, k=3)[0]]
    script = ("import sys, json, numpy as np, vsearch\n"
              "from vsearch.search import top_media\n"
              "with vsearch.open(sys.argv[1], create=False) as coll:\n"
              "    q = np.array(json.loads(sys.argv[2]), dtype=np.float32)\n"
              "    hits = top_media(coll._searcher(), coll._reads, q, 3, distinct=False)\n"
              "print(json.dumps({'paths': [h.path for h in hits], 'sqlalchemy': 'sqlalchemy' in sys.modules}))\n")
    import json

    done = subprocess.run([sys.executable, "-c", script, str(db), json.dumps(query[0].tolist())],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"paths": expected, "sqlalchemy": False}


def test_a_file_that_is_no_catalog_goes_to_the_catalog(tmp_path):
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "catalog.sqlite").write_bytes(b"not a database at all" * 100)
    assert open_reader(tmp_path / "db") is None
    with pytest.raises(Exception) as by_catalog:
        Catalog(tmp_path / "db", create=False)
    with pytest.raises(type(by_catalog.value)):  # the catalog's own error, as before the read-only view
        vsearch.open(tmp_path / "db", create=False)
