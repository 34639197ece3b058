import numpy as np
import pytest
from sqlalchemy import text

from tests.conftest import media_records as _records, unit as _unit
from vsearch.catalog import Catalog, MediaRecord
from vsearch.errors import CatalogError, ModelMismatchError


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "test-model", 8)
    yield cat
    cat.engine.dispose()


def test_db_ids_are_faiss_ids_and_search_matches_numpy(catalog):
    vecs = _unit(np.random.default_rng(0).normal(size=(20, 8)))
    media_ids = catalog.add_media(_records(20), vecs)
    q = vecs[7:8]
    hits = catalog.search(q, k=5)[0]
    assert hits[0].media_id == media_ids[7] and hits[0].path == "/photos/7.jpg"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    order = np.argsort(-(vecs @ q[0]))[:5]
    assert [h.media_id for h in hits] == [media_ids[i] for i in order]
    assert sorted(catalog.index("image").ids().tolist()) == sorted(catalog._sql_ids("image").tolist())


def test_crash_before_save_is_recovered_on_open(tmp_path):
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", 8)
    vecs = _unit(np.random.default_rng(1).normal(size=(10, 8)))
    cat.add_media(_records(5), vecs[:5])
    cat.save()
    cat.add_media(_records(5, start=5), vecs[5:])  # committed to SQL, index file not written: "crash"
    cat.engine.dispose()

    again = Catalog(tmp_path / "db")
    report = again.verify()[0]
    assert not report.ok and len(report.missing_from_index) == 5
    hits = again.search(vecs[9:10], k=1)[0]  # opening the index brings it level with SQL
    assert hits[0].path == "/photos/9.jpg"
    again.save()
    assert again.verify()[0].ok


def test_index_file_with_ids_the_db_lacks_is_repaired(tmp_path):
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", 8)
    vecs = _unit(np.random.default_rng(2).normal(size=(6, 8)))
    ids = cat.add_media(_records(6), vecs)
    cat.save()
    with cat.engine.begin() as conn:  # rows lost behind the index's back
        conn.execute(text("DELETE FROM vectors WHERE media_id = :m"), {"m": ids[0]})
    cat.engine.dispose()
    again = Catalog(tmp_path / "db")
    assert len(again.verify()[0].extra_in_index) == 1
    again.repair()
    assert again.verify()[0].ok
    assert all(h.media_id != ids[0] for h in again.search(vecs[0:1], k=6)[0])


def test_unreadable_index_file_is_rebuilt_from_sql(tmp_path):
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", 8)
    vecs = _unit(np.random.default_rng(3).normal(size=(4, 8)))
    cat.add_media(_records(4), vecs)
    cat.save()
    (tmp_path / "db" / "image.faiss").write_bytes(b"garbage")
    cat.engine.dispose()
    again = Catalog(tmp_path / "db")
    assert again.search(vecs[2:3], k=1)[0][0].path == "/photos/2.jpg"


def test_model_mismatch_is_refused(catalog):
    with pytest.raises(ModelMismatchError, match="test-model"):
        catalog.bind_space("image", "other-model", 8)


def test_newer_schema_is_refused(tmp_path):
    cat = Catalog(tmp_path / "db")
    with cat.engine.begin() as conn:
        conn.execute(text("UPDATE meta SET value='999' WHERE key='schema_version'"))
    cat.engine.dispose()
    with pytest.raises(CatalogError, match="newer"):
        Catalog(tmp_path / "db")


def test_missing_catalog_without_create(tmp_path):
    with pytest.raises(CatalogError, match="vsearch index"):
        Catalog(tmp_path / "nothing", create=False)


def test_remove_media_removes_vectors_from_sql_and_index(catalog):
    vecs = _unit(np.random.default_rng(5).normal(size=(5, 8)))
    ids = catalog.add_media(_records(5), vecs)
    catalog.remove_media(ids[:2])
    assert len(catalog.index("image")) == 3
    assert len(catalog._sql_ids("image")) == 3
    catalog.save()
    assert catalog.verify()[0].ok


def test_reindexed_path_replaces_its_vector(catalog):
    vecs = _unit(np.random.default_rng(6).normal(size=(2, 8)))
    [mid] = catalog.add_media(_records(1), vecs[:1])
    [mid2] = catalog.add_media([MediaRecord("/photos/0.jpg", 999, 9.0, sha256="f" * 64)], vecs[1:])
    assert mid2 == mid
    assert len(catalog.index("image")) == 1
    assert catalog.search(vecs[1:], k=1)[0][0].score == pytest.approx(1.0, abs=1e-5)


def test_switch_to_ivf_when_large(tmp_path):
    cat = Catalog(tmp_path / "db", ann_threshold=200)
    cat.bind_space("image", "m", 8)
    vecs = _unit(np.random.default_rng(7).normal(size=(300, 8)))
    cat.add_media(_records(300), vecs)
    cat.save()
    assert cat.index("image").kind == "ivf"
    cat.engine.dispose()
    again = Catalog(tmp_path / "db", ann_threshold=200)
    assert again.verify()[0].ok and again.index("image").kind == "ivf"


def test_removal_in_a_fresh_process_reaches_the_index_file(tmp_path):
    """Regression: removing vectors from a catalog whose index was not loaded yet left the ids
    in the index file (nothing was marked for saving)."""
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", 8)
    ids = cat.add_media(_records(3), _unit(np.random.default_rng(8).normal(size=(3, 8))))
    cat.save()
    cat.engine.dispose()
    fresh = Catalog(tmp_path / "db")
    fresh.remove_media(ids[:1])
    fresh.save()
    assert fresh.verify()[0].ok and fresh.verify()[0].index_count == 2


def test_verify_reports_and_repair_removes_ids_stored_twice(tmp_path):
    """Regression: verify compared id *sets*, so an index file holding an id twice passed."""
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", 8)
    vecs = _unit(np.random.default_rng(9).normal(size=(3, 8)))
    ids = cat.add_media(_records(3), vecs)
    vindex = cat.index("image")
    vid = int(vindex.ids()[0])
    vindex.add(vecs[:1], [vid])  # the same id a second time
    cat._dirty.add("image")
    cat.save()
    report = cat.verify()[0]
    assert not report.ok and report.duplicated_in_index == (vid,)
    cat.repair()
    assert cat.verify()[0].ok and cat.verify()[0].index_count == 3
    assert len(ids) == 3
