from collections import Counter

import pytest
import torch

from training.errors import TrainingConfigError
from training.sampler import PKSampler

LABELS = [i % 6 for i in range(60)] + [6, 6, 6] + [7]  # six classes of 10, one of 3, one singleton


def test_same_seed_same_batches_other_seed_or_epoch_differs():
    a = PKSampler(LABELS, 4, 3, seed=7)
    b = PKSampler(LABELS, 4, 3, seed=7)
    assert a.epoch(0) == b.epoch(0) and a.epoch(3) == b.epoch(3)
    assert a.epoch(0) != a.epoch(1)
    assert PKSampler(LABELS, 4, 3, seed=8).epoch(0) != a.epoch(0)


def test_epochs_do_not_depend_on_call_order_or_global_rng():
    s = PKSampler(LABELS, 4, 3, seed=1)
    later = s.epoch(2)
    torch.manual_seed(123)
    torch.rand(100)
    s.epoch(0), s.epoch(1)
    assert PKSampler(LABELS, 4, 3, seed=1).epoch(2) == later


def test_batches_hold_p_classes_of_k_distinct_images():
    s = PKSampler(LABELS, 4, 3, batches_per_epoch=30, seed=0)
    labels = torch.tensor(LABELS)
    for batch in s.epoch(0):
        assert len(batch) == len(set(batch))  # no duplicate images
        per_class = Counter(labels[batch].tolist())
        assert len(per_class) == 4
        assert set(per_class.values()) <= {3}  # class 6 has exactly 3 images, the others >= 3
        assert 7 not in per_class  # a singleton class can never give a positive pair


def test_an_epoch_covers_classes_and_images_evenly():
    s = PKSampler(LABELS, 4, 3, seed=0)  # default length: enough batches for the eligible images once
    batches = s.epoch(0)
    assert len(batches) == -(-63 // 12)
    labels = torch.tensor(LABELS)
    class_visits = Counter(c for b in batches for c in set(labels[b].tolist()))
    assert set(class_visits) == set(range(7))  # classes are visited in shuffled rounds
    assert max(class_visits.values()) - min(class_visits.values()) <= 1
    image_visits = Counter(i for b in batches for i in b if LABELS[i] < 6)
    # classes of 10 seen 3-4 times x K=3: walking shuffled rounds, no image comes a third time
    assert max(image_visits.values()) <= 2


def test_class_smaller_than_k_contributes_all_its_images():
    s = PKSampler([0, 0, 1, 1, 1, 1, 1], 2, 4, batches_per_epoch=5, seed=0)
    for batch in s.epoch(0):
        assert sorted(i for i in batch if i < 2) == [0, 1]
        assert len([i for i in batch if i >= 2]) == 4


@pytest.mark.parametrize("p,k,labels", [(1, 4, LABELS), (4, 1, LABELS), (4, 4, [0, 0, 1])])
def test_impossible_batch_shapes_are_clear_errors(p, k, labels):
    with pytest.raises(TrainingConfigError):
        PKSampler(labels, p, k)


def test_p_is_capped_at_the_number_of_classes():
    s = PKSampler([0, 0, 1, 1], 8, 2, seed=0)
    assert s.p == 2 and all(len(b) == 4 for b in s.epoch(0))
