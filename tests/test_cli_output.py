"""The CLI as people use it: fast help, output that survives pipes, one rule for output files,
messages that keep their brackets, and errors instead of tracebacks."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def run_cli(*args, timeout=120):
    """`vsearch ARGS` in a fresh interpreter, stdout piped (not a terminal), COLUMNS unset."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", "from cli import app; app()", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


HEAVY = ("torch", "faiss", "sqlalchemy", "open_clip", "numpy")


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["search", "--no-such-option"], ["detect", "--help"],
                                  ["train", "--help"], ["faces", "--help"], ["index"]])
def test_help_version_and_usage_errors_import_no_heavy_module(args):
    code = ("import sys\nfrom cli import app\n"
            f"sys.argv = ['vsearch'] + {args!r}\n"
            "try:\n    app()\nexcept SystemExit as exc:\n    code = exc.code\n"
            f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules], code)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("LOADED []"), last
    assert "Traceback" not in r.stderr


def test_version():
    from vsearch import __version__

    r = invoke("--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"vsearch {__version__}"


def test_shell_completion_is_offered_and_completes():
    assert "--install-completion" in invoke("--help").stdout
    env = {"_VSEARCH_COMPLETE": "complete_bash", "COMP_WORDS": "vsearch sea", "COMP_CWORD": "1"}
    r = runner.invoke(app, [], env=env, prog_name="vsearch")
    assert r.exit_code == 0 and r.stdout.split() == ["search"]


def test_help_keeps_brackets():
    out = " ".join(invoke("detect", "--help").stdout.split())  # help is folded to the terminal's width
    assert "([x1, y1, x2, y2] in image pixels)" in out


def test_detect_defaults_shown_without_torch_match_the_library():
    from vsearch.commands import regions as cmd
    from vsearch.regions import detect

    assert (cmd.DEFAULT_THRESHOLD, cmd.DETECT_PROPOSALS, cmd.DEFAULT_PER_LABEL) == (
        detect.DEFAULT_THRESHOLD, detect.DETECT_PROPOSALS, detect.DEFAULT_PER_LABEL)


def test_error_messages_keep_brackets(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps([{"image": "a.jpg", "label": "cat", "box": "oops"}]))
    pred = tmp_path / "pred.json"
    pred.write_text("[]")
    r = invoke("eval", "detect", gt, pred)
    assert r.exit_code == 2
    assert "'box' must be [x1, y1, x2, y2] numbers" in r.output


@pytest.mark.parametrize("command", [
    ["search", "a cat", "--html"], ["detect", "x.jpg", "--labels", "cat", "--out"], ["train", "data", "--out"],
    ["build-index", "--ondisk"], ["faces", "calibrate", "people", "--plot"], ["eval", "embeddings", "data", "-m", "packaged", "--plot"],
    ["duplicates", "--html"],
])
def test_output_file_in_a_missing_folder_or_a_folder_is_a_clear_error(tmp_path, command):
    missing = tmp_path / "no" / "such" / "dir" / "out.file"
    r = invoke(*command, missing)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "does not exist" in r.output and str(missing.parent) in r.output.replace("\n", "")
    r = invoke(*command, tmp_path)
    assert r.exit_code == 2 and "is a folder" in r.output
    assert not (tmp_path / "no").exists()  # nothing created behind the user's back


def test_query_image_missing_or_a_folder_names_it(tmp_path):
    r = invoke("search", "--image", tmp_path / "nope.jpg", "--db", tmp_path / "db")
    assert r.exit_code == 2 and f"not found: {tmp_path / 'nope.jpg'}" in r.output
    r = invoke("search", "--image", tmp_path, "--db", tmp_path / "db")
    assert r.exit_code == 2 and "is a folder" in r.output and str(tmp_path) in r.output
    r = invoke("detect", tmp_path / "nope.jpg", "--labels", "cat")
    assert r.exit_code == 2 and "not found:" in r.output


def test_merge_shards_of_a_missing_folder_creates_no_catalog(tmp_path):
    r = invoke("merge-shards", tmp_path / "nope", "--db", tmp_path / "db")
    assert r.exit_code == 2 and f"no such shard folder: {tmp_path / 'nope'}" in r.output
    assert not (tmp_path / "db").exists()


def test_search_json_and_paths_exclusive(tmp_path):
    r = invoke("search", "cat", "--json", "--paths", "--db", tmp_path)
    assert r.exit_code == 2 and "one of --json and --paths" in r.output


def test_piped_output_keeps_whole_long_paths(photo_dir, tmp_path, tiny_clip_spec):
    deep = tmp_path / ("a folder with a rather long name [draft] " * 3).strip() / "and another level of folders"
    shutil.copytree(photo_dir, deep)
    db = tmp_path / "db"
    r = invoke("index", deep, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["added"] == 10 and summary["failed"] == [] and summary["model"].startswith("clip:")

    r = invoke("search", "--image", deep / "horse.jpg", "--db", db, "-k", "3")
    lines = r.stdout.splitlines()
    assert r.exit_code == 0 and len(lines) == 3
    rank, score, path = lines[0].split("\t")
    assert rank == "1" and float(score) == pytest.approx(1.0, abs=1e-3) and path == str(deep / "horse.jpg")

    r = invoke("search", "--image", deep / "horse.jpg", "--db", db, "-k", "4", "--paths")  # for xargs
    assert r.exit_code == 0, r.output
    paths = r.stdout.splitlines()
    assert len(paths) == 4 and paths[0] == str(deep / "horse.jpg") and all(Path(x).is_file() for x in paths)

    r = invoke("classify", deep / "horse.jpg", deep / "coffee.jpg", "--labels", "horse,coffee", "--db", db)
    assert r.exit_code == 0
    assert sorted(line.split(": ")[0] for line in r.stdout.splitlines()) == [str(deep / "coffee.jpg"), str(deep / "horse.jpg")]

    r = invoke("tag", "--labels", "horse,cup", "--threshold", "0", "--db", db, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tagged"] == 10


def test_doctor_json(tmp_path):
    r = invoke("doctor", "--db", tmp_path / "db", "--json")
    assert r.exit_code == 0
    report = json.loads(r.stdout)
    assert any("torch" in str(k).lower() or "torch" in json.dumps(v).lower() for k, v in report.items())


def _listening_socket():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def test_serve_on_a_busy_port_fails_before_loading_anything(tmp_path):
    with _listening_socket() as busy:
        port = busy.getsockname()[1]
        started = time.perf_counter()
        # no catalog at --db: had the server started loading, that would be the error
        r = run_cli("serve", "--port", port, "--db", tmp_path / "none", timeout=60)
        elapsed = time.perf_counter() - started
    assert r.returncode == 2, r.stderr
    assert f"port {port}" in r.stderr and "already in use" in r.stderr and "Traceback" not in r.stderr
    assert elapsed < 20  # a fresh interpreter and the CLI, not 30 s of models


def test_make_demo_installs_the_product_only():
    r = subprocess.run(["make", "-n", "-B", "demo"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0, r.stderr
    # the product with torch (the demo exports its models on first use), not the test tools
    assert "pip install -q -e '.[torch]'" in r.stdout and "[dev]" not in r.stdout
    r = subprocess.run(["make", "-n", "-B", "test"], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert "'.[dev]'" in r.stdout


def test_a_weight_that_is_not_a_number_is_an_error_everywhere(tmp_path):
    from vsearch.api import parse_weighted
    from vsearch.errors import QueryError

    assert parse_weighted("snow=0.5") == ("snow", 0.5) and parse_weighted("snow") == ("snow", 1.0)
    with pytest.raises(QueryError, match="must be a number"):
        parse_weighted("night=abc")  # the Python API and the server, not only the CLI
    r = invoke("search", "a cat", "--minus", "night=abc", "--db", tmp_path / "db")
    assert r.exit_code == 2 and "--minus" in r.output and "must be a number" in r.output


@pytest.mark.parametrize("term", ["snow=nan", "snow=inf", "snow=-inf", "snow=1e9"])
def test_a_weight_that_is_not_a_finite_number_is_an_error(tmp_path, term):
    from vsearch.api import parse_weighted
    from vsearch.errors import QueryError

    with pytest.raises(QueryError, match="must be a number"):
        parse_weighted(term)
    r = invoke("search", "a cat", "--plus", term, "--db", tmp_path / "db")
    assert r.exit_code == 2 and "--plus" in r.output and "must be a number" in r.output and "Traceback" not in r.output


def test_term_pattern_accepts_exactly_what_the_parser_accepts():
    """The HTTP API's OpenAPI document states the rule for a term as a regular expression."""
    import re

    from vsearch.errors import QueryError
    from vsearch.search import TERM_PATTERN, parse_weighted

    cases = ["snow", "snow=0.5", "snow=-2", " snow = .5 ", "snow=99.99", "snow=100", "snow=1e3", "snow=nan", "=0.5",
             "   ", "", "a=b", "E=mc=1", "snow=0.5\x1f", "\x1fsnow", "snow=", "a\nb=1", "==1", "x=+.5", "x=5.", "x=."]
    for term in cases:
        try:
            text, _ = parse_weighted(term)
            accepted = bool(text.strip())
        except QueryError:
            accepted = False
        assert bool(re.search(TERM_PATTERN, term)) == accepted, term


def test_thousands_of_terms_are_refused_before_the_model_loads(tmp_path):
    r = invoke("search", "a cat", *[a for i in range(5000) for a in ("--plus", f"concept {i}")], "--db", tmp_path / "db")
    assert r.exit_code == 2 and "5000 plus/minus terms" in r.output and "at most 16" in r.output
    r = invoke("search", "a" * 501, "--db", tmp_path / "db")
    assert r.exit_code == 2 and "501 characters" in r.output
    r = invoke("search", "a" * 400, "--plus", "b" * 400, "--plus", "c" * 400, "--minus", "d" * 400, "--db", tmp_path / "db")
    assert r.exit_code == 2 and "1600 characters together" in r.output
    r = invoke("search", "a cat", "-k", "10001", "--db", tmp_path / "db")
    assert r.exit_code == 2 and "at most 10000 results" in r.output
    assert not (tmp_path / "db").exists()


@pytest.fixture
def awkward_names(photo_dir, tmp_path, tiny_clip_spec):
    """A catalog of photos named with a newline, with a byte that is not UTF-8, and with a real
    backslash that reads like that byte escaped."""
    folder = tmp_path / "photos"
    folder.mkdir()
    names = {"newline": "two\nlines.jpg", "backslash": "caf\\xe9.jpg"}
    if os.fsencode("\udce9") == b"\xe9":
        names["byte"] = os.fsdecode(b"caf\xe9.jpg")
    made = {}
    for (key, name), src in zip(names.items(), ["horse.jpg", "coffee.jpg", "chelsea.jpg"]):
        try:
            shutil.copy(photo_dir / src, folder / name)
        except (OSError, UnicodeEncodeError):
            continue
        made[key] = str(folder / name)
    r = invoke("index", folder, "--db", tmp_path / "db", "--model", tiny_clip_spec, "--workers", "0", "-q")
    assert r.exit_code == 0, r.output
    return tmp_path / "db", made


def test_search_paths_null_keeps_a_name_with_a_newline_whole(awkward_names):
    db, made = awkward_names
    r = invoke("search", "a photo", "--db", db, "--paths", "--null")
    assert r.exit_code == 0, r.output
    out = r.stdout_bytes.split(b"\0")
    assert out[-1] == b"" and sorted(out[:-1]) == sorted(os.fsencode(p) for p in made.values())
    r = invoke("search", "a photo", "--db", db, "--paths")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == len(made) + 1  # the newline splits one path
    assert "--null" in r.stderr
    r = invoke("search", "a photo", "--db", db, "--null")
    assert r.exit_code == 2 and "--null goes with --paths" in r.output


def test_search_json_tells_an_undecodable_byte_from_a_backslash(awkward_names):
    import base64

    db, made = awkward_names
    if "byte" not in made:
        pytest.skip("needs a file system that takes any byte in names")
    r = invoke("search", "a photo", "--db", db, "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    shown = [h for h in hits if h["path"].endswith("caf\\xe9.jpg")]
    assert len(shown) == 2 and shown[0]["path"] == shown[1]["path"]  # the same text for both files
    exact = {base64.b64decode(h["path_bytes"]) if "path_bytes" in h else h["path"].encode() for h in shown}
    assert exact == {os.fsencode(made["byte"]), made["backslash"].encode()}
    assert [h for h in hits if "\n" in h["path"]][0]["path"] == made["newline"] and all(
        "path_bytes" not in h for h in hits if h["path"] != shown[0]["path"])
