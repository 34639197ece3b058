"""The core install (no torch) against the full install, command by command.

Runs where ``VSEARCH_CORE_PYTHON`` names the Python of a core virtual environment (``pip install
.`` alone; ``.ci/run`` builds one); the test process itself is the full install. The full install
exports the models (``vsearch models export``, or takes ``VSEARCH_CORE_MODELS``), indexes real
photos and answers searches on ONNX Runtime (its CPU default); the core install, given only the
exported folder and an empty cache, must give the same results (same order, cosines within 1e-5)
and run every CPU command (``index --watch`` included), each behind an import guard
(``guarded_cli.py``) that fails the test if torch or a library built on it is ever imported.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.faces.conftest import face_images  # noqa: F401  (the fixture: real face photos)

CORE_PYTHON = os.environ.get("VSEARCH_CORE_PYTHON")
pytestmark = pytest.mark.skipif(not CORE_PYTHON, reason="set VSEARCH_CORE_PYTHON to a core install's python")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUARD = os.path.join(ROOT, "tests", "core_install", "guarded_cli.py")
TOLERANCE = 1e-5
TEXTS = ["a cat", "a cup of coffee", "a rocket launch", "an astronaut", "a horse"]


class Side:
    """One install: how to run its command line, and with which environment."""

    def __init__(self, name: str, argv: list[str], env: dict, workdir: str):
        self.name, self.argv, self.env, self.workdir = name, argv, env, workdir
        self.guard_log = env.get("VSEARCH_IMPORT_GUARD_LOG")

    def run(self, *args: str, ok=(0,), timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv + list(args), env=self.env, cwd=self.workdir, capture_output=True,
                              text=True, timeout=timeout)
        self.check_guard()
        assert proc.returncode in ok, f"{self.name}: vsearch {' '.join(args)} -> {proc.returncode}\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def json(self, *args: str):
        return json.loads(self.run(*args, "--json").stdout)

    def check_guard(self) -> None:
        if self.guard_log and os.path.exists(self.guard_log):
            with open(self.guard_log) as fh:
                pytest.fail(f"torch imported on the core install:\n{fh.read()[-4000:]}")


def _env(tmp, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSEARCH_") or k == "VSEARCH_CACHE"}
    env.update(PYTHONPATH=ROOT, VSEARCH_OFFLINE="1", HF_HUB_OFFLINE="1", VSEARCH_RUNTIME="onnx",
               VSEARCH_DB=str(tmp / "default-db"), **extra)
    return env


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("core-install")
    full = Side("full", [sys.executable, "-c", "import sys, cli; sys.argv[0] = 'vsearch'; cli.app()"], _env(tmp), ROOT)
    models = os.environ.get("VSEARCH_CORE_MODELS")
    if not models:
        models = str(tmp / "models")
        full.run("models", "export", models)
    core = Side("core", [CORE_PYTHON, GUARD],
                _env(tmp, VSEARCH_CACHE=str(tmp / "core-cache"), VSEARCH_MODEL_DIR=models,
                     VSEARCH_IMPORT_GUARD_LOG=str(tmp / "guard.log")), ROOT)
    return full, core


@pytest.fixture(scope="module")
def catalogs(sides, photo_dir, tmp_path_factory):
    """The same real photos indexed by both installs: {side name: catalog folder}."""
    tmp = tmp_path_factory.mktemp("catalogs")
    out = {}
    for side in sides:
        db = str(tmp / side.name)
        summary = side.json("index", str(photo_dir), "--db", db, "--model", "packaged")
        assert summary["added"] == len(os.listdir(photo_dir)) and not summary["failed"]
        out[side.name] = db
    return out


def _same_hits(full_hits: list[dict], core_hits: list[dict]) -> None:
    assert [h["path"] for h in core_hits] == [h["path"] for h in full_hits]
    for f, c in zip(full_hits, core_hits):
        assert abs(f["score"] - c["score"]) <= TOLERANCE, (f, c)


def test_core_venv_has_no_torch():
    probe = subprocess.run([CORE_PYTHON, "-c", "import importlib.util as u; print([m for m in ('torch', 'torchvision', "
                            "'open_clip', 'timm', 'transformers') if u.find_spec(m)])"], capture_output=True, text=True)
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr


def test_text_and_image_searches_match_the_full_install(sides, catalogs, photo_dir):
    full, core = sides
    n = str(len(os.listdir(photo_dir)))
    for text in TEXTS:
        _same_hits(full.json("search", text, "--db", catalogs["full"], "-k", n),
                   core.json("search", text, "--db", catalogs["core"], "-k", n))
    for photo in ("chelsea.jpg", "coffee.jpg"):
        query = ["--image", str(photo_dir / photo), "-k", n]
        _same_hits(full.json("search", *query, "--db", catalogs["full"]), core.json("search", *query, "--db", catalogs["core"]))
    mixed = ["a cup", "--image", str(photo_dir / "coffee.jpg"), "--plus", "a cat=0.5", "--minus", "night", "-k", n]
    _same_hits(full.json("search", *mixed, "--db", catalogs["full"]), core.json("search", *mixed, "--db", catalogs["core"]))


def test_explain_classify_tags_captions_duplicates(sides, catalogs, photo_dir, tmp_path):
    full, core = sides
    explained = core.json("search", "a cat", "--explain", "-k", "2", "--db", catalogs["core"])
    assert explained[0]["path"].endswith("chelsea.jpg") and explained[0]["explain"]["source"] == "occlusion"

    labels = ["-l", "cat,rocket,cup of coffee,horse"]
    assert core.json("classify", str(photo_dir / "chelsea.jpg"), *labels, "--db", catalogs["core"])[0]["top"] == "cat"
    assert core.json("classify", str(photo_dir), *labels, "--db", catalogs["core"]) == \
        full.json("classify", str(photo_dir), *labels, "--db", catalogs["full"])

    for side in sides:
        side.run("tag", *labels, "--db", catalogs[side.name])
    _same_hits(full.json("search", "an animal", "--tag", "cat", "--db", catalogs["full"]),
               core.json("search", "an animal", "--tag", "cat", "--db", catalogs["core"]))

    captions = tmp_path / "captions.txt"
    captions.write_text("a cat on a sofa\na cup of coffee\na rocket launch\n")
    core.run("captions", "add", str(captions), "--db", catalogs["core"])
    best = core.run("captions", "for-image", str(photo_dir / "coffee.jpg"), "--db", catalogs["core"]).stdout
    assert "a cup of coffee" in best.splitlines()[0]

    dup = tmp_path / "dup"
    shutil.copytree(photo_dir, dup)
    shutil.copy(photo_dir / "chelsea.jpg", dup / "chelsea copy.jpg")
    db = str(tmp_path / "dup-db")
    core.run("index", str(dup), "--db", db)
    groups = core.json("duplicates", "--db", db)["groups"]
    members = [sorted(os.path.basename(p["path"]) for p in [g["best"], *g["others"]]) for g in groups]
    assert members == [["chelsea copy.jpg", "chelsea.jpg"]], members


def test_faces_enroll_verify_identify_cluster(sides, face_images, tmp_path):  # noqa: F811
    _, core = sides
    db = str(tmp_path / "faces-db")
    photos = os.path.join(face_images)
    core.run("index", photos, "--db", db, "--faces")
    core.run("faces", "enroll", "obama", os.path.join(photos, "obama.jpg"), os.path.join(photos, "obama2.jpg"), "--db", db)
    match = core.json("faces", "verify", "obama", os.path.join(photos, "obama3.jpg"), "--db", db)
    assert match["match"] is True
    other = core.run("faces", "verify", "obama", os.path.join(photos, "biden.jpg"), "--db", db, "--json", ok=(1,))
    assert json.loads(other.stdout)["match"] is False
    found = core.json("faces", "identify", os.path.join(photos, "obama3.jpg"), "--db", db)
    assert "obama" in json.dumps(found)
    clusters = core.json("faces", "cluster", "--db", db)
    assert clusters and max(c["size"] for c in clusters) >= 3, clusters


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_the_page_and_searches(sides, catalogs):
    full, core = sides
    port = _free_port()
    server = subprocess.Popen(core.argv + ["serve", "--db", catalogs["core"], "--port", str(port)], env=core.env,
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, server.stderr.read() if server.poll() is not None else "timeout"
                time.sleep(0.5)
        page = urllib.request.urlopen(base + "/", timeout=30).read().decode()
        assert "<title>vsearch</title>" in page
        got = json.loads(urllib.request.urlopen(base + "/v1/search?q=a%20cat&k=5", timeout=60).read())["results"]
        want = full.json("search", "a cat", "-k", "5", "--db", catalogs["full"])
        _same_hits(want, [{"path": h["path"], "score": h["score"]} for h in got])
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    core.check_guard()


def test_a_missing_model_says_what_to_run_in_one_line(sides, catalogs, tmp_path):
    _, core = sides
    env = dict(core.env)
    del env["VSEARCH_MODEL_DIR"]
    proc = subprocess.run(core.argv + ["search", "a cat", "--db", catalogs["core"]], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    core.check_guard()
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "vsearch models export" in lines[0] and "vsearch[torch]" in lines[0], proc.stderr
    for args in (["search", "a cat", "--runtime", "torch", "--db", catalogs["core"]],
                 ["index", str(tmp_path), "--db", str(tmp_path / "db"), "--model", "clip:ViT-B-32/openai"],
                 ["models", "export", str(tmp_path / "m")]):
        proc = core.run(*args, ok=(2,))
        assert len(proc.stderr.strip().splitlines()) == 1 and "vsearch[torch]" in proc.stderr, proc.stderr


def test_doctor_lists_the_exported_models(sides):
    _, core = sides
    report = core.json("doctor")
    models = report["models"]
    assert models["model folder ($VSEARCH_MODEL_DIR)"] == core.env["VSEARCH_MODEL_DIR"]
    assert "packaged:effnet-lite0+minilm" in models and "dlib:resnet_v1" in models
    assert report["environment"]["torch"].startswith("not installed")


def test_index_watch_adds_a_new_photo(sides, photo_dir, tmp_path):
    _, core = sides
    folder, db = tmp_path / "watched", str(tmp_path / "watch-db")
    folder.mkdir()
    shutil.copy(photo_dir / "chelsea.jpg", folder / "chelsea.jpg")
    watcher = subprocess.Popen(core.argv + ["index", str(folder), "--db", db, "--watch"], env=core.env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in watcher.stderr:  # the first pass is done when it starts watching
            if line.startswith("watching"):
                break
        shutil.copy(photo_dir / "coffee.jpg", folder / "coffee.jpg")
        deadline = time.time() + 120
        while True:
            hits = core.json("search", "a cup of coffee", "-k", "1", "--db", db)
            if hits and hits[0]["path"].endswith("coffee.jpg"):
                break
            assert watcher.poll() is None and time.time() < deadline, "the new photo was not indexed"
            time.sleep(1)
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()
    core.check_guard()
