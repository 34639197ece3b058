"""`vsearch detect` and `vsearch eval detect` through typer's CliRunner."""
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cli import app
from vsearch.regions.metrics import box_iou

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_detect_json_boxes_labels_nms_and_annotated_png(photo_dir, tmp_path, tiny_clip_spec):
    image = photo_dir / "coffee.jpg"
    out = tmp_path / "annotated.png"
    # random-weight CLIP: similarities are meaningless, so keep everything and check the mechanics
    r = invoke("detect", image, "--labels", "cup, spoon,cup", "--model", tiny_clip_spec, "--threshold", -1,
               "--max", 12, "--json", "--out", out)
    assert r.exit_code == 0, r.output
    dets = json.loads(r.stdout)
    assert 0 < len(dets) <= 12
    assert {d["label"] for d in dets} <= {"cup", "spoon"}
    assert all(d["image"] == str(image) for d in dets)
    assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
    for d in dets:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 < x2 <= 600 and 0 <= y1 < y2 <= 400
    for label in ("cup", "spoon"):  # per-label NMS at 0.5
        boxes = np.array([d["box"] for d in dets if d["label"] == label]).reshape(-1, 4)
        iou = box_iou(boxes, boxes)
        np.fill_diagonal(iou, 0)
        assert iou.size == 0 or iou.max() <= 0.5 + 1e-6
    drawn = Image.open(out)
    assert drawn.format == "PNG" and drawn.size == (600, 400)
    assert not np.array_equal(np.asarray(drawn.convert("RGB")), np.asarray(Image.open(image).convert("RGB")))

    r = invoke("detect", image, "--labels", "cup", "--model", tiny_clip_spec, "--threshold", 1.01)
    assert r.exit_code == 0 and "nothing above 1.01" in r.output


def test_detect_finds_the_cat_with_the_packaged_model(photo_dir):
    r = invoke("detect", photo_dir / "chelsea.jpg", "--labels", "cat,tripod", "--model", "packaged", "--proposals", 12)
    assert r.exit_code == 0, r.output
    rows = [line.split("\t") for line in r.stdout.splitlines()]  # piped: label<TAB>score<TAB>box
    assert rows and rows[0][0] == "cat" and rows[0][2].startswith("[")
    assert not any(row[0] == "tripod" for row in rows)  # 0.21 at best, below 0.3


def test_detect_bad_input_is_a_clear_error(photo_dir, tmp_path, tiny_clip_spec):
    r = invoke("detect", photo_dir / "coffee.jpg", "--labels", " , ", "--model", tiny_clip_spec)
    assert r.exit_code == 2 and "at least one label" in r.output
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    r = invoke("detect", bad, "--labels", "cat", "--model", tiny_clip_spec)
    assert r.exit_code == 2 and "not a recognised image format" in r.output


def _write(path, records):
    path.write_text(json.dumps(records))
    return path


def test_eval_detect_prints_per_class_ap_and_map(tmp_path):
    from tests.regions.test_metrics import DETS, GT

    gt = _write(tmp_path / "gt.json", [{"image": g.image, "label": g.label, "box": list(g.box)} for g in GT]
                + [{"image": "a", "label": "cup", "box": [40, 40, 50, 50]}])
    pred = _write(tmp_path / "pred.json", [{"image": d.image, "label": d.label, "box": list(d.box), "score": d.score}
                                           for d in DETS] + [{"image": "a", "label": "cup", "box": [40, 40, 50, 50], "score": 1}])
    r = invoke("eval", "detect", gt, pred)
    assert r.exit_code == 0, r.output
    assert "0.542" in r.output and "0.545" in r.output  # cat: 13/24 all-point, 6/11 11-point
    assert f"mAP@0.5 = {(13 / 24 + 1) / 2:.4f} (all-point), {(6 / 11 + 1) / 2:.4f} (11-point)" in r.output

    r = invoke("eval", "detect", gt, pred, "--json")
    figures = json.loads(r.stdout)
    by = {c["label"]: c for c in figures["classes"]}
    assert by["cat"]["ap"] == pytest.approx(13 / 24) and by["cat"]["ap_11pt"] == pytest.approx(6 / 11)
    assert figures["map"] == pytest.approx((13 / 24 + 1) / 2)


def test_eval_detect_refuses_files_that_do_not_match(tmp_path):
    gt = _write(tmp_path / "gt.json", [{"image": "astronaut", "label": "cat", "box": [0, 0, 5, 5]}])
    pred = _write(tmp_path / "pred.json", [{"image": "/x/astronaut.jpg", "label": "cat", "box": [0, 0, 5, 5], "score": 1}])
    r = invoke("eval", "detect", gt, pred)
    assert r.exit_code == 2 and "must be written the same way" in r.output
    r = invoke("eval", "detect", gt, tmp_path / "none.json")
    assert r.exit_code == 2 and "not found" in r.output


def test_eval_detect_names_the_file_of_unusable_ground_truth(tmp_path):
    pred = _write(tmp_path / "pred.json", [{"image": "a", "label": "cat", "box": [0, 0, 5, 5], "score": 1}])
    gt = _write(tmp_path / "gt.json", [{"image": "a", "label": "cat", "box": [0, 0, 5, 5], "difficult": "maybe"}])
    r = invoke("eval", "detect", gt, pred)
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "gt.json record 0: 'difficult' must be true/false or 1/0, got 'maybe'" in " ".join(r.output.split())
    _write(gt, [])
    r = invoke("eval", "detect", gt, pred)
    assert r.exit_code == 2 and "gt.json holds no ground-truth boxes" in " ".join(r.output.split())
    _write(gt, [{"image": "a", "label": "cat", "box": [0, 0, 5, 5], "difficult": "TRUE"}])
    r = invoke("eval", "detect", gt, pred)
    assert r.exit_code == 0 and "undefined (every ground-truth box is marked difficult)" in " ".join(r.output.split())


def test_detect_shows_the_best_box_of_each_label_and_notes_the_packaged_model_once(photo_dir):
    args = ("detect", photo_dir / "coffee.jpg", "--labels", "cup,spoon,cat", "--model", "packaged", "--proposals", 24)
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    labels = [line.split("\t")[0] for line in r.stdout.splitlines()]
    assert labels and len(labels) == len(set(labels)) <= 3  # one box per label, not a pile of nested cups
    assert r.output.count("note: ") == 1 and "localises better" in r.output
    again = invoke(*args)
    assert again.exit_code == 0 and "note: " not in again.output and again.stdout == r.stdout


def test_detect_per_label_0_keeps_every_box_nms_keeps(photo_dir, tiny_clip_spec):
    base = ("detect", photo_dir / "coffee.jpg", "--labels", "cup", "--model", tiny_clip_spec, "--threshold", -1, "--json")
    assert len(json.loads(invoke(*base).stdout)) == 1
    assert len(json.loads(invoke(*base, "--per-label", 0).stdout)) > 1
