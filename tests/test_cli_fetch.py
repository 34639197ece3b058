"""Query images given as http(s) URLs, served by a local http.server on 127.0.0.1 only."""
import functools
import http.server
import json
import socket
import threading

import pytest
from typer.testing import CliRunner

from cli import app
from vsearch.fetch import FetchError, download, is_url, local_image

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def served(photo_dir):
    """Base URL of a server on 127.0.0.1 serving the test photos."""
    handler = functools.partial(_QuietHandler, directory=str(photo_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_is_url():
    assert is_url("http://x/a.jpg") and is_url("HTTPS://x/a.jpg")
    assert not is_url("photos/http.jpg") and not is_url("ftp://x/a.jpg")


def test_download_and_temporary_file(served, photo_dir):
    data = download(f"{served}/horse.jpg")
    assert data == (photo_dir / "horse.jpg").read_bytes()
    with local_image(f"{served}/horse.jpg") as path:
        assert path.endswith(".jpg") and open(path, "rb").read() == data
    import os

    assert not os.path.exists(path)  # removed after the query


def test_size_limit_missing_page_and_offline(served):
    with pytest.raises(FetchError, match="limit"):
        download(f"{served}/horse.jpg", max_bytes=1000)
    with pytest.raises(FetchError, match="HTTP 404"):
        download(f"{served}/nope.jpg")
    with pytest.raises(FetchError, match="cannot connect.*offline"):
        download(f"http://127.0.0.1:{_closed_port()}/horse.jpg", timeout=5)


def test_search_by_image_url(served, photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    assert invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q").exit_code == 0
    r = invoke("search", "--image", f"{served}/horse.jpg", "--db", db, "-k", "2", "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    assert hits[0]["path"] == str(photos / "horse.jpg") and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)

    r = invoke("search", "--image", f"{served}/missing.jpg", "--db", db)
    assert r.exit_code == 2 and "HTTP 404" in r.output and "Traceback" not in r.output
    r = invoke("search", "--image", f"http://127.0.0.1:{_closed_port()}/x.jpg", "--db", db)
    assert r.exit_code == 2 and "offline" in r.output
