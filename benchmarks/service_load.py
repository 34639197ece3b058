"""Load on `vsearch serve` over loopback: N concurrent clients sending face-verify and search calls
for a bounded time; prints throughput, p50/p95/p99/max latency and errors per scenario.

Two ways to load a server:

* open loop (``--rate R``, the default): the N clients together start R calls per second on a
  fixed schedule, whatever the server does. Latency is measured from each call's *scheduled*
  start, so a server that falls behind shows it as latency (no coordinated omission). This is the
  face-unlock situation: doors and laptops do not wait for each other.
* closed loop (``--rate 0``): each client sends its next call as soon as the previous one is
  answered: the server's maximum throughput, with latency ≈ clients / throughput.

By default it builds a demo catalog in a temporary folder (the 10 scikit-image photos, the packaged
model, Eileen Collins from the astronaut photo enrolled), starts `vsearch serve` on a free loopback port
and stops it at the end. ``--db DIR`` serves an existing catalog instead; ``--url`` loads a server
already running (loopback only) and ``--token-file`` gives its token.

``--flood terms`` adds a few more clients (``--flood-clients``) that send, back to back for the
whole scenario, searches of ``--flood-terms`` plus terms (5,000 by default: refused by the
server's bounds); ``--flood max-terms`` sends the most a search may ask instead (q of 500
characters, 8 plus and 8 minus terms of 60): whether ordinary searches keep their latency
while one caller sends costly requests.

usage: python benchmarks/service_load.py [--clients 50] [--duration 20] [--rate 25]
           [--scenario verify --scenario search] [--db DIR | --url URL --token-file F]
           [--person NAME --probe IMAGE] [--server-workers N]
           [--flood terms|max-terms --flood-clients 4 --flood-terms 5000] [--json]
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MAX_DURATION = 300.0  # seconds per scenario: a load test is bounded, whatever is asked
MAX_CLIENTS = 1000
QUERIES = ["a cat", "a horse in a field", "a cup of coffee", "a rocket launch", "an astronaut", "coins on a table",
           "the moon at night", "a clock", "a man with a camera", "stars in the sky"]


# -- results ---------------------------------------------------------------------------------------
@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)  # successful calls
    errors: dict[str, int] = field(default_factory=dict)  # by status code or exception name
    unexpected: int = 0  # 200 answers with the wrong content (a verify that does not match)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self, seconds: float) -> dict:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, max(0, int(round(p / 100 * len(lat))) - 1))], 1)

        return {"ok": len(lat), "errors": sum(self.errors.values()), "error_kinds": self.errors,
                "unexpected": self.unexpected, "seconds": round(seconds, 2),
                "throughput_per_s": round(len(lat) / seconds, 2) if seconds else 0.0,
                "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99), "max_ms": round(lat[-1], 1) if lat else None,
                "mean_ms": round(statistics.fmean(lat), 1) if lat else None}


# -- the calls -------------------------------------------------------------------------------------
def make_call(scenario: str, args, token: str | None, probe: bytes | None):
    """An async function (client, i) -> None that sends one call and raises on a bad answer."""
    if scenario == "verify":
        headers = {"Authorization": f"Bearer {token}"}

        async def verify(client, i, tally):
            r = await client.post("/v1/faces/verify", data={"name": args.person},
                                  files={"image": ("probe.jpg", probe, "image/jpeg")}, headers=headers)
            if r.status_code != 200:
                return str(r.status_code)
            if not r.json().get("match"):
                tally.unexpected += 1
            return None

        return verify
    if scenario == "search":
        async def search(client, i, tally):
            r = await client.get("/v1/search", params={"q": QUERIES[i % len(QUERIES)], "k": 10})
            if r.status_code != 200:
                return str(r.status_code)
            if not r.json()["results"]:
                tally.unexpected += 1
            return None

        return search
    if scenario == "search-image":
        async def search_image(client, i, tally):
            r = await client.post("/v1/search", files={"image": ("q.jpg", probe, "image/jpeg")}, data={"k": "10"})
            return None if r.status_code == 200 else str(r.status_code)

        return search_image
    raise SystemExit(f"unknown scenario {scenario!r}: verify, search or search-image")


def flood_query(kind: str, terms: int) -> str:
    """The query string of one costly search (encoded once: building it is not the load)."""
    from urllib.parse import urlencode

    if kind == "terms":
        params = [("q", "a cat")] + [("plus", f"t{i}") for i in range(terms)]
    elif kind == "max-terms":  # the most a search may ask: q of 500 characters, 8 + 8 terms of 60
        params = ([("q", "a photo of " + "a cat " * 81), ("k", "200")]
                  + [("plus", f"concept {i} " + "snow " * 9) for i in range(8)]
                  + [("minus", f"concept {i} " + "night " * 7 + "=0.5") for i in range(8)])
    else:
        raise SystemExit(f"unknown flood {kind!r}: terms or max-terms")
    return urlencode(params)


def flood_process(url: str, query: str, clients: int, seconds: float, out) -> None:
    """In a process of its own (so that its work does not delay the measured clients' event
    loop): ``clients`` connections send the search back to back for ``seconds``; puts
    (answers by status, latencies in ms) on ``out``."""
    import httpx

    answers: dict[str, int] = {}
    latencies: list[float] = []

    async def loop(client, end: float) -> None:
        while time.perf_counter() < end:
            started = time.perf_counter()
            try:
                r = await asyncio.wait_for(client.get("/v1/search?" + query), max(0.001, end + 5.0 - started))
                status = str(r.status_code)
            except asyncio.TimeoutError:
                status = "timeout"
            except Exception as exc:  # noqa: BLE001 - counted, not fatal
                status = type(exc).__name__
            answers[status] = answers.get(status, 0) + 1
            latencies.append((time.perf_counter() - started) * 1000)

    async def main() -> None:
        end = time.perf_counter() + seconds
        async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
            await asyncio.gather(*(loop(client, end) for _ in range(clients)))

    asyncio.run(main())
    out.put((answers, latencies))


async def run_scenario(url: str, call, clients: int, duration: float, rate: float, warmup: float,
                       server_pid: int | None = None, flood: str | None = None, flood_clients: int = 0) -> dict:
    """One scenario: ``warmup`` seconds unrecorded, then ``duration`` seconds recorded. Calls still
    unanswered ``duration`` seconds after the end (a server far behind an open-loop schedule) are
    cancelled and counted as "timeout" errors, so a run always ends in bounded time. ``flood``:
    the query string that ``flood_clients`` more clients, in another process, send back to back
    meanwhile (:func:`flood_process`), tallied apart by answer status."""
    import httpx

    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    # TCP_NODELAY, as curl and browsers set it: without it a multipart upload's last segment waits
    # for the server's delayed ACK (Nagle), which adds ~40 ms to every upload call on loopback
    transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=60.0) as client:
        async def one(i: int, scheduled: float, record: bool, hard_end: float) -> None:
            try:
                failed = await asyncio.wait_for(call(client, i, tally), max(0.001, hard_end - time.perf_counter()))
            except asyncio.TimeoutError:
                failed = "timeout"
            except Exception as exc:  # noqa: BLE001 - a load test counts failures, it does not stop
                failed = type(exc).__name__
            if not record:
                return
            if failed:
                tally.error(failed)
            else:
                tally.latencies_ms.append((time.perf_counter() - scheduled) * 1000)

        async def client_loop(c: int, start: float, end: float, record: bool) -> None:
            hard_end = end + max(5.0, end - start)
            i = c
            if rate > 0:
                period = clients / rate  # each client's share of the schedule
                scheduled = start + c / rate  # staggered: the calls of all clients interleave
                while scheduled < end:
                    delay = scheduled - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await one(i, scheduled, record, hard_end)
                    i += clients
                    scheduled += period
            else:
                while time.perf_counter() < end:
                    await one(i, time.perf_counter(), record, hard_end)
                    i += clients

        if warmup > 0:  # connections opened, caches and thread pools warm; not recorded
            t0 = time.perf_counter()
            await asyncio.gather(*(client_loop(c, t0, t0 + warmup, False) for c in range(clients)))
        flooding = None
        if flood and flood_clients:
            import multiprocessing

            flood_results = multiprocessing.get_context("spawn").Queue()
            flooding = multiprocessing.get_context("spawn").Process(
                target=flood_process, args=(url, flood, flood_clients, duration + 2.0, flood_results), daemon=True)
            flooding.start()
            await asyncio.sleep(1.0)  # the process started and flooding before the measure starts
        cpu0 = process_tree_cpu(server_pid) if server_pid else None
        client_cpu0 = time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(c, t0, t0 + duration, True) for c in range(clients)))
        elapsed = time.perf_counter() - t0
        cpu = process_tree_cpu(server_pid) - cpu0 if server_pid else None
        client_cpu = time.process_time() - client_cpu0
    out = tally.summary(max(elapsed, duration))
    if out["ok"] + out["errors"]:
        # this load generator shares the machine with the server: its own cost per call
        out["client_cpu_ms_per_call"] = round(client_cpu * 1000 / (out["ok"] + out["errors"]), 1)
    if flooding is not None:
        flood_answers, flood_ms = flood_results.get(timeout=duration + 60)
        flooding.join(timeout=10)
        ms = sorted(flood_ms)
        out["flood"] = {"calls": len(ms), "answers": flood_answers,
                        "p50_ms": round(ms[len(ms) // 2], 1) if ms else None, "max_ms": round(ms[-1], 1) if ms else None}
    if cpu is not None and out["ok"]:
        # CPU time the server (and its face workers) spent per answered call: unlike latency, this
        # does not depend on what else the machine is running
        out["server_cpu_ms_per_call"] = round(cpu * 1000 / (out["ok"] + out["errors"]), 1)
    return out


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and all its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, utime + stime
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _) in stats.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(stats[p][1] for p in tree if p in stats) / ticks


# -- a server to load ------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"refusing to load {url}: this load generator only targets loopback addresses")


def build_demo(folder: str) -> tuple[str, str | None, str]:
    """(catalog dir, enrolled person or None, probe image): 10 real photos, packaged model."""
    from tests.conftest import SKIMAGE_PHOTOS, skimage_rgb

    import vsearch

    photos = os.path.join(folder, "photos")
    os.makedirs(photos, exist_ok=True)
    for name in SKIMAGE_PHOTOS:
        skimage_rgb(name).save(os.path.join(photos, f"{name}.jpg"), quality=92)
    db = os.path.join(folder, "db")
    with vsearch.open(db, model="packaged") as coll:
        coll.index([photos], workers=0)
    # Eileen Collins (the astronaut photo) above her suit, whose badge dlib's HOG detector takes for
    # a second, weak face; the probe is the same view as a face-unlock camera sends it (smaller,
    # re-encoded): the verify scenario measures matching calls
    face = skimage_rgb("astronaut").crop((40, 0, 440, 300))
    enrolled, probe = os.path.join(folder, "collins.jpg"), os.path.join(folder, "probe.jpg")
    face.save(enrolled, quality=92)
    face.resize((360, 270)).save(probe, quality=80)
    try:
        from vsearch.catalog import Catalog
        from vsearch.faces.service import FaceService
    except ImportError:
        print("note: vsearch.faces is not installed; the verify scenario is skipped", file=sys.stderr)
        return db, None, probe
    catalog = Catalog(db)
    FaceService(catalog).enroll("eileen", [enrolled])
    catalog.close()
    return db, "eileen", probe


def start_server(db: str, token_file: str, workers: int | None, log_path: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "cli", "serve", "--db", db, "--port", str(port), "--token-file", token_file]
    if workers:
        cmd += ["--workers", str(workers)]
    with open(log_path, "w") as log:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vsearch serve exited ({proc.returncode}): {open(log_path).read()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("vsearch serve did not start within 180 s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients (connections)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds measured per scenario")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of unrecorded load first")
    ap.add_argument("--rate", type=float, default=25.0, help="calls per second from all clients together "
                    "(open loop); 0: each client calls again as soon as answered (closed loop)")
    ap.add_argument("--scenario", action="append", choices=["verify", "search", "search-image"],
                    help="repeatable; default: verify then search")
    ap.add_argument("--db", help="serve this catalog instead of a demo one")
    ap.add_argument("--url", help="load a server already running on loopback")
    ap.add_argument("--token-file", help="the server's token file (for verify)")
    ap.add_argument("--person", help="enrolled name to verify against (demo: eileen)")
    ap.add_argument("--probe", help="probe image for verify and search-image (demo: Eileen Collins, 360×270)")
    ap.add_argument("--server-workers", type=int, help="--workers for the server this script starts")
    ap.add_argument("--flood", choices=["terms", "max-terms"], help="meanwhile, costly searches from more clients")
    ap.add_argument("--flood-clients", type=int, default=4, help="clients sending the flood, back to back")
    ap.add_argument("--flood-terms", type=int, default=5000, help="plus terms per flood search (--flood terms)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    if not 0 <= args.flood_clients <= 64 or not 1 <= args.flood_terms <= 100_000:
        raise SystemExit("--flood-clients must be 0..64 and --flood-terms 1..100000")
    if not 1 <= args.clients <= MAX_CLIENTS or not 0 < args.duration <= MAX_DURATION:
        raise SystemExit(f"--clients must be 1..{MAX_CLIENTS} and --duration 0..{MAX_DURATION:.0f} s")
    scenarios = args.scenario or ["verify", "search"]

    from benchmarks.common import machine

    workdir = tempfile.mkdtemp(prefix="vsearch-load-")
    proc = None
    try:
        probe_path = args.probe
        if args.url:
            require_loopback(args.url)
            url, token_file = args.url.rstrip("/"), args.token_file
        else:
            if args.db:
                db = args.db
            else:
                print("building the demo catalog…", file=sys.stderr)
                db, person, demo_probe = build_demo(workdir)
                args.person = args.person or person
                probe_path = probe_path or demo_probe
            token_file = args.token_file or os.path.join(workdir, "serve.token")
            proc, url = start_server(db, token_file, args.server_workers, os.path.join(workdir, "server.log"))
        token = open(token_file).read().strip() if token_file and os.path.exists(token_file) else None
        probe = open(probe_path, "rb").read() if probe_path else None
        import httpx

        health = httpx.get(url + "/healthz").json()
        load_before = os.getloadavg()[0]  # 1-minute load: other jobs on the machine distort latency
        results = {}
        for scenario in scenarios:
            if scenario == "verify" and not (health.get("faces") and args.person and token and probe):
                print("skipping verify: needs the faces endpoints, --person, --probe and the token",
                      file=sys.stderr)
                continue
            if scenario == "search-image" and not probe:
                print("skipping search-image: needs --probe", file=sys.stderr)
                continue
            if scenario == "verify":  # the face workers start with the first face call: not measured
                httpx.post(url + "/v1/faces/verify", data={"name": args.person}, timeout=600,
                           files={"image": ("probe.jpg", probe, "image/jpeg")},
                           headers={"Authorization": f"Bearer {token}"})
            call = make_call(scenario, args, token, probe)
            flood = flood_query(args.flood, args.flood_terms) if args.flood else None
            results[scenario] = asyncio.run(run_scenario(url, call, args.clients, args.duration, args.rate,
                                                         args.warmup, proc.pid if proc else None, flood,
                                                         args.flood_clients))
        after = httpx.get(url + "/healthz").json()
        report = {"machine": machine(), "server": {"model": health["model"], "photos": health["photos_in_index"],
                                                   "workers": health["queue"]["workers"],
                                                   "queue_capacity": health["queue"]["capacity"],
                                                   "rejected_503": after["queue"]["rejected"]},
                  "clients": args.clients, "rate_per_s": args.rate or "closed loop", "duration_s": args.duration,
                  "flood": args.flood and {"kind": args.flood, "clients": args.flood_clients,
                                           **({"terms": args.flood_terms} if args.flood == "terms" else {})},
                  "load_average_before": load_before, "load_average_after": os.getloadavg()[0], "results": results}
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{report['machine']}; load average {load_before:.1f} before, {report['load_average_after']:.1f} after")
            print(f"server: {health['model']}, {health['photos_in_index']} photos, {health['queue']['workers']} workers; "
                  f"{args.clients} clients, {'closed loop' if not args.rate else f'{args.rate:g} calls/s offered'}, "
                  f"{args.duration:g} s per scenario")
            print(f"{'scenario':<13} {'ok':>6} {'errors':>6} {'calls/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
                  f"{'max ms':>7} {'CPU ms/call server':>18} {'client':>6}")
            for name, r in results.items():
                cpu = r.get("server_cpu_ms_per_call")
                print(f"{name:<13} {r['ok']:>6} {r['errors']:>6} {r['throughput_per_s']:>8.1f} {r['p50_ms'] or 0:>7.1f} "
                      f"{r['p95_ms'] or 0:>7.1f} {r['p99_ms'] or 0:>7.1f} {r['max_ms'] or 0:>7.1f} "
                      f"{cpu if cpu is not None else '-':>18} {r.get('client_cpu_ms_per_call', '-'):>6}"
                      + (f"  errors: {r['error_kinds']}" if r["errors"] else "")
                      + (f"  unexpected answers: {r['unexpected']}" if r["unexpected"] else ""))
                if "flood" in r:
                    f = r["flood"]
                    print(f"  meanwhile {args.flood_clients} clients sent {f['calls']} '{args.flood}' searches: answers "
                          f"{f['answers']}, p50 {f['p50_ms']} ms, max {f['max_ms']} ms")
        return 0 if all(r["errors"] == 0 for r in results.values()) else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
