"""Retrieval and verification metrics against values worked out by hand, and against
independent implementations (scikit-learn, pytorch-metric-learning, scipy)."""
import math

import numpy as np
import pytest

from vsearch.metrics.retrieval import (confusion_matrix, most_confused, predicted_classes, recall_at_k,
                                       retrieval_metrics, topk_accuracy)
from vsearch.metrics.verification import (MetricsInputError, all_pairs, clopper_pearson_upper, equal_error_rate,
                                          identity_bootstrap, rates_at, roc, roc_auc, tar_at_far, threshold_at_far,
                                          verification_metrics)
from vsearch.zeroshot import class_probabilities


def test_recall_at_k_hand_computed():
    # 3 queries × 4 items; relevant sets chosen so R@1 = 1/3, R@2 = 2/3, R@4 = 1
    sim = np.array([[0.9, 0.1, 0.2, 0.3],   # rank: 0,3,2,1 ; relevant {0} -> hit@1
                    [0.1, 0.2, 0.9, 0.8],   # rank: 2,3,1,0 ; relevant {3} -> hit@2
                    [0.5, 0.4, 0.3, 0.2]])  # rank: 0,1,2,3 ; relevant {3} -> hit@4
    r = recall_at_k(sim, [{0}, {3}, {3}], ks=(1, 2, 4))
    assert r == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 4: pytest.approx(1.0)}


def test_recall_any_of_several_captions_counts():
    sim = np.array([[0.1, 0.9, 0.8]])
    assert recall_at_k(sim, [{0, 2}], ks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_topk_accuracy_and_confusion():
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.3, 0.6], [0.3, 0.6, 0.1]])
    targets = [0, 1, 2, 0]
    acc = topk_accuracy(probs, targets, (1, 2))
    assert acc[1] == pytest.approx(0.5) and acc[2] == pytest.approx(1.0)
    cm = confusion_matrix(targets, probs.argmax(1), 3)
    assert cm.tolist() == [[1, 1, 0], [1, 0, 0], [0, 0, 1]]
    assert set(most_confused(cm, ["a", "b", "c"])) == {("a", "b", 1), ("b", "a", 1)}


def test_class_probabilities_softmax_by_hand():
    img = np.array([[1.0, 0.0]], np.float32)
    classifier = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)  # (D, C)
    p = class_probabilities(img, classifier, scale=2.0)
    e = np.exp([2.0, 0.0])
    np.testing.assert_allclose(p[0], e / e.sum(), rtol=1e-6)


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


def test_retrieval_degenerate_inputs():
    m = retrieval_metrics(on_circle([0, 10]), [0, 1])
    assert m.queries == 0 and math.isnan(m.map_at_r)
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros((3, 2), np.float32), [0, 1])
    emb = on_circle([0, 10, 20])
    emb[1, 0] = np.nan
    with pytest.raises(MetricsInputError, match="1 of 3 embeddings"):
        retrieval_metrics(emb, [0, 0, 1])


# -- verification ------------------------------------------------------------------------------
GEN = [0.9, 0.8, 0.7, 0.4]
IMP = [0.75, 0.5, 0.3, 0.2, 0.1]


def _synthetic_scores(seed: int, n_gen: int = 300, n_imp: int = 3000, decimals: int = 2):
    rng = np.random.default_rng(seed)
    g = np.round(rng.normal(0.7, 0.15, n_gen), decimals)  # rounding makes ties
    i = np.round(rng.normal(0.3, 0.15, n_imp), decimals)
    return g, i


def test_roc_points_by_hand():
    c = roc(GEN, IMP)
    assert c.thresholds.tolist() == [np.inf, 0.9, 0.8, 0.75, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1]
    assert c.far.tolist() == pytest.approx([0, 0, 0, .2, .2, .4, .4, .6, .8, 1])
    assert c.tar.tolist() == pytest.approx([0, .25, .5, .5, .75, .75, 1, 1, 1, 1])


def test_auc_by_hand_and_against_sklearn():
    from sklearn.metrics import auc

    # genuine beating impostors: 0.9 -> 5, 0.8 -> 5, 0.7 -> 4, 0.4 -> 3: 17 of 20 pairs
    assert roc_auc(GEN, IMP) == pytest.approx(17 / 20)
    assert roc_auc([0.5], [0.5, 0.4]) == pytest.approx(0.75)  # a tie counts half
    g, i = _synthetic_scores(1)
    c = roc(g, i)
    assert roc_auc(g, i) == pytest.approx(auc(c.far, c.tar), abs=1e-12)
    # Mann-Whitney by brute force
    diff = g[:, None] - i[None, :]
    assert roc_auc(g, i) == pytest.approx(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def test_eer_by_hand_interpolated():
    # G .9 .6 / I .8 .5 .4: FRR falls .5 -> 0 while FAR stays 1/3, so they meet at 1/3
    eer, _ = equal_error_rate(roc([0.9, 0.6], [0.8, 0.5, 0.4]))
    assert eer == pytest.approx(1 / 3)
    # sorted .9 G, .8 I, .7 G, .6 I: FAR = FRR = .5 exactly at .8
    eer, t = equal_error_rate(roc([0.7, 0.9], [0.6, 0.8]))
    assert eer == pytest.approx(0.5) and t == pytest.approx(0.8)


def test_eer_lies_where_far_meets_frr_on_random_sets():
    for seed in range(3):
        g, i = _synthetic_scores(seed, decimals=6)
        eer, t = equal_error_rate(roc(g, i))
        tar, far = rates_at(g, i, t)
        # one operating point away at most: each rate moves by 1/n per score
        assert abs(far - eer) <= 2 / i.size + 1e-9 and abs((1 - tar) - eer) <= 2 / g.size + 1e-9


def test_tar_at_far_by_hand():
    t = threshold_at_far(IMP, 0.2)  # one false accept of five: exclude 0.5, the second-highest
    assert 0.5 < t < 0.5 + 1e-12
    r = tar_at_far(GEN, IMP, 0.2)
    assert (r.tar, r.far, r.resolved) == (pytest.approx(0.75), pytest.approx(0.2), True)
    r = tar_at_far(GEN, IMP, 0.1)  # 1/5 > 0.1: not measurable, flagged
    assert r.threshold > 0.75 and r.far == 0 and r.tar == pytest.approx(0.5) and not r.resolved
    assert threshold_at_far([0.5, 0.5, 0.1], 0.5) > 0.5  # ties go together


def test_tar_at_far_one_accepts_everything():
    r = tar_at_far(GEN, IMP, 1.0)
    assert (r.tar, r.far, r.threshold) == (1.0, 1.0, 0.1)


def test_tar_at_far_matches_sklearn_roc_on_random_sets():
    from sklearn.metrics import roc_curve

    for seed in range(3):
        g, i = _synthetic_scores(seed)
        fpr, tpr, _ = roc_curve(np.r_[np.ones(g.size), np.zeros(i.size)], np.r_[g, i])
        for target in (0.0, 1e-3, 1e-2, 0.1, 0.5, 1.0):
            r = tar_at_far(g, i, target)
            assert r.tar == pytest.approx(tpr[fpr <= target + 1e-12].max())
            assert r.far <= target and rates_at(g, i, r.threshold) == (pytest.approx(r.tar), pytest.approx(r.far))


def test_nan_and_empty_scores_raise_a_clear_error():
    with pytest.raises(MetricsInputError, match="1 of 4 genuine scores are NaN"):
        roc_auc([0.9, np.nan, 0.5, 0.4], IMP)
    with pytest.raises(MetricsInputError, match="impostor"):
        tar_at_far(GEN, [np.inf, 0.1], 0.1)
    with pytest.raises(MetricsInputError):
        roc([], IMP)
    emb = on_circle([0, 10, 90, 100])
    emb[2] = np.nan
    with pytest.raises(MetricsInputError, match="NaN"):
        verification_metrics(emb, [0, 0, 1, 1])


def test_clopper_pearson_against_scipy_binomtest():
    from scipy.stats import binomtest

    for k, n in ((0, 100), (3, 1000), (17, 17535), (5, 5)):
        ours = clopper_pearson_upper(k, n)
        ref = binomtest(k, n).proportion_ci(0.90, method="exact").high  # two-sided 90% = one-sided 95%
        assert ours == pytest.approx(ref if k < n else 1.0, rel=1e-9)
    assert clopper_pearson_upper(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000))  # the "rule of 3"


def test_identity_bootstrap_by_brute_force_resampling():
    """The weighted computation equals rebuilding the pair set from the resampled identities."""
    rng = np.random.default_rng(5)
    n_id, per = 7, 3
    labels = np.repeat(np.arange(n_id), per)
    emb = rng.normal(size=(n_id, 8))[labels] + rng.normal(scale=0.8, size=(n_id * per, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores, a, b, _ = all_pairs(emb, labels)
    threshold = float(np.quantile(scores, 0.8))
    ci = identity_bootstrap(scores, a, b, threshold, replicates=200, seed=11)
    # the same draws, done by hand: an identity drawn w times brings w copies of its photos
    draws = np.random.default_rng(11).multinomial(n_id, np.full(n_id, 1 / n_id), size=200)
    fars, tars = [], []
    sim = emb @ emb.T
    for w in draws:
        acc_i = tot_i = acc_g = tot_g = 0.0
        for p in range(n_id):
            for q in range(p, n_id):
                block = sim[np.ix_(labels == p, labels == q)]
                if p == q:
                    s = block[np.triu_indices(per, 1)]
                    acc_g += w[p] * (s >= threshold).sum()
                    tot_g += w[p] * s.size
                else:
                    acc_i += w[p] * w[q] * (block >= threshold).sum()
                    tot_i += w[p] * w[q] * block.size
        if tot_i:
            fars.append(acc_i / tot_i)
        if tot_g:
            tars.append(acc_g / tot_g)
    assert ci.far_low == pytest.approx(np.percentile(fars, 2.5))
    assert ci.far_high == pytest.approx(np.percentile(fars, 97.5))
    assert ci.tar_low == pytest.approx(np.percentile(tars, 2.5))
    assert ci.identities == n_id and ci.far_low <= np.mean(scores[a != b] >= threshold) <= ci.far_high


def test_identity_bootstrap_is_wider_when_one_pair_of_people_dominates():
    """A look-alike pair of people: resampling pairs would call the FAR precise; resampling people
    shows it hinges on whether those two are in the set."""
    rng = np.random.default_rng(0)
    n_id, per = 30, 4
    labels = np.repeat(np.arange(n_id), per)
    emb = rng.normal(size=(n_id, 32))
    emb[1] = emb[0] + rng.normal(scale=0.05, size=32)  # people 0 and 1 look alike
    emb = emb[labels] + rng.normal(scale=0.3, size=(n_id * per, 32))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores, a, b, _ = all_pairs(emb, labels)
    imp = scores[a != b]
    threshold = float(np.sort(imp)[-17])  # the 17 highest impostors: mostly persons 0 x 1
    ci = identity_bootstrap(scores, a, b, threshold, replicates=500)
    far = np.mean(imp >= threshold)
    assert ci.far_low < far < ci.far_high
    assert ci.far_low == 0.0  # in some draws neither look-alike is present


# -- what the metrics accept: one rule for all (vsearch.metrics.inputs) -------------------------
def test_nan_or_infinite_similarities_and_probabilities_are_refused():
    from sklearn.metrics import top_k_accuracy_score

    sim = np.array([[np.nan, 0.2, 0.1], [0.3, 0.2, 0.1]])
    with pytest.raises(MetricsInputError, match="1 of 6 similarity scores are NaN or infinite"):
        recall_at_k(sim, [{0}, {0}], ks=(1, 3))  # before: NaN ranked last, R@1 0.5 and R@3 1.0
    probs = np.array([[0.2, np.inf, 0.1], [0.3, 0.2, 0.1]])
    with pytest.raises(MetricsInputError, match="1 of 6 class probabilities"):
        topk_accuracy(probs, [1, 0], ks=(1,))  # before: accepted (1.0)
    with pytest.raises(ValueError, match="infinity"):  # the reference refuses it too
        top_k_accuracy_score([1, 0], probs, k=1, labels=[0, 1, 2])
    with pytest.raises(MetricsInputError, match="class probabilities"):
        predicted_classes(probs)


def test_empty_input_is_refused_everywhere():
    from sklearn.metrics import top_k_accuracy_score

    with pytest.raises(ValueError, match="0 sample"):  # scikit-learn's rule for empty input
        top_k_accuracy_score(np.zeros(0, int), np.zeros((0, 3)), k=1, labels=[0, 1, 2])
    with pytest.raises(MetricsInputError, match="no class probabilities"):
        topk_accuracy(np.zeros((0, 3)), [], ks=(1,))  # before: NaN and a RuntimeWarning
    with pytest.raises(MetricsInputError, match="no similarity scores"):
        recall_at_k(np.zeros((0, 3)), [], ks=(1,))  # before: 0.0
    with pytest.raises(MetricsInputError, match="no embeddings"):
        retrieval_metrics(np.zeros((0, 2), np.float32), [])  # before: NaN
    with pytest.raises(MetricsInputError, match="no embeddings"):
        verification_metrics(np.zeros((0, 2), np.float32), [])  # before: None
    with pytest.raises(MetricsInputError, match="no pairs"):
        identity_bootstrap([], [], [], 0.5)  # before: an IndexError deep in numpy
    with pytest.raises(MetricsInputError):
        roc_auc([], IMP)  # already so: the verification metrics were the model


def test_a_figure_without_any_query_is_nan_and_a_query_without_relevant_items_does_not_count():
    sim = np.array([[0.9, 0.1], [0.2, 0.8]])
    r = recall_at_k(sim, [{0}, set()], ks=(1,))
    assert r == {1: 1.0}  # before: 0.5, the second row counted as a miss (as retrieval_metrics, no query)
    r = recall_at_k(sim, [set(), set()], ks=(1, 2))
    assert math.isnan(r[1]) and math.isnan(r[2])  # before: 0.0
    m = retrieval_metrics(on_circle([0]), [0])  # one image: no query, not an error
    assert m.queries == 0 and math.isnan(m.recall_at[1]) and math.isnan(m.map_at_r)
    assert verification_metrics(on_circle([0]), [0]) is None  # no pair of either kind


def test_inputs_that_would_silently_miss_are_refused():
    sim = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(MetricsInputError, match="2 queries .* but 1 sets"):
        recall_at_k(sim, [{0}], ks=(1,))  # before: the second row was dropped by zip
    with pytest.raises(MetricsInputError, match="query 1: relevant items \\[5\\]"):
        recall_at_k(sim, [{0}, {5}], ks=(1,))  # before: a miss
    with pytest.raises(MetricsInputError, match="class indices 0..1"):
        topk_accuracy(sim, [0, 2], ks=(1,))  # before: a miss
    with pytest.raises(MetricsInputError, match="targets of shape"):
        topk_accuracy(sim, [0], ks=(1,))
    with pytest.raises(MetricsInputError, match="positive integers"):
        recall_at_k(sim, [{0}, {1}], ks=(0,))  # before: 0.0
    with pytest.raises(MetricsInputError, match="positive integers"):
        retrieval_metrics(on_circle(ANGLES), LABELS, ks=(0, 1))


def test_top1_ties_follow_scikit_learn():
    from sklearn.metrics import top_k_accuracy_score

    probs = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2]])
    # the tied class with the higher index ranks first: target 1 is a hit, target 0 a miss
    assert top_k_accuracy_score([1, 0], probs, k=1, labels=[0, 1, 2]) == 0.5
    assert topk_accuracy(probs, [1, 0], ks=(1,)) == {1: 0.5}  # before: 0.5 by the opposite rule (0 hit, 1 miss)
    assert topk_accuracy(probs[:1], [1], ks=(1,)) == {1: 1.0}  # before: 0.0; scikit-learn: 1.0
    assert predicted_classes(probs).tolist() == [1, 1]
    rng = np.random.default_rng(0)
    for n_classes in (3, 5, 12):
        p = rng.integers(0, 4, size=(300, n_classes)) / 4  # many ties, some straddling the k-th place
        t = rng.integers(0, n_classes, size=300)
        ours = topk_accuracy(p, t, ks=(1, 2))
        for k in (1, 2):
            assert ours[k] == top_k_accuracy_score(t, p, k=k, labels=np.arange(n_classes))
        cm = confusion_matrix(t, predicted_classes(p), n_classes)
        assert np.trace(cm) / len(t) == ours[1]  # the confusion matrix agrees with top-1 accuracy


def test_recall_at_k_ranks_ties_by_the_same_rule():
    sim = np.array([[0.5, 0.5, 0.1]])
    assert recall_at_k(sim, [{1}], ks=(1,)) == {1: 1.0}
    assert recall_at_k(sim, [{0}], ks=(1, 2)) == {1: 0.0, 2: 1.0}
