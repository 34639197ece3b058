"""The catalog on a real PostgreSQL server (set VSEARCH_TEST_PG_URL; `scripts/start_postgres.sh`
starts one and prints the URL). Skipped when no server URL is given."""
import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner
from tests.conftest import unit as _unit

PG_URL = os.environ.get("VSEARCH_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="no PostgreSQL: set VSEARCH_TEST_PG_URL")


def test_catalog_roundtrip_and_crash_recovery(pg_url, tmp_path):
    from vsearch.catalog import Catalog, MediaRecord

    cat = Catalog(tmp_path / "idx", url=pg_url)
    cat.bind_space("image", "m", 8)
    vecs = _unit(np.random.default_rng(0).normal(size=(6, 8)))
    recs = [MediaRecord(f"/p/{n}.jpg", 1, 1.0, f"{i:064x}") for i, n in enumerate(["a", "b", "c_1", "d%", "e", "f"])]
    ids = cat.add_media(recs[:3], vecs[:3])
    cat.save()
    cat.add_media(recs[3:], vecs[3:])  # committed, index file not saved
    cat.engine.dispose()
    again = Catalog(tmp_path / "idx", url=pg_url)
    assert not again.verify()[0].ok
    assert again.search(vecs[4:5], k=1)[0][0].path == "/p/e.jpg"
    again.remove_media(ids[:1])
    again.save()
    report = again.verify()[0]
    assert report.ok and report.sql_count == 5
    # prefix matching is exact: LIKE wildcards in paths are escaped, case matters
    assert set(again.media_under(["/p"])) == {"/p/b.jpg", "/p/c_1.jpg", "/p/d%.jpg", "/p/e.jpg", "/p/f.jpg"}
    assert again.media_under(["/P"]) == {}
    again.engine.dispose()


def test_cli_index_search_tag_on_postgres(pg_url, photos, tmp_path, tiny_clip_spec):
    from cli import app

    runner = CliRunner()

    def invoke(*a):
        return runner.invoke(app, [str(x) for x in a], catch_exceptions=False)

    db = tmp_path / "idx"
    r = invoke("index", photos, "--db", db, "--db-url", pg_url, "--model", tiny_clip_spec, "--workers", "0", "-q")
    assert r.exit_code == 0 and "added 10" in r.output, r.output
    r = invoke("search", "--image", photos / "coins.jpg", "--db", db, "--db-url", pg_url, "--json", "-k", "1")
    assert json.loads(r.stdout)[0]["path"].endswith("coins.jpg")
    (photos / "coins.jpg").unlink()
    r = invoke("index", photos, "--db", db, "--db-url", pg_url, "-q", "--workers", "0")
    assert "removed 1" in r.output
    assert invoke("verify", "--db", db, "--db-url", pg_url).exit_code == 0


def test_regions_index_search_and_new_settings_on_postgres(pg_url, photos, tmp_path, tiny_clip_spec):
    from cli import app

    runner = CliRunner()

    def invoke(*a):
        r = runner.invoke(app, [str(x) for x in a], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r

    for name in os.listdir(photos):  # three photos are enough
        if name not in ("coffee.jpg", "rocket.jpg", "coins.jpg"):
            os.unlink(photos / name)
    db, url = tmp_path / "idx", ("--db-url", pg_url)
    invoke("index", photos, "--db", db, *url, "--model", tiny_clip_spec, "--workers", "0", "-q",
           "--regions", "proposals", "--max-regions", "3")
    hits = json.loads(invoke("search", "a cup", "--regions", "--db", db, *url, "--json", "-k", "3").stdout)
    assert len(hits) == 3 and all(len(h["box"]) == 4 for h in hits)
    # other settings: the stale regions go in the same transaction that finds them
    out = invoke("index", photos, "--db", db, *url, "--workers", "0", "--regions", "proposals", "--max-regions", "2").output
    assert "revisited 3" in out
    assert invoke("verify", "--db", db, *url).exit_code == 0


def test_read_queries_on_postgres_answer_as_sqlite3_does(pg_url, tmp_path):
    """The catalog's plain-SQL reads through SQLAlchemy on PostgreSQL give what the read-only view
    gives through sqlite3 on a SQLite catalog holding the same rows."""
    from vsearch.catalog import Catalog, MediaRecord, open_reader

    rng = np.random.default_rng(1)
    vecs, extra = _unit(rng.normal(size=(30, 8))), _unit(rng.normal(size=(4, 4)))
    recs = [MediaRecord(f"/p/{'caf' + chr(0xDCE9) if i == 2 else i}.jpg", 1, 1.0) for i in range(30)]
    for where in ("pg", "lite"):
        with Catalog(tmp_path / where, url=pg_url if where == "pg" else None) as cat:
            cat.bind_space("image", "m", 8)
            cat.bind_space("extra", "x", 4)
            media = cat.add_media(recs, vecs)
            cat.add_vectors("extra", extra, media[:4])
    pg = Catalog(tmp_path / "pg", url=pg_url, create=False)
    lite = open_reader(tmp_path / "lite")
    try:
        assert pg.spaces() == lite.spaces() == ["extra", "image"]
        assert pg.space_model("extra") == lite.space_model("extra") == ("x", 4)
        assert pg.get_meta("schema_version") == lite.get_meta("schema_version")
        assert len(pg.vector_ids("image")) == len(lite.vector_ids("image")) == 30
        strip = lambda hits: [[(h.path, round(h.score, 5), h.rank) for h in q] for q in hits]  # noqa: E731
        assert strip(pg.search(vecs[:3], k=10)) == strip(lite.search(vecs[:3], k=10))
        assert any(h.path == "/p/caf\udce9.jpg" for h in pg.search(vecs[2:3], k=1)[0])
        ids = np.array([[*pg.vector_ids("image").tolist(), *range(10_000, 11_000), -1]], dtype=np.int64)
        assert len(pg.hits(np.ones(ids.shape, np.float32), ids)[0]) == 30  # IN lists past 900 ids
    finally:
        lite.close()
        pg.engine.dispose()
