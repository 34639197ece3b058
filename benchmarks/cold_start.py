"""Cold start: `vsearch --help` and a text query, each as its own process, torch against onnx.

Each command runs as a fresh process (wall time from start to exit, peak RSS from wait4); the
runtimes alternate so that a busy machine slows both alike; medians are printed. The catalog holds
10 real photos (scikit-image samples) indexed with the chosen model; the ONNX export is made
before timing (it is a one-time cost, reported separately by `vsearch doctor`).

usage: python benchmarks/cold_start.py [--runs 5] [--model packaged|clip-b32]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

API_QUERY = ("import sys, vsearch\n"
             "with vsearch.open(sys.argv[1], create=False) as c:\n"
             "    c.search('a cat', k=5)\n"
             "print('torch imported:', 'torch' in sys.modules)\n")


def run_once(argv: list[str], env: dict) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout tail) of one process.

    Peak RSS comes from GNU time, a small parent: a child forked from this (torch-sized) process
    would report this process's size as its own peak."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        t = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *argv], env=env, cwd=ROOT,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t
        if done.returncode != 0:
            raise RuntimeError(f"{argv[-3:]} failed ({done.returncode}): {done.stderr[-500:]}")
        rss_mb = int(rss_file.read().split()[-1]) / 1024
    out = done.stdout.strip()
    return wall, rss_mb, out.splitlines()[-1] if out else ""


def build_catalog(db: str, model: str) -> str:
    from tests.conftest import SKIMAGE_PHOTOS, skimage_rgb

    import vsearch

    photos = os.path.join(os.path.dirname(db), "photos")
    os.makedirs(photos, exist_ok=True)
    for name in SKIMAGE_PHOTOS:
        skimage_rgb(name).save(os.path.join(photos, f"{name}.jpg"), quality=92)
    if model == "clip-b32":
        from benchmarks.index_throughput import random_clip

        spec = random_clip("cpu", "onnx").info.name  # exported to ONNX here, once
    else:
        spec = "packaged"
    with vsearch.open(db, model=spec, runtime="onnx") as coll:  # also writes the ONNX export
        coll.index([photos], workers=0)
        return coll.encoder.info.name


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model", default="packaged", choices=["packaged", "clip-b32"])
    args = ap.parse_args(argv)

    from benchmarks.common import machine

    work = tempfile.mkdtemp(prefix="vsearch-cold-")
    db = os.path.join(work, "db")
    name = build_catalog(db, args.model)
    print(f"machine: {machine()}")
    print(f"model: {name}  catalog: 10 photos  runs: {args.runs} per runtime, alternating", flush=True)
    py = sys.executable
    cli = [py, "-c", "from cli import app; app()"]
    commands = {
        "vsearch --help": cli + ["--help"],
        'vsearch search "a cat"': cli + ["search", "a cat", "--db", db],
        'Python API search("a cat")': [py, "-c", API_QUERY, db],
    }
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    notes = {}
    for _ in range(args.runs):
        for label, argv_ in commands.items():
            for runtime in ("torch", "onnx") if "help" not in label else ("torch",):
                env = {**os.environ, "PYTHONPATH": ROOT, "VSEARCH_RUNTIME": runtime, "VSEARCH_OFFLINE": "1",
                       "HF_HUB_OFFLINE": "1"}
                wall, rss, tail = run_once(argv_, env)
                print(f"  {label:<30} {runtime:<6} {wall:6.2f} s {rss:6.0f} MB", flush=True)
                results.setdefault((label, runtime), []).append((wall, rss))
                if "torch imported" in tail:
                    notes[(label, runtime)] = tail
    print(f"{'command':<30} {'runtime':<7} {'wall s (median)':>16} {'peak RSS MB':>12}")
    for label in commands:
        med = {}
        if "help" in label:  # the runtime is not involved in printing help
            rows = results[(label, "torch")]
            print(f"{label:<30} {'any':<7} {statistics.median(r[0] for r in rows):>16.2f} "
                  f"{statistics.median(r[1] for r in rows):>12.0f}")
            continue
        for runtime in ("torch", "onnx"):
            rows = results[(label, runtime)]
            med[runtime] = (statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows))
            print(f"{label:<30} {runtime:<7} {med[runtime][0]:>16.2f} {med[runtime][1]:>12.0f}  "
                  f"{notes.get((label, runtime), '')}")
        print(f"{'':<30} {'ratio':<7} {med['torch'][0] / med['onnx'][0]:>15.1f}x {med['torch'][1] / med['onnx'][1]:>11.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
