"""The trainer against doing nothing: defaults chosen from the data, baselines in every report,
early stopping that keeps the best epoch, and a collapsed embedding refused."""
import numpy as np
import pytest
import torch

from tests.training.conftest import tiny_config
from training.config import RECIPES, TrainConfig
from training.data import discover, load_images, split_by_class
from training.evaluate import (baseline, chance_recall_at_1, collapse_reason, embed_image_set, raw_pixel_vectors,
                               score)
from training.trainer import NoProgress, fit, model_spec
from vsearch.metrics.retrieval import retrieval_metrics


def test_auto_settings_follow_the_image_size_and_never_override_given_ones():
    small, photos = TrainConfig().with_recipe(8), TrainConfig().with_recipe(480)
    assert (small.backbone, small.lr, small.margin, small.shift, small.epochs, small.miner) == \
        ("vsearch_tiny_cnn", 3e-3, 0.3, 1 / 16, 15, "batch-hard")
    assert (photos.backbone, photos.lr, photos.margin, photos.shift, photos.epochs, photos.miner) == \
        ("efficientnet_lite0", 3e-4, None, 0.0, 10, "semi-hard")
    assert TrainConfig().with_recipe(None).backbone == RECIPES["photos"].backbone  # sizes unknown
    given = TrainConfig(backbone="resnet18", lr=1e-4, margin=0.1, shift=0.0, epochs=3, miner="all").with_recipe(8)
    assert (given.backbone, given.lr, given.margin, given.shift, given.epochs, given.miner) == \
        ("resnet18", 1e-4, 0.1, 0.0, 3, "all")
    assert TrainConfig(loss="contrastive").with_recipe(8).margin is None  # the small-image margin is the triplet's


def test_chance_recall_at_1_is_the_mean_share_of_same_class_images():
    labels = [0, 0, 0, 1, 1, 2]  # the single "2" is no query
    brute = np.mean([(sum(m == labels[q] for m in labels) - 1) / (len(labels) - 1)
                     for q in range(5)])
    assert chance_recall_at_1(labels) == pytest.approx(brute)
    assert chance_recall_at_1([0, 0, 1, 1]) == pytest.approx(1 / 3)


def test_raw_pixel_vectors_are_unit_thumbnails():
    pixels = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    raw = raw_pixel_vectors(pixels)
    assert raw.shape == (5, 3 * 32 * 32) and np.allclose(np.linalg.norm(raw, axis=1), 1, atol=1e-5)
    same = raw_pixel_vectors(pixels[:, :, ::2, ::2].contiguous())  # 32 px is used as it is
    assert same.shape == (5, 3 * 32 * 32)


def test_a_constant_embedding_is_a_collapse_and_a_real_one_is_not(digits_root):
    labels = np.repeat(np.arange(3), 20)
    constant = np.tile(np.ones((1, 8), np.float32) / np.sqrt(8), (60, 1))
    assert "nearly the same similarity" in collapse_reason(score(constant, labels))
    pixels = load_images(discover(str(digits_root)).subset(range(60)), model_spec(tiny_config("", "x")).preprocessing)
    assert collapse_reason(score(raw_pixel_vectors(pixels.pixels), pixels.targets.numpy())) is None


@pytest.fixture(scope="module")
def digit_sets(digits_root):
    cfg = tiny_config(digits_root, "unused.pt")
    train_paths, val_paths = split_by_class(discover(str(digits_root)), cfg.val_classes)
    pre = model_spec(cfg).preprocessing
    return load_images(train_paths, pre, min_per_class=2), load_images(val_paths, pre)


def test_early_stopping_keeps_the_best_epoch(digit_sets, tmp_path):
    train, val = digit_sets
    cfg = tiny_config("", tmp_path / "m.pt", epochs=8, steps_per_epoch=3, patience=2, lr=1e-2)
    result = fit(cfg, train, val, NoProgress())
    maps = [h.val_map_at_r for h in result.history]
    best = int(np.argmax(maps)) + 1
    assert result.best_epoch == best
    # the model holds the best epoch's weights: its held-out MAP@R is that epoch's
    r = retrieval_metrics(embed_image_set(result.model, val), val.targets.numpy(), ks=(1,))
    assert r.map_at_r == pytest.approx(maps[best - 1], abs=1e-6)
    if result.stopped_early:
        assert len(result.history) == best + 2 and result.steps == 3 * len(result.history)
    else:
        assert len(result.history) == 8


def test_without_patience_every_epoch_runs(digit_sets, tmp_path):
    train, val = digit_sets
    result = fit(tiny_config("", tmp_path / "m.pt", epochs=3, steps_per_epoch=2, patience=0), train, val)
    assert len(result.history) == 3 and not result.stopped_early


def test_held_out_report_carries_baselines_and_chance(trained):
    d = trained.report.to_dict()
    assert set(d["baselines"]) == {"raw pixels", "untrained model"}
    assert d["chance_recall_at_1"] == pytest.approx(59 / 179)  # 3 held-out classes of 60 images
    for figures in d["baselines"].values():
        assert 0 < figures["recall_at_1"] <= 1 and 0 < figures["map_at_r"] <= 1
    assert trained.to_json()["held_out"]["baselines"] == d["baselines"]


@pytest.mark.slow
def test_defaults_beat_raw_pixels_on_held_out_digits(tmp_path):
    """`vsearch train DIGITS --val-classes 8,9` with no other option: all 1,797 digits as 32 px PNGs
    (about 3 minutes on 2 busy cores; benchmarks/RESULTS.md, *Trainer defaults*)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from training.run import run

    d = load_digits()
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        (tmp_path / "digits" / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * (255 / 16)).astype(np.uint8)).resize((32, 32)).save(tmp_path / "digits" / str(y) / f"{i:04d}.png")
    outcome = run(TrainConfig(data=str(tmp_path / "digits"), out=str(tmp_path / "m.pt"), val_classes=["8", "9"]))
    report = outcome.report.to_dict()
    raw = report["baselines"]["raw pixels"]
    assert report["recall_at"]["1"] >= 0.98 and report["map_at_r"] >= 0.70
    assert report["map_at_r"] > raw["map_at_r"] > report["baselines"]["untrained model"]["map_at_r"]
    assert report["recall_at"]["1"] > report["chance_recall_at_1"] + 0.4


def test_a_model_that_does_not_beat_raw_pixels_is_named(digits_root):
    pixels = load_images(discover(str(digits_root)).subset(range(120)), model_spec(tiny_config("", "x")).preprocessing)
    labels = pixels.targets.numpy()
    raw = raw_pixel_vectors(pixels.pixels)
    noise = np.random.default_rng(0).standard_normal(raw.shape).astype(np.float32)
    report = score(noise / np.linalg.norm(noise, axis=1, keepdims=True), labels,
                   baselines=[baseline("raw pixels", raw, labels)])
    assert [b.name for b in report.not_beaten()] == ["raw pixels"]
    assert score(raw, labels, baselines=[baseline("raw pixels", raw, labels)]).not_beaten()  # a tie is no win


def test_random_shifts_are_a_pure_function_of_seed_and_step():
    from training.augment import random_shift

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    a, b = random_shift(x, 2, seed=0, step=5), random_shift(x, 2, seed=0, step=5)
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(random_shift(x, 2, seed=0, step=6), a)
    assert random_shift(x, 0, seed=0, step=5) is x
    # a shift moves pixels, it makes none up: every value comes from the same image
    for i in range(2):
        assert set(a[i].unique().tolist()) <= set(x[i].unique().tolist())
