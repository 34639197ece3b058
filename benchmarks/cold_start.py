"""Cold start: `vsearch --help` and a text query, each as its own process, torch against onnx.

Each command runs as a fresh process (wall time from start to exit, CPU time and peak RSS from
GNU time); the runtimes alternate so that a busy machine slows both alike; medians are printed,
with the load average before and after. The catalog holds 10 real photos (scikit-image samples)
indexed with the chosen model; the ONNX export is made before timing (it is a one-time cost,
reported separately by `vsearch doctor`).

The processes run as an installed vsearch does: Python's bytecode cache is on (in a folder of this
run, so that no source tree is written to), and one untimed run of each command comes first (it
compiles the bytecode and saves the ONNX Runtime graph a session loads from).

``--against DIR`` times another checkout of vsearch (e.g. the main branch) on the same catalog,
alternating with this one, for a before/after ratio from one run: its onnx rows are labelled
``before``. ``--runtimes onnx`` leaves out the (slow) torch rows.

usage: python benchmarks/cold_start.py [--runs 5] [--model packaged|clip-b32] [--against DIR] [--runtimes torch,onnx]
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


def run_once(argv: list[str], env: dict, cwd: str = ROOT) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds (user + system), peak RSS in MB, stdout tail) of one process.

    Peak RSS comes from GNU time, a small parent: a child forked from this (torch-sized) process
    would report this process's size as its own peak."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        t = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", rss_file.name, *argv], env=env, cwd=cwd,
                              capture_output=True, text=True)
        wall = time.perf_counter() - t
        if done.returncode != 0:
            raise RuntimeError(f"{argv[-3:]} failed ({done.returncode}): {done.stderr[-500:]}")
        user, system, rss_kb = rss_file.read().split()[-3:]
    out = done.stdout.strip()
    return wall, float(user) + float(system), int(rss_kb) / 1024, out.splitlines()[-1] if out else ""


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


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
    ap.add_argument("--against", metavar="DIR", help="another vsearch checkout to time alternately (label: before)")
    ap.add_argument("--runtimes", default="torch,onnx", help="comma-separated: torch, onnx")
    args = ap.parse_args(argv)
    runtimes = [r for r in ("torch", "onnx") if r in args.runtimes.split(",")]

    from benchmarks.common import machine

    work = tempfile.mkdtemp(prefix="vsearch-cold-")
    db = os.path.join(work, "db")
    name = build_catalog(db, args.model)
    print(f"machine: {machine()}")
    print(f"model: {name}  catalog: 10 photos  runs: {args.runs} per runtime, alternating", flush=True)
    trees = {"": ROOT}
    if args.against:
        trees["before"] = os.path.abspath(args.against)
        print(f"before: {trees['before']}  after: {ROOT}")
    py = sys.executable
    cli = [py, "-c", "from cli import app; app()"]
    commands = {
        "vsearch --help": cli + ["--help"],
        'vsearch search "a cat"': cli + ["search", "a cat", "--db", db],
        'Python API search("a cat")': [py, "-c", API_QUERY, db],
    }
    variants = [(label, runtime, tree) for label in commands
                for runtime in (runtimes[:1] if "help" in label else runtimes)
                for tree in trees if runtime == "onnx" or not tree]

    def run(label, runtime, tree):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update({"PYTHONPATH": trees[tree], "PYTHONPYCACHEPREFIX": os.path.join(work, f"pycache{tree}"),
                    "VSEARCH_RUNTIME": runtime, "VSEARCH_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
        return run_once(commands[label], env, cwd=trees[tree])

    for variant in variants:  # warm-up: bytecode compiled, ONNX Runtime's optimized graph saved
        run(*variant)
    loads = [load_average()]
    results: dict[tuple, list[tuple[float, float, float]]] = {}
    notes = {}
    for _ in range(args.runs):
        for label, runtime, tree in variants:
            wall, cpu, rss, tail = run(label, runtime, tree)
            print(f"  {label:<30} {runtime:<6} {tree:<6} {wall:6.2f} s  cpu {cpu:5.2f} s {rss:6.0f} MB", flush=True)
            results.setdefault((label, runtime, tree), []).append((wall, cpu, rss))
            if "torch imported" in tail:
                notes[(label, runtime, tree)] = tail
    loads.append(load_average())
    print(f"load average (1, 5, 15 min) before: {loads[0]}  after: {loads[1]}")
    print(f"{'command':<30} {'runtime':<14} {'wall s (median)':>16} {'cpu s':>7} {'peak RSS MB':>12}")
    med = {}
    for key, rows in results.items():
        med[key] = tuple(statistics.median(r[i] for r in rows) for i in range(3))
    for label in commands:
        keys = [k for k in med if k[0] == label]
        for key in keys:
            shown = f"{'any' if 'help' in label else key[1]} {key[2]}".strip()
            print(f"{label:<30} {shown:<14} {med[key][0]:>16.2f} {med[key][1]:>7.2f} {med[key][2]:>12.0f}  "
                  f"{notes.get(key, '')}")
        pairs = []
        if (label, "torch", "") in med and (label, "onnx", "") in med:
            pairs.append(("torch/onnx", med[(label, "torch", "")], med[(label, "onnx", "")]))
        if (label, "onnx", "before") in med:
            pairs.append(("before/after", med[(label, "onnx", "before")], med[(label, "onnx", "")]))
        for what, a, b in pairs:
            print(f"{'':<30} {what:<14} {a[0] / b[0]:>15.2f}x {a[1] / b[1]:>6.2f}x {a[2] / b[2]:>11.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
