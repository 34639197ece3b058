"""`vsearch index --regions` and `vsearch search --regions` end to end, on real photos."""
import io
import json
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import vsearch
from cli import app
from vsearch.regions.schema import REGION_SPACE, Region, RegionRun
from vsearch.schema import Media, Vector

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def index(db, photos, spec, *extra):
    args = ["index", photos, "--db", db, "--workers", "0", "-q", *extra]
    if spec:
        args += ["--regions", spec]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    return r.output


def state(db):
    """(regions per media path, region_runs rows, verify reports) of a catalog."""
    coll = vsearch.open(db, create=False)
    try:
        with Session(coll.catalog.engine) as s:
            per_path = Counter(dict(s.execute(
                select(Media.path, func.count(Region.vector_id)).join(Region, Region.media_id == Media.id)
                .group_by(Media.path)).all()))
            runs = s.execute(select(RegionRun.media_id, RegionRun.sha256, Media.sha256, RegionRun.regions)
                             .join(Media, Media.id == RegionRun.media_id)).all()
            # every region is a vector of the region space that belongs to the same photo
            orphans = s.scalar(select(func.count()).select_from(Region).join(Vector, Vector.id == Region.vector_id)
                               .where((Vector.space != REGION_SPACE) | (Vector.media_id != Region.media_id)))
            assert orphans == 0
        reports = {r.space: r for r in coll.catalog.verify()}
    finally:
        coll.catalog.engine.dispose()
    return per_path, runs, reports


def assert_consistent(reports):
    for r in reports.values():
        # ok compares id sets; equal counts also rule out an id added twice to the index
        assert r.ok and r.sql_count == r.index_count, r


def test_index_regions_stores_boxes_and_rerun_adds_nothing(few_photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    index(db, few_photos, "proposals", "--model", tiny_clip_spec, "--max-regions", 5)
    per_path, runs, reports = state(db)
    assert set(per_path) == {str(p) for p in few_photos.iterdir()}
    assert all(1 <= n <= 5 for n in per_path.values())
    assert len(runs) == 3 and all(run_sha == sha for _, run_sha, sha, _ in runs)
    assert reports[REGION_SPACE].sql_count == sum(per_path.values())
    assert_consistent(reports)
    coll = vsearch.open(db, create=False)
    with Session(coll.catalog.engine) as s:
        for m, r in s.execute(select(Media, Region).join(Region, Region.media_id == Media.id)).all():
            assert 0 <= r.x1 < r.x2 <= m.width and 0 <= r.y1 < r.y2 <= m.height
            assert r.source == "proposals" and r.label is None and r.mask is None
    coll.close()

    out = index(db, few_photos, "proposals", "--max-regions", 5)
    assert "unchanged 3" in out and "revisited" not in out
    again, _, reports = state(db)
    assert again == per_path
    assert_consistent(reports)


def test_pending_photos_and_new_settings_replace_old_regions(few_photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    index(db, few_photos, None, "--model", tiny_clip_spec)
    assert state(db)[0] == Counter()
    out = index(db, few_photos, "proposals", "--max-regions", 4)
    assert "revisited 3" in out  # indexed before --regions: picked up now
    per_path, _, reports = state(db)
    assert len(per_path) == 3 and max(per_path.values()) <= 4
    assert_consistent(reports)
    out = index(db, few_photos, "proposals", "--max-regions", 2)
    assert "revisited 3" in out  # other settings: regions made again, not added to
    per_path, runs, reports = state(db)
    assert max(per_path.values()) <= 2 and reports[REGION_SPACE].sql_count == sum(per_path.values())
    assert sorted(r[3] for r in runs) == sorted(per_path.values())
    assert_consistent(reports)


def test_deleted_and_changed_photos_take_their_regions_along(few_photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    index(db, few_photos, "proposals", "--model", tiny_clip_spec, "--max-regions", 3)
    (few_photos / "camera.jpg").unlink()
    out = index(db, few_photos, "proposals", "--max-regions", 3)
    assert "removed 1" in out
    per_path, runs, reports = state(db)
    assert str(few_photos / "camera.jpg") not in per_path and len(runs) == 2
    assert_consistent(reports)

    # changed without --regions: the photo's regions go with its old vectors ...
    coffee = few_photos / "coffee.jpg"
    Image.open(coffee).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(coffee, quality=90)
    index(db, few_photos, None)
    per_path, _, reports = state(db)
    assert str(coffee) not in per_path
    assert_consistent(reports)
    # ... and the next --regions run sees that they were made from other content
    out = index(db, few_photos, "proposals", "--max-regions", 3)
    assert "revisited 1" in out
    per_path, runs, reports = state(db)
    assert per_path[str(coffee)] >= 1 and all(run_sha == sha for _, run_sha, sha, _ in runs)
    assert_consistent(reports)


def test_search_regions_json_boxes_and_exact_ranking(few_photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    index(db, few_photos, "proposals", "--model", tiny_clip_spec, "--max-regions", 4)
    r = invoke("search", "a coffee cup", "--regions", "--json", "-k", "3", "--db", db)
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    assert len(hits) == 3 and [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    for h in hits:
        w, hgt = Image.open(h["path"]).size
        x1, y1, x2, y2 = h["box"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= hgt
        if h["whole_image"]:
            assert h["box"] == [0, 0, w, hgt]

    # oracle: the best of each photo's vectors (regions and whole photo), by brute force over SQL
    coll = vsearch.open(db, create=False)
    q = coll.query_vector([vsearch.QueryTerm(1.0, text="a coffee cup")])
    with Session(coll.catalog.engine) as s:
        rows = s.execute(select(Media.path, Vector.embedding).join(Media, Media.id == Vector.media_id)).all()
    best = {}
    for path, blob in rows:
        best[path] = max(best.get(path, -9.0), float(np.frombuffer(blob, np.float32) @ q))
    expected = sorted(best.items(), key=lambda kv: -kv[1])
    assert [h["path"] for h in hits] == [p for p, _ in expected]
    assert [h["score"] for h in hits] == pytest.approx([v for _, v in expected], abs=1e-5)
    api_hits = coll.search("a coffee cup", k=3, regions=True)
    assert [h.path for h in api_hits] == [h["path"] for h in hits] and hasattr(api_hits[0], "box")
    coll.close()

    html = tmp_path / "out.html"
    r = invoke("search", "a coffee cup", "--regions", "--db", db, "-k", "2", "--html", html)
    assert r.exit_code == 0 and "box" in r.stdout
    assert len(re.findall("data:image/jpeg;base64,", html.read_text())) == 2


def test_search_regions_without_regions_and_bad_options_are_clear_errors(few_photos, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    index(db, few_photos, None, "--model", tiny_clip_spec)
    r = invoke("search", "a cup", "--regions", "--db", db)
    assert r.exit_code == 2 and "--regions proposals" in r.output
    r = invoke("index", few_photos, "--db", db, "--regions", "selective", "--workers", "0", "-q")
    assert r.exit_code == 2 and "unknown --regions 'selective'" in r.output
    r = invoke("index", few_photos, "--db", db, "--max-regions", "3", "--workers", "0", "-q")
    assert r.exit_code == 2 and "--max-regions needs --regions" in r.output
    r = invoke("index", few_photos, "--db", db, "--regions", f"detector:{tmp_path / 'nope.pt'}", "-q")
    assert r.exit_code == 2 and "detector weights not found" in r.output


def test_detector_regions_carry_labels_and_scores(photo_dir, tmp_path, tiny_clip_spec, rcnn_weights):
    photos = tmp_path / "two"
    photos.mkdir()
    for name in ("coffee", "chelsea"):
        (photos / f"{name}.jpg").write_bytes((photo_dir / f"{name}.jpg").read_bytes())
    db = tmp_path / "db"
    index(db, photos, f"detector:{rcnn_weights}", "--model", tiny_clip_spec, "--max-regions", 6)
    coll = vsearch.open(db, create=False)
    with Session(coll.catalog.engine) as s:
        regions = s.scalars(select(Region)).all()
    coll.close()
    assert 2 <= len(regions) <= 12
    assert {r.source for r in regions} == {"detector:fasterrcnn_mobilenet_v3_large_320_fpn"}
    assert {r.label for r in regions} <= {"class 1", "class 2"} and min(r.score for r in regions) >= 0.5
    assert_consistent(state(db)[2])


def test_extractor_gives_boxes_in_original_pixels(tiny_clip_spec):
    from indexer.pipeline import ExtractInput
    from tests.conftest import skimage_rgb
    from vsearch.encoders import load_encoder
    from vsearch.regions.extractor import RegionIndexer
    from vsearch.regions.proposals import ProposalConfig, ProposalSource

    ex = RegionIndexer(ProposalSource(ProposalConfig(max_regions=6)), 6, encoder=load_encoder(tiny_clip_spec))
    small = skimage_rgb("coffee")  # 600 x 400, as the indexer would hand over a 1800 x 1200 photo
    payload = ex.extract(ExtractInput(small, (1800, 1200)))
    direct = ProposalSource(ProposalConfig(max_regions=6))(small)
    assert np.allclose(payload.boxes, direct.boxes * 3, atol=1e-3)
    assert payload.vectors.shape == (len(direct), ex.encoder.info.dim)


def test_thumbnail_draws_the_box_where_it_belongs(tmp_path):
    from vsearch.report import thumbnail_jpeg

    path = tmp_path / "grey.png"
    Image.new("RGB", (1000, 500), (128, 128, 128)).save(path)
    thumb = np.asarray(Image.open(io.BytesIO(thumbnail_jpeg(str(path), 200, box=[500, 100, 900, 400]))))
    assert thumb.shape[:2] == (100, 200)
    red = (thumb[..., 0] > 200) & (thumb[..., 1] < 90)
    ys, xs = np.nonzero(red)
    assert abs(xs.min() - 100) <= 2 and abs(xs.max() - 180) <= 2 and abs(ys.min() - 20) <= 2 and abs(ys.max() - 80) <= 2
    plain = np.asarray(Image.open(io.BytesIO(thumbnail_jpeg(str(path), 200))))
    assert not ((plain[..., 0] > 200) & (plain[..., 1] < 90)).any()


def test_a_tiny_photo_gets_no_regions_and_is_no_failure(few_photos, tmp_path, tiny_clip_spec):
    # a 1x1 photo's proposals are smaller than a pixel: nothing to crop, so no regions, and the
    # photo is indexed like any other (not reported as failed)
    Image.new("RGB", (1, 1), (200, 30, 30)).save(few_photos / "dot.png")
    db = tmp_path / "db"
    out = index(db, few_photos, "proposals", "--model", tiny_clip_spec, "--max-regions", 3)
    assert "failed 0" in out and "lies outside" not in out, out
    per_path, runs, reports = state(db)
    assert str(few_photos / "dot.png") not in per_path and len(per_path) == 3
    assert len(runs) == 4 and sorted(r[3] for r in runs)[0] == 0  # processed, with no regions
    assert_consistent(reports)
    out = index(db, few_photos, "proposals", "--max-regions", 3)
    assert "unchanged 4" in out and "revisited" not in out and "failed 0" in out, out


def test_search_regions_returns_non_utf8_names_as_the_filesystem_has_them(photo_dir, tmp_path, tiny_clip_spec):
    import os
    import shutil

    if os.fsencode("\udce9") != b"\xe9":
        pytest.skip("needs a file system that takes any byte in names")
    folder = tmp_path / "photos"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not UTF-8
    try:
        shutil.copy(photo_dir / "coffee.jpg", folder / name)
    except (OSError, UnicodeEncodeError):
        pytest.skip("the file system refuses this name")
    db = tmp_path / "db"
    index(db, folder, "proposals", "--model", tiny_clip_spec, "--max-regions", 3)
    from vsearch.regions.search import search_regions

    coll = vsearch.open(db, create=False)
    try:
        hits = search_regions(coll.catalog, coll.encoder.encode_text(["a coffee cup"])[0], k=1)
        assert [h.path for h in hits] == [str(folder / name)]
        assert os.path.exists(hits[0].path)
    finally:
        coll.close()
