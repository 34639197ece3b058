"""The criterion (PML miner + loss + our mean and counts) against plain Python loops."""
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import DEFAULT_MARGINS, MetricCriterion, ranking_hinge_loss


def batch(seed=0, n_classes=4, per_class=3, dim=8):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(n_classes * per_class, dim, generator=g), dim=1)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    return emb, labels


def dist(e, i, j):
    return math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(e[i], e[j])))


def cos(e, i, j):
    return sum(float(a) * float(b) for a, b in zip(e[i], e[j]))


def valid_triplets(labels):
    n = len(labels)
    for a, p, q in itertools.product(range(n), repeat=3):
        if a != p and labels[a] == labels[p] and labels[q] != labels[a]:
            yield a, p, q


def naive_triplet(e, labels, margin, miner):
    labels = labels.tolist()
    losses = []
    if miner == "batch-hard":
        for a in range(len(labels)):
            pos = [p for p in range(len(labels)) if p != a and labels[p] == labels[a]]
            neg = [q for q in range(len(labels)) if labels[q] != labels[a]]
            if pos and neg:
                losses.append(max(0.0, max(dist(e, a, p) for p in pos) - min(dist(e, a, q) for q in neg) + margin))
    else:
        for a, p, q in valid_triplets(labels):
            ap, an = dist(e, a, p), dist(e, a, q)
            if miner == "semi-hard" and not (ap < an < ap + margin):
                continue
            losses.append(max(0.0, ap - an + margin))
    return losses


@pytest.mark.parametrize("miner", ["batch-hard", "semi-hard", "all"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_loss_and_active_count_match_a_loop(miner, seed):
    e, y = batch(seed)
    margin = 0.3
    loss, stats = MetricCriterion("triplet", miner, margin)(e, y)
    expected = naive_triplet(e, y, margin, miner)
    assert stats.tuples == len(expected) and len(expected) > 0
    assert stats.active == sum(x > 0 for x in expected)
    assert float(loss) == pytest.approx(sum(expected) / len(expected), abs=1e-5)


def test_ranking_loss_with_labels_is_hinge_on_cosine_over_all_triplets():
    e, y = batch(3)
    loss, stats = MetricCriterion("ranking", "all", 0.25)(e, y)
    expected = [max(0.0, 0.25 - cos(e, a, p) + cos(e, a, q)) for a, p, q in valid_triplets(y.tolist())]
    assert stats.tuples == len(expected)
    assert float(loss) == pytest.approx(sum(expected) / len(expected), abs=1e-5)


def test_contrastive_all_pairs_matches_a_loop():
    e, y = batch(4)
    m = 0.9
    loss, stats = MetricCriterion("contrastive", "all", m)(e, y)
    lab = y.tolist()
    pos = [dist(e, i, j) for i in range(len(lab)) for j in range(len(lab)) if i != j and lab[i] == lab[j]]
    neg = [max(0.0, m - dist(e, i, j)) for i in range(len(lab)) for j in range(len(lab)) if lab[i] != lab[j]]
    assert stats.tuples == len(pos) + len(neg)
    assert stats.active == sum(x > 0 for x in pos) + sum(x > 0 for x in neg)
    # pos and neg pairs are averaged separately, then added (PML's sub-losses)
    assert float(loss) == pytest.approx(sum(pos) / len(pos) + sum(neg) / len(neg), abs=1e-5)


def test_contrastive_batch_hard_uses_each_anchors_hardest_pairs():
    e, y = batch(5)
    m = 1.2
    loss, stats = MetricCriterion("contrastive", "batch-hard", m)(e, y)
    lab = y.tolist()
    pos, neg = [], []
    for a in range(len(lab)):
        pos.append(max(dist(e, a, p) for p in range(len(lab)) if p != a and lab[p] == lab[a]))
        neg.append(max(0.0, m - min(dist(e, a, q) for q in range(len(lab)) if lab[q] != lab[a])))
    assert stats.tuples == 2 * len(lab)
    assert float(loss) == pytest.approx(sum(pos) / len(pos) + sum(neg) / len(neg), abs=1e-5)


@pytest.mark.parametrize("labels", [torch.arange(6), torch.zeros(6, dtype=torch.long)])
@pytest.mark.parametrize("miner", ["batch-hard", "semi-hard", "all", "random"])
def test_a_batch_without_valid_triplets_gives_zero_loss_zero_tuples_and_zero_gradient(labels, miner):
    e = F.normalize(torch.randn(6, 4), dim=1).requires_grad_()
    loss, stats = MetricCriterion("triplet", miner)(e, labels)
    assert float(loss.detach()) == 0.0 and stats.tuples == 0 and stats.active_fraction == 0.0
    loss.backward()  # still part of the graph: a training step on it is harmless
    assert torch.count_nonzero(e.grad) == 0


def test_semi_hard_with_zero_margin_never_finds_a_triplet():
    e, y = batch(0)
    _, stats = MetricCriterion("triplet", "semi-hard", 0.0)(e, y)
    assert stats.tuples == 0


def test_loss_is_differentiable_and_decreases_with_a_gradient_step():
    e, y = batch(6)
    e = e.clone().requires_grad_()
    crit = MetricCriterion("triplet", "batch-hard")
    loss, _ = crit(e, y)
    loss.backward()
    with torch.no_grad():
        moved = F.normalize(e - 0.5 * e.grad, dim=1)
    assert float(crit(moved, y)[0]) < float(loss.detach())


def test_ranking_hinge_loss_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    q, good, bad = torch.randn(3, 7, 5, generator=g).unbind(0)
    margin = 0.3
    expected = []
    for i in range(7):
        cq, cg, cb = (F.normalize(t[i], dim=0) for t in (q, good, bad))
        expected.append(max(0.0, margin - float(cq @ cg) + float(cq @ cb)))
    assert float(ranking_hinge_loss(q, good, bad, margin)) == pytest.approx(sum(expected) / 7, abs=1e-6)


def test_ranking_hinge_loss_rejects_mismatched_shapes_and_handles_empty():
    with pytest.raises(ValueError):
        ranking_hinge_loss(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2, 4))
    assert float(ranking_hinge_loss(*(torch.zeros(0, 4) for _ in range(3)))) == 0.0


def test_default_margins_are_used():
    assert MetricCriterion("triplet").margin == DEFAULT_MARGINS["triplet"]
    assert MetricCriterion("contrastive", "all").loss.neg_margin == DEFAULT_MARGINS["contrastive"]
