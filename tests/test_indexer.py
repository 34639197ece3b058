import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import vsearch
from indexer import index_paths, scan_paths
from vsearch.encoders import load_encoder


@pytest.fixture
def tiny(tiny_clip_spec):
    return load_encoder(tiny_clip_spec)


def _index(db, paths, encoder, **kw):
    coll = vsearch.open(db)
    try:
        return index_paths(coll.catalog, encoder, [str(p) for p in paths], workers=0, **kw), coll
    finally:
        coll.catalog.save()


def test_scan_follows_symlinks_without_looping(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "b" / "x.png")
    os.symlink(tmp_path / "a", tmp_path / "a" / "b" / "loop")
    (tmp_path / "a" / "readme.txt").write_text("not an image")
    result = scan_paths([str(tmp_path)])
    assert [os.path.basename(f.path) for f in result.files] == ["x.png"]


def test_index_rerun_skips_unchanged_and_sweeps_deleted(photos, tmp_path, tiny):
    s1, coll = _index(tmp_path / "db", [photos], tiny)
    assert s1.added == 10 and not s1.failed
    s2, _ = _index(tmp_path / "db", [photos], tiny)
    assert (s2.added, s2.unchanged) == (0, 10)
    (photos / "moon.jpg").unlink()
    s3, coll = _index(tmp_path / "db", [photos], tiny)
    assert s3.removed == 1 and s3.unchanged == 9
    assert coll.catalog.verify()[0].ok and coll.catalog.verify()[0].sql_count == 9


def test_renamed_file_reuses_its_vector(photos, tmp_path, tiny):
    _, coll = _index(tmp_path / "db", [photos], tiny)
    old = coll.catalog.media_under([str(photos / "coffee.jpg")])[str(photos / "coffee.jpg")]
    shutil.move(photos / "coffee.jpg", photos / "espresso.jpg")
    s, coll = _index(tmp_path / "db", [photos], tiny)
    assert (s.added, s.moved, s.removed) == (0, 1, 0)
    new = coll.catalog.media_under([str(photos / "espresso.jpg")])[str(photos / "espresso.jpg")]
    assert new.id == old.id


def test_copied_file_copies_vectors_without_encoding(photos, tmp_path, tiny):
    _index(tmp_path / "db", [photos], tiny)
    shutil.copy(photos / "rocket.jpg", photos / "rocket-copy.jpg")
    s, coll = _index(tmp_path / "db", [photos], tiny)
    assert (s.added, s.copied) == (0, 1)
    hits = coll.search(image=str(photos / "rocket.jpg"), k=2)
    assert {h.path for h in hits} == {str(photos / "rocket.jpg"), str(photos / "rocket-copy.jpg")}


def test_changed_file_is_reembedded(photos, tmp_path, tiny):
    _index(tmp_path / "db", [photos], tiny)
    Image.open(photos / "camera.jpg").rotate(90).save(photos / "camera.jpg")
    s, coll = _index(tmp_path / "db", [photos], tiny)
    assert s.added == 1 and s.unchanged == 9
    assert coll.catalog.verify()[0].sql_count == 10


def _bad_files(folder):
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("hello")
    good = (folder / "chelsea.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "ünïcødé 猫.jpg").write_bytes(good)
    Image.new("CMYK", (64, 64), (0, 50, 100, 0)).save(folder / "cmyk.jpg")
    Image.new("P", (64, 64)).save(folder / "palette.png")
    Image.new("RGBA", (64, 64), (255, 0, 0, 128)).save(folder / "alpha.png")
    Image.fromarray((np.arange(4096).reshape(64, 64) * 16).astype(np.uint16)).save(folder / "deep.png")
    locked = folder / "locked.jpg"
    locked.write_bytes(good)
    locked.chmod(0)


def test_bad_input_is_reported_once_and_skipped(photos, tmp_path, tiny):
    _bad_files(photos)
    s, coll = _index(tmp_path / "db", [photos], tiny)
    failed = dict((os.path.basename(p), r) for p, r in s.failed)
    expected_bad = {"empty.jpg", "text.jpg", "truncated.jpg"}
    if os.geteuid() != 0:  # root can read a mode-000 file
        expected_bad.add("locked.jpg")
    assert set(failed) == expected_bad, failed
    assert "empty" in failed["empty.jpg"] and "not a recognised" in failed["text.jpg"]
    assert "truncated" in failed["truncated.jpg"]
    # 10 photos + unicode name + CMYK + palette + alpha + 16-bit (+ the mode-000 file when root)
    assert s.indexed_ok == 15 + (os.geteuid() == 0)
    assert any(h.path.endswith("ünïcødé 猫.jpg") for h in coll.search(image=str(photos / "chelsea.jpg"), k=3))
    # second run: known bad files are not retried and not reported again as new failures; a file
    # that could not be read is tried again (its permission may have been fixed)
    s2, _ = _index(tmp_path / "db", [photos], tiny)
    transient = {"locked.jpg"} & expected_bad
    assert {os.path.basename(p) for p, _ in s2.failed} == transient
    assert s2.known_failures == len(expected_bad - transient) and s2.retried == len(transient)


def _sqlite_count(db_file):
    try:
        con = sqlite3.connect(db_file, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM vectors").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_kill_minus_nine_mid_run_then_resume(tmp_path, tiny_clip_spec):
    """A real `vsearch index` process is killed with SIGKILL part-way; the next run finishes the
    job, embeds nothing twice, and the catalog verifies clean."""
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    n = 400
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")
    db = tmp_path / "db"
    vsearch_bin = os.path.join(os.path.dirname(sys.executable), "vsearch")
    cmd = [vsearch_bin, "index", str(folder), "--db", str(db), "--model", tiny_clip_spec,
           "--batch-size", "1", "--workers", "0", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done_before_kill = 0
    while time.time() < deadline:
        done_before_kill = _sqlite_count(str(db / "catalog.sqlite"))
        if done_before_kill >= 20 or proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < done_before_kill < n, "the run must be killed part-way for this test to mean anything"

    committed = _sqlite_count(str(db / "catalog.sqlite"))
    assert committed < n

    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    coll = vsearch.open(db)
    report = coll.catalog.verify()[0]
    assert report.ok and report.sql_count == n
    stats = coll.catalog.stats()
    assert stats["media_indexed"] == n and stats["vectors"]["image"] == n  # nothing twice
    # the second run embedded exactly what the first had not committed
    added = re.search(r"added (\d+)", out.stderr)
    assert added and int(added.group(1)) == n - committed, out.stderr
