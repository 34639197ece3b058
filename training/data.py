"""Labelled images for metric learning: discovery, decoding (bad files skipped), split by class.

Two layouts are read:

* a folder per class: ``root/<label>/**/*.jpg`` (the label is the first-level folder name), listed
  by :func:`vsearch.datasets.folder_per_class`;
* a CSV with a header holding ``path`` and ``label`` columns (relative paths are taken from the
  CSV's folder).

Every image is decoded once up front with :func:`vsearch.images.decode_image`, so unreadable files
are reported before training starts rather than crashing it at step 10,000, and the deterministic
half of preprocessing (resize + crop to ``uint8``) is kept in memory: at the sizes this trainer
targets on a CPU (thousands of images, <= 224 px) that is cheaper than decoding every epoch.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from training.errors import TrainingDataError
from training.preprocess import Preprocessing
from vsearch.datasets import LabelledPaths, folder_per_class
from vsearch.errors import ImageDecodeError
from vsearch.images import decode_image

log = logging.getLogger(__name__)


def discover(source: str) -> LabelledPaths:
    """List the labelled images of a class-per-folder tree or a ``path,label`` CSV."""
    source = os.path.expanduser(source)
    if os.path.isdir(source):
        found = folder_per_class(source)
    elif os.path.isfile(source) and source.lower().endswith(".csv"):
        found = _from_csv(source)
    elif os.path.exists(source):
        raise TrainingDataError(f"{source}: expected a folder with one sub-folder per class, or a .csv of path,label")
    else:
        raise TrainingDataError(f"{source}: no such file or folder")
    if not found.paths:
        raise TrainingDataError(f"{source}: no labelled images found (expected {source}/<class>/<image>, "
                                "or a CSV with path and label columns)")
    return found


def _from_csv(path: str) -> LabelledPaths:
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields or "label" not in fields:
            raise TrainingDataError(f"{path}: the CSV needs a header with 'path' and 'label' columns, got {reader.fieldnames}")
        reader.fieldnames = fields
        pairs, problems = [], []
        for line, row in enumerate(reader, start=2):
            p, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
            if not p or not label:
                problems.append((f"{path}:{line}", "row without a path or a label, ignored"))
                continue
            pairs.append((p if os.path.isabs(p) else os.path.join(base, p), label))
    return LabelledPaths(tuple(p for p, _ in pairs), tuple(lbl for _, lbl in pairs), tuple(problems))


MIN_CHOSEN_SIZE = 32  # below this a CNN's stride-32 feature map has nothing left to pool
SIZE_SAMPLE = 256  # image headers read to choose the input size


def median_short_side(paths: Sequence[str], sample: int = SIZE_SAMPLE) -> int | None:
    """The median short side of (up to ``sample``, evenly spread) images, from their headers only
    (no decoding). ``None`` when no header is readable."""
    from PIL import Image

    step = max(1, len(paths) // sample)
    sides = []
    for path in list(paths)[::step][:sample]:
        try:
            with Image.open(path) as im:
                sides.append(min(im.size))
        except Exception:  # noqa: BLE001 - unreadable files are reported when decoded
            continue
    return sorted(sides)[len(sides) // 2] if sides else None


def choose_image_size(median_side: int | None, largest: int) -> int | None:
    """The input size the data calls for: its median short side rounded up to a multiple of 8,
    within ``[MIN_CHOSEN_SIZE, largest]``; ``None`` when the side is unknown.

    Upsampling 32 px digits to a backbone's 224 px costs ~50x the compute and adds nothing the
    pixels do not hold.
    """
    if median_side is None:
        return None
    size = -(-median_side // 8) * 8
    return max(min(size, largest), min(MIN_CHOSEN_SIZE, largest))


def split_by_class(data: LabelledPaths, val_classes: Sequence[str] = (), val_fraction: float = 0.0,
                   seed: int = 0) -> tuple[LabelledPaths, LabelledPaths]:
    """(train, validation) with disjoint classes: held-out identities, as retrieval benchmarks do.

    ``val_classes`` names them; otherwise ``round(val_fraction * classes)`` are drawn with a
    seeded generator (at least one when the fraction is positive).
    """
    classes = data.classes
    if val_classes:
        unknown = sorted(set(val_classes) - set(classes))
        if unknown:
            raise TrainingDataError(f"validation classes not in the data: {unknown}; classes are {classes[:20]}")
        held = set(val_classes)
    elif val_fraction > 0:
        if not val_fraction < 1:
            raise TrainingDataError(f"val fraction must be below 1, got {val_fraction}")
        n_val = max(1, round(val_fraction * len(classes)))
        order = torch.randperm(len(classes), generator=torch.Generator().manual_seed(seed)).tolist()
        held = {classes[i] for i in order[:n_val]}
    else:
        held = set()
    train = [i for i, lbl in enumerate(data.labels) if lbl not in held]
    val = [i for i, lbl in enumerate(data.labels) if lbl in held]
    return data.subset(train), data.subset(val)


@dataclass
class ImageSet:
    """Decoded images: ``pixels`` ``uint8 (N, 3, S, S)``, integer ``targets`` indexing ``class_names``."""

    pixels: torch.Tensor
    targets: torch.Tensor  # (N,) int64
    class_names: list[str]
    paths: list[str]
    preprocessing: Preprocessing
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): unreadable files
    dropped_classes: list[str] = field(default_factory=list)  # classes with a single readable image

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Normalised float pixels ``(B, 3, S, S)`` of the given rows."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.preprocessing.normalize(self.pixels[idx])

    def fingerprint(self) -> str:
        """Identifies the exact training set (paths, labels, transform): checked when resuming."""
        h = hashlib.sha256()
        h.update(repr(self.preprocessing.to_dict()).encode())
        for path, t in zip(self.paths, self.targets.tolist()):
            h.update(f"{path}\t{self.class_names[t]}\n".encode())
        return h.hexdigest()[:16]


class _Decode(Dataset):
    def __init__(self, paths: Sequence[str], preprocessing: Preprocessing):
        self.paths = list(paths)
        self.preprocessing = preprocessing

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            # libjpeg's draft mode decodes big JPEGs at a reduced scale, never below the target size
            image = decode_image(self.paths[i], draft_size=self.preprocessing.image_size * 2).image
            return i, self.preprocessing.to_uint8(image), None
        except ImageDecodeError as exc:
            return i, None, str(exc)
        except Exception as exc:  # a transform failure is this file's problem, not the run's
            return i, None, f"preprocessing failed: {type(exc).__name__}: {exc}"


def _as_list(items: list) -> list:
    return items


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)


def load_images(data: LabelledPaths, preprocessing: Preprocessing, workers: int = 0,
                min_per_class: int = 1) -> ImageSet:
    """Decode every listed image. Unreadable files are skipped and listed in ``skipped``; classes
    left with fewer than ``min_per_class`` images are dropped (with a warning) and listed in
    ``dropped_classes``. Pass ``min_per_class=2`` for training, where such a class cannot form a
    positive pair."""
    loader = DataLoader(_Decode(data.paths, preprocessing), batch_size=64, num_workers=workers,
                        collate_fn=_as_list, worker_init_fn=_worker_init if workers else None)
    pixels: list[torch.Tensor | None] = [None] * len(data)
    skipped: list[tuple[str, str]] = list(data.problems)
    for items in loader:
        for i, tensor, error in items:
            if error is not None:
                skipped.append((data.paths[i], error))
            pixels[i] = tensor
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)

    readable = [i for i, px in enumerate(pixels) if px is not None]
    counts: dict[str, int] = {}
    for i in readable:
        counts[data.labels[i]] = counts.get(data.labels[i], 0) + 1
    dropped = sorted(c for c, n in counts.items() if n < min_per_class)
    if dropped:
        log.warning("%d class(es) with fewer than %d readable images skipped (no positive pair possible): %s",
                    len(dropped), min_per_class, ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else ""))
    keep = [i for i in readable if counts[data.labels[i]] >= min_per_class]
    class_names = sorted({data.labels[i] for i in keep})
    index = {c: j for j, c in enumerate(class_names)}
    size = preprocessing.image_size
    stacked = torch.stack([pixels[i] for i in keep]) if keep else torch.zeros((0, 3, size, size), dtype=torch.uint8)
    return ImageSet(
        pixels=stacked,
        targets=torch.tensor([index[data.labels[i]] for i in keep], dtype=torch.long),
        class_names=class_names,
        paths=[data.paths[i] for i in keep],
        preprocessing=preprocessing,
        skipped=skipped,
        dropped_classes=dropped,
    )


def check_trainable(train: ImageSet) -> None:
    """Metric learning needs positives (a class with 2+ images) and negatives (2+ classes)."""
    if len(train.class_names) < 2:
        raise TrainingDataError(
            f"need at least 2 classes with 2 or more readable images to train, have {len(train.class_names)}"
            + (f" ({len(train.skipped)} file(s) unreadable)" if train.skipped else "")
        )
