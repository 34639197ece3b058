"""The library does what `vsearch index --regions`, `tag --example` and `--model auto` do, so a
Python user gets the same results: extractors chosen from options, no empty catalog left by a
first run that failed, example photos scanned, one way to resolve a model spec."""
import json
import shutil

import pytest
from typer.testing import CliRunner

import vsearch
from cli import app
from vsearch.api import parse_examples
from vsearch.encoders import resolve_auto, resolve_encoder
from vsearch.errors import UnknownModelError, VSearchError
from vsearch.regions.report import hit_json
from vsearch.zeroshot import LabelError

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _same_run(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("seconds", "images_per_second", "timings")}


@pytest.fixture
def three(photo_dir, tmp_path):
    d = tmp_path / "three"
    d.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg", "rocket.jpg"):
        shutil.copy(photo_dir / name, d / name)
    return d


def test_collection_index_with_regions_is_what_index_regions_gives(three, tmp_path, tiny_clip_spec):
    r = invoke("index", three, "--regions", "proposals", "--max-regions", "4", "--db", tmp_path / "cli",
               "--model", tiny_clip_spec, "-w", "0", "-q", "--json")
    assert r.exit_code == 0, r.output
    by_cli = json.loads(r.stdout)
    r = invoke("search", "a coffee cup", "--regions", "--json", "--db", tmp_path / "cli")
    cli_hits = json.loads(r.stdout)
    with vsearch.open(tmp_path / "api", model=tiny_clip_spec) as coll:
        summary = coll.index([str(three)], workers=0, regions="proposals", max_regions=4)
        hits = coll.search("a coffee cup", regions=True)
        with pytest.raises(VSearchError, match="--max-regions needs --regions"):
            coll.index([str(three)], workers=0, max_regions=4)
    assert _same_run(summary.to_json()) == _same_run(by_cli) and summary.added == 3
    assert [hit_json(h) for h in hits] == cli_hits and len(hits) == 3  # same photos, boxes and scores


def test_first_index_that_keeps_nothing_leaves_no_catalog(three, tmp_path, tiny_clip_spec):
    db = tmp_path / "db"
    with vsearch.open(db, model=tiny_clip_spec, discard_if_empty=True) as coll:
        summary = coll.index([str(tmp_path / "no-such-folder")], workers=0)
    assert summary.unavailable and not db.exists()
    with pytest.raises(UnknownModelError):  # a model that does not load leaves no catalog behind either
        with vsearch.open(db, model="foo", discard_if_empty=True) as coll:
            coll.index([str(three)], workers=0)
    assert not db.exists()
    with vsearch.open(db, model=tiny_clip_spec, discard_if_empty=True) as coll:
        assert coll.index([str(three)], workers=0).added == 3
    with vsearch.open(db, model=tiny_clip_spec, discard_if_empty=True) as coll:  # not new: never discarded
        coll.index([str(tmp_path / "no-such-folder")], workers=0)
    with vsearch.open(db, create=False) as coll:
        assert len(coll.search("a cat", k=5)) == 3
    with vsearch.open(tmp_path / "kept", model=tiny_clip_spec) as coll:  # by default a new catalog stays
        coll.index([str(tmp_path / "no-such-folder")], workers=0)
    assert (tmp_path / "kept").is_dir()


def test_parse_examples_scans_files_and_folders(three, tmp_path):
    found = parse_examples([f"CAT={three / 'chelsea.jpg'}", f"rocket ={three}", f"Cat={three / 'coffee.jpg'}"],
                           ["cat", "rocket"])
    assert {k: sorted(p.rsplit("/", 1)[-1] for p in v) for k, v in found.items()} == {
        "cat": ["chelsea.jpg", "coffee.jpg"], "rocket": ["chelsea.jpg", "coffee.jpg", "rocket.jpg"]}
    with pytest.raises(LabelError, match="write LABEL=PATH"):
        parse_examples([f"dog={three}"], ["cat"])
    with pytest.raises(LabelError, match="write LABEL=PATH"):
        parse_examples(["cat"], ["cat"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabelError, match="no image files at"):
        parse_examples([f"cat={tmp_path / 'empty'}"], ["cat"])


def test_resolve_encoder_is_resolve_auto_for_auto_and_load_encoder_otherwise(tiny_clip_spec):
    encoder, notice = resolve_encoder(tiny_clip_spec)
    assert notice is None and encoder is vsearch.encoders.load_encoder(tiny_clip_spec)
    assert resolve_encoder("auto") == resolve_auto() == resolve_encoder(None)
