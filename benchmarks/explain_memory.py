"""Memory and time of ``vsearch search --explain`` over a thin photo and over a normal one.

For each photo a catalog holding only it is indexed, then ``search "a cat" --explain --html``
runs in a fresh process (the occlusion map, then the explained thumbnail of the HTML page); its
peak RSS is read from ``wait4``. ``--against CHECKOUT`` runs the same commands from another
checkout (e.g. an older commit, unpacked with ``git archive``) for a before/after comparison.

    python -m benchmarks.explain_memory [--model packaged] [--against /path/to/checkout]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CLI = "import sys, cli; sys.argv[0] = 'vsearch'; cli.app()"


def photos(folder: str) -> dict[str, str]:
    """name -> path: the cat photo (451×300 JPEG), a 1×8000 and an 8000×1 PNG strip."""
    import numpy as np
    from PIL import Image

    from tests.conftest import skimage_rgb

    rng = np.random.default_rng(0)
    out = {"normal 451×300 JPEG": os.path.join(folder, "normal", "cat.jpg"),
           "thin 1×8000 PNG": os.path.join(folder, "thin", "strip.png"),
           "wide 8000×1 PNG": os.path.join(folder, "wide", "strip.png")}
    for path in out.values():
        os.makedirs(os.path.dirname(path))
    skimage_rgb("chelsea").save(out["normal 451×300 JPEG"], quality=92)
    Image.fromarray(rng.integers(0, 255, (8000, 1, 3), dtype=np.uint8)).save(out["thin 1×8000 PNG"])
    Image.fromarray(rng.integers(0, 255, (1, 8000, 3), dtype=np.uint8)).save(out["wide 8000×1 PNG"])
    return out


def run(code_root: str, args: list[str]) -> tuple[int, float, float]:
    """(exit code, peak RSS in MiB, seconds) of the CLI of ``code_root`` with ``args``."""
    env = {**os.environ, "PYTHONPATH": code_root}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], cwd=code_root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - started


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="packaged")
    ap.add_argument("--against", default=None, help="another checkout to measure too")
    args = ap.parse_args(argv)
    from benchmarks.common import machine

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    work = tempfile.mkdtemp(prefix="vsearch-explain-")
    checkouts = [("this checkout", ROOT)] + ([("--against", os.path.abspath(args.against))] if args.against else [])
    print("| photo | code | peak RSS | time |\n| --- | --- | ---: | ---: |")
    for name, path in photos(work).items():
        db = os.path.join(work, "db-" + name.split()[0])
        code, _, _ = run(ROOT, ["index", os.path.dirname(path), "--db", db, "--model", args.model, "-w", "0", "-q"])
        if code != 0:
            print(f"indexing {name} failed ({code})")
            return 1
        for label, root in checkouts:
            code, rss, seconds = run(root, ["search", "a cat", "--explain", "-k", "1", "--db", db,
                                            "--html", os.path.join(work, "out.html")])
            shown = f"{rss:.0f} MiB" if code == 0 else f"{rss:.0f} MiB (exit {code})"
            print(f"| {name} | {label} | {shown} | {seconds:.1f} s |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
