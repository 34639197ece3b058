"""Catalog behaviour that faces depend on: vectors of extra spaces added and removed along with
photos stay consistent between SQL, the index in memory and the index file, also when the extra
space was not loaded when the change happened."""
import numpy as np
import pytest

from tests.conftest import media_records
from tests.faces.conftest import unit_rows
from vsearch.catalog import Catalog, MediaRecord
from vsearch.vector_index import VectorIndex


def _records(n, start=0):
    return media_records(n, start, folder="/p")


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", 8)
    cat.bind_space("extra", "e", 4)
    yield cat
    cat.engine.dispose()


def _add_with_two_extra_each(catalog, records, vectors):
    """Photos and, in the same transaction, two vectors of "extra" for each (one add per photo,
    as the indexer's extractors write them)."""
    with catalog.transaction() as tx:
        media = tx.add_media(records, vectors)
        for m in media:
            tx.add_vectors("extra", unit_rows(2, 4, m), [m, m])
    return media


def _file_ids(catalog, space, dim):
    return VectorIndex.load(catalog.index_path(space), dim).ids().tolist()


def test_several_entries_for_an_unloaded_space_are_indexed_once(catalog):
    _add_with_two_extra_each(catalog, _records(3), unit_rows(3, 8, 0))
    ids = catalog.index("extra").ids().tolist()
    assert len(ids) == len(set(ids)) == 6
    catalog.save()
    assert sorted(_file_ids(catalog, "extra", 4)) == sorted(catalog._sql_ids("extra").tolist())


def test_removing_photos_updates_an_unloaded_space_file(catalog, tmp_path):
    media = _add_with_two_extra_each(catalog, _records(3), unit_rows(3, 8, 0))
    catalog.save()
    catalog.engine.dispose()
    again = Catalog(tmp_path / "db")  # a run that never touches "extra" (index without --faces)
    again.index("image")
    again.remove_media(media[:1])
    again.save()
    assert all(r.ok for r in again.verify())
    assert len(_file_ids(again, "extra", 4)) == 4
    again.engine.dispose()


def test_changed_photo_replaces_its_vectors_without_duplicates(catalog, tmp_path):
    _add_with_two_extra_each(catalog, _records(2), unit_rows(2, 8, 0))
    catalog.save()
    catalog.engine.dispose()
    again = Catalog(tmp_path / "db")  # nothing loaded: removal and addition in one transaction
    changed = [MediaRecord("/p/0.jpg", 99, 9.0, sha256="f" * 64)]
    _add_with_two_extra_each(again, changed, unit_rows(1, 8, 5))
    for space, dim in (("image", 8), ("extra", 4)):
        ids = again.index(space).ids().tolist()
        assert len(ids) == len(set(ids)) and sorted(ids) == sorted(again._sql_ids(space).tolist())
    again.save()
    assert all(r.ok for r in again.verify())
    assert np.isin(_file_ids(again, "extra", 4), again._sql_ids("extra")).all()
    again.engine.dispose()
