"""Evaluation runs: zero-shot classification on a folder-per-class dataset, and image↔text
retrieval on (image, caption) pairs with the Flickr30k/COCO Recall@K protocol."""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass

import numpy as np

from vsearch.encoders.base import encode_images
from vsearch.datasets import DatasetError, folder_per_class
from vsearch.errors import ImageDecodeError
from vsearch.images import decode_image
from vsearch.metrics.retrieval import confusion_matrix, most_confused, predicted_classes, recall_at_k, topk_accuracy
from vsearch.zeroshot import DEFAULT_TEMPLATES, build_zero_shot_classifier, class_probabilities, logit_scale


@dataclass(frozen=True)
class ClassifyEval:
    n_images: int
    labels: tuple[str, ...]
    top1: float
    top5: float
    confused: list[tuple[str, str, int]]
    skipped: list[tuple[str, str]]
    model: str = ""  # the encoder's name

    def to_json(self) -> dict:
        """What ``vsearch eval classify --json`` prints (the skipped files go to stderr)."""
        return {"images": self.n_images, "classes": len(self.labels), "top1": self.top1, "top5": self.top5,
                "confused": self.confused, "model": self.model}


@dataclass(frozen=True)
class RetrievalEval:
    n_images: int
    n_captions: int
    image_to_text: dict[int, float]
    text_to_image: dict[int, float]
    skipped: list[tuple[str, str]]
    model: str = ""  # the encoder's name

    def to_json(self) -> dict:
        """What ``vsearch eval retrieval --json`` prints (the skipped files go to stderr)."""
        return {"images": self.n_images, "captions": self.n_captions, "image_to_text": self.image_to_text,
                "text_to_image": self.text_to_image, "model": self.model}


class _Silent:
    """The progress of a caller that shows none."""

    def __init__(self, what: str, total: int):
        pass

    def __enter__(self) -> "_Silent":
        return self

    def advance(self, n: int) -> None:
        pass

    def __exit__(self, *exc) -> None:
        pass


def _embed_files(encoder, paths, batch_size=32, progress=_Silent):
    """Decode and embed ``paths`` a batch at a time; ``progress(what, total)`` is a context manager
    whose ``advance(n)`` hears each batch (the commands pass a progress bar)."""
    vectors, kept, skipped = [], [], []
    with progress("embedding", len(paths)) as bar:
        for start in range(0, len(paths), batch_size):
            images = []
            for p in paths[start:start + batch_size]:
                try:
                    images.append(decode_image(p, draft_size=encoder.info.image_size).image)
                    kept.append(p)
                except ImageDecodeError as exc:
                    skipped.append((p, str(exc)))
            if images:
                vectors.append(encode_images(encoder, images, batch_size))
            bar.advance(len(paths[start:start + batch_size]))
    return (np.concatenate(vectors) if vectors else np.zeros((0, encoder.info.dim), np.float32)), kept, skipped


def label_from_folder(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip()


def evaluate_classification(encoder, root: str, templates=DEFAULT_TEMPLATES, progress=_Silent) -> ClassifyEval:
    """Zero-shot top-1/top-5 on ``root/<class>/*.jpg``; class names come from folder names.
    ``progress``: see :func:`_embed_files`."""
    listed = folder_per_class(root)
    classes = listed.folders
    if len(classes) < 2:
        raise DatasetError(f"{root} needs at least two class sub-folders, found {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    paths, targets = list(listed.paths), [index[c] for c in listed.labels]
    vectors, kept, skipped = _embed_files(encoder, paths, progress=progress)
    skipped = list(listed.problems) + skipped
    if not kept:
        raise DatasetError(f"no readable images under {root}")
    keep = set(kept)
    targets = [t for p, t in zip(paths, targets) if p in keep]
    labels = tuple(label_from_folder(c) for c in classes)
    probs = class_probabilities(vectors, build_zero_shot_classifier(encoder, labels, templates), logit_scale(encoder))
    acc = topk_accuracy(probs, targets, (1, 5))
    cm = confusion_matrix(targets, predicted_classes(probs), len(labels))
    return ClassifyEval(len(kept), labels, acc[1], acc[5], most_confused(cm, labels), skipped, encoder.info.name)


def read_pairs(path: str) -> list[tuple[str, str]]:
    """(image path, caption) pairs from CSV/TSV (columns image, caption) or JSONL; relative image
    paths are relative to the pairs file."""
    from vsearch.captions import _IMAGE_KEYS, _TEXT_KEYS, _pick

    base = os.path.dirname(os.path.abspath(path))
    ext = os.path.splitext(path)[1].lower()
    rows = []
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if ext == ".jsonl":
                dicts = [json.loads(line) for line in fh if line.strip()]
            else:
                dicts = list(csv.DictReader(fh, delimiter="\t" if ext == ".tsv" else ","))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: {exc}") from None
    for d in dicts:
        img, cap = _pick(d, _IMAGE_KEYS), _pick(d, _TEXT_KEYS)
        if img and cap and cap.strip():
            rows.append((img if os.path.isabs(img) else os.path.normpath(os.path.join(base, img)), cap.strip()))
    if not rows:
        raise DatasetError(f"{path}: no (image, caption) pairs found (columns: image, caption)")
    return rows


def evaluate_retrieval(encoder, pairs: list[tuple[str, str]], ks=(1, 5, 10), progress=_Silent) -> RetrievalEval:
    """Image->text and text->image Recall@K; ``progress``: see :func:`_embed_files`."""
    images = list(dict.fromkeys(p for p, _ in pairs))
    vectors, kept, skipped = _embed_files(encoder, images, progress=progress)
    if not kept:
        raise DatasetError("none of the images could be read")
    index_of = {p: i for i, p in enumerate(kept)}
    captions = [(index_of[p], c) for p, c in pairs if p in index_of]
    text_vecs = encoder.encode_text([c for _, c in captions])
    sim = vectors @ text_vecs.T  # (images, captions)
    caps_of_image = [set() for _ in kept]
    for ci, (ii, _) in enumerate(captions):
        caps_of_image[ii].add(ci)
    i2t = recall_at_k(sim, caps_of_image, ks)
    t2i = recall_at_k(sim.T, [{ii} for ii, _ in captions], ks)
    return RetrievalEval(len(kept), len(captions), i2t, t2i, skipped, encoder.info.name)
