"""What the commands do, done from Python: each API function gives what its command prints, and
the one way commands open a catalog closes it (and lets go of the writer lock) on failure too."""
import json
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import vsearch
from cli import app
from indexer import manifest as mf
from vsearch.catalog import Catalog
from vsearch.commands.common import CatalogRef
from vsearch.errors import ModelMismatchError
from vsearch.zeroshot import Calibration, classify_vectors, open_set_probabilities

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def broken_and_photos(photo_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.jpg", "coffee.jpg", "moon.jpg"):
        shutil.copy(photo_dir / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def test_collection_classify_is_what_classify_json_prints(broken_and_photos, tmp_path, packaged_encoder):
    labels = "cat,coffee cup,rocket"
    r = invoke("classify", broken_and_photos, "--labels", labels, "--json", "--model", "packaged",
               "--label-threshold", "rocket=0.2", "-k", "2")
    assert r.exit_code == 0, r.output
    with vsearch.open(tmp_path / "db", model="packaged") as coll:
        result = coll.classify(labels.split(","), [str(broken_and_photos)], k=2, label_thresholds={"rocket": 0.2})
    assert result.to_json() == json.loads(r.stdout)
    assert [os.path.basename(p) for p, _ in result.failures] == ["broken.jpg"]  # reported, the rest classified
    assert "skipped" in r.stderr and "broken.jpg" in r.stderr
    tops = {os.path.basename(i.path): i.top for i in result.images}
    assert tops["chelsea.jpg"] == "cat" and tops["moon.jpg"] is None  # "none of these" wins for the moon


def test_collection_classify_closed_set_and_whole_catalog(photo_dir, tmp_path, packaged_encoder):
    db = tmp_path / "db"
    assert invoke("index", photo_dir, "--db", db, "--model", "packaged", "--workers", "0", "-q").exit_code == 0
    r = invoke("classify", "--all", "--labels", "cat,rocket", "--closed-set", "--json", "--db", db)
    assert r.exit_code == 0, r.output
    with vsearch.open(db, create=False) as coll:
        result = coll.classify(["cat", "rocket"], closed_set=True)  # paths=None: every photo of the catalog
    assert result.to_json() == json.loads(r.stdout)
    assert all(i.top is not None and i.none is None for i in result.images)


def test_classify_vectors_decides_none_exactly_when_no_label_reaches_its_threshold():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    classifier = rng.normal(size=(8, 3)).astype(np.float32)
    labels = ["a", "b", "c"]
    cal = Calibration(1.0, 4.0, "test")
    found = classify_vectors([f"p{i}" for i in range(30)], vectors, classifier, labels, cal, k=2, overrides={"c": 2.0})
    cos = vectors @ classifier
    thresholds = np.array([1.0, 1.0, 2.0], np.float32)
    probs = open_set_probabilities(vectors, classifier, thresholds, cal.scale)
    for image, row, p in zip(found, cos, probs):
        reached = row >= thresholds
        assert (image.top is None) == (not reached.any())
        if image.top is not None:
            assert image.top == labels[int(np.argmax(p[:-1]))]
        assert image.none == pytest.approx(float(p[-1]))
        assert [lab for lab, _ in image.labels] == [labels[j] for j in np.argsort(-p[:-1], kind="stable")[:2]]
    assert {image.top for image in found} > {None}  # both decisions occur in this sample
    closed = classify_vectors(["x"] * 30, vectors, classifier, labels, cal, closed_set=True)
    assert all(i.top == labels[int(np.argmax(r))] and i.none is None for i, r in zip(closed, cos))
    assert classify_vectors([], np.zeros((0, 8), np.float32), classifier, labels, cal) == []


def test_thresholds_from_examples_is_what_tag_example_learns(photo_dir, tmp_path, packaged_encoder):
    db = tmp_path / "db"
    assert invoke("index", photo_dir, "--db", db, "--model", "packaged", "--workers", "0", "-q").exit_code == 0
    r = invoke("tag", "--labels", "cat,horse", "--example", f"horse={photo_dir / 'horse.jpg'}", "--db", db)
    assert r.exit_code == 0, r.output
    with vsearch.open(db, create=False) as coll:
        learned = coll.thresholds_from_examples({"horse": [str(photo_dir / "horse.jpg")]}, ["cat", "horse"])
        assert coll.thresholds_from_examples({}, ["cat"]) == {}
    assert set(learned) == {"horse"} and learned["horse"] < 0.40  # examples only loosen the default
    assert f"horse: threshold {learned['horse']:.3f} learned from 1 example photo" in r.output


def test_manifest_gather_and_for_catalog(photo_dir, tmp_path, tiny_clip_spec):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photo_dir / 'coins.jpg'}\nmissing.jpg\n")
    both = mf.gather([str(photo_dir)], listing)
    assert sorted(e.path for e in both.entries) == sorted(e.path for e in mf.from_paths([str(photo_dir)]).entries)
    assert [os.path.basename(p) for p, _ in both.problems] == ["missing.jpg"]
    assert [os.path.basename(e.path) for e in mf.gather((), listing).entries] == ["coins.jpg"]

    cat = Catalog(tmp_path / "db")
    try:
        todo, model = mf.for_catalog(both, cat, "auto")  # an empty catalog takes the model asked for
        assert model == "auto" and len(todo.entries) == len(both.entries)
        cat.bind_space("image", tiny_clip_spec, 4)
        todo, model = mf.for_catalog(both, cat)  # a filled one names its own
        assert model == tiny_clip_spec
        with pytest.raises(ModelMismatchError, match="built with"):
            mf.for_catalog(both, cat, "packaged")
    finally:
        cat.close()


def test_catalog_ref_closes_and_lets_go_of_the_writer_lock_on_failure(tmp_path):
    ref = CatalogRef(str(tmp_path / "db"))
    with pytest.raises(RuntimeError, match="boom"):
        with ref.catalog(create=True) as cat:
            cat.lock_for_writing()
            raise RuntimeError("boom")
    assert cat.writer() is None
    with ref.catalog(save=False) as again:  # a reader: the lock is free, nothing is written
        again.lock_for_writing()
    assert again.writer() is None and ref.exists()
    assert not CatalogRef(str(tmp_path / "elsewhere")).exists()


def test_evaluation_results_carry_what_eval_json_prints(photo_dir, tmp_path, packaged_encoder):
    from vsearch.evaluate import evaluate_classification, evaluate_retrieval, read_pairs

    root = tmp_path / "ds"
    for label, name in {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}.items():
        (root / label).mkdir(parents=True)
        shutil.copy(photo_dir / f"{name}.jpg", root / label / f"{name}.jpg")
    r = invoke("eval", "classify", root, "--model", "packaged", "--json", "--db", tmp_path / "nodb")
    assert r.exit_code == 0, r.output
    result = evaluate_classification(packaged_encoder, str(root))
    assert json.loads(json.dumps(result.to_json())) == json.loads(r.stdout)
    assert result.model == packaged_encoder.info.name

    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"image,caption\n{photo_dir}/chelsea.jpg,a cat\n{photo_dir}/rocket.jpg,a rocket\n")
    r = invoke("eval", "retrieval", pairs, "--model", "packaged", "--json", "--db", tmp_path / "nodb")
    assert r.exit_code == 0, r.output
    result = evaluate_retrieval(packaged_encoder, read_pairs(str(pairs)))
    assert json.loads(json.dumps(result.to_json())) == json.loads(r.stdout)


def _without_times(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in ("seconds", "timings", "images_per_second")}


def test_index_tag_tags_and_captions_results_carry_what_their_json_prints(photo_dir, tmp_path, packaged_encoder):
    from vsearch.captions import captions_for_image, search_captions
    from vsearch.tags import TaggingConfig, tag_collection, tag_counts
    from vsearch.zeroshot import load_templates

    db = tmp_path / "db"
    r = invoke("index", photo_dir, "--db", db, "--model", "packaged", "--workers", "0", "-q", "--json")
    assert r.exit_code == 0, r.output
    printed = json.loads(r.stdout)
    with vsearch.open(tmp_path / "again", model="packaged") as coll:
        summary = coll.index([str(photo_dir)], workers=0)
    assert summary.model == packaged_encoder.info.name == printed["model"]
    assert list(summary.to_json()) == list(printed)  # the same keys in the same order
    assert _without_times(summary.to_json()) == _without_times(printed) and printed["added"] > 0

    labels = ["cat", "horse", "coffee cup"]
    r = invoke("tag", "--labels", ",".join(labels), "--json", "--db", db)
    assert r.exit_code == 0, r.output
    r_counts = invoke("tags", "--json", "--db", db)
    captions = tmp_path / "captions.txt"
    captions.write_text("a cat lying down\na cup of coffee\na rocket on its launch pad\n")
    assert invoke("captions", "add", captions, "--db", db).exit_code == 0
    r_search = invoke("captions", "search", "a cat", "-k", "2", "--json", "--db", db)
    r_image = invoke("captions", "for-image", photo_dir / "rocket.jpg", "--json", "--db", db)
    assert r_counts.exit_code == r_search.exit_code == r_image.exit_code == 0
    with vsearch.open(db, create=False) as coll:
        tagged = tag_collection(coll, TaggingConfig(tuple(labels), tuple(load_templates("default"))))
        counts = tag_counts(coll.catalog)
        by_text = search_captions(coll, "a cat", 2)
        by_image = captions_for_image(coll, str(photo_dir / "rocket.jpg"))
    assert tagged.to_json() == json.loads(r.stdout) and tagged.tagged == printed["added"]
    assert [c.to_json() for c in counts] == json.loads(r_counts.stdout)
    assert [(label, n) for label, n in counts] == [(c.label, c.photos) for c in counts]  # still unpacks as a pair
    assert [h.to_json() for h in by_text] == json.loads(r_search.stdout) and len(by_text) == 2
    assert [h.to_json() for h in by_image] == json.loads(r_image.stdout)
    assert by_image[0].text == "a rocket on its launch pad"


def test_detections_and_their_evaluation_carry_what_detect_json_prints(photo_dir, tmp_path, packaged_encoder):
    from vsearch.images import decode_image
    from vsearch.regions.detect import detect
    from vsearch.regions.metrics import evaluate_detection_files
    from vsearch.regions.proposals import ProposalConfig, ProposalSource

    image = photo_dir / "chelsea.jpg"
    r = invoke("detect", image, "--labels", "cat,tripod", "--model", "packaged", "--proposals", 12, "--json")
    assert r.exit_code == 0, r.output
    found = detect(packaged_encoder, decode_image(str(image)).image, ["cat", "tripod"],
                   proposals=ProposalSource(ProposalConfig(max_regions=12)))
    assert [d.to_json(str(image)) for d in found] == json.loads(r.stdout) and found[0].label == "cat"

    predictions = tmp_path / "pred.json"
    predictions.write_text(r.stdout)
    truth = tmp_path / "gt.json"
    truth.write_text(json.dumps([{"image": str(image), "label": "cat", "box": found[0].box},
                                 {"image": str(image), "label": "dog", "box": [0, 0, 10, 10]}]))
    r = invoke("eval", "detect", truth, predictions, "--json")
    assert r.exit_code == 0, r.output
    report = evaluate_detection_files(str(truth), str(predictions))
    assert report.to_json() == json.loads(r.stdout)
    assert report.eleven_point["cat"] == 1.0 and report.mean_ap == pytest.approx(0.5)
