"""Watch mode latency: seconds from a photo written into a watched folder to it being searchable.

A watcher (``vsearch.watch.watch``, the code behind ``vsearch index PATH --watch``) runs in a
thread on a catalog of the scikit-image photos; photos are then written one at a time and the
script polls the catalog (as another process would) until each is found by a search with its own
vector. Baseline in the same run: indexing the same kind of file with a plain one-shot
``Collection.index([file])`` call, i.e. the work itself without the watcher.

usage: python benchmarks/watch.py [--model packaged] [--photos 6] [--debounce 0.5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="packaged")
    ap.add_argument("--photos", type=int, default=6)
    ap.add_argument("--debounce", type=float, default=0.5)
    args = ap.parse_args(argv)

    import vsearch
    from tests.conftest import SKIMAGE_PHOTOS, skimage_rgb
    from vsearch.watch import watch

    print(f"machine: {machine()}")
    work = tempfile.mkdtemp(prefix="vsearch-watch-")
    lib, db = os.path.join(work, "lib"), os.path.join(work, "db")
    os.makedirs(lib)
    images = [skimage_rgb(n) for n in SKIMAGE_PHOTOS]
    images[0].save(os.path.join(lib, "seed.jpg"))
    coll = vsearch.open(db, model=args.model)
    coll.index([lib], workers=0)  # model loaded, catalog created

    # baseline: one-shot indexing of single new files
    base = []
    for i in range(args.photos):
        path = os.path.join(work, f"oneshot_{i}.jpg")
        images[(i + 1) % len(images)].rotate(7 * (i + 1)).save(path, quality=90)
        t = time.perf_counter()
        coll.index([path], workers=0)
        base.append(time.perf_counter() - t)

    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(coll, [lib]),
                              kwargs=dict(stop=stop, debounce=args.debounce, catch_up=False), daemon=True)
    thread.start()
    time.sleep(1.0)  # observer started
    reader = vsearch.open(db).catalog
    latencies = []
    try:
        for i in range(args.photos):
            path = os.path.join(lib, f"new_{i}.jpg")
            t = time.perf_counter()
            images[(i + 3) % len(images)].rotate(11 * (i + 1)).save(path, quality=90)
            while True:
                state = reader.media_at([path]).get(path)
                if state is not None:
                    vec = reader.media_vector(state.id)
                    reader.forget_index("image")  # read the index as a fresh process would
                    if vec is not None and reader.search(vec, k=1)[0][0].path == path:
                        break
                if time.perf_counter() - t > 120:
                    raise SystemExit(f"{path} not searchable after 120 s")
                time.sleep(0.05)
            latencies.append(time.perf_counter() - t)
    finally:
        stop.set()
        thread.join(timeout=30)
        reader.engine.dispose()
        coll.close()
    print(f"model {coll.encoder.info.name}, debounce {args.debounce} s, {args.photos} photos written one at a time")
    print(f"one-shot index of one file: median {statistics.median(base):.2f} s (min {min(base):.2f}, max {max(base):.2f})")
    print(f"watch, written -> searchable: median {statistics.median(latencies):.2f} s "
          f"(min {min(latencies):.2f}, max {max(latencies):.2f}); "
          f"overhead over one-shot: {statistics.median(latencies) - statistics.median(base):+.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
