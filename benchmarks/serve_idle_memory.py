"""Memory of an idle `vsearch serve` and the latency of its first face request.

Builds the demo catalog of `benchmarks/service_load.py` (10 scikit-image photos, the packaged
model, one enrolled person), starts `vsearch serve` on it, waits until /healthz answers and the
tree is quiet, and sums the resident memory (RSS, from /proc) of the server and every process
below it. Then it sends one face verify and times it (the face workers start on that request),
and sums the tree's memory again.

usage: python benchmarks/serve_idle_memory.py [--settle 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/PID/task/*/children)."""
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return found


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> tuple[int, int]:
    """(bytes, processes) of ``pid`` and everything below it."""
    pids = tree(pid)
    return sum(rss_bytes(p) for p in pids), len(pids)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to wait after /healthz answers")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import httpx

    from benchmarks.service_load import build_demo, start_server

    workdir = tempfile.mkdtemp(prefix="vsearch-idle-")
    proc = None
    try:
        db, person, probe_path = build_demo(workdir)
        token_file = os.path.join(workdir, "serve.token")
        started = time.perf_counter()
        proc, url = start_server(db, token_file, None, os.path.join(workdir, "server.log"))
        ready_s = time.perf_counter() - started
        time.sleep(args.settle)
        idle, idle_n = tree_rss(proc.pid)
        health = httpx.get(url + "/healthz").json()
        first_ms = after = after_n = None
        if person and health.get("faces"):
            token = open(token_file).read().strip()
            probe = open(probe_path, "rb").read()
            t0 = time.perf_counter()
            r = httpx.post(url + "/v1/faces/verify", data={"name": person},
                           files={"image": ("probe.jpg", probe, "image/jpeg")},
                           headers={"Authorization": f"Bearer {token}"}, timeout=600)
            first_ms = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                raise SystemExit(f"verify answered {r.status_code}: {r.text}")
            t0 = time.perf_counter()
            httpx.post(url + "/v1/faces/verify", data={"name": person},
                       files={"image": ("probe.jpg", probe, "image/jpeg")},
                       headers={"Authorization": f"Bearer {token}"}, timeout=600)
            second_ms = (time.perf_counter() - t0) * 1000
            time.sleep(1)
            after, after_n = tree_rss(proc.pid)
        report = {"ready_s": round(ready_s, 1), "idle_tree_rss_mib": round(idle / 2**20),
                  "idle_processes": idle_n, "healthz_face_workers": health.get("face_workers"),
                  "first_verify_ms": first_ms and round(first_ms), "second_verify_ms": first_ms and round(second_ms),
                  "after_faces_tree_rss_mib": after and round(after / 2**20), "after_faces_processes": after_n,
                  "load_average": [round(x, 2) for x in os.getloadavg()]}
        print(json.dumps(report, indent=2) if args.json else
              "  ".join(f"{k}={v}" for k, v in report.items()))
    finally:
        if proc is not None and proc.poll() is None:
            import signal

            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except Exception:  # noqa: BLE001 - a benchmark's clean-up
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
