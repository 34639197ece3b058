"""`vsearch embed-shards | merge-shards | build-index` through typer's CliRunner."""
import json

import numpy as np
from typer.testing import CliRunner

from cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_embed_merge_search_verify(photos, tmp_path, tiny_clip_spec):
    (photos / "broken.jpg").write_bytes(b"nope")
    shards, db = tmp_path / "shards", tmp_path / "db"
    r = invoke("embed-shards", photos, "--out", shards, "--model", tiny_clip_spec, "--shard-size", "4",
               "--decode-threads", "2")
    assert r.exit_code == 0, r.output
    assert "3 shards written, 0 already done, of 3" in r.output and "10 embedded, 1 failed" in r.output
    r = invoke("embed-shards", photos, "--out", shards, "--model", tiny_clip_spec, "--shard-size", "4")
    assert r.exit_code == 0 and "0 shards written, 3 already done" in r.output

    r = invoke("merge-shards", shards, "--db", db)
    assert r.exit_code == 0, r.output
    assert "merged 3 shards" in r.output and "added 10, replaced 0, unchanged 0, stale 0, failed 1" in r.output
    assert "broken.jpg: not a recognised image format" in r.output
    r = invoke("merge-shards", shards, "--db", db)
    assert "added 0, replaced 0, unchanged 10, stale 0, failed 0 (+1 known)" in r.output

    r = invoke("search", "--image", photos / "horse.jpg", "--db", db, "--json", "-k", "1")
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["path"].endswith("horse.jpg")
    assert invoke("verify", "--db", db).exit_code == 0

    # with --db only what the catalog lacks is embedded, with the catalog's model
    r = invoke("embed-shards", photos, "--out", tmp_path / "more", "--db", db)
    assert r.exit_code == 0 and "nothing to embed: the catalog already holds all 11 files" in r.output
    (photos / "extra.jpg").write_bytes((photos / "coins.jpg").read_bytes())
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos / 'extra.jpg'}\n{photos / 'horse.jpg'}\n{photos / 'gone.jpg'}\n")
    r = invoke("embed-shards", "--list", listing, "--out", tmp_path / "more", "--db", db)
    assert r.exit_code == 0, r.output
    assert "gone.jpg: cannot stat" in r.output and "1 embedded, 0 failed" in r.output
    assert "1 file already in the catalog" in r.output
    r = invoke("merge-shards", tmp_path / "more", "--db", db)
    assert "added 1," in r.output
    r = invoke("embed-shards", photos, "--out", tmp_path / "x", "--db", db, "--model", "packaged")
    assert r.exit_code == 2 and "built with clip:" in r.output


def test_embed_refuses_a_folder_of_another_run(photos, tmp_path, tiny_clip_spec):
    out = tmp_path / "shards"
    assert invoke("embed-shards", photos / "coins.jpg", "--out", out, "--model", tiny_clip_spec).exit_code == 0
    r = invoke("embed-shards", photos, "--out", out, "--model", tiny_clip_spec)
    assert r.exit_code == 2 and "already holds a run of 1 files" in r.output and "--overwrite" in r.output
    r = invoke("embed-shards", photos, "--out", out, "--model", tiny_clip_spec, "--overwrite")
    assert r.exit_code == 0 and "10 embedded" in r.output
    r = invoke("embed-shards", tmp_path / "nothing-here", "--out", tmp_path / "o", "--model", tiny_clip_spec)
    assert r.exit_code == 1 and "no such file or folder" in r.output
    r = invoke("merge-shards", tmp_path / "nothing-here", "--db", tmp_path / "db")
    assert r.exit_code == 2 and "no such shard folder" in r.output


def test_build_index(tmp_path):
    from vsearch import ivfpq
    from vsearch.catalog import Catalog, MediaRecord

    db = tmp_path / "db"
    cat = Catalog(db)
    cat.bind_space("image", "synthetic", 16)
    x = np.random.default_rng(0).normal(size=(600, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    cat.add_media([MediaRecord(f"/p/{i}.jpg", 1, 1.0) for i in range(600)], x)
    cat.close()

    r = invoke("build-index", "--kind", "ivfpq", "--db", db)  # 600 vectors: the exact index belongs here
    assert r.exit_code == 2 and "below 25000 the catalog uses its exact index" in r.output
    r = invoke("build-index", "--kind", "hnsw", "--db", db)
    assert r.exit_code == 2 and "unknown --kind" in r.output

    out = tmp_path / "served" / "ivfpq.faiss"
    r = invoke("build-index", "--db", db, "--ondisk", out)  # output files: the folder must exist
    assert r.exit_code == 2 and "does not exist" in r.output
    out.parent.mkdir()
    r = invoke("build-index", "--db", db, "--ondisk", out, "--m", "5")
    assert r.exit_code == 2 and "must divide the dimension 16" in r.output
    r = invoke("build-index", "--db", db, "--ondisk", out, "--part-size", "250")
    assert r.exit_code == 0, r.output
    assert "IVF-PQ over 600 vectors" in r.output and "m 2 (2 bytes/vector)" in r.output and "3 parts" in r.output
    assert ivfpq.load_ondisk(str(out)).ntotal == 600
    assert not ivfpq.is_pq(Catalog(db).index("image").index)  # --ondisk leaves the catalog's index alone

    r = invoke("build-index", "--kind", "default", "--db", db)
    assert r.exit_code == 0 and "rebuilt image: flat index" in r.output
    assert invoke("verify", "--db", db).exit_code == 0
