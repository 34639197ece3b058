"""Verification metrics against values computed by hand (and against scikit-learn)."""
import numpy as np
import pytest

from vsearch.faces.calibrate import calibrate_scores, pair_scores
from vsearch.faces.metrics import (ImpostorModel, equal_error_rate, rates_at, roc_auc, roc_curve, tar_at_far,
                                   threshold_at_far)

GEN = [0.9, 0.8, 0.7, 0.4]
IMP = [0.75, 0.5, 0.3, 0.2, 0.1]


def test_auc_by_hand():
    # genuine beating impostors: 0.9 -> 5, 0.8 -> 5, 0.7 -> 4, 0.4 -> 3: 17 of 20 pairs
    assert roc_auc(GEN, IMP) == pytest.approx(17 / 20)
    # a tie counts half: (0.5 vs 0.5 -> 1/2) + (0.5 vs 0.4 -> 1), over 2 pairs
    assert roc_auc([0.5], [0.5, 0.4]) == pytest.approx(0.75)


def test_auc_matches_sklearn_and_trapezoid():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    g = np.round(rng.normal(0.6, 0.2, 300), 2)  # rounding makes ties
    i = np.round(rng.normal(0.3, 0.2, 700), 2)
    ours = roc_auc(g, i)
    assert ours == pytest.approx(roc_auc_score(np.r_[np.ones(300), np.zeros(700)], np.r_[g, i]))
    far, tar, _ = roc_curve(g, i)
    assert ours == pytest.approx(np.trapezoid(tar, far))


def test_roc_curve_points_by_hand():
    far, tar, thr = roc_curve(GEN, IMP)
    assert list(thr) == [np.inf, 0.9, 0.8, 0.75, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1]
    assert list(far) == pytest.approx([0, 0, 0, .2, .2, .4, .4, .6, .8, 1])
    assert list(tar) == pytest.approx([0, .25, .5, .5, .75, .75, 1, 1, 1, 1])


def test_rates_and_eer_by_hand():
    assert rates_at(GEN, IMP, 0.7) == (pytest.approx(0.75), pytest.approx(0.2))
    # |FAR - FRR| along the curve: 1, .75, .5, .3, .05, .15, .4, ... -> smallest at t = 0.7
    eer, t = equal_error_rate(GEN, IMP)
    assert t == 0.7 and eer == pytest.approx((0.2 + 0.25) / 2)


def test_tar_at_far_by_hand():
    # one false accept of five allowed: the threshold must exclude 0.5, the second-highest impostor
    t = threshold_at_far(IMP, 0.2)
    assert 0.5 < t < 0.5 + 1e-12
    r = tar_at_far(GEN, IMP, 0.2)
    assert (r.tar, r.far, r.resolved) == (pytest.approx(0.75), pytest.approx(0.2), True)
    # FAR 0.1 with 5 impostors is not measurable: no false accept allowed, flagged unresolved
    r = tar_at_far(GEN, IMP, 0.1)
    assert r.threshold > 0.75 and r.far == 0 and r.tar == pytest.approx(0.5) and not r.resolved
    # ties: both 0.5s must go together
    assert threshold_at_far([0.5, 0.5, 0.1], 0.5) > 0.5
    assert threshold_at_far(IMP, 1.0) == 0.1


def test_metrics_refuse_empty_or_nan():
    with pytest.raises(ValueError):
        roc_auc([], IMP)
    with pytest.raises(ValueError):
        roc_auc([np.nan], IMP)


def test_impostor_model_far_estimates():
    m = ImpostorModel.from_scores(IMP)
    assert m.far(0.5) == pytest.approx(2 / 5)
    assert m.far(0.0) == 1.0
    assert m.far(0.76) == pytest.approx(1 / 5)  # above every impostor: the data only bound it by 1/N
    again = ImpostorModel.from_json(m.to_json())
    assert again.far(0.3) == m.far(0.3) == pytest.approx(3 / 5)


def test_impostor_model_keeps_the_tail_exact_for_big_sets():
    scores = np.random.default_rng(0).normal(size=20_000)
    m = ImpostorModel.from_scores(scores, tail=100, bulk_points=50)
    assert len(m.scores) <= 150
    top = np.sort(scores)[::-1]
    for s in top[[0, 10, 99]]:
        assert m.far(s) == pytest.approx(np.mean(scores >= s))
    s = np.median(scores)
    assert m.far(s) <= np.mean(scores >= s) <= m.far(s) + 400 / 20_000  # lower bound, one quantile step


def test_calibration_threshold_empirical_or_extrapolated():
    rng = np.random.default_rng(3)
    imp = rng.normal(0.3, 0.1, 2000)
    gen = rng.normal(0.9, 0.05, 200)
    t, method, _ = calibrate_scores(gen, imp, 1e-2)
    assert method == "empirical" and np.mean(imp >= t) <= 1e-2
    t, method, m = calibrate_scores(gen, imp, 1e-5)  # 2000 pairs cannot measure 1e-5
    assert method == "normal-tail extrapolation"
    assert t > imp.max() and t >= m.gaussian_threshold(1e-5)


def test_pair_scores_all_pairs():
    emb = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]  # a, a, b, c
    g, i = pair_scores(emb, ["a", "a", "b", "c"])
    assert list(g) == [1.0] and sorted(i) == [0.0] * 5  # C(4,2) = 6 pairs: one genuine, five impostor
