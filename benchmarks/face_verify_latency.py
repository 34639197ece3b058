"""Latency of one face verify call (face unlock), split into its stages.

Enrolls one person in a temporary catalog, then calls ``FaceService.verify`` on a 640x480 JPEG
probe many times with the models loaded (as a server would) and prints p50/p99 of the whole call
and of decode / detect / align / embed / compare.

    python benchmarks/face_verify_latency.py [--calls 200] [--images DIR]

``--images``: the face_recognition sdist's ``tests/test_images`` (obama.jpg enrolls, a 640x480
crop of obama2.jpg is the probe: two different photos). Without it, matplotlib's Grace Hopper
photo enrolls and a 640x480 re-framing of it is the probe.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STAGES = ["decode", "detect", "align", "embed", "compare"]


def make_probe(photo: str, out: str) -> str:
    """A 640x480 JPEG: a 4:3 window around the photo's upper part (where the face is), resized."""
    img = Image.open(photo).convert("RGB")
    w = img.width
    h = min(img.height, w * 3 // 4)
    crop = img.crop((0, int(img.height * 0.15), w, int(img.height * 0.15) + h)) if img.height > h else img
    crop.resize((640, 480), Image.Resampling.LANCZOS).save(out, quality=90)
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--images", help="folder with obama.jpg and obama2.jpg (face_recognition sdist)")
    ap.add_argument("--detector", default="hog")
    args = ap.parse_args(argv)

    from vsearch.catalog import Catalog
    from vsearch.faces.pipeline import load_pipeline
    from vsearch.faces.service import FaceService

    tmp = tempfile.mkdtemp(prefix="vsearch-bench-")
    if args.images:
        enroll_photo = os.path.join(args.images, "obama.jpg")
        probe = make_probe(os.path.join(args.images, "obama2.jpg"), os.path.join(tmp, "probe.jpg"))
    else:
        import matplotlib.cbook as cbook

        enroll_photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        probe = make_probe(enroll_photo, os.path.join(tmp, "probe.jpg"))

    t = time.perf_counter()
    pipeline = load_pipeline(args.detector)
    load_s = time.perf_counter() - t
    svc = FaceService(Catalog(os.path.join(tmp, "db")), pipeline=pipeline)
    svc.enroll("person", [enroll_photo])
    for _ in range(args.warmup):
        svc.verify("person", probe)
    total, stages = [], {s: [] for s in STAGES}
    matches = 0
    for _ in range(args.calls):
        r = svc.verify("person", probe)
        matches += r.match
        total.append(r.latency_ms)
        for s in STAGES:
            stages[s].append(r.timings_ms.get(s, 0.0))

    def pct(xs):
        return np.percentile(xs, 50), np.percentile(xs, 99)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load average {load[0]:.2f} (1 min)")
    print(f"probe: 640x480 JPEG, detector {args.detector}, {args.calls} calls after {args.warmup} warm-up; "
          f"models loaded once in {load_s:.2f} s; matched {matches}/{args.calls} (score {r.score:.3f})")
    print(f"{'stage':<10}{'p50 ms':>10}{'p99 ms':>10}")
    for s in STAGES:
        p50, p99 = pct(stages[s])
        print(f"{s:<10}{p50:>10.1f}{p99:>10.1f}")
    p50, p99 = pct(total)
    print(f"{'verify':<10}{p50:>10.1f}{p99:>10.1f}   (goal: p99 <= 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
