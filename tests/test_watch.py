"""`vsearch index --watch`: batching of file-system events, and a real watcher on a real folder."""
import os
import shutil
import threading
import time

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
