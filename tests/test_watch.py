"""`vsearch index --watch`: batching of file-system events, and a real watcher on a real folder."""
import os
import shutil
import threading
import time

import pytest

from tests.conftest import skimage_rgb
from vsearch.watch import ChangeBatcher, watch


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_batcher_debounces_and_maps_events_to_paths(tmp_path):
    root = tmp_path / "lib"
    (root / "a").mkdir(parents=True)
    clock = FakeClock()
    b = ChangeBatcher([str(root)], debounce=2.0, max_wait=10.0, clock=clock)
    b.add("created", str(root / "a" / "x.jpg"))
    b.add("modified", str(root / "a" / "notes.txt"))  # not an image: ignored
    clock.t = 1.0
    b.add("modified", str(root / "a" / "x.jpg"))
    assert not b.ready()
    clock.t = 3.1
    assert b.ready()
    assert b.take() == [str(root / "a" / "x.jpg")]
    assert not b.ready() and b.take() == []
    # a deleted file: its folder is re-indexed (the indexer decides what is gone)
    b.add("deleted", str(root / "a" / "y.jpg"))
    # a moved file: the folder it left and where it went; files inside a listed folder are dropped
    b.add("moved", str(root / "a" / "z.jpg"), str(root / "b.jpg"))
    b.add("created", str(root / "a" / "w.jpg"))
    clock.t = 6.0
    assert b.take() == [str(root / "a"), str(root / "b.jpg")]
    # a vanished sub-folder: the nearest existing folder; a vanished root: nothing (not a deletion)
    b.add("deleted", str(root / "gone" / "deep" / "p.jpg"))
    assert b.take() == [str(root)]
    shutil.rmtree(root)
    b.add("deleted", str(root / "a"), is_directory=True)
    assert b.take() == [] and not b.ready()
    # continuous activity is cut into batches after max_wait
    b2 = ChangeBatcher([str(tmp_path)], debounce=2.0, max_wait=5.0, clock=clock)
    for step in range(6):
        clock.t = 10.0 + step
        b2.add("created", str(tmp_path / f"{step}.jpg"))
    assert b2.ready()


def wait_for(cond, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_watch_adds_moves_and_removes(tmp_path, tiny_clip_spec):
    import vsearch

    lib = tmp_path / "lib"
    (lib / "trip").mkdir(parents=True)
    skimage_rgb("chelsea").save(lib / "cat.jpg")
    db = tmp_path / "db"
    coll = vsearch.open(db, model=tiny_clip_spec)
    stop = threading.Event()
    batches = []
    thread = threading.Thread(target=watch, args=(coll, [str(lib)]),
                              kwargs=dict(on_batch=batches.append, stop=stop, debounce=0.3, workers=0), daemon=True)
    thread.start()
    reader = vsearch.open(db).catalog

    def paths():
        return set(reader.media_under([str(lib)]))

    try:
        assert wait_for(lambda: paths() == {str(lib / "cat.jpg")})  # the catch-up run
        skimage_rgb("coffee").save(lib / "trip" / "coffee.jpg")
        assert wait_for(lambda: str(lib / "trip" / "coffee.jpg") in paths())
        os.rename(lib / "trip" / "coffee.jpg", lib / "coffee.jpg")
        assert wait_for(lambda: paths() == {str(lib / "cat.jpg"), str(lib / "coffee.jpg")})
        assert any(b.summary is not None and b.summary.moved == 1 for b in batches)  # vector kept, not re-encoded
        (lib / "cat.jpg").unlink()
        assert wait_for(lambda: paths() == {str(lib / "coffee.jpg")})
        vec = reader.media_vector(reader.media_under([str(lib / "coffee.jpg")])[str(lib / "coffee.jpg")].id)
        assert reader.search(vec, k=1)[0][0].path == str(lib / "coffee.jpg")  # searchable
    finally:
        stop.set()
        thread.join(timeout=20)
        reader.engine.dispose()
    assert not thread.is_alive()
    assert all(b.error is None for b in batches)


def test_cli_index_watch_then_ctrl_c(tmp_path, tiny_clip_spec):
    import signal
    import subprocess
    import sys

    import vsearch

    lib = tmp_path / "lib"
    lib.mkdir()
    skimage_rgb("chelsea").save(lib / "cat.jpg")
    db = tmp_path / "db"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    proc = subprocess.Popen([sys.executable, "-c", "from cli import app; app()", "index", str(lib), "--db", str(db),
                             "--model", tiny_clip_spec, "--workers", "0", "-q", "--watch", "--debounce", "0.3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert wait_for(lambda: (db / "image.faiss").exists(), timeout=120)
        time.sleep(1.0)  # the observer is running once the first run has saved
        skimage_rgb("rocket").save(lib / "rocket.jpg")

        def indexed():
            cat = vsearch.open(db).catalog
            try:
                return str(lib / "rocket.jpg") in cat.media_under([str(lib)])
            finally:
                cat.engine.dispose()

        assert wait_for(indexed, timeout=60)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out  # Ctrl-C is how watching ends: one line, not an interruption
    assert "watching" in out and "added 1" in out and "Traceback" not in out
    assert out.rstrip().splitlines()[-1] == "stopped watching; everything indexed is saved"


def test_background_watch_for_serve(tmp_path, tiny_clip_spec):
    import vsearch
    from vsearch.commands.library import start_background_watch

    lib = tmp_path / "lib"
    lib.mkdir()
    db = tmp_path / "db"
    vsearch.open(db, model=tiny_clip_spec).close()  # an empty catalog bound to nothing yet
    skimage_rgb("coffee").save(lib / "coffee.jpg")
    coll = vsearch.open(db, model=tiny_clip_spec)
    coll.index([str(lib)], workers=0)
    coll.close()
    stop = start_background_watch(str(db), None, "cpu", [str(lib)])
    try:
        time.sleep(1.0)
        skimage_rgb("moon").save(lib / "moon.jpg")

        def indexed():
            cat = vsearch.open(db).catalog
            try:
                return set(cat.media_under([str(lib)])) == {str(lib / "coffee.jpg"), str(lib / "moon.jpg")}
            finally:
                cat.engine.dispose()

        assert wait_for(indexed, timeout=60)
    finally:
        stop()


def test_watch_leaves_out_what_the_index_run_left_out(tmp_path, tiny_clip_spec):
    """--exclude and hidden folders hold for the files the watcher sees appear, not only the first run."""
    import vsearch

    lib = tmp_path / "lib"
    lib.mkdir()
    db = tmp_path / "db"
    coll = vsearch.open(db, model=tiny_clip_spec)
    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(coll, [str(lib)]),
                              kwargs=dict(stop=stop, debounce=0.3, workers=0, exclude=("private",)), daemon=True)
    thread.start()
    reader = vsearch.open(db).catalog
    try:
        time.sleep(1.0)
        for sub in ("private", ".thumbnails"):
            (lib / sub).mkdir()
            skimage_rgb("coffee").save(lib / sub / "x.jpg")
        skimage_rgb("chelsea").save(lib / "cat.jpg")
        assert wait_for(lambda: str(lib / "cat.jpg") in reader.media_under([str(lib)]))
        time.sleep(1.0)  # a late batch for the left-out files would have landed by now
        assert set(reader.media_under([str(lib)])) == {str(lib / "cat.jpg")}
    finally:
        stop.set()
        thread.join(timeout=20)
        reader.engine.dispose()


def _watching(lib, db, tiny_clip_spec, notices):
    """A watcher of ``lib`` in a thread: (thread, stop event, batches, reader's media paths)."""
    import vsearch

    coll = vsearch.open(db, model=tiny_clip_spec)
    stop, batches = threading.Event(), []
    thread = threading.Thread(target=watch, args=(coll, [str(lib)]), daemon=True, kwargs=dict(
        on_batch=batches.append, stop=stop, debounce=0.3, workers=0, on_notice=notices.append, check_every=0.2))
    thread.start()
    return thread, stop, batches


def _paths(db, lib):
    import vsearch

    reader = vsearch.open(db).catalog
    try:
        return set(reader.media_under([str(lib)]))
    finally:
        reader.engine.dispose()


def test_watch_is_armed_again_when_the_root_is_replaced(tmp_path, tiny_clip_spec):
    """A folder replaced under the watcher (what unmounting a drive and mounting it again does to
    the watched inode): the watch follows the old folder and hears nothing from the new one."""
    lib, db, notices = tmp_path / "lib", tmp_path / "db", []
    lib.mkdir()
    skimage_rgb("chelsea").save(lib / "cat.jpg")
    thread, stop, batches = _watching(lib, db, tiny_clip_spec, notices)
    try:
        assert wait_for(lambda: _paths(db, lib) == {str(lib / "cat.jpg")})
        os.rename(lib, tmp_path / "away")
        lib.mkdir()
        skimage_rgb("coffee").save(lib / "coffee.jpg")
        # caught up: the new folder's photo added, the photo it lacks removed
        assert wait_for(lambda: _paths(db, lib) == {str(lib / "coffee.jpg")}, timeout=30)
        skimage_rgb("astronaut").save(lib / "astronaut.jpg")  # and heard again
        assert wait_for(lambda: str(lib / "astronaut.jpg") in _paths(db, lib), timeout=30)
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive() and all(b.error is None for b in batches)
    assert len(notices) == 1 and notices[0].startswith(f"{lib}: changed") and "catching up" in notices[0]


def _mount_tmpfs(folder) -> bool:
    import subprocess

    return subprocess.run(["mount", "-t", "tmpfs", "vsearch-test", str(folder)], capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting needs root")
def test_watch_hears_a_drive_unmounted_and_mounted_again(tmp_path, tiny_clip_spec):
    import subprocess

    lib, db, notices = tmp_path / "lib", tmp_path / "db", []
    lib.mkdir()
    if not _mount_tmpfs(lib):
        pytest.skip("cannot mount a tmpfs here")
    mounted = True
    try:
        skimage_rgb("chelsea").save(lib / "cat.jpg")
        thread, stop, batches = _watching(lib, db, tiny_clip_spec, notices)
        try:
            assert wait_for(lambda: _paths(db, lib) == {str(lib / "cat.jpg")})
            subprocess.run(["umount", str(lib)], check=True)
            mounted = False
            assert wait_for(lambda: len(notices) == 1)
            assert _paths(db, lib) == {str(lib / "cat.jpg")}  # an empty mount point deletes nothing
            assert _mount_tmpfs(lib)
            mounted = True
            skimage_rgb("chelsea").save(lib / "cat.jpg")
            skimage_rgb("coffee").save(lib / "coffee.jpg")
            assert wait_for(lambda: _paths(db, lib) == {str(lib / "cat.jpg"), str(lib / "coffee.jpg")}, timeout=30)
            (lib / "cat.jpg").unlink()
            assert wait_for(lambda: _paths(db, lib) == {str(lib / "coffee.jpg")}, timeout=30)
        finally:
            stop.set()
            thread.join(timeout=20)
    finally:
        if mounted:
            subprocess.run(["umount", str(lib)], check=True)
    assert not thread.is_alive() and all(b.error is None for b in batches)
    assert len(notices) == 2 and all("watching it again" in n for n in notices)


def test_root_watches_poll_a_root_that_cannot_be_watched(tmp_path):
    from vsearch.watch import RootWatches

    class NoWatchesLeft:  # what inotify answers once max_user_watches is reached
        def schedule(self, *args, **kwargs):
            raise OSError(28, "inotify watch limit reached")

        def is_alive(self):
            return False

    lib, notices = tmp_path / "lib", []
    lib.mkdir()
    from watchdog.events import FileSystemEventHandler

    watches = RootWatches(NoWatchesLeft(), FileSystemEventHandler(), [str(lib), str(tmp_path / "later")],
                          notices.append)
    try:
        assert notices == [f"{lib}: cannot be watched for changes (inotify watch limit reached); polling it instead",
                           f"{tmp_path / 'later'}: no such folder; watched once it is there"]
        assert watches.check() == []  # nothing changed: nothing said
        (tmp_path / "later").mkdir()
        assert watches.check() == [str(tmp_path / "later")] and notices[-1].endswith("catching up")
        assert "back" in notices[-1] and watches.check() == []
    finally:
        watches.stop()
