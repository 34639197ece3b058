"""Latency of one face verify call (face unlock), split into its stages.

Enrolls one person in a temporary catalog, then calls ``FaceService.verify`` on a 640x480 JPEG
probe many times with the models loaded (as a server would) and prints p50/p99 of the whole call
and of decode / detect / align / embed / compare, for each embedder runtime (torch, onnx), the
runtimes' calls alternating in the same run over the same detector and aligner.

    python benchmarks/face_verify_latency.py [--calls 200] [--images DIR] [--runtime torch,onnx]

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
    ap.add_argument("--runtime", default="torch,onnx", help="comma-separated embedder runtimes to compare")
    args = ap.parse_args(argv)
    runtimes = [r.strip() for r in args.runtime.split(",") if r.strip()]

    from vsearch.catalog import Catalog
    from vsearch.faces.embedders import build_embedder
    from vsearch.faces.align import DlibFivePointAligner
    from vsearch.faces.detectors import build_detector
    from vsearch.faces.pipeline import PROBE_CONFIG, FacePipeline
    from vsearch.faces.service import FaceService

    tmp = tempfile.mkdtemp(prefix="vsearch-bench-")
    if args.images:
        enroll_photo = os.path.join(args.images, "obama.jpg")
        probe = make_probe(os.path.join(args.images, "obama2.jpg"), os.path.join(tmp, "probe.jpg"))
    else:
        import matplotlib.cbook as cbook

        enroll_photo = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        probe = make_probe(enroll_photo, os.path.join(tmp, "probe.jpg"))

    detector, aligner = build_detector(args.detector), DlibFivePointAligner()
    services, load_s = {}, {}
    for rt in runtimes:
        t = time.perf_counter()
        embedder = build_embedder("dlib", runtime=rt)  # the ONNX export happens once, into the cache
        load_s[rt] = time.perf_counter() - t
        if getattr(embedder, "runtime", rt) != rt:
            print(f"warning: asked for {rt}, got {embedder.runtime}: {getattr(embedder, 'runtime_notice', '')}")
        pipeline = FacePipeline(detector, aligner, embedder, PROBE_CONFIG)
        services[rt] = FaceService(Catalog(os.path.join(tmp, f"db-{rt}")), pipeline=pipeline)
        services[rt].enroll("person", [enroll_photo])
    for _ in range(args.warmup):
        for svc in services.values():
            svc.verify("person", probe)
    total = {rt: [] for rt in runtimes}
    stages = {rt: {s: [] for s in STAGES} for rt in runtimes}
    matches = {rt: 0 for rt in runtimes}
    last = {}
    for i in range(args.calls):
        order = runtimes if i % 2 == 0 else runtimes[::-1]  # alternate, so load drifts hit both
        for rt in order:
            r = services[rt].verify("person", probe)
            last[rt] = r
            matches[rt] += r.match
            total[rt].append(r.latency_ms)
            for s in STAGES:
                stages[rt][s].append(r.timings_ms.get(s, 0.0))

    def pct(xs):
        return np.percentile(xs, 50), np.percentile(xs, 99)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load average {load[0]:.2f} (1 min)")
    print(f"probe: 640x480 JPEG, detector {args.detector}, {args.calls} calls per runtime after {args.warmup} "
          f"warm-up, runtimes alternating")
    for rt in runtimes:
        print(f"\n[{rt}] embedder loaded in {load_s[rt]:.2f} s; matched {matches[rt]}/{args.calls} "
              f"(score {last[rt].score:.4f})")
        print(f"{'stage':<10}{'p50 ms':>10}{'p99 ms':>10}")
        for s in STAGES:
            p50, p99 = pct(stages[rt][s])
            print(f"{s:<10}{p50:>10.1f}{p99:>10.1f}")
        p50, p99 = pct(total[rt])
        print(f"{'verify':<10}{p50:>10.1f}{p99:>10.1f}   (goal: p99 <= 100 ms)")
    if len(runtimes) == 2:
        a, b = runtimes
        (a50, a99), (b50, b99) = pct(total[a]), pct(total[b])
        (e_a, _), (e_b, _) = pct(stages[a]["embed"]), pct(stages[b]["embed"])
        print(f"\nratio {a}/{b}: verify p50 {a50 / b50:.2f}x, p99 {a99 / b99:.2f}x; embed p50 {e_a / e_b:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
