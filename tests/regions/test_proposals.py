"""Proposals without weights: exact boxes on drawn shapes, sane boxes on a real photo."""
import numpy as np
import pytest
from PIL import Image

from tests.conftest import skimage_rgb
from vsearch.regions.metrics import box_iou
from vsearch.regions.proposals import (
    ProposalConfig, ProposalSource, colour_contrast, grid_boxes, propose, segment_boxes,
)


def _shapes() -> np.ndarray:
    img = np.full((64, 80, 3), 128, np.uint8)
    img[10:30, 8:28] = (220, 30, 30)  # red square: box [8, 10, 28, 30]
    img[20:50, 40:70] = (30, 30, 220)  # blue rectangle: box [40, 20, 70, 50]
    return img


def test_segments_of_drawn_shapes_give_their_exact_boxes():
    boxes = segment_boxes(_shapes(), scale=100, sigma=0.0, min_size=10, merge_neighbours=False)
    found = {tuple(int(v) for v in b) for b in boxes}
    assert (8, 10, 28, 30) in found and (40, 20, 70, 50) in found
    assert (0, 0, 80, 64) in found  # the grey background spans the image


def test_touching_segments_are_also_proposed_together():
    img = np.full((40, 60, 3), 128, np.uint8)
    img[10:30, 10:30] = (220, 30, 30)
    img[10:30, 30:50] = (30, 220, 30)  # touches the red square
    single = {tuple(int(v) for v in b) for b in segment_boxes(img, 100, 0.0, 10, merge_neighbours=False)}
    merged = {tuple(int(v) for v in b) for b in segment_boxes(img, 100, 0.0, 10, merge_neighbours=True)}
    assert (10, 10, 50, 30) not in single and (10, 10, 50, 30) in merged


def test_grid_windows_are_square_in_bounds_and_cover_the_image():
    boxes = grid_boxes(300, 200, (2, 3))
    sides = boxes[:, 2:] - boxes[:, :2]
    assert np.allclose(sides[:, 0], sides[:, 1])
    assert np.allclose(sorted(set(np.round(sides[:, 0].astype(float), 2))), [66.67, 100.0])
    assert boxes.min() >= 0 and boxes[:, 2].max() == pytest.approx(300) and boxes[:, 3].max() == pytest.approx(200)
    covered = np.zeros((200, 300), bool)
    for x1, y1, x2, y2 in boxes.astype(int):
        covered[y1:y2, x1:x2] = True
    assert covered.all()


def test_colour_contrast_prefers_a_box_around_an_object():
    img = _shapes()
    boxes = np.array([[8, 10, 28, 30],  # exactly the red square
                      [50, 2, 70, 12]], np.float32)  # plain grey background
    cc = colour_contrast(img, boxes)
    assert cc[0] > 0.5 and cc[1] == pytest.approx(0.0)
    uniform = np.full((50, 50, 3), 77, np.uint8)
    assert np.allclose(colour_contrast(uniform, boxes / 2), 0.0)


def test_proposals_on_a_real_photo_are_bounded_few_and_deduplicated():
    image = skimage_rgb("astronaut")  # 512 x 512
    cfg = ProposalConfig(max_regions=24)
    regions = ProposalSource(cfg)(image)
    assert 0 < len(regions) <= 24 and regions.labels is None and regions.masks is None
    b = regions.boxes
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 512).all() and (b[:, 3] <= 512).all()
    assert ((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])).all()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    assert (area <= cfg.max_area * 512 * 512 + 1).all()
    iou = box_iou(b, b)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= cfg.nms_iou + 1e-6
    assert (np.diff(regions.scores) <= 1e-6).all()  # best first
    again = ProposalSource(cfg)(image)
    assert np.array_equal(again.boxes, b)  # deterministic
    # the helmet (hand-labelled box, benchmarks/regions_boxes.json) is among them
    assert box_iou([[275, 342, 512, 512]], b).max() >= 0.5


def test_propose_scales_boxes_to_the_given_image_and_validates_options():
    big = skimage_rgb("coffee").resize((1200, 800))
    b = propose(big, 8).boxes
    assert b[:, 2].max() > 600  # coordinates of the big image, not of the 256-pixel segmentation copy
    assert (b[:, 2] <= 1200).all() and (b[:, 3] <= 800).all()
    with pytest.raises(ValueError):
        ProposalConfig(max_regions=0)
    tiny = propose(Image.new("RGB", (20, 20), (10, 200, 10)), 5)
    assert len(tiny) <= 5
