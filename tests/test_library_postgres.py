"""Tags, `vsearch tags` and `vsearch duplicates` with the metadata on PostgreSQL (set
VSEARCH_TEST_PG_URL; skipped otherwise)."""
import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from cli import app

PG_URL = os.environ.get("VSEARCH_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="no PostgreSQL: set VSEARCH_TEST_PG_URL")


def test_tags_and_duplicates_on_postgres(photos, tmp_path, tiny_clip_spec, pg_url):
    assert pg_url == PG_URL
    runner = CliRunner()

    def invoke(*a):
        return runner.invoke(app, [str(x) for x in a], catch_exceptions=False)

    shutil.copy(photos / "coins.jpg", photos / "coins copy.jpg")
    db = tmp_path / "idx"
    r = invoke("index", photos, "--db", db, "--db-url", PG_URL, "--model", tiny_clip_spec, "--workers", "0", "-q")
    assert r.exit_code == 0, r.output
    assert invoke("tag", "--labels", "cat,rocket", "--label-threshold", "cat=-1", "--db", db, "--db-url", PG_URL).exit_code == 0
    counts = {row["label"]: row["photos"] for row in json.loads(invoke("tags", "--json", "--db", db, "--db-url", PG_URL).stdout)}
    assert counts["cat"] == 11  # a threshold of -1 lets every photo through
    # the random tiny model finds everything alike: at threshold 1 only the sha256 copies remain
    out = json.loads(invoke("duplicates", "--json", "--threshold", "1", "--db", db, "--db-url", PG_URL).stdout)
    exact = [g for g in out["groups"] if g["kind"] == "exact"]
    assert len(exact) == 1 and {exact[0]["best"]["path"].rsplit("/", 1)[-1],
                                exact[0]["others"][0]["path"].rsplit("/", 1)[-1]} == {"coins.jpg", "coins copy.jpg"}
