"""The training run's settings in one dataclass (the CLI fills it; tests build it directly)."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace

from training.errors import TrainingConfigError

# Light on purpose (no torch): the CLI reads the defaults below to build `vsearch train --help`.
DEFAULT_BACKBONE = "efficientnet_lite0"
AUTO = "auto"
SMALL_IMAGE_SIDE = 64  # a median short side up to this many pixels gets the small-image recipe


@dataclass(frozen=True)
class Recipe:
    """The settings ``auto`` stands for, by kind of data. Measured on held-out classes (figures in
    ``benchmarks/RESULTS.md``): on 8x8 digits an ImageNet EfficientNet-Lite0 fed 32 px has a 1x1
    map left after its stride of 32, learns little (upsampled to 64 or 96 px too) and costs ~15x a small CNN's epoch; the small CNN
    trained from scratch beats raw pixels in a minute once the triplet margin is wide enough (at 0.2
    every triplet is satisfied within a few epochs and learning stops) and images move a little.
    On photos (the textile set) semi-hard triplets trained the ImageNet backbone where batch-hard
    barely moved it."""

    name: str
    backbone: str
    lr: float
    shift: float  # fraction of the input size
    triplet_margin: float | None  # None: the loss's own default
    epochs: int
    miner: str


RECIPES = {
    "small": Recipe("small images", "vsearch_tiny_cnn", 3e-3, 1 / 16, 0.3, 15, "batch-hard"),
    # semi-hard: on the textile photos it beat batch-hard on 4 of 4 seeds (held-out MAP@R 0.46 against 0.27-0.31)
    "photos": Recipe("photos", DEFAULT_BACKBONE, 3e-4, 0.0, None, 10, "semi-hard"),
}


def recipe_for(median_side: int | None) -> Recipe:
    """The small-image recipe for images whose median short side is at most SMALL_IMAGE_SIDE."""
    small = median_side is not None and median_side <= SMALL_IMAGE_SIDE
    return RECIPES["small" if small else "photos"]

# Settings that change what a run computes. A checkpoint made under other values cannot be resumed
# into an identical run, so --resume refuses it; the rest (paths, workers, logging) may change.
RESUME_MUST_MATCH = (
    "backbone", "weights", "embedding_dim", "image_size", "loss", "miner", "margin", "epochs",
    "steps_per_epoch", "classes_per_batch", "samples_per_class", "lr", "shift", "weight_decay", "warmup_fraction",
    "grad_clip", "seed", "val_classes", "val_fraction", "cross_batch_negatives", "refresh_every", "patience",
)


@dataclass
class TrainConfig:
    data: str = ""  # class-per-folder root or path,label CSV
    out: str = "model.pt"  # exported model (weights + architecture + preprocessing)
    backbone: str = AUTO  # any timm architecture name; auto: by the data's image size (see Recipe)
    weights: str = "auto"  # auto | imagenet | none | FILE (initial backbone weights)
    embedding_dim: int = 128
    image_size: int | None = None  # None: chosen from the data (see data.choose_image_size), capped by the backbone's
    loss: str = "triplet"
    miner: str | None = None  # None: the recipe's
    margin: float | None = None  # None: the recipe's, else the loss's default (see losses.DEFAULT_MARGINS)
    epochs: int | None = None  # None: the recipe's
    steps_per_epoch: int | None = None  # None: enough P x K batches to cover the training set once
    classes_per_batch: int = 16  # P
    samples_per_class: int = 4  # K
    lr: float | None = None  # None: the recipe's
    shift: float | None = None  # None: the recipe's. Training images move by up to this fraction of the input size (augmentation)
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05  # of all steps, linear warm-up before the cosine decay
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    seed: int = 0
    val_classes: list[str] = field(default_factory=list)  # held-out classes by name...
    val_fraction: float = 0.2  # ...or this fraction of classes, drawn with the seed
    cross_batch_negatives: int = 0  # per anchor, from a FAISS index of all training embeddings
    refresh_every: int | None = None  # steps between FAISS index rebuilds; None: once per epoch
    device: str = "cpu"
    amp: bool = True  # float16 autocast + grad scaling, on CUDA only
    checkpoint: str | None = None  # None: OUT + ".ckpt"
    checkpoint_every: int = 200  # steps (also at every epoch end and on Ctrl-C)
    resume: bool = False
    workers: int = 0  # decoding processes for the initial image pass
    eval_every_epoch: bool = True  # Recall@1 / MAP@R on the held-out classes after each epoch
    patience: int = 5  # epochs without a better held-out MAP@R before stopping (0: never stop early)
    report: str | None = None  # None: OUT with .eval.json (and .eval.png next to it)

    def validate(self) -> "TrainConfig":
        from training.losses import LOSSES
        from training.miners import MINERS

        if self.loss not in LOSSES:
            raise TrainingConfigError(f"unknown loss {self.loss!r}: choose one of {', '.join(LOSSES)}")
        if self.miner is not None and self.miner not in MINERS:
            raise TrainingConfigError(f"unknown miner {self.miner!r}: choose one of {', '.join(MINERS)}")
        positive = {"epochs": self.epochs or 1, "embedding_dim": self.embedding_dim, "checkpoint_every": self.checkpoint_every}
        for name, value in positive.items():
            if value < 1:
                raise TrainingConfigError(f"{name} must be at least 1, got {value}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise TrainingConfigError(f"steps per epoch must be at least 1, got {self.steps_per_epoch}")
        if self.patience < 0:
            raise TrainingConfigError(f"patience must be at least 0, got {self.patience}")
        if self.shift is not None and not 0 <= self.shift < 0.5:
            raise TrainingConfigError(f"shift must be in [0, 0.5), got {self.shift}")
        if (self.lr is not None and self.lr <= 0) or self.weight_decay < 0 or self.grad_clip < 0:
            raise TrainingConfigError("lr must be positive; weight decay and grad clip non-negative")
        if not 0 <= self.warmup_fraction < 1:
            raise TrainingConfigError(f"warm-up fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0 <= self.val_fraction < 1:
            raise TrainingConfigError(f"val fraction must be in [0, 1), got {self.val_fraction}")
        if self.cross_batch_negatives < 0 or (self.refresh_every is not None and self.refresh_every < 1):
            raise TrainingConfigError("cross-batch negatives must be >= 0 and refresh-every >= 1")
        return self

    def with_recipe(self, median_side: int | None = None) -> "TrainConfig":
        """A copy with every ``auto``/``None`` setting of the recipe filled in from the data's median
        short side (``None``: unknown, the photo recipe). Settings given explicitly are kept."""
        r = recipe_for(median_side)
        margin = self.margin
        if margin is None and self.loss == "triplet" and r.triplet_margin is not None:
            margin = r.triplet_margin
        return replace(self, backbone=r.backbone if self.backbone == AUTO else self.backbone,
                       lr=r.lr if self.lr is None else self.lr, shift=r.shift if self.shift is None else self.shift,
                       epochs=r.epochs if self.epochs is None else self.epochs, margin=margin,
                       miner=r.miner if self.miner is None else self.miner)

    @property
    def checkpoint_path(self) -> str:
        return self.checkpoint or self.out + ".ckpt"

    @property
    def report_paths(self) -> tuple[str, str]:
        """(JSON, PNG) of the held-out evaluation."""
        json_path = self.report or os.path.splitext(self.out)[0] + ".eval.json"
        return json_path, os.path.splitext(json_path)[0] + ".png"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["val_classes"] = list(self.val_classes)
        return d

    def resume_key(self) -> dict:
        d = self.to_dict()
        return {k: d[k] for k in RESUME_MUST_MATCH}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
