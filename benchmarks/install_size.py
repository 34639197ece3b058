"""Size and install time of the core install (`pip install .`, no torch) and the full one
(`pip install '.[torch]'`), each in a fresh virtual environment.

    python benchmarks/install_size.py [--kinds core full] [--keep DIR]

pip's own wheel cache is used as it is (a second machine of a CI run has it warm; the figures say
which). Sizes are what `du` counts on disk; the load average is printed next to each time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = {"core": ".", "full": ".[torch]"}


def disk_mb(path: str) -> int:
    return int(subprocess.run(["du", "-sm", path], capture_output=True, text=True, check=True).stdout.split()[0])


def build(kind: str, folder: str) -> dict:
    venv = os.path.join(folder, f"venv-{kind}")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "-e", SPECS[kind]], cwd=ROOT, check=True)
    seconds = time.perf_counter() - started
    has_torch = subprocess.run([os.path.join(venv, "bin", "python"), "-c", "import importlib.util as u; "
                                "print(u.find_spec('torch') is not None)"], capture_output=True, text=True).stdout.strip()
    return {"kind": kind, "seconds": round(seconds, 1), "mb": disk_mb(venv), "torch": has_torch,
            "load": open("/proc/loadavg").read().split()[:3]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="+", default=list(SPECS), choices=list(SPECS))
    ap.add_argument("--keep", help="build the venvs here and keep them (default: a temporary folder, removed)")
    args = ap.parse_args(argv)
    folder = args.keep or tempfile.mkdtemp(prefix="vsearch-install-")
    try:
        for kind in args.kinds:
            r = build(kind, folder)
            print(f"{r['kind']}: {r['mb']} MB on disk, installed in {r['seconds']} s (torch: {r['torch']}; "
                  f"load {' '.join(r['load'])})", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
