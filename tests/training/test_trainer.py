import numpy as np
import pytest
import torch

from training.data import discover, load_images, split_by_class
from training.errors import CheckpointError, TrainingConfigError
from training.evaluate import embed_image_set
from vsearch.metrics.retrieval import retrieval_metrics
from training.model import ModelSpec, build_model, default_preprocessing
from training.trainer import MIN_LR_RATIO, NoProgress, TrainingInterrupted, fit, lr_at, model_spec

from tests.training.conftest import tiny_config


@pytest.fixture(scope="module")
def digit_sets(digits_root):
    """(train 0-6, held-out 7-9) at 8 px, decoded once for the module."""
    cfg = tiny_config(digits_root, "unused.pt")
    train_paths, val_paths = split_by_class(discover(str(digits_root)), cfg.val_classes)
    pre = model_spec(cfg).preprocessing
    return load_images(train_paths, pre, min_per_class=2), load_images(val_paths, pre)


class StopAt(NoProgress):
    """Presses Ctrl-C right after step ``n`` (the hook is called between steps, as a real Ctrl-C may be)."""

    def __init__(self, n: int):
        self.n = n

    def step(self, step, loss, active_fraction, lr):
        if step == self.n:
            raise KeyboardInterrupt


def test_training_beats_the_untrained_model_on_held_out_classes(mnist_sets, tmp_path):
    train, val = mnist_sets
    cfg = tiny_config("", tmp_path / "m.pt", image_size=28, embedding_dim=32, epochs=3, steps_per_epoch=20,
                      classes_per_batch=7, samples_per_class=6)
    torch.manual_seed(cfg.seed)
    untrained = retrieval_metrics(embed_image_set(build_model(model_spec(cfg), "none"), val), val.targets.numpy())
    result = fit(cfg, train, val)
    trained = retrieval_metrics(embed_image_set(result.model, val), val.targets.numpy())
    assert result.steps == 60 and len(result.history) == 3
    assert result.history[-1].val_recall_at_1 == pytest.approx(trained.recall_at[1])
    assert result.history[-1].loss < result.history[0].loss
    # held-out digits 7-9 were never seen: what improved is the embedding, not a classifier
    assert trained.map_at_r > untrained.map_at_r + 0.1, (untrained, trained)
    assert trained.recall_at[1] > untrained.recall_at[1], (untrained, trained)


@pytest.mark.parametrize("miner,negatives", [("random", 1), ("batch-hard", 0)])
def test_resumed_run_equals_uninterrupted_run(digit_sets, tmp_path, miner, negatives):
    train, val = digit_sets
    common = dict(miner=miner, cross_batch_negatives=negatives, refresh_every=5, epochs=2, steps_per_epoch=6)
    straight = fit(tiny_config("", tmp_path / "a.pt", **common), train, val)

    cfg = tiny_config("", tmp_path / "b.pt", **common)
    with pytest.raises(TrainingInterrupted, match="--resume") as info:
        fit(cfg, train, val, progress=StopAt(8))  # mid second epoch, between checkpoints
    assert info.value.step == 8
    cfg.resume = True
    resumed = fit(cfg, train, val)
    assert resumed.resumed_from == 8 and resumed.steps == 12
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda h: [(e.epoch, e.loss, e.active_fraction, e.empty_batches, e.val_recall_at_1) for e in h]  # noqa: E731
    assert strip(straight.history) == strip(resumed.history)


def test_resume_refuses_other_settings_or_other_data(digit_sets, tmp_path):
    train, val = digit_sets
    cfg = tiny_config("", tmp_path / "m.pt", epochs=1)
    fit(cfg, train, val)
    cfg.resume, cfg.lr = True, 1e-2
    with pytest.raises(CheckpointError, match="lr"):
        fit(cfg, train, val)
    cfg.lr = tiny_config("", "x").lr
    smaller = load_images(_subset_paths(train), train.preprocessing, min_per_class=2)
    with pytest.raises(CheckpointError, match="other training images"):
        fit(cfg, smaller, val)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fit(tiny_config("", tmp_path / "never.pt", resume=True), train, val)


def _subset_paths(images):
    from training.data import LabelledPaths

    keep = range(0, len(images), 2)
    return LabelledPaths(tuple(images.paths[i] for i in keep),
                         tuple(images.class_names[images.targets[i]] for i in keep))


def test_batches_without_a_valid_triplet_are_counted_and_change_nothing(digit_sets, tmp_path):
    train, _ = digit_sets
    # semi-hard with margin 0 asks for d(a,p) < d(a,n) < d(a,p): no triplet ever qualifies
    cfg = tiny_config("", tmp_path / "m.pt", miner="semi-hard", margin=0.0, epochs=1, steps_per_epoch=5)
    torch.manual_seed(cfg.seed)
    before = build_model(model_spec(cfg), "none").state_dict()
    result = fit(cfg, train)
    assert result.empty_batches == 5 and result.history[0].empty_batches == 5
    assert result.history[0].loss == 0.0 and result.history[0].active_fraction == 0.0
    after = result.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)


def test_learning_rate_warms_up_then_follows_a_cosine():
    total, base, warm = 100, 1.0, 10
    lrs = [lr_at(s, total, base, warm) for s in range(total)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    mid = lr_at(10 + 45, total, base, warm)
    assert mid == pytest.approx(MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5, abs=1e-9)
    assert lr_at(total, total, base, warm) == pytest.approx(MIN_LR_RATIO)


def test_bad_configurations_are_clear_errors(digit_sets, tmp_path):
    train, _ = digit_sets
    with pytest.raises(TrainingConfigError, match="unknown backbone"):
        build_model(ModelSpec("no_such_net", 8, default_preprocessing("no_such_net", 8)))
    with pytest.raises(TrainingConfigError, match="unknown loss"):
        fit(tiny_config("", tmp_path / "m.pt", loss="hinge"), train)
    with pytest.raises(TrainingConfigError, match="preprocessed"):
        fit(tiny_config("", tmp_path / "m.pt", image_size=16), train)  # images were decoded at 8 px
    with pytest.raises(TrainingConfigError, match="only for efficientnet_lite0"):
        build_model(ModelSpec("vsearch_tiny_cnn", 8, default_preprocessing("vsearch_tiny_cnn", 8)), "imagenet")


def test_default_backbone_starts_from_the_shipped_imagenet_weights():
    from vsearch.encoders.conse import load_efficientnet_lite0

    spec = ModelSpec("efficientnet_lite0", 32, default_preprocessing("efficientnet_lite0", 64))
    assert spec.preprocessing.image_size == 64 and spec.preprocessing.mean == (0.485, 0.456, 0.406)
    model = build_model(spec)  # weights="auto"
    reference = load_efficientnet_lite0().state_dict()
    ours = model.backbone.state_dict()
    assert all(torch.equal(ours[k], reference[k]) for k in ours)
    out = model.eval()(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 32) and torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    assert default_preprocessing("efficientnet_lite0").image_size == 224


def test_ctrl_c_inside_a_step_checkpoints_the_state_from_before_that_step(digit_sets, tmp_path, monkeypatch):
    """The random miner has already drawn this step's numbers when the interrupt lands: the
    checkpoint must hold the generator state from *before* the step, or the rerun would differ."""
    import training.trainer as trainer_module
    from training.losses import MetricCriterion

    train, val = digit_sets
    common = dict(miner="random", epochs=1, steps_per_epoch=8)
    straight = fit(tiny_config("", tmp_path / "a.pt", **common), train, val)

    calls = {"n": 0}

    class InterruptedOnFifthCall(MetricCriterion):
        def forward(self, embeddings, labels):
            out = super().forward(embeddings, labels)
            calls["n"] += 1
            if calls["n"] == 5:
                raise KeyboardInterrupt
            return out

    monkeypatch.setattr(trainer_module, "MetricCriterion", InterruptedOnFifthCall)
    cfg = tiny_config("", tmp_path / "b.pt", **common)
    with pytest.raises(TrainingInterrupted) as info:
        fit(cfg, train, val)
    assert info.value.step == 4
    monkeypatch.undo()
    cfg.resume = True
    resumed = fit(cfg, train, val)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mixed_precision_training_on_cuda(mnist_sets, tmp_path):
    train, val = mnist_sets
    cfg = tiny_config("", tmp_path / "m.pt", image_size=28, epochs=2, steps_per_epoch=20, classes_per_batch=7,
                      samples_per_class=6, device="cuda")
    result = fit(cfg, train, val)
    assert next(result.model.parameters()).is_cuda
    assert result.history[-1].loss < result.history[0].loss
    emb = embed_image_set(result.model, val, "cuda")
    assert emb.dtype == np.float32 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
