import numpy as np
import pytest

from vsearch.retrieval_metrics import confusion_matrix, most_confused, recall_at_k, topk_accuracy
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
