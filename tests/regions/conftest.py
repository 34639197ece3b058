"""Fixtures of the regions tests: small photo folders and seeded random-weight detectors."""
from __future__ import annotations

import shutil

import pytest

FEW = ["astronaut", "camera", "coffee"]


@pytest.fixture
def few_photos(photo_dir, tmp_path):
    """A writable folder with three of the skimage photos (objects of several sizes)."""
    dst = tmp_path / "few"
    dst.mkdir()
    for name in FEW:
        shutil.copy(photo_dir / f"{name}.jpg", dst / f"{name}.jpg")
    return dst


def random_detector(arch: str, num_classes: int, favour: int | None = 1, **kwargs):
    """A torchvision detector with seeded random weights. ``favour``: bias the classifier towards
    that class so that detections clear a 0.5 score (random heads score about 1/num_classes)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, weights_backbone=None, num_classes=num_classes, **kwargs)
    if favour is not None and hasattr(model, "roi_heads"):
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.bias[favour] += 6.0
    return model.eval()


@pytest.fixture(scope="session")
def rcnn_weights(tmp_path_factory):
    """A plain state dict named like torchvision's downloads, without BatchNorm's
    num_batches_tracked buffers (torchvision's pretrained R-CNNs use FrozenBatchNorm2d)."""
    import torch

    model = random_detector("fasterrcnn_mobilenet_v3_large_320_fpn", 3)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path_factory.mktemp("det") / "fasterrcnn_mobilenet_v3_large_320_fpn_test-0123abcd.pth"
    torch.save(state, path)
    return path
