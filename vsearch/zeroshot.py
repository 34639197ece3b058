"""Zero-shot classification as pure functions of an encoder, labels and prompt templates.

As in CLIP's paper (and open_clip's ``build_zero_shot_classifier``): each class is the mean of
its label written into several prompt templates, renormalised; an image's class probabilities
are a softmax over scaled cosine similarities to those class vectors.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vsearch.encoders.base import l2_normalize
from vsearch.encoders.spec import EncoderSpec
from vsearch.errors import VSearchError

# A compact ensemble chosen from CLIP's 80 ImageNet prompts (the "7 best" reported by its authors,
# plus the plain one): most of the ensemble's gain for an eighth of the text encoding.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


class LabelError(VSearchError):
    """Labels are empty or malformed."""


@dataclass(frozen=True)
class LabelSet:
    labels: tuple[str, ...]
    duplicates: tuple[str, ...] = ()  # dropped repeats, for the caller to mention


def parse_labels(text: str | None = None, file: str | None = None) -> LabelSet:
    """Labels from a comma-separated string and/or a file (one per line; '#' comments).

    Whitespace is trimmed, empty entries dropped, repeats (case-insensitive) removed with notice.
    Any language works: labels are only ever fed to the text encoder.
    """
    raw: list[str] = []
    if text:
        raw += text.split(",")
    if file:
        try:
            with open(file, encoding="utf-8") as fh:
                raw += [line for line in fh.read().splitlines() if not line.lstrip().startswith("#")]
        except OSError as exc:
            raise LabelError(f"cannot read labels file {file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise LabelError(f"labels file {file} is not UTF-8 text") from None
    seen: dict[str, str] = {}
    dups = []
    for label in (r.strip() for r in raw):
        if not label:
            continue
        key = label.casefold()
        if key in seen:
            dups.append(label)
        else:
            seen[key] = label
    if not seen:
        raise LabelError("no labels given: use --labels \"cat,dog\" or --labels-file FILE")
    return LabelSet(tuple(seen.values()), tuple(dups))


def load_templates(spec: str | None) -> tuple[str, ...]:
    """``default`` (or None) or a file with one template per line, each containing ``{}``."""
    if spec in (None, "", "default"):
        return DEFAULT_TEMPLATES
    if spec == "plain":
        return ("{}",)
    try:
        with open(spec, encoding="utf-8") as fh:
            templates = tuple(t.strip() for t in fh.read().splitlines() if t.strip())
    except OSError as exc:
        raise LabelError(f"cannot read templates file {spec}: {exc.strerror or exc}") from None
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise LabelError(f"every template needs a {{}} where the label goes; bad: {bad[:3] or '(file empty)'}")
    return templates


def build_zero_shot_classifier(encoder, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                               batch_size: int = 1024) -> np.ndarray:
    """(D, C) matrix of class embeddings: per label, the renormalised mean over templates.

    Texts are encoded in batches, so 10,000 labels × 8 templates is fine on a CPU (just slower).
    """
    if not labels:
        raise LabelError("no labels")
    texts = [t.format(label) for label in labels for t in templates]
    chunks = [encoder.encode_text(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    emb = np.concatenate(chunks).reshape(len(labels), len(templates), -1).mean(axis=1)
    return np.ascontiguousarray(l2_normalize(emb).T)


def logit_scale(encoder) -> float:
    """How sharply similarities turn into probabilities: CLIP's learned scale, else 100."""
    model = getattr(encoder, "model", None)
    scale = getattr(model, "logit_scale", None)
    if scale is not None:
        try:
            return float(scale.exp().item())
        except Exception:
            pass
    return float(getattr(encoder, "logit_scale", 100.0))


def class_probabilities(image_vectors: np.ndarray, classifier: np.ndarray, scale: float = 100.0) -> np.ndarray:
    """(N, D) @ (D, C) cosines -> (N, C) softmax probabilities."""
    logits = scale * (np.atleast_2d(image_vectors) @ classifier)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    k = min(k, probs.shape[1])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(labels[j], float(row[j])) for j in idx] for row, idx in zip(probs, order)]


class ClassifierCache:
    """Class matrices on disk, keyed by (model, labels, templates): building one for thousands of
    labels costs seconds to minutes, and the same label set is usually asked for again."""

    def __init__(self, directory: str | None = None):
        self.directory = directory or os.path.join(
            os.environ.get("VSEARCH_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "vsearch")), "zeroshot")

    def key(self, model: str, labels: Sequence[str], templates: Sequence[str]) -> str:
        blob = json.dumps([model, list(labels), list(templates)], ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:24]

    def get(self, encoder, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        path = os.path.join(self.directory, self.key(encoder.info.name, labels, templates) + ".npy")
        if os.path.exists(path):
            try:
                m = np.load(path)
                if m.shape == (encoder.info.dim, len(labels)):
                    return m
            except Exception:
                pass
        m = build_zero_shot_classifier(encoder, labels, templates)
        try:
            os.makedirs(self.directory, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp.npy"
            np.save(tmp, m)
            os.replace(tmp, path)
        except OSError:
            pass
        return m


# -- open-set labels: a label needs its own evidence -------------------------------------------
# A softmax over the user's labels always crowns one of them, however badly all of them fit (the
# grey moon came out "cat" at 0.85 among cat/rocket/coffee/horse). Instead each label must reach a
# cosine threshold of its own, and probabilities come from a temperature fitted for the model.

NONE_LABEL = "none"


@dataclass(frozen=True)
class Calibration:
    """How one model's cosines turn into label decisions and probabilities.

    ``threshold``: the cosine (image vs. prompt-ensembled label) from which a label counts as
    present; ``scale``: the inverse temperature of the probabilities, so that a label exactly at
    its threshold gets p = 0.5 and every ``1/scale`` of cosine above it multiplies the odds by e.
    """

    threshold: float
    scale: float
    source: str


# Fitted on 18 scikit-image photos x 5 label sets (benchmarks/RESULTS.md): the likelihood-best
# threshold was 0.37; 0.40 costs nothing in likelihood and keeps "clock" off a photo of text.
# The scale minimises the negative log-likelihood of the open-set softmax at that threshold
# (0.745 nats per photo, against 4.2 at the closed-set scale of 100).
PACKAGED_CALIBRATION = Calibration(0.40, 9.8, "fitted on scikit-image photos")
# Not measured here (no CLIP weights offline). CLIP ViT-B/32 cosines of matching image–text pairs
# sit around 0.25–0.35 and of unrelated pairs around 0.10–0.20; LAION-5B kept English captions from
# 0.28. A one-word label prompt matches more weakly than a caption, hence 0.25. The spread between
# matching and unrelated cosines is about five times narrower than the packaged model's, hence a
# scale five times larger.
CLIP_CALIBRATION = Calibration(0.25, 50.0, "CLIP default (not calibrated on this machine)")


def calibration_for(encoder) -> Calibration:
    name = getattr(getattr(encoder, "info", None), "name", "") or ""
    return PACKAGED_CALIBRATION if EncoderSpec.parse(name).family == "packaged" else CLIP_CALIBRATION


def parse_label_thresholds(terms: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """``["cat=0.3", ...]`` -> {"cat": 0.3}; every label named must be one of ``labels``."""
    known = {label.casefold(): label for label in labels}
    out: dict[str, float] = {}
    for term in terms:
        head, sep, tail = term.rpartition("=")
        try:
            value = float(tail) if sep else None
        except ValueError:
            value = None
        if value is None or not -1.0 <= value <= 1.0:
            raise LabelError(f"--label-threshold {term!r}: write LABEL=COSINE, e.g. cat=0.3 (a cosine in [-1, 1])")
        label = known.get(head.strip().casefold())
        if label is None:
            raise LabelError(f"--label-threshold {term!r}: {head.strip()!r} is not one of the labels")
        out[label] = value
    return out


def label_thresholds(labels: Sequence[str], calibration: Calibration,
                     overrides: dict[str, float] | None = None) -> np.ndarray:
    """(C,) cosine thresholds: the model's default, or a per-label override."""
    overrides = overrides or {}
    return np.asarray([overrides.get(label, calibration.threshold) for label in labels], dtype=np.float32)


def threshold_from_examples(example_vectors: np.ndarray, class_vector: np.ndarray, default: float) -> float:
    """A label's threshold learned from photos the user says show it: just below the weakest of
    them (5 % of its cosine as margin), never above the model default (examples only loosen)."""
    cos = np.atleast_2d(example_vectors) @ class_vector
    return float(min(default, cos.min() - 0.05 * abs(cos.min())))


def open_set_probabilities(image_vectors: np.ndarray, classifier: np.ndarray, thresholds: np.ndarray,
                           scale: float) -> np.ndarray:
    """(N, C + 1) probabilities over the labels plus a last "none of these" column.

    The logit of label j is ``scale * (cos_j - threshold_j)`` and "none" has logit 0, so "none"
    wins exactly when no label reaches its threshold.
    """
    cos = np.atleast_2d(image_vectors) @ classifier  # (N, C)
    logits = np.concatenate([scale * (cos - thresholds[None, :]), np.zeros((len(cos), 1), cos.dtype)], axis=1)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def label_presence(image_vectors: np.ndarray, classifier: np.ndarray, thresholds: np.ndarray,
                   scale: float) -> np.ndarray:
    """(N, C) independent probabilities that each label is present (a photo may carry several):
    ``sigmoid(scale * (cos - threshold))``, 0.5 exactly at a label's threshold."""
    cos = np.atleast_2d(image_vectors) @ classifier
    return 1.0 / (1.0 + np.exp(-scale * (cos - thresholds[None, :])))


@dataclass(frozen=True)
class ImageLabels:
    """One image's zero-shot labels: the best ``k`` with their probabilities, and the decision."""

    path: str
    labels: tuple[tuple[str, float], ...]  # (label, probability), most likely first
    top: str | None  # the label chosen; None when "none of these" wins (open set only)
    none: float | None  # the probability of "none of these"; None for a closed-set decision

    def to_json(self) -> dict:
        return {"path": self.path, "top": self.top, "none": None if self.none is None else round(self.none, 6),
                "labels": [{"label": label, "p": round(p, 6)} for label, p in self.labels]}


def classify_vectors(paths: Sequence[str], image_vectors: np.ndarray, classifier: np.ndarray,
                     labels: Sequence[str], calibration: Calibration, k: int = 3,
                     overrides: dict[str, float] | None = None, closed_set: bool = False) -> list[ImageLabels]:
    """The open-set decision for each image (``paths[i]`` has ``image_vectors[i]``).

    A label is chosen only when it is more likely than "none of these", which wins exactly when no
    label reaches its own cosine threshold (:func:`open_set_probabilities`; ``overrides`` sets some
    labels' thresholds). ``closed_set``: always one of the labels, a softmax over them alone at the
    calibrated temperature (every label at the same far-below offset drops the "none" column out).
    """
    if not len(paths):
        return []
    thresholds = label_thresholds(labels, calibration, overrides)
    if closed_set:
        thresholds = np.full(len(labels), -1e3 / calibration.scale, np.float32)
    probs = open_set_probabilities(image_vectors, classifier, thresholds, calibration.scale)
    label_probs, none_probs = probs[:, :-1], probs[:, -1]
    out = []
    for path, lp, pn, best in zip(paths, label_probs, none_probs, top_k(label_probs, labels, k)):
        top = None if (not closed_set and pn >= max(lp.max(), 0.0)) else best[0][0]
        out.append(ImageLabels(path, tuple(best), top, None if closed_set else float(pn)))
    return out


@dataclass(frozen=True)
class Classification:
    """Zero-shot labels for a set of images, and the files that could not be read."""

    images: list[ImageLabels]
    failures: list[tuple[str, str]]  # (path, reason)

    def to_json(self) -> list[dict]:
        return [image.to_json() for image in self.images]
