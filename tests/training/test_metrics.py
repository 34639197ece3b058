"""Metrics against values worked out by hand, and against independent implementations."""
import math

import numpy as np
import pytest

from training.metrics import (auc, equal_error_rate, pair_scores, retrieval_metrics, roc_curve, tar_at_far,
                              verification_metrics)


def on_circle(degrees):
    t = np.radians(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(t), np.sin(t)], axis=1).astype(np.float32)


# a0, a1 (class 0) and b0, b1, b2 (class 1) on the unit circle; neighbours by angle gap:
#   a0 -> a1 b0 b1 b2   rel 1 0 . .   R=1  AP@R 1
#   a1 -> a0 b0 b1 b2   rel 1 0 . .   R=1  AP@R 1
#   b0 -> a1 a0 b1 b2   rel 0 0 1 1   R=2  AP@R 0
#   b1 -> b0 a1 b2 a0   rel 1 0 1 0   R=2  AP@R (1/1 + 0)/2 = 0.5
#   b2 -> b1 b0 a1 a0   rel 1 1 0 0   R=2  AP@R 1
ANGLES = [0, 10, 25, 60, 115]
LABELS = [0, 0, 1, 1, 1]


def test_recall_and_map_at_r_by_hand():
    m = retrieval_metrics(on_circle(ANGLES), LABELS, ks=(1, 2, 3))
    assert m.queries == 5
    assert m.recall_at == {1: pytest.approx(4 / 5), 2: pytest.approx(4 / 5), 3: pytest.approx(1.0)}
    assert m.map_at_r == pytest.approx((1 + 1 + 0 + 0.5 + 1) / 5)


def test_a_single_image_class_is_a_distractor_not_a_query():
    # c (class 2) at 5 degrees is now the nearest neighbour of a0 (gap 5) and a1 (gap 5 < 10):
    # R@1 hits only b1 and b2
    m = retrieval_metrics(on_circle(ANGLES + [5]), LABELS + [2], ks=(1,))
    assert m.queries == 5
    assert m.recall_at[1] == pytest.approx(2 / 5)


def test_map_at_r_and_precision_at_1_agree_with_pytorch_metric_learning():
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    labels = rng.integers(0, 6, size=200)
    emb = centres[labels] + rng.normal(scale=1.2, size=(200, 16))
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    ours = retrieval_metrics(emb, labels, ks=(1,))
    pml = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r")).get_accuracy(
        torch.from_numpy(emb), torch.from_numpy(labels))
    assert ours.recall_at[1] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert ours.map_at_r == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    assert 0.2 < ours.map_at_r < 0.9  # neither trivial nor degenerate: the comparison means something


def test_roc_auc_eer_tar_by_hand():
    # sorted: .9 G, .8 I, .7 G, .6 I -> (FAR, TAR): (0,0) (0,.5) (.5,.5) (.5,1) (1,1)
    c = roc_curve(np.array([0.7, 0.9, 0.6, 0.8]), np.array([True, True, False, False]))
    assert c.far.tolist() == [0, 0, 0.5, 0.5, 1] and c.tar.tolist() == [0, 0.5, 0.5, 1, 1]
    assert auc(c) == pytest.approx(0.75)  # 3 of the 4 genuine/impostor pairs are ordered right
    eer, threshold = equal_error_rate(c)
    assert eer == pytest.approx(0.5) and threshold == pytest.approx(0.8)
    assert tar_at_far(c, 0.0) == 0.5 and tar_at_far(c, 0.49) == 0.5 and tar_at_far(c, 0.5) == 1.0


def test_eer_is_interpolated_between_operating_points():
    # G .9 .6 / I .8 .5 .4: FRR falls .5 -> 0 while FAR stays 1/3, so they meet at 1/3
    c = roc_curve(np.array([0.9, 0.6, 0.8, 0.5, 0.4]), np.array([1, 1, 0, 0, 0], dtype=bool))
    eer, _ = equal_error_rate(c)
    assert eer == pytest.approx(1 / 3)
    assert auc(c) == pytest.approx(5 / 6)
    assert tar_at_far(c, 0.2) == 0.5 and tar_at_far(c, 0.34) == 1.0


def test_ties_count_half_and_match_sklearn():
    from sklearn.metrics import roc_auc_score

    c = roc_curve(np.array([0.5, 0.5]), np.array([True, False]))
    assert auc(c) == pytest.approx(0.5) and len(c.far) == 2  # one threshold for the tied scores
    rng = np.random.default_rng(1)
    genuine = rng.random(3000) < 0.2
    scores = np.round(rng.normal(size=3000) + genuine, 1)  # rounding makes many ties
    assert auc(roc_curve(scores, genuine)) == pytest.approx(roc_auc_score(genuine, scores), abs=1e-12)


def test_separated_scores_are_perfect():
    v = verification_metrics(on_circle([0, 1, 90, 91]), [0, 0, 1, 1], fars=(1e-3,))
    assert v.roc_auc == 1.0 and v.eer == 0.0 and v.tar_at_far[1e-3] == 1.0
    assert (v.genuine_pairs, v.impostor_pairs, v.sampled) == (2, 4, False)


def test_all_pairs_versus_sampled_pairs():
    emb = on_circle(np.linspace(0, 300, 40))
    labels = np.arange(40) // 10
    scores, same, sampled = pair_scores(emb, labels)
    assert len(scores) == 40 * 39 // 2 and not sampled and same.sum() == 4 * 45
    scores, same, sampled = pair_scores(emb, labels, max_pairs=500, seed=3)
    assert sampled and len(scores) == 500
    again = pair_scores(emb, labels, max_pairs=500, seed=3)[0]
    assert np.array_equal(scores, again)
    # every sampled score is a real pair's cosine, never an image with itself (which would be 1.0 exactly)
    full = emb @ emb.T
    assert np.all(np.isin(np.round(scores, 5), np.round(full[np.triu_indices(40, 1)], 5)))


def test_no_verification_without_both_kinds_of_pair():
    assert verification_metrics(on_circle([0, 10, 20]), [0, 0, 0]) is None
    assert verification_metrics(on_circle([0, 10, 20]), [0, 1, 2]) is None


def test_degenerate_inputs():
    m = retrieval_metrics(on_circle([0, 10]), [0, 1])
    assert m.queries == 0 and math.isnan(m.map_at_r)
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros((3, 2), np.float32), [0, 1])
    with pytest.raises(ValueError):
        roc_curve(np.array([0.1, 0.2]), np.array([True, True]))
