import logging

import pytest
import torch

from training.data import check_trainable, discover, load_images, split_by_class
from training.errors import TrainingDataError
from training.preprocess import Preprocessing

PRE = Preprocessing(image_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def test_folder_per_class_is_discovered_sorted(digits):
    found = discover(str(digits))
    assert found.classes == [str(i) for i in range(10)]
    assert len(found) == 600 and list(found.paths) == sorted(found.paths)
    assert all(p.split("/")[-2] == lbl for p, lbl in zip(found.paths, found.labels))


def test_csv_with_relative_paths(digits, tmp_path):
    rows = ["path,label"] + [f"digits/3/{p.name},three" for p in sorted((digits / "3").iterdir())[:5]]
    rows += ["digits/4/" + p.name + ",four" for p in sorted((digits / "4").iterdir())[:5]] + [",nolabel"]
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    found = discover(str(csv))
    assert found.classes == ["four", "three"] and len(found) == 10
    assert found.problems and "row without a path or a label" in found.problems[0][1]
    images = load_images(found, PRE)
    assert len(images) == 10 and images.pixels.shape == (10, 3, 8, 8) and images.pixels.dtype == torch.uint8


def test_csv_without_the_needed_columns_is_a_clear_error(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("file,class\na.png,x\n")
    with pytest.raises(TrainingDataError, match="'path' and 'label'"):
        discover(str(csv))


@pytest.mark.parametrize("make", ["missing", "empty_dir", "text_file"])
def test_unusable_sources_are_clear_errors(tmp_path, make):
    target = tmp_path / "x"
    if make == "empty_dir":
        target.mkdir()
    elif make == "text_file":
        target = tmp_path / "notes.txt"
        target.write_text("hi")
    with pytest.raises(TrainingDataError):
        discover(str(target))


def test_split_is_by_class_named_or_seeded(digits):
    found = discover(str(digits))
    train, val = split_by_class(found, val_classes=["7", "8", "9"])
    assert set(val.labels) == {"7", "8", "9"} and not set(train.labels) & set(val.labels)
    a = split_by_class(found, val_fraction=0.3, seed=1)[1].classes
    assert len(a) == 3 and a == split_by_class(found, val_fraction=0.3, seed=1)[1].classes
    assert any(split_by_class(found, val_fraction=0.3, seed=s)[1].classes != a for s in range(2, 8))
    with pytest.raises(TrainingDataError, match="not in the data"):
        split_by_class(found, val_classes=["42"])


def test_unreadable_images_are_skipped_and_reported(digits, caplog):
    (digits / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (digits / "3" / "empty.jpg").write_bytes(b"")
    (digits / "stray.png").write_bytes((digits / "3" / "broken.png").read_bytes())
    with caplog.at_level(logging.WARNING):
        images = load_images(discover(str(digits)), PRE)
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in images.skipped}
    assert set(reasons) == {"broken.png", "empty.jpg", "stray.png"}
    assert "empty" in reasons["empty.jpg"] and "not in a class folder" in reasons["stray.png"]
    assert len(images) == 600 and "broken.png" in caplog.text


def test_a_one_image_class_is_skipped_with_a_warning(digits, caplog):
    (digits / "solo").mkdir()
    (digits / "solo" / "only.png").write_bytes((digits / "3" / "0003.png").read_bytes())
    found = discover(str(digits))
    with caplog.at_level(logging.WARNING):
        train = load_images(found, PRE, min_per_class=2)
    assert train.dropped_classes == ["solo"] and "solo" not in train.class_names
    assert "no positive pair possible" in caplog.text
    evaluation = load_images(found, PRE)  # for evaluation it stays, as a distractor
    assert "solo" in evaluation.class_names


def test_too_few_classes_to_train_is_a_clear_error(digits):
    found = discover(str(digits))
    only = found.subset([i for i, lbl in enumerate(found.labels) if lbl == "1"])
    with pytest.raises(TrainingDataError, match="at least 2 classes"):
        check_trainable(load_images(only, PRE, min_per_class=2))


def test_batches_are_normalised_and_fingerprint_tracks_content(digits):
    images = load_images(discover(str(digits / ".." / "digits")), PRE)
    x = images.batch([0, 1])
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1 and x.shape == (2, 3, 8, 8)
    fp = images.fingerprint()
    images.paths[0] = images.paths[0] + "x"
    assert images.fingerprint() != fp
