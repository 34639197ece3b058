"""What the catalog must never lose: photos behind an unmounted drive or an unreadable folder,
file names that are not UTF-8, a second writer, a full disk, private files. Catalog tests run on
SQLite and, when VSEARCH_TEST_PG_URL is set, on PostgreSQL."""
import os
import shutil
import stat
import subprocess
import threading
import time

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app
from tests.conftest import empty_postgres
from indexer import index_paths
from vsearch.catalog import Catalog, MediaRecord
from vsearch.encoders import load_encoder
from vsearch.errors import CatalogBusyError, StorageFullError
from vsearch.vector_index import VectorIndex

PG_URL = os.environ.get("VSEARCH_TEST_PG_URL")
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def tiny(tiny_clip_spec):
    return load_encoder(tiny_clip_spec)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request):
    """None for SQLite; an emptied PostgreSQL database otherwise (skipped without a server)."""
    if request.param == "sqlite":
        return None
    if not PG_URL:
        pytest.skip("no PostgreSQL: set VSEARCH_TEST_PG_URL")
    return empty_postgres()


def _index(db, paths, encoder, url=None, **kw):
    cat = Catalog(db, url=url)
    try:
        return index_paths(cat, encoder, [str(p) for p in paths], workers=0, **kw), cat
    finally:
        cat.save()


def _count(cat):
    return cat.stats()["media_indexed"]


# -- only what the scan saw gone is removed ---------------------------------------------------------
def test_missing_root_keeps_everything_and_says_why(photos, tmp_path, tiny, db_url):
    _index(tmp_path / "db", [photos], tiny, db_url)
    moved = tmp_path / "elsewhere"
    shutil.move(photos, moved)  # the drive is unmounted
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert s.removed == 0 and _count(cat) == 10
    assert s.unavailable == [(str(photos), "no such file or folder (not mounted?)")]
    assert s.kept and s.kept[0][:2] == (str(photos), 10) and "--prune-missing" in s.kept[0][2]
    assert cat.verify()[0].ok
    shutil.move(moved, photos)  # mounted again: nothing to do
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert (s.added, s.unchanged, s.removed) == (0, 10, 0)
    cat.engine.dispose()


def test_empty_mount_point_keeps_everything_unless_pruned(photos, tmp_path, tiny):
    _index(tmp_path / "db", [photos], tiny)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for f in photos.iterdir():
        shutil.move(f, hidden / f.name)
    s, cat = _index(tmp_path / "db", [photos], tiny)
    assert s.removed == 0 and _count(cat) == 10
    assert s.unavailable == [(str(photos), "is empty (not mounted?)")]
    s, cat = _index(tmp_path / "db", [photos], tiny, prune_missing=True)
    assert s.removed == 10 and _count(cat) == 0 and not s.kept


def test_unreadable_subfolder_keeps_its_rows(photos, tmp_path, tiny, monkeypatch):
    sub = photos / "private"
    sub.mkdir()
    for name in ("coins.jpg", "moon.jpg"):
        shutil.move(photos / name, sub / name)
    _index(tmp_path / "db", [photos], tiny)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(sub):  # what `chmod 000` does for a user other than root
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    (photos / "horse.jpg").unlink()  # a real deletion still goes
    s, cat = _index(tmp_path / "db", [photos], tiny)
    assert s.removed == 1 and _count(cat) == 9
    assert (str(sub), 2, "could not be read") in s.kept
    assert any(p == str(sub) and "Permission denied" in r for p, r in s.failed)
    assert not s.unavailable


def _nas(photos):
    """Three of the photos moved into ``photos/nas`` (one a level deeper), as on a drive mounted there."""
    nas = photos / "nas"
    (nas / "2020").mkdir(parents=True)
    for name in ("coins.jpg", "moon.jpg"):
        shutil.move(photos / name, nas / name)
    shutil.move(photos / "camera.jpg", nas / "2020" / "camera.jpg")
    return nas


def _unmount(nas, tmp_path):
    """What unmounting the drive leaves: the mount point, empty. Returns where the files went."""
    away = tmp_path / "drive"
    shutil.move(nas, away)
    nas.mkdir()
    return away


def _mount(nas, away):
    nas.rmdir()
    shutil.move(away, nas)


def test_unmounted_drive_inside_a_root_keeps_its_rows(photos, tmp_path, tiny, db_url):
    nas = _nas(photos)
    _index(tmp_path / "db", [photos], tiny, db_url)
    away = _unmount(nas, tmp_path)
    (photos / "horse.jpg").unlink()  # a real deletion beside it still goes
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert s.removed == 1 and _count(cat) == 9
    assert s.unavailable == [(str(nas), "is empty (not mounted?)")]
    assert [k[:2] for k in s.kept] == [(str(nas), 3)] and "--prune-missing" in s.kept[0][2]
    assert cat.verify()[0].ok
    _mount(nas, away)  # mounted again: nothing to do
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert (s.added, s.unchanged, s.removed, s.unavailable) == (0, 9, 0, [])
    away = _unmount(nas, tmp_path)
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url, prune_missing=True)
    assert s.removed == 3 and _count(cat) == 6 and not s.kept
    cat.engine.dispose()


def test_photos_deleted_from_a_sub_folder_go_exactly(photos, tmp_path, tiny, db_url):
    nas = _nas(photos)
    trip = photos / "trip"
    trip.mkdir()
    shutil.move(photos / "rocket.jpg", trip / "rocket.jpg")
    _index(tmp_path / "db", [photos], tiny, db_url)
    (nas / "coins.jpg").unlink()  # some of a folder's photos
    shutil.rmtree(nas / "2020")  # a folder deleted whole
    shutil.rmtree(trip)  # and another, right under the root
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert (s.removed, s.unavailable, s.kept) == (3, [], [])
    assert sorted(cat.media_under([str(photos)])) == sorted(str(p) for p in photos.rglob("*.jpg"))
    # the last photo of a folder, leaving it empty, looks like a drive gone: kept until pruned
    (nas / "moon.jpg").unlink()
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert s.removed == 0 and s.unavailable == [(str(nas), "is empty (not mounted?)")]
    cat.engine.dispose()


def test_folder_now_on_another_device_keeps_its_rows(photos, tmp_path, tiny, db_url):
    nas = _nas(photos)
    _, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    here = os.stat(nas).st_dev
    drive = here + 1  # the rows were seen on the drive mounted at nas
    assert cat.record_devices({str(p): drive for p in nas.rglob("*.jpg")}) == 3
    away = _unmount(nas, tmp_path)
    (nas / "notes.txt").write_text("written while the drive was away")  # not empty any more
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert s.removed == 0 and _count(cat) == 10
    assert s.unavailable == [(str(nas), "is now on another device than its photos were (not mounted?)")]
    # a mount point that goes away with the drive (an automounter's): the rows' folder is gone
    # from a folder on another device
    shutil.rmtree(nas)
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert s.removed == 0 and [u[0] for u in s.unavailable] == [str(nas)]
    assert "another device" in s.unavailable[0][1]
    shutil.move(away, nas)  # mounted again
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert (s.unchanged, s.removed, s.unavailable) == (10, 0, [])
    devices = {state.device for state in cat.media_under([str(photos)]).values()}
    assert devices == {here}  # seen again on this device: recorded anew
    cat.engine.dispose()


def _mount_tmpfs(folder) -> bool:
    return subprocess.run(["mount", "-t", "tmpfs", "vsearch-test", str(folder)], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting needs root")
def test_real_mount_inside_a_root(photos, tmp_path, tiny, db_url):
    nas = photos / "nas"
    nas.mkdir()
    if not _mount_tmpfs(nas):
        pytest.skip("cannot mount a tmpfs here")
    try:
        for name in ("coins.jpg", "moon.jpg"):
            shutil.move(photos / name, nas / name)
        _index(tmp_path / "db", [photos], tiny, db_url)
        saved = tmp_path / "saved"
        shutil.copytree(nas, saved)
    finally:
        subprocess.run(["umount", str(nas)], check=True)
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert (s.removed, _count(cat)) == (0, 10) and s.unavailable == [(str(nas), "is empty (not mounted?)")]
    (nas / "notes.txt").write_text("written on the mount point itself")
    s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
    assert (s.removed, _count(cat)) == (0, 10) and "another device" in s.unavailable[0][1]
    (nas / "notes.txt").unlink()
    assert _mount_tmpfs(nas)
    try:
        for f in saved.iterdir():
            shutil.copy2(f, nas / f.name)
        s, cat = _index(tmp_path / "db", [photos], tiny, db_url)
        assert (s.unchanged, s.removed, s.unavailable) == (10, 0, [])
    finally:
        subprocess.run(["umount", str(nas)], check=True)
    cat.engine.dispose()


def test_catalog_of_version_1_gains_the_device_column(photos, tmp_path, tiny):
    from sqlalchemy import text

    from vsearch.catalog import open_reader

    _, cat = _index(tmp_path / "db", [photos], tiny)
    with cat.engine.begin() as conn:  # as the vsearch before devices were recorded left it
        conn.execute(text("ALTER TABLE media DROP COLUMN device"))
        conn.execute(text("UPDATE meta SET value = '1' WHERE key = 'schema_version'"))
    cat.engine.dispose()
    with open_reader(tmp_path / "db") as reader:  # still searched as it is
        assert len(reader.vector_ids("image")) == 10
    s, cat = _index(tmp_path / "db", [photos], tiny)
    assert s.unchanged == 10 and cat.get_meta("schema_version") == "2"
    assert {state.device for state in cat.media_under([str(photos)]).values()} == {os.stat(photos).st_dev}
    cat.engine.dispose()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 folders")
def test_chmod_000_subfolder_keeps_its_rows(photos, tmp_path, tiny):
    sub = photos / "private"
    sub.mkdir()
    shutil.move(photos / "coins.jpg", sub / "coins.jpg")
    _index(tmp_path / "db", [photos], tiny)
    sub.chmod(0)
    try:
        s, cat = _index(tmp_path / "db", [photos], tiny)
    finally:
        sub.chmod(0o755)
    assert s.removed == 0 and _count(cat) == 10


def test_cli_unavailable_root_exits_1_and_prune_missing_removes(photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    assert invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "-w", "0", "-q").exit_code == 0
    shutil.rmtree(photos)
    r = invoke("index", photos, "--db", db, "-w", "0", "-q")
    assert r.exit_code == 1, r.output
    assert "removed 0" in r.output and "kept 10 photos under" in r.output and "unavailable:" in r.output
    r = invoke("index", photos, "--db", db, "-w", "0", "-q", "--prune-missing")
    assert "removed 10" in r.output, r.output


# -- a failed first command leaves no catalog behind ----------------------------------------------------
def test_failed_first_index_leaves_no_empty_catalog(tmp_path, photos, tiny_clip_spec):
    db = tmp_path / "db"
    r = invoke("index", tmp_path / "no-such-folder", "--db", db, "--model", tiny_clip_spec, "-q")
    assert r.exit_code == 1 and not db.exists(), r.output
    r = invoke("index", photos, "--db", db, "--model", "foo", "-q")
    assert r.exit_code != 0 and not db.exists(), r.output
    r = invoke("search", "a cat", "--db", db)
    assert r.exit_code != 0 and str(db) in r.output and "no results" not in r.output


# -- one writer at a time ----------------------------------------------------------------------------
def test_second_writer_fails_clearly_or_waits(tmp_path, tiny, photos, db_url):
    first = Catalog(tmp_path / "db", url=db_url)
    first.lock_for_writing()
    second = Catalog(tmp_path / "db", url=db_url)
    with pytest.raises(CatalogBusyError, match=f"pid {os.getpid()}"):
        index_paths(second, tiny, [str(photos)], workers=0)
    # readers keep working while the writer holds the lock
    assert Catalog(tmp_path / "db", url=db_url, create=False).stats()["media_indexed"] == 0
    told = []
    threading.Timer(0.5, first.release_writer).start()
    started = time.perf_counter()
    second.lock_for_writing(wait=True, on_wait=told.append, poll_seconds=0.05)
    assert time.perf_counter() - started >= 0.4 and len(told) == 1 and "pid" in told[0]
    s = index_paths(second, tiny, [str(photos)], workers=0)
    assert s.added == 10
    second.close()
    first.engine.dispose()


@pytest.mark.skipif(not PG_URL, reason="no PostgreSQL: set VSEARCH_TEST_PG_URL")
def test_postgres_writers_in_different_folders_are_serialised(tmp_path):
    empty_postgres()
    a, b = Catalog(tmp_path / "a", url=PG_URL), Catalog(tmp_path / "b", url=PG_URL)
    a.lock_for_writing()
    with pytest.raises(CatalogBusyError, match="advisory lock"):
        b.lock_for_writing()
    a.release_writer()
    b.lock_for_writing()
    b.close()
    a.close()


def test_cli_index_while_another_writes(tmp_path, photos, tiny_clip_spec):
    db = tmp_path / "db"
    assert invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "-w", "0", "-q").exit_code == 0
    holder = Catalog(db)
    holder.lock_for_writing()
    r = invoke("index", photos, "--db", db, "-w", "0", "-q")
    assert r.exit_code == 2 and "another vsearch process is writing" in r.output and "--wait" in r.output
    holder.release_writer()
    holder.engine.dispose()
    # a query image that is missing or a folder is named as such
    r = invoke("search", "--image", tmp_path / "nope.jpg", "--db", db)
    assert r.exit_code == 2 and f"not found: {tmp_path / 'nope.jpg'}" in r.output, r.output
    r = invoke("search", "--image", photos, "--db", db)
    assert r.exit_code == 2 and f"is a folder: {photos}" in r.output, r.output


def test_verify_during_an_index_run_is_not_a_failure(tmp_path):
    writer = Catalog(tmp_path / "db")
    writer.bind_space("image", "m", 8)
    writer.lock_for_writing()
    vecs = np.eye(8, dtype=np.float32)
    writer.add_media([MediaRecord(f"/p/{i}.jpg", 1, 1.0, f"{i:064x}") for i in range(4)], vecs[:4])
    writer.save()
    writer.add_media([MediaRecord(f"/p/{i}.jpg", 1, 1.0, f"{i:064x}") for i in range(4, 8)], vecs[4:])  # not saved yet
    r = invoke("verify", "--db", tmp_path / "db")
    assert r.exit_code == 0 and "catching up" in r.output, r.output
    r = invoke("verify", "--repair", "--db", tmp_path / "db")
    assert r.exit_code == 0 and "repair failed" not in r.output, r.output
    writer.close()  # the run ends with its save: level
    r = invoke("verify", "--db", tmp_path / "db")
    assert r.exit_code == 0 and "ok" in r.output


def test_a_reader_never_overwrites_a_running_writers_index_file(tmp_path):
    """A search that levelled a lagging index in memory writes it back only while no writer runs."""
    vecs = np.eye(8, dtype=np.float32)
    records = [MediaRecord(f"/p/{i}.jpg", 1, 1.0, f"{i:064x}") for i in range(8)]
    first = Catalog(tmp_path / "db")
    first.bind_space("image", "m", 8)
    first.add_media(records[:2], vecs[:2])
    first.close()
    writer = Catalog(tmp_path / "db")
    writer.lock_for_writing()
    writer.add_media(records[2:4], vecs[2:4])
    reader = Catalog(tmp_path / "db")
    assert len(reader.index("image").ids()) == 4  # levelled from SQL in memory
    writer.add_media(records[4:], vecs[4:])
    writer.save()  # the writer's newer file: 8 vectors
    reader.close()  # an older copy (4): must not replace it
    assert len(VectorIndex.load(str(writer.index_path("image")), 8).ids()) == 8
    writer.close()
    # with no writer running, a reader that levelled a lagging file saves it
    lagging = Catalog(tmp_path / "db")
    lagging.lock_for_writing()
    lagging.add_media([MediaRecord("/p/8.jpg", 1, 1.0, f"{8:064x}")], vecs[:1])
    lagging.release_writer()
    lagging.engine.dispose()  # gone without saving, like a killed run
    reader = Catalog(tmp_path / "db")
    assert len(reader.index("image").ids()) == 9
    reader.close()
    assert len(VectorIndex.load(str(reader.index_path("image")), 8).ids()) == 9


# -- file names that are not UTF-8 -----------------------------------------------------------------------
def test_non_utf8_file_names_are_indexed_losslessly(tmp_path, tiny, db_url, photo_dir):
    folder = tmp_path / "latin1"
    folder.mkdir()
    raw_names = [b"caf\xe9.jpg", b"\xff\xfe odd.jpg", b"plain.jpg"]
    for i, raw in enumerate(raw_names):
        shutil.copy(photo_dir / sorted(os.listdir(photo_dir))[i], os.path.join(os.fsencode(folder), raw))
    s, cat = _index(tmp_path / "db", [folder], tiny, db_url)
    assert s.added == 3 and not s.failed, s.failed
    paths = set(cat.media_under([str(folder)]))
    assert {os.fsencode(p) for p in paths} == {os.path.join(os.fsencode(folder), r) for r in raw_names}
    assert all(os.path.exists(p) for p in paths)  # what comes back opens the same file
    s, cat = _index(tmp_path / "db", [folder], tiny, db_url)
    assert (s.added, s.unchanged, s.removed) == (0, 3, 0)
    hits = cat.search(cat.media_vector(cat.media_under([str(folder)])[os.fsdecode(os.path.join(os.fsencode(folder), b"caf\xe9.jpg"))].id), k=1)[0]
    assert os.fsencode(hits[0].path).endswith(b"caf\xe9.jpg")
    os.unlink(os.path.join(os.fsencode(folder), b"caf\xe9.jpg"))
    s, cat = _index(tmp_path / "db", [folder], tiny, db_url)
    assert s.removed == 1 and cat.verify()[0].ok
    cat.engine.dispose()


def test_cli_prints_non_utf8_names_without_crashing(tmp_path, tiny_clip_spec):
    folder = tmp_path / "odd"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"bad\xe9.jpg"), "wb") as fh:
        fh.write(b"not an image")
    Image.new("RGB", (32, 32), "red").save(folder / "ok.png")
    r = invoke("index", folder, "--db", tmp_path / "db", "--model", tiny_clip_spec, "-w", "0", "-q")
    assert r.exit_code == 0 and "added 1" in r.output and "bad\\xe9.jpg" in r.output, r.output


# -- retries and size limits -------------------------------------------------------------------------------
def test_transient_failures_are_retried_and_retry_failed_retries_all(tmp_path, tiny, photos):
    (photos / "text.jpg").write_text("not a picture")
    s, cat = _index(tmp_path / "db", [photos], tiny)
    assert [os.path.basename(p) for p, _ in s.failed] == ["text.jpg"]
    # a read error on an unchanged file (a permission fixed since) is tried again by itself
    st = os.stat(photos / "coins.jpg")
    cat.record_failures([(MediaRecord(str(photos / "coins.jpg"), st.st_size, st.st_mtime), "cannot read: Permission denied")])
    s, cat = _index(tmp_path / "db", [photos], tiny)
    assert (s.retried, s.known_failures, s.added, s.failed) == (1, 1, 1, [])
    s, cat = _index(tmp_path / "db", [photos], tiny, retry_failed=True)
    assert s.retried == 1 and [os.path.basename(p) for p, _ in s.failed] == ["text.jpg"]


def test_file_over_the_size_limit_is_skipped_with_a_reason(tmp_path, tiny, photos, monkeypatch):
    import indexer.decode as decode

    monkeypatch.setattr(decode, "MAX_FILE_BYTES", 20_000)
    s, _ = _index(tmp_path / "db", [photos], tiny)
    big = [(os.path.basename(p), r) for p, r in s.failed]
    assert big and all("too large to index" in r for _, r in big)
    assert s.added == 10 - len(big) > 0


def test_hashing_reads_in_chunks(tmp_path):
    import hashlib
    import tracemalloc

    from vsearch.images import sha256_file

    path = tmp_path / "big.jpg"
    data = os.urandom(1 << 20) * 24  # 24 MiB
    path.write_bytes(data)
    tracemalloc.start()
    with open(path, "rb") as fh:
        digest = sha256_file(fh)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert digest == hashlib.sha256(data).hexdigest()
    assert peak < 4 << 20  # one chunk, not the file


# -- privacy and a full disk ---------------------------------------------------------------------------------
def test_catalog_folder_and_files_are_private(tmp_path, tiny, photos):
    db = tmp_path / "new" / "db"
    _index(db, [photos], tiny)
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o700
    for name in os.listdir(db):
        assert stat.S_IMODE(os.stat(db / name).st_mode) & 0o077 == 0, name


def test_existing_world_readable_database_is_tightened(tmp_path):
    Catalog(tmp_path / "db").engine.dispose()
    os.chmod(tmp_path / "db" / "catalog.sqlite", 0o644)
    Catalog(tmp_path / "db").engine.dispose()
    assert stat.S_IMODE(os.stat(tmp_path / "db" / "catalog.sqlite").st_mode) == 0o600


def test_disk_full_is_one_clear_error_and_loses_nothing(tmp_path):
    from sqlalchemy import event

    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", 256)
    rng = np.random.default_rng(0)
    cat.add_media([MediaRecord("/p/first.jpg", 1, 1.0, "0" * 64)], rng.normal(size=(1, 256)).astype(np.float32))
    cat.save()
    cat.engine.dispose()

    @event.listens_for(cat.engine, "connect")
    def _small_disk(dbapi_conn, _record):  # SQLite's own "database or disk is full" (SQLITE_FULL)
        pages = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    records = [MediaRecord(f"/p/{i}.jpg", 1, 1.0, f"{i:064x}") for i in range(200)]
    with pytest.raises(StorageFullError, match="out of space writing the database.*run the same command again"):
        cat.add_media(records, rng.normal(size=(200, 256)).astype(np.float32))
    cat.engine.dispose()
    again = Catalog(tmp_path / "db")
    assert again.stats()["media_indexed"] == 1 and again.verify()[0].ok
    again.engine.dispose()


def test_index_file_write_failure_on_full_disk(tmp_path, monkeypatch):
    import errno

    from vsearch.vector_index import VectorIndex

    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", 8)
    cat.add_media([MediaRecord("/p/a.jpg", 1, 1.0, "0" * 64)], np.eye(8, dtype=np.float32)[:1])

    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(VectorIndex, "save", full)
    with pytest.raises(StorageFullError, match="image.faiss"):
        cat.save()
    monkeypatch.undo()
    cat.engine.dispose()
    assert Catalog(tmp_path / "db").stats()["media_indexed"] == 1  # SQL kept it; the file catches up


@pytest.mark.slow  # two real CLI processes (about a minute on a shared 2-core machine)
def test_cli_disk_failure_is_one_line_exit_1_then_resumes(tmp_path, tiny_clip_spec):
    """A real `vsearch index` whose writes hit a file size limit (RLIMIT_FSIZE: SQLite reports a
    disk I/O error, as on a failing or full disk): one line, exit 1, the catalog verifies, and the
    same command without the limit finishes the job."""
    import resource
    import subprocess
    import sys

    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(120):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    db = tmp_path / "db"
    cmd = [sys.executable, "-c", "from cli import app; app()", "index", str(folder), "--db", str(db),
           "--model", tiny_clip_spec, "-q", "-w", "0", "-b", "1"]

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = subprocess.run(cmd, preexec_fn=small_disk, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "run the same command again" in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    cat = Catalog(db, create=False)
    kept = cat.stats()["media_indexed"]
    assert 0 < kept < 120 and cat.verify()[0].ok
    cat.engine.dispose()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and f"added {120 - kept}" in out.stderr, out.stderr


def test_tag_captions_and_faces_wait_for_the_writer(tmp_path, photos, tiny_clip_spec):
    """Tags, caption sets and enrolled faces change the catalog too: while another process holds
    the writer lock they stop with the same clear message instead of interleaving with it."""
    db = tmp_path / "db"
    assert invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "-w", "0", "-q").exit_code == 0
    captions = tmp_path / "captions.txt"
    captions.write_text("a cat\na rocket\n")
    holder = Catalog(db)
    holder.lock_for_writing()
    try:
        for args in (["tag", "--labels", "cat,rocket"], ["captions", "add", captions],
                     ["faces", "enroll", "someone", next(iter(sorted(photos.iterdir())))]):
            r = invoke(*args, "--db", db)
            assert r.exit_code == 2 and "another vsearch process is writing" in r.output, (args, r.output)
    finally:
        holder.release_writer()
        holder.engine.dispose()
    assert invoke("tag", "--labels", "cat,rocket", "--db", db).exit_code == 0  # and once it is free, it runs


@pytest.mark.slow
def test_kill_minus_nine_mid_repair_then_repair_again(tmp_path):
    """`verify --repair` on a catalog big enough (60,000 vectors) that a SIGKILL lands while it
    rebuilds: the index file is never left half-written, the database is untouched, the lock is
    free again and a second repair finishes the job."""
    import signal
    import sys

    db, n, dim = tmp_path / "db", 60_000, 64
    cat = Catalog(db)
    cat.bind_space("image", "synthetic", dim)
    rng = np.random.default_rng(0)
    for start in range(0, n, 20_000):
        vectors = rng.normal(size=(20_000, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        cat.add_media([MediaRecord(f"/lib/{i:06d}.jpg", 100, 1.0, f"{i:064x}") for i in range(start, start + 20_000)],
                      vectors)
    cat.save()
    index_file = cat.index_path("image")
    os.remove(index_file)  # lost: the repair rebuilds it from SQL
    cmd = [sys.executable, "-c", "import cli; cli.app()", "verify", "--repair", "--db", str(db)]
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not cat.writer():
            time.sleep(0.01)
        assert cat.writer() and str(proc.pid) in cat.writer(), "the repair never took the writer lock"
        time.sleep(0.5)  # into the rebuild
        caught = proc.poll() is None and not os.path.exists(index_file)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert caught, "the repair ended before the kill: the catalog is too small for this test to mean anything"
    assert not os.path.exists(index_file)  # not half-written: written whole or not at all
    assert cat.writer() is None  # the lock died with its process
    assert _count(cat) == n and cat.stats()["vectors"]["image"] == n
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and "repaired" in out.stdout, out.stdout + out.stderr
    report = cat.verify()[0]
    assert report.ok and report.sql_count == report.index_count == n
    cat.engine.dispose()
