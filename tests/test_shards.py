"""Shard files: format, the local executor (resume, refusal of another run), and merging into a
catalog (ids, metadata, failures, idempotence, stale shards, PostgreSQL)."""
import os
import shutil
import uuid

import numpy as np
import pytest

from indexer import manifest as mf
from indexer.embed import LocalExecutor, embed_shards
from indexer.merge import merge_shards
from indexer.shards import read_shard, read_shard_meta, shard_paths, write_shard
from vsearch.catalog import Catalog, MediaRecord
from vsearch.errors import ModelMismatchError, ShardError


def _with_bad_file(folder):
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    return folder


@pytest.fixture(scope="module")
def made_shards(tmp_path_factory, photo_dir, tiny_clip_spec):
    """One local run over the test photos plus a broken file, 4 files per shard (read-only)."""
    src = tmp_path_factory.mktemp("shard_src")
    folder = src / "photos"
    shutil.copytree(photo_dir, folder)
    _with_bad_file(folder)
    out = src / "shards"
    report = embed_shards(mf.from_paths([str(folder)]).entries, str(out), tiny_clip_spec, shard_size=4,
                          executor=LocalExecutor(batch_size=3, decode_threads=2))
    return folder, out, report


# -- the file format ------------------------------------------------------------------------------
def test_shard_file_round_trip_keeps_every_field(tmp_path):
    recs = [MediaRecord("/p/é ü.jpg", 10, 1.5, "a" * 64, 640, 480, "2020-01-02T03:04:05", 6),
            MediaRecord("/p/b.png", 20, 2.25, "b" * 64)]  # unknown size, date, orientation
    vecs = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    failures = [(MediaRecord("/p/c.jpg", 3, 3.0, "c" * 64), "corrupt or truncated image: x"),
                (MediaRecord("/p/d.jpg", 4, 4.0), "cannot read: Permission denied")]
    path = str(tmp_path / "shard-00007.npz")
    write_shard(path, recs, vecs, failures, {"shard": 7, "encoder": "m", "dim": 8})
    got = read_shard(path)
    assert got.records == recs
    assert got.failures == failures
    np.testing.assert_array_equal(got.vectors, vecs)
    assert got.meta["encoder"] == "m" and got.meta["shard"] == 7 and got.meta["failed"] == 2
    assert read_shard_meta(path)["embedded"] == 2
    assert os.listdir(tmp_path) == ["shard-00007.npz"]  # no temporary file left behind
    with np.load(path, allow_pickle=False) as z:  # plain arrays, no pickles
        assert z["vectors"].dtype == np.float32 and z["paths"].dtype.kind == "U"


def test_failed_write_leaves_the_old_shard_intact(tmp_path, monkeypatch):
    path = str(tmp_path / "shard-00000.npz")
    recs = [MediaRecord("/p/a.jpg", 1, 1.0, "a" * 64)]
    write_shard(path, recs, np.ones((1, 4), np.float32), [], {"encoder": "m", "dim": 4})

    def boom(fh, **arrays):
        fh.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        write_shard(path, recs * 2, np.zeros((2, 4), np.float32), [], {"encoder": "m", "dim": 4})
    monkeypatch.undo()
    assert len(read_shard(path).records) == 1
    assert os.listdir(tmp_path) == ["shard-00000.npz"]


def test_unusable_shard_files_are_clear_errors(tmp_path):
    good = str(tmp_path / "shard-00000.npz")
    write_shard(good, [MediaRecord("/p/a.jpg", 1, 1.0, "a" * 64)], np.ones((1, 4), np.float32), [],
                {"encoder": "m", "dim": 4})
    truncated = tmp_path / "shard-00001.npz"
    truncated.write_bytes(open(good, "rb").read()[:100])
    with pytest.raises(ShardError, match="unreadable shard .*shard-00001"):
        read_shard(str(truncated))
    foreign = tmp_path / "shard-00002.npz"
    np.savez(foreign, meta=np.asarray('{"format": "other"}'))
    with pytest.raises(ShardError, match="not a vsearch shard"):
        read_shard_meta(str(foreign))
    nan = str(tmp_path / "shard-00003.npz")
    write_shard(nan, [MediaRecord("/p/a.jpg", 1, 1.0, "a" * 64)], np.full((1, 4), np.nan, np.float32), [],
                {"encoder": "m", "dim": 4})
    with pytest.raises(ShardError, match="NaN"):
        read_shard(nan)
    with pytest.raises(ValueError, match="shape"):
        write_shard(good, [MediaRecord("/p/a.jpg", 1, 1.0)], np.ones((1, 5), np.float32), [], {"encoder": "m", "dim": 4})


def test_manifest_from_a_list_file(tmp_path, photo_dir):
    (tmp_path / "imgs").mkdir()
    shutil.copy(photo_dir / "coins.jpg", tmp_path / "imgs" / "coins.jpg")
    shutil.copy(photo_dir / "moon.jpg", tmp_path / "moon.jpg")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\nimgs/coins.jpg\n\n{tmp_path / 'moon.jpg'}\nimgs/coins.jpg\nmissing.jpg\nimgs\n")
    m = mf.from_list_file(listing)
    assert [os.path.basename(e.path) for e in m.entries] == ["coins.jpg", "moon.jpg"]  # sorted, once each
    assert {os.path.basename(p): r.split(":")[0] for p, r in m.problems} == \
        {"missing.jpg": "cannot stat", "imgs": "not a regular file"}


# -- embedding locally ----------------------------------------------------------------------------
def test_local_run_writes_shards_in_manifest_order(made_shards):
    folder, out, report = made_shards
    entries = mf.from_paths([str(folder)]).entries
    assert report.total_shards == 3 and [s.index for s in report.shards] == [0, 1, 2]
    assert (report.embedded, report.failed) == (10, 1)
    shards = [read_shard(p) for p in shard_paths(str(out))]
    seen = [r.path for s in shards for r in s.records] + [r.path for s in shards for r, _ in s.failures]
    assert sorted(seen) == [e.path for e in entries]
    for i, s in enumerate(shards):  # shard i holds manifest slice i
        assert {r.path for r in s.records} | {r.path for r, _ in s.failures} == {e.path for e in entries[4 * i : 4 * i + 4]}
    (bad, reason), = [f for s in shards for f in s.failures]
    assert bad.path.endswith("broken.jpg") and bad.sha256 and "not a recognised image format" in reason
    vecs = np.concatenate([s.vectors for s in shards])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_shard_vectors_equal_what_vsearch_index_stores(made_shards, tiny_clip_spec, tmp_path):
    from indexer import index_paths
    from vsearch.encoders import load_encoder

    folder, out, _ = made_shards
    direct = Catalog(tmp_path / "direct")
    index_paths(direct, load_encoder(tiny_clip_spec), [str(folder)], workers=0)
    for shard in map(read_shard, shard_paths(str(out))):
        for rec, vec in zip(shard.records, shard.vectors):
            state = direct.media_at([rec.path])[rec.path]
            assert (state.sha256, state.size, state.mtime) == (rec.sha256, rec.size, rec.mtime)
            np.testing.assert_allclose(direct.media_vector(state.id), vec, atol=1e-5)


def test_rerun_resumes_and_another_run_is_refused(photos, tmp_path, tiny_clip_spec):
    out = tmp_path / "shards"
    entries = mf.from_paths([str(photos)]).entries
    first = embed_shards(entries, str(out), tiny_clip_spec, shard_size=4)
    assert len(first.shards) == 3
    os.unlink(out / "shard-00001.npz")  # as if the run had died before this shard
    again = embed_shards(entries, str(out), tiny_clip_spec, shard_size=4)
    assert again.skipped_shards == 2 and [s.index for s in again.shards] == [1]
    assert len(shard_paths(str(out))) == 3

    with pytest.raises(ShardError, match="already holds a run of 10 files"):
        embed_shards(entries[:5], str(out), tiny_clip_spec, shard_size=4)
    with pytest.raises(ShardError, match="already holds"):
        embed_shards(entries, str(out), tiny_clip_spec, shard_size=5)
    replaced = embed_shards(entries[:5], str(out), tiny_clip_spec, shard_size=4, overwrite=True)
    assert replaced.total_shards == 2 and len(shard_paths(str(out))) == 2
    with pytest.raises(ShardError, match="manifest is empty"):
        embed_shards([], str(tmp_path / "empty"), tiny_clip_spec)


# -- merging ---------------------------------------------------------------------------------------
def test_merge_round_trip_is_idempotent_and_consistent(made_shards, tmp_path):
    folder, out, _ = made_shards
    cat = Catalog(tmp_path / "db")
    s = merge_shards(cat, str(out))
    assert (s.shards, s.added, s.replaced, s.unchanged, s.failed) == (3, 10, 0, 0, 1)
    assert s.missing_shards == [] and s.failures[0][0].endswith("broken.jpg")
    assert all(r.ok for r in cat.verify())
    stats = cat.stats()
    assert (stats["media_indexed"], stats["media_failed"], stats["vectors"]) == (10, 1, {"image": 10})
    assert cat.failures()[0][1] == "not a recognised image format"

    shards = [read_shard(p) for p in shard_paths(str(out))]
    for shard in shards:  # metadata and vectors land where the ids say
        for rec, vec in zip(shard.records, shard.vectors):
            state = cat.media_at([rec.path])[rec.path]
            row = cat.media(state.id)
            assert (row.size, row.mtime, row.sha256, row.width, row.height) == \
                (rec.size, rec.mtime, rec.sha256, rec.width, rec.height)
            np.testing.assert_array_equal(cat.media_vector(state.id), vec)
            assert cat.search(vec[None], k=1)[0][0].path == rec.path
    ids_before = sorted(cat.vector_ids())

    again = merge_shards(cat, str(out))
    assert (again.added, again.replaced, again.unchanged, again.failed, again.failed_known) == (0, 0, 10, 0, 1)
    assert sorted(cat.vector_ids()) == ids_before
    assert all(r.ok for r in cat.verify())
    # the catalog now holds every file: a pending manifest is empty
    pending = mf.pending(mf.from_paths([str(folder)]), cat)
    assert pending.entries == [] and pending.skipped == 11


def test_changed_file_is_replaced_and_an_older_shard_is_stale(photos, tmp_path, tiny_clip_spec):
    entries = mf.from_paths([str(photos)]).entries
    old = tmp_path / "old"
    embed_shards(entries, str(old), tiny_clip_spec, shard_size=4)
    cat = Catalog(tmp_path / "db")
    merge_shards(cat, str(old))

    target = photos / "horse.jpg"
    shutil.copy(photos / "coins.jpg", target)  # new content, new size and mtime
    os.utime(target, (1e9, 1e9))
    pending = mf.pending(mf.from_paths([str(photos)]), cat)
    assert [e.path for e in pending.entries] == [str(target)]
    new = tmp_path / "new"
    embed_shards(pending.entries, str(new), tiny_clip_spec)
    s = merge_shards(cat, str(new))
    assert (s.added, s.replaced, s.unchanged) == (0, 1, 0)
    coins = cat.media_vector(cat.media_at([str(photos / "coins.jpg")])[str(photos / "coins.jpg")].id)
    horse_id = cat.media_at([str(target)])[str(target)].id
    np.testing.assert_allclose(cat.media_vector(horse_id), coins, atol=1e-5)

    s = merge_shards(cat, str(old))  # the old shards know the old horse.jpg: the catalog is newer
    assert (s.stale, s.replaced, s.unchanged) == (1, 0, 9)
    np.testing.assert_allclose(cat.media_vector(horse_id), coins, atol=1e-5)
    assert all(r.ok for r in cat.verify()) and cat.stats()["vectors"] == {"image": 10}


def test_merge_refuses_another_model_before_writing(made_shards, tmp_path):
    _, out, _ = made_shards
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "packaged:effnet-lite0+minilm", 32)
    with pytest.raises(ModelMismatchError):
        merge_shards(cat, str(out))
    assert cat.stats()["media_indexed"] == 0 and cat.stats()["media_failed"] == 0
    with pytest.raises(ShardError, match="no shard files"):
        merge_shards(cat, str(tmp_path))


def test_merge_reports_shards_not_written_yet(made_shards, tmp_path):
    _, out, _ = made_shards
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    os.unlink(partial / "shard-00002.npz")
    s = merge_shards(Catalog(tmp_path / "db"), str(partial))
    assert s.shards == 2 and s.missing_shards == [2]


PG_URL = os.environ.get("VSEARCH_TEST_PG_URL")


@pytest.fixture
def private_pg_url():
    """A database of its own on the test server (created here, dropped after), so that this test
    shares no tables with other test runs using the same server."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"vsearch_shards_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL: set VSEARCH_TEST_PG_URL")
def test_merge_into_postgres(made_shards, tmp_path, private_pg_url):
    _, out, _ = made_shards
    cat = Catalog(tmp_path / "idx", url=private_pg_url)
    assert cat.engine.dialect.name == "postgresql"
    s = merge_shards(cat, str(out))
    assert (s.added, s.failed) == (10, 1)
    again = merge_shards(cat, str(out))
    assert (again.added, again.unchanged, again.failed_known) == (0, 10, 1)
    assert all(r.ok for r in cat.verify()) and cat.stats()["vectors"] == {"image": 10}
    shard = read_shard(shard_paths(str(out))[1])
    assert cat.search(shard.vectors[:1], k=1)[0][0].path == shard.records[0].path
    cat.engine.dispose()
