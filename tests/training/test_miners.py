"""Miners we wrote or wrap, against plain loops."""
import numpy as np
import pytest
import torch

from training.errors import TrainingConfigError
from training.miners import AllTuplesMiner, FaissHardNegatives, RandomTripletMiner, build_miner
from pytorch_metric_learning.distances import LpDistance

LABELS = torch.tensor([0, 0, 1, 1, 1, 2, 3])


def test_all_triplets_are_every_valid_triplet():
    a, p, n = AllTuplesMiner()(torch.zeros(7, 2), LABELS)
    got = set(zip(a.tolist(), p.tolist(), n.tolist()))
    lab = LABELS.tolist()
    want = {(i, j, k) for i in range(7) for j in range(7) for k in range(7)
            if i != j and lab[i] == lab[j] and lab[k] != lab[i]}
    assert got == want and len(a) == len(want)


def test_all_pairs_are_every_ordered_positive_and_negative_pair():
    a1, p, a2, n = AllTuplesMiner(pairs=True)(torch.zeros(7, 2), LABELS)
    lab = LABELS.tolist()
    assert set(zip(a1.tolist(), p.tolist())) == {(i, j) for i in range(7) for j in range(7) if i != j and lab[i] == lab[j]}
    assert set(zip(a2.tolist(), n.tolist())) == {(i, j) for i in range(7) for j in range(7) if lab[i] != lab[j]}


def naive_random(labels, u_pos, u_neg):
    lab = labels.tolist()
    out = []
    for a in range(len(lab)):
        pos = [j for j in range(len(lab)) if j != a and lab[j] == lab[a]]
        neg = [j for j in range(len(lab)) if lab[j] != lab[a]]
        if pos and neg:
            out.append((a, pos[int(u_pos[a] * len(pos))], neg[int(u_neg[a] * len(neg))]))
    return out


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_random_miner_matches_a_loop_given_the_same_draws(seed):
    miner = RandomTripletMiner(seed=seed)
    u = torch.rand(2, len(LABELS), generator=torch.Generator().manual_seed(seed))  # what the miner draws first
    a, p, n = miner(torch.zeros(7, 2), LABELS)
    assert list(zip(a.tolist(), p.tolist(), n.tolist())) == naive_random(LABELS, u[0].tolist(), u[1].tolist())


def test_random_miner_is_seeded_resumable_and_roughly_uniform():
    m1, m2 = RandomTripletMiner(seed=3), RandomTripletMiner(seed=3)
    e = torch.zeros(7, 2)
    assert all(torch.equal(x, y) for x, y in zip(m1(e, LABELS), m2(e, LABELS)))
    state = m1.rng_state()
    first = m1(e, LABELS)
    m2.set_rng_state(state)
    assert all(torch.equal(x, y) for x, y in zip(first, m2(e, LABELS)))
    # anchor 2 (class 1) has negatives 0, 1, 5, 6: each about a quarter of the time
    counts = np.zeros(7)
    for _ in range(2000):
        a, _, n = m1(e, LABELS)
        counts[n[a == 2].item()] += 1
    assert counts[[2, 3, 4]].sum() == 0
    assert np.all(np.abs(counts[[0, 1, 5, 6]] / 2000 - 0.25) < 0.04)


def test_unknown_miner_is_a_clear_error():
    with pytest.raises(TrainingConfigError, match="batch-hard"):
        build_miner("hardest", LpDistance(), 0.2)


def naive_hard_negatives(emb, targets, batch, per_anchor):
    taken, out = set(batch), []
    for a in batch:
        sims = [(float(emb[a] @ emb[j]), j) for j in range(len(emb))]
        found = 0
        for _, j in sorted(sims, key=lambda t: (-t[0], t[1])):
            if found == per_anchor:
                break
            if targets[j] != targets[a] and j not in taken:
                taken.add(j)
                out.append(j)
                found += 1
    return out


@pytest.mark.parametrize("per_anchor", [1, 2])
def test_faiss_hard_negatives_are_the_nearest_other_class_images(per_anchor):
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 6, size=80)
    emb = rng.normal(size=(80, 12)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    bank = FaissHardNegatives(torch.tensor(targets), per_anchor=per_anchor)
    with pytest.raises(RuntimeError):
        bank.extra([0])
    bank.refresh(emb)
    batch = [0, 1, 2, 10, 11, 40]
    got = bank.extra(batch)
    assert got == naive_hard_negatives(emb, targets, batch, per_anchor)
    assert not set(got) & set(batch)


def test_faiss_bank_survives_a_checkpoint_round_trip():
    targets = torch.tensor([0, 0, 1, 1, 2, 2])
    emb = np.eye(6, dtype=np.float32)
    bank = FaissHardNegatives(targets)
    bank.refresh(emb)
    again = FaissHardNegatives(targets)
    again.load_state_dict(bank.state_dict())
    assert again.extra([0, 2]) == bank.extra([0, 2])
