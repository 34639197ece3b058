"""`vsearch verify --json`: the consistency report as one JSON document, with the same exit codes."""
import json

from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_verify_json_reports_and_repairs(photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    assert invoke("index", photos, "--db", db, "--model", tiny_clip_spec, "--workers", "0", "-q").exit_code == 0
    r = invoke("verify", "--json", "--db", db)
    body = json.loads(r.stdout)
    assert r.exit_code == 0 and body["ok"] is True and body["repaired"] is None and body["writer"] is None
    (image,) = [s for s in body["spaces"] if s["space"] == "image"]
    assert image["sql_count"] == image["index_count"] == 10 and image["missing_from_index"] == []
    (db / "image.faiss").unlink()
    r = invoke("verify", "--json", "--db", db)
    body = json.loads(r.stdout)
    (image,) = [s for s in body["spaces"] if s["space"] == "image"]
    assert r.exit_code == 1 and body["ok"] is False and image["index_file_missing"] is True
    assert len(image["missing_from_index"]) == 10
    r = invoke("verify", "--repair", "--json", "--db", db)
    body = json.loads(r.stdout)
    assert r.exit_code == 0 and body["ok"] is True and body["repaired"] is True
