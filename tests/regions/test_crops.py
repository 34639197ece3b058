"""Crops: square windows with context, padding outside the photo, masks blanking the background."""
import numpy as np
import pytest
from PIL import Image

from tests.conftest import skimage_rgb
from vsearch.regions.base import Regions
from vsearch.regions.crops import (
    MEAN_RGB, crop_region, crop_window, decode_mask, draw_boxes, embed_regions, encode_mask,
)


def test_crop_window_is_square_around_the_box_with_context():
    left, top, right, bottom = crop_window([10, 20, 50, 40], context=0.1)  # 40 x 20 box
    assert right - left == bottom - top == 48  # long side 40 + 2 × 10 %
    assert (left + right) / 2 == pytest.approx(30) and (top + bottom) / 2 == pytest.approx(30)
    with pytest.raises(ValueError):
        crop_window([5, 5, 5, 9])


def test_crop_keeps_the_pixels_and_pads_outside_the_photo_with_the_mean_colour():
    arr = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    image = Image.fromarray(arr)
    crop = np.asarray(crop_region(image, [0, 0, 20, 20], context=0.25))  # window [-5, -5, 25, 25]
    assert crop.shape == (30, 30, 3)
    assert (crop[:5, :, :] == MEAN_RGB).all() and (crop[:, :5, :] == MEAN_RGB).all()
    assert np.array_equal(crop[5:, 5:], arr[:25, :25])
    shrunk = crop_region(image, [0, 0, 80, 60], max_size=32)
    assert shrunk.size == (32, 32)


def test_mask_blanks_the_background_of_a_crop():
    image = skimage_rgb("coffee")
    mask = np.zeros((image.height, image.width), bool)
    mask[100:200, 250:350] = True  # the "object"
    crop = np.asarray(crop_region(image, [250, 100, 350, 200], mask=mask, context=0.1))  # window [240, 90, 360, 210]
    original = np.asarray(image)
    assert np.array_equal(crop[10:110, 10:110], original[100:200, 250:350])  # the object itself is kept
    outside = np.ones(crop.shape[:2], bool)
    outside[10:110, 10:110] = False
    assert (crop[outside] == MEAN_RGB).all()
    unmasked = np.asarray(crop_region(image, [250, 100, 350, 200], context=0.1))
    assert not (unmasked[outside] == MEAN_RGB).all()
    with pytest.raises(ValueError, match="mask"):
        crop_region(image, [250, 100, 350, 200], mask=mask[:10])


def test_mask_round_trip_through_png():
    mask = np.zeros((40, 60), bool)
    mask[5:20, 10:50] = True
    mask[7, 12] = False
    data = encode_mask(mask, [10, 5, 50, 20])
    assert np.array_equal(decode_mask(data), mask[5:20, 10:50])
    assert len(data) < mask.size  # smaller than one byte per pixel


def test_embed_regions_gives_unit_vectors_in_the_encoder_space(tiny_clip_spec):
    from vsearch.encoders import load_encoder

    enc = load_encoder(tiny_clip_spec)
    image = skimage_rgb("chelsea")
    regions = Regions(np.array([[0, 0, 100, 100], [200, 50, 450, 300]], np.float32), np.ones(2))
    v = embed_regions(enc, image, regions)
    assert v.shape == (2, enc.info.dim) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(v[0], v[1])
    assert embed_regions(enc, image, Regions.empty()).shape == (0, enc.info.dim)


def test_draw_boxes_outlines_on_a_copy():
    image = Image.new("RGB", (50, 40), (255, 255, 255))
    out = np.asarray(draw_boxes(image, [[10, 10, 30, 30]], ["cat"], colours=[(255, 0, 0)], width=2))
    assert tuple(out[20, 10]) == (255, 0, 0) and tuple(out[27, 20]) == (255, 255, 255)  # edge, inside
    assert np.asarray(image).min() == 255  # the original is untouched
