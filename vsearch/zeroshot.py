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
