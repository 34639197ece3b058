"""The folder-per-class loader shared by training, evaluation and face calibration."""
import os

import pytest
from PIL import Image

from vsearch.datasets import DatasetError, folder_per_class


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (120, 30, 200)).save(path)


def test_classes_in_name_order_files_before_sub_folders(tmp_path):
    for rel in ["b/2.jpg", "b/1.png", "b/deeper/0.jpg", "a/x.jpg"]:
        _image(tmp_path / rel)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("x")
    listed = folder_per_class(str(tmp_path))
    rel = [os.path.relpath(p, tmp_path) for p in listed.paths]
    assert rel == ["a/x.jpg", "b/1.png", "b/2.jpg", "b/deeper/0.jpg"]
    assert listed.labels == ("a", "b", "b", "b")
    assert listed.classes == ["a", "b"] and listed.folders == ("a", "b", "c")  # c: a class without images
    assert listed.problems == ()


def test_what_the_scan_leaves_out_is_left_out(tmp_path):
    _image(tmp_path / "cat" / "ok.jpg")
    _image(tmp_path / "cat" / "._ok.jpg")  # macOS resource fork
    _image(tmp_path / "cat" / ".thumbnails" / "t.jpg")
    _image(tmp_path / "cat" / "@eaDir" / "t.jpg")
    _image(tmp_path / ".hidden" / "h.jpg")
    _image(tmp_path / "__MACOSX" / "m.jpg")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    listed = folder_per_class(str(tmp_path))
    assert [os.path.relpath(p, tmp_path) for p in listed.paths] == ["cat/ok.jpg"]
    assert listed.folders == ("cat",)


def test_problems_are_reported_not_raised(tmp_path, monkeypatch):
    _image(tmp_path / "dog" / "ok.jpg")
    _image(tmp_path / "stray.jpg")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "dog" / "gone.jpg")
    os.symlink(tmp_path / "dog", tmp_path / "dog" / "loop")  # a link back up does not loop
    locked = tmp_path / "dog" / "locked"
    _image(locked / "x.jpg")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(locked):  # what `chmod 000` does for a user other than root
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    listed = folder_per_class(str(tmp_path))
    assert [os.path.relpath(p, tmp_path) for p in listed.paths] == ["dog/ok.jpg"]
    reasons = {os.path.relpath(p, tmp_path): why for p, why in listed.problems}
    assert "not in a class folder" in reasons["stray.jpg"]
    assert reasons["dog/gone.jpg"] == "broken symbolic link"
    assert reasons["dog/locked"] == "cannot read folder: Permission denied"
    assert len(listed.problems) == len(reasons)  # each reported once


@pytest.mark.parametrize("make", ["missing", "file"])
def test_a_root_that_is_not_a_folder_is_one_clear_error(tmp_path, make):
    target = tmp_path / "x"
    if make == "file":
        target.write_text("x")
    with pytest.raises(DatasetError, match=r"is not a folder \(expected one sub-folder per identity\)"):
        folder_per_class(str(target), member="identity")


def test_empty_root_is_an_empty_listing(tmp_path):
    listed = folder_per_class(str(tmp_path))
    assert len(listed) == 0 and listed.folders == () and listed.classes == []
