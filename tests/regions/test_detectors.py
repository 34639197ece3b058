"""Loading torchvision detectors from local weights files (seeded random weights written here)."""
import argparse

import numpy as np
import pytest
import torch

from tests.conftest import skimage_rgb
from tests.regions.conftest import random_detector
from vsearch.regions.base import RegionError
from vsearch.regions.crops import MEAN_RGB, crop_region, decode_mask
from vsearch.regions.detectors import load_detector, read_checkpoint, save_detector


def test_plain_state_dict_named_like_torchvision_loads_with_inferred_classes(rcnn_weights):
    ckpt = read_checkpoint(str(rcnn_weights))
    assert ckpt.arch == "fasterrcnn_mobilenet_v3_large_320_fpn"  # from the file name
    assert ckpt.num_classes == 3  # from the classification layers' shapes
    assert ckpt.categories == ("__background__", "class 1", "class 2")
    det = load_detector(str(rcnn_weights))
    saved = torch.load(rcnn_weights, weights_only=True)
    key = "roi_heads.box_predictor.cls_score.bias"
    assert torch.equal(det.model.state_dict()[key], saved[key])  # the file's weights, not fresh ones
    image = skimage_rgb("coffee")
    regions = det(image)
    assert len(regions) > 0 and set(regions.labels) <= {"class 1", "class 2"}
    assert (regions.scores >= 0.5).all() and regions.masks is None
    b = regions.boxes
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= image.width).all() and (b[:, 3] <= image.height).all()


def test_arch_at_file_and_coco_names_for_91_classes(tmp_path):
    model = random_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 91)
    path = tmp_path / "my-detector.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(RegionError, match="cannot tell which torchvision architecture"):
        read_checkpoint(str(path))
    det = load_detector(f"fasterrcnn_mobilenet_v3_large_320_fpn@{path}")
    assert det.categories[1] == "person" and len(det.categories) == 91
    with pytest.raises(RegionError, match="does not hold ssdlite320_mobilenet_v3_large weights"):
        load_detector(f"ssdlite320_mobilenet_v3_large@{path}")


def test_self_describing_file_round_trip_with_ssd(tmp_path):
    model = random_detector("ssdlite320_mobilenet_v3_large", 3, favour=None)
    path = tmp_path / "ssd.pt"
    save_detector(model, "ssdlite320_mobilenet_v3_large", str(path), ["__background__", "cat", "cup"])
    det = load_detector(str(path), min_score=0.0)
    assert (det.arch, det.categories) == ("ssdlite320_mobilenet_v3_large", ("__background__", "cat", "cup"))
    regions = det(skimage_rgb("chelsea").resize((160, 106)))
    assert len(regions) > 0 and set(regions.labels) <= {"cat", "cup"}


def test_category_names_must_match_the_class_count(tmp_path):
    model = random_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 3)
    wrong = tmp_path / "wrong.pt"
    save_detector(model, "fasterrcnn_mobilenet_v3_large_320_fpn", str(wrong), ["__background__", "cat"])
    with pytest.raises(RegionError, match="do not fit fasterrcnn_mobilenet_v3_large_320_fpn with 2 classes"):
        load_detector(str(wrong))
    with pytest.raises(RegionError, match="at least one class name"):
        save_detector(model, "fasterrcnn_mobilenet_v3_large_320_fpn", str(wrong), ["__background__"])


def test_unreadable_and_unsafe_files_are_refused_clearly(tmp_path):
    with pytest.raises(RegionError, match="not found"):
        load_detector(str(tmp_path / "none.pt"))
    junk = tmp_path / "fasterrcnn_resnet50_fpn_junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(RegionError, match="not a PyTorch weights file"):
        load_detector(str(junk))
    # a training checkpoint with its argparse namespace: weights_only loading must refuse it
    unsafe = tmp_path / "fasterrcnn_resnet50_fpn_train.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, unsafe)
    with pytest.raises(RegionError, match="weights_only"):
        load_detector(str(unsafe))
    empty = tmp_path / "fasterrcnn_resnet50_fpn_empty.pth"
    torch.save({"note": "hello"}, empty)
    with pytest.raises(RegionError, match="not a detector state dict"):
        load_detector(str(empty))
    with pytest.raises(RegionError, match="needs a weights file"):
        load_detector("")


@pytest.mark.slow  # a ResNet-50 Mask R-CNN: about 15 s on a busy 2-core CPU
def test_mask_rcnn_masks_become_background_blanked_crops(tmp_path):
    # small internal resize keeps this quick on a CPU; it travels in the file as a constructor option
    model = random_detector("maskrcnn_resnet50_fpn", 2, min_size=160, max_size=200)
    path = tmp_path / "mask.pt"
    save_detector(model, "maskrcnn_resnet50_fpn", str(path), ["__background__", "thing"], min_size=160, max_size=200)
    det = load_detector(str(path))
    image = skimage_rgb("coffee").resize((200, 133))
    regions = det(image)
    assert len(regions) > 0 and regions.masks is not None
    assert regions.masks.shape == (len(regions), image.height, image.width)
    i = int(np.argmax(regions.masks.sum((1, 2))))
    mask, box = regions.masks[i], regions.boxes[i]
    assert 0 < mask.sum() < mask.size
    crop = np.asarray(crop_region(image, box, mask=mask, context=0.0))
    plain = np.asarray(crop_region(image, box, context=0.0))
    blank = (crop == MEAN_RGB).all(axis=2)
    assert blank.any() and (~blank).any()
    assert np.array_equal(crop[~blank], plain[~blank])  # the object's own pixels are kept

    # and the indexer's payload stores each mask as a PNG of its box
    from indexer.pipeline import ExtractInput
    from vsearch.regions.extractor import RegionIndexer

    class _FakeEncoder:  # the crops' pixels are what is under test, not an embedding model
        info = type("I", (), {"dim": 4, "image_size": 32, "name": "fake"})()

        def preprocess(self, im):
            return torch.from_numpy(np.asarray(im.resize((32, 32)), np.float32)).permute(2, 0, 1)

        def encode_pixels(self, px):
            v = px.mean(dim=(2, 3)).numpy()
            return np.concatenate([v, np.ones((len(v), 1), np.float32)], 1) / 255.0

    payload = RegionIndexer(det, max_regions=5, encoder=_FakeEncoder()).extract(ExtractInput(image, (400, 266)))
    assert len(payload.masks) == len(payload.boxes) <= 5
    first = decode_mask(payload.masks[0])
    assert first.dtype == bool and first.any()
    assert payload.boxes[:, 2].max() <= 400 and payload.boxes[:, 2].max() > 200  # back in original pixels
