"""``catalog.transaction()``: SQL commits first, then the loaded indexes follow; a failed block
rolls back and leaves every index as it was; a crash in between is levelled when the index is
next loaded."""
import numpy as np
import pytest
from sqlalchemy import select

from tests.conftest import media_records as _records, unit as _unit
from vsearch.catalog import Catalog, MediaRecord, id_chunks, vector_blob, vectors_from_blobs
from vsearch.schema import Vector
from vsearch.vector_index import VectorIndex


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", 8)
    cat.bind_space("extra", "e", 4)
    yield cat
    cat.engine.dispose()


def _vecs(n, dim, seed):
    return _unit(np.random.default_rng(seed).normal(size=(n, dim)))


def _committed_count(catalog, space):
    """Vectors of ``space`` that another connection sees (i.e. committed)."""
    other = Catalog(catalog.directory, url=catalog.url)
    try:
        return other.vector_count(space)
    finally:
        other.engine.dispose()


def test_commit_comes_before_the_indexes(catalog, monkeypatch):
    catalog.index("image"), catalog.index("extra")
    seen = []
    apply = catalog._index_apply

    def spy(removed, added):
        seen.append((_committed_count(catalog, "image"), _committed_count(catalog, "extra")))
        apply(removed, added)

    monkeypatch.setattr(catalog, "_index_apply", spy)
    with catalog.transaction() as tx:
        media = tx.add_media(_records(3), _vecs(3, 8, 0))
        extra = tx.add_vectors("extra", _vecs(3, 4, 1), media)
        assert len(catalog.index("image")) == 0  # nothing reaches an index inside the block
    assert seen == [(3, 3)]  # SQL had committed when the indexes were brought level
    assert sorted(catalog.index("extra").ids().tolist()) == sorted(extra)
    assert len(catalog.index("image")) == 3


def test_an_exception_rolls_back_and_leaves_the_indexes_alone(catalog):
    first = catalog.add_media(_records(2), _vecs(2, 8, 0))
    catalog.index("extra")
    before = sorted(catalog.index("image").ids().tolist())
    catalog.save()
    with pytest.raises(RuntimeError, match="boom"):
        with catalog.transaction() as tx:
            tx.add_media(_records(3, start=2), _vecs(3, 8, 1))
            tx.add_vectors("extra", _vecs(1, 4, 2), [first[0]])
            tx.remove_vectors("image", catalog.vector_ids("image"))
            raise RuntimeError("boom")
    assert catalog.vector_count("image") == 2 and catalog.vector_count("extra") == 0
    assert sorted(catalog.index("image").ids().tolist()) == before
    assert len(catalog.index("extra")) == 0
    assert not catalog._dirty  # nothing to write: the file is still level
    assert all(r.ok for r in catalog.verify())


def test_a_crash_between_commit_and_index_is_levelled_on_load(tmp_path, monkeypatch):
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", 8)
    vecs = _vecs(6, 8, 3)
    cat.add_media(_records(3), vecs[:3])
    cat.save()

    def crash(removed, added):
        raise KeyboardInterrupt  # the process dies after the commit, before the index moves

    monkeypatch.setattr(cat, "_index_apply", crash)
    with pytest.raises(KeyboardInterrupt):
        with cat.transaction() as tx:
            tx.add_media(_records(3, start=3), vecs[3:])
    cat.engine.dispose()

    again = Catalog(tmp_path / "db")
    assert len(again.verify()[0].missing_from_index) == 3
    assert again.search(vecs[5:6], k=1)[0][0].path == "/photos/5.jpg"
    again.save()
    assert again.verify()[0].ok
    again.engine.dispose()


def test_a_changed_file_loses_its_old_vectors_of_every_space(catalog):
    with catalog.transaction() as tx:
        (media,) = tx.add_media(_records(1), _vecs(1, 8, 0))
        tx.add_vectors("extra", _vecs(2, 4, 1), [media, media])
    changed = [MediaRecord("/photos/0.jpg", 999, 9.0, sha256="f" * 64)]
    with catalog.transaction() as tx:
        assert tx.add_media(changed, _vecs(1, 8, 2)) == [media]  # same row, new content
    assert catalog.vector_count("extra") == 0 and catalog.vector_count("image") == 1
    assert len(catalog.index("extra")) == 0
    catalog.save()
    assert all(r.ok for r in catalog.verify())


def test_removal_from_an_unloaded_space_reaches_its_file(catalog):
    ids = catalog.add_vectors("extra", _vecs(3, 4, 0), [None] * 3)
    catalog.save()
    catalog.forget_index("extra")
    with catalog.transaction() as tx:
        assert tx.remove_vectors("extra", ids[:2]) == 2
    catalog.save()
    assert VectorIndex.load(catalog.index_path("extra"), 4).ids().tolist() == ids[2:]


def test_long_id_lists_go_in_chunks(catalog):
    vecs = _vecs(2000, 4, 5)
    ids = catalog.add_vectors("extra", vecs, [None] * len(vecs))  # SQLite takes at most 999 variables
    chunks = list(id_chunks(np.asarray(ids, dtype=np.int64)))
    assert [len(c) for c in chunks] == [900, 900, 200] and all(type(i) is int for i in chunks[0])
    with catalog.reading() as r:  # the read form a store uses: SQL in chunks, blobs -> vectors
        blobs = [b for chunk in chunks for b in r.session.scalars(
            select(Vector.embedding).where(Vector.id.in_(chunk)).order_by(Vector.id))]
        assert np.array_equal(r.vectors("extra", blobs), vecs)
    assert np.array_equal(vectors_from_blobs([vector_blob(v) for v in vecs[:3]], 4), vecs[:3])
    assert catalog.remove_vectors("extra", np.asarray(ids, dtype=np.int64)) == 2000
    assert catalog.vector_count("extra") == 0 and len(catalog.index("extra")) == 0
