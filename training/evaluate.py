"""Held-out evaluation: embed labelled images, score retrieval and verification, write JSON + PNG.

A figure alone says little: every report carries what the user has without training, on the same
images (Musgrave et al., 2020, "A Metric Learning Reality Check"): raw pixels (a 32 x 32
thumbnail compared by cosine), the untrained model (the same network before its first step), and
the Recall@1 of a random ranking.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from training.data import ImageSet, LabelledPaths
from vsearch.metrics.retrieval import RetrievalMetrics, retrieval_metrics
from vsearch.metrics.verification import VerificationMetrics, verification_metrics
from vsearch.encoders.base import l2_normalize
from vsearch.errors import ImageDecodeError
from vsearch.images import decode_image

FARS = (1e-3, 1e-2, 1e-1)
RAW_SIDE = 32  # raw-pixel baseline: the image as a RAW_SIDE x RAW_SIDE thumbnail, compared by cosine
COLLAPSE_AUC = 0.05  # a held-out ROC AUC within this of 0.5 separates nothing
COLLAPSE_SPREAD = 1e-3  # standard deviation of pairwise cosines below which every image looks alike


@dataclass(frozen=True)
class Baseline:
    """Held-out figures of something other than the trained model on the same images."""

    name: str  # "raw pixels", "untrained model"
    recall_at_1: float
    map_at_r: float

    def to_dict(self) -> dict:
        return {"recall_at_1": _num(self.recall_at_1), "map_at_r": _num(self.map_at_r)}


def baseline(name: str, embeddings: np.ndarray, labels: Sequence[int] | np.ndarray) -> Baseline:
    r = retrieval_metrics(embeddings, labels, ks=(1,))
    return Baseline(name, r.recall_at[1], r.map_at_r)


def raw_pixel_vectors(pixels: torch.Tensor) -> np.ndarray:
    """``uint8 (N, 3, S, S)`` -> ``(N, 3 * RAW_SIDE**2)`` unit vectors of the (area-downsampled) pixels."""
    x = pixels.float()
    if x.shape[-1] != RAW_SIDE:
        x = torch.nn.functional.interpolate(x, size=(RAW_SIDE, RAW_SIDE), mode="area")
    return l2_normalize(x.reshape(len(x), -1)) if len(x) else np.zeros((0, 3 * RAW_SIDE**2), np.float32)


def raw_pixel_vectors_of_files(paths: Sequence[str]) -> np.ndarray:
    """:func:`raw_pixel_vectors` of image files, each resized as ``eval embeddings`` resizes it."""
    from training.preprocess import Preprocessing

    thumbnail = Preprocessing(RAW_SIDE).to_uint8
    return raw_pixel_vectors(torch.stack([thumbnail(decode_image(p).image) for p in paths])
                             if paths else torch.zeros((0, 3, RAW_SIDE, RAW_SIDE), dtype=torch.uint8))


def chance_recall_at_1(labels: Sequence | np.ndarray) -> float:
    """Recall@1 of a random ranking: a query's first result is of its class with probability
    (other images of its class) / (all other images), averaged over the queries that have one."""
    lab = np.asarray(labels)
    _, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    others = counts[inverse] - 1
    queries = others > 0
    if not queries.any() or len(lab) < 2:
        return float("nan")
    return float((others[queries] / (len(lab) - 1)).mean())


def collapse_reason(report: "EvalReport") -> str | None:
    """Why the scored embedding is useless (every image alike, or same-class pairs scored no
    higher than different-class ones); ``None`` when it separates something."""
    v = report.verification
    if v is None:
        return None
    scores = np.concatenate([v.genuine_scores, v.impostor_scores])
    if scores.size and float(scores.std()) < COLLAPSE_SPREAD:
        return (f"every pair of held-out images has nearly the same similarity ({float(scores.mean()):.4f} "
                f"± {float(scores.std()):.1e})")
    if abs(v.roc_auc - 0.5) < COLLAPSE_AUC:
        return f"the held-out ROC AUC is {v.roc_auc:.3f}: same-class pairs score no higher than others"
    return None


@dataclass(frozen=True)
class EvalReport:
    model: str
    data: str
    images: int
    classes: int
    retrieval: RetrievalMetrics
    verification: VerificationMetrics | None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    chance_recall_at_1: float = float("nan")
    baselines: tuple[Baseline, ...] = ()

    def not_beaten(self) -> list[Baseline]:
        """The baselines whose held-out MAP@R is at least the model's: what training did not beat."""
        return [b for b in self.baselines if b.map_at_r == b.map_at_r and b.map_at_r >= self.retrieval.map_at_r]

    def to_dict(self, curve_points: int = 200) -> dict:
        out = {
            "model": self.model, "data": self.data, "images": self.images, "classes": self.classes,
            "queries": self.retrieval.queries,
            "recall_at": {str(k): _num(v) for k, v in self.retrieval.recall_at.items()},
            "map_at_r": _num(self.retrieval.map_at_r),
            "chance_recall_at_1": _num(self.chance_recall_at_1),
            "baselines": {b.name: b.to_dict() for b in self.baselines},
            "verification": None,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "seconds": round(self.seconds, 3),
        }
        v = self.verification
        if v is not None:
            keep = np.unique(np.linspace(0, len(v.curve.far) - 1, min(curve_points, len(v.curve.far))).astype(int))
            out["verification"] = {
                "roc_auc": v.roc_auc, "eer": v.eer, "eer_threshold": v.eer_threshold,
                "tar_at_far": {f"{f:g}": t for f, t in v.tar_at_far.items()},
                "genuine_pairs": v.genuine_pairs, "impostor_pairs": v.impostor_pairs, "sampled_pairs": v.sampled,
                "roc": {"far": v.curve.far[keep].round(6).tolist(), "tar": v.curve.tar[keep].round(6).tolist()},
            }
        return out


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def score(embeddings: np.ndarray, labels: Sequence[int] | np.ndarray, model: str = "", data: str = "",
          skipped: Sequence[tuple[str, str]] = (), seconds: float = 0.0, seed: int = 0,
          baselines: Sequence[Baseline] = ()) -> EvalReport:
    labels = np.asarray(labels)
    return EvalReport(
        model=model, data=data, images=len(labels), classes=len(np.unique(labels)),
        retrieval=retrieval_metrics(embeddings, labels, ks=(1, 5)),
        verification=verification_metrics(embeddings, labels, fars=FARS, seed=seed),
        skipped=list(skipped), seconds=seconds, chance_recall_at_1=chance_recall_at_1(labels),
        baselines=tuple(baselines),
    )


@torch.no_grad()
def embed_image_set(model: torch.nn.Module, images: ImageSet, device: str = "cpu", batch_size: int = 256) -> np.ndarray:
    """``(N, D)`` float32 embeddings of a decoded set, model in eval mode (its mode is restored)."""
    modes = [(m, m.training) for m in model.modules()]  # per module: frozen batch-norm layers stay frozen
    model.eval()
    try:
        out = [model(images.batch(range(a, min(a + batch_size, len(images)))).to(device)).float().cpu()
               for a in range(0, len(images), batch_size)]
    finally:
        for module, training in modes:
            module.training = training
    dim = model.head.out_features if hasattr(model, "head") else 0
    return l2_normalize(torch.cat(out)) if out else np.zeros((0, dim), np.float32)


class _EncoderInputs(Dataset):
    """(index, the encoder's input, a uint8 RAW_SIDE thumbnail for the raw-pixel baseline, error)."""

    def __init__(self, paths: Sequence[str], preprocess):
        from training.preprocess import Preprocessing

        self.paths, self.preprocess = list(paths), preprocess
        self.thumbnail = Preprocessing(RAW_SIDE).to_uint8

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = decode_image(self.paths[i]).image
            return i, self.preprocess(image), self.thumbnail(image), None
        except ImageDecodeError as exc:
            return i, None, None, str(exc)
        except Exception as exc:
            return i, None, None, f"preprocessing failed: {type(exc).__name__}: {exc}"


def _as_list(items: list) -> list:
    return items


@dataclass
class EncodedSet:
    """Labelled files embedded by an encoder (and by its baselines, on the same decoded images)."""

    embeddings: np.ndarray  # (N, D) of the readable files
    labels: list[str]
    skipped: list[tuple[str, str]]  # (path, reason)
    raw_pixels: np.ndarray  # (N, 3 * RAW_SIDE**2) unit vectors
    baselines: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, D') from baseline_encoders


def embed_with_encoder(encoder, data: LabelledPaths, batch_size: int = 64, workers: int = 0,
                       baseline_encoders: dict | None = None, on_batch=None) -> EncodedSet:
    """Embed labelled files with any registered image encoder (``trained:``, ``packaged``, ``clip:``),
    and with ``baseline_encoders`` (name -> an encoder taking the same input pixels).
    ``on_batch(n)`` hears how many files each batch settled (embedded or skipped)."""
    baseline_encoders = baseline_encoders or {}
    loader = DataLoader(_EncoderInputs(data.paths, encoder.preprocess), batch_size=batch_size,
                        num_workers=workers, collate_fn=_as_list)
    vectors, labels, thumbs, skipped = [], [], [], list(data.problems)
    others: dict[str, list[np.ndarray]] = {name: [] for name in baseline_encoders}
    for items in loader:
        ok = [(i, px, th) for i, px, th, err in items if err is None]
        skipped += [(data.paths[i], err) for i, _, _, err in items if err is not None]
        if ok:
            pixels = torch.stack([px for _, px, _ in ok])
            vectors.append(encoder.encode_pixels(pixels))
            for name, other in baseline_encoders.items():
                others[name].append(other.encode_pixels(pixels))
            thumbs.append(torch.stack([th for _, _, th in ok]))
            labels += [data.labels[i] for i, _, _ in ok]
        if on_batch is not None:
            on_batch(len(items))
    emb = np.concatenate(vectors) if vectors else np.zeros((0, encoder.info.dim), np.float32)
    raw = raw_pixel_vectors(torch.cat(thumbs)) if thumbs else np.zeros((0, 3 * RAW_SIDE**2), np.float32)
    return EncodedSet(emb, labels, skipped, raw, {name: np.concatenate(v) for name, v in others.items() if v})


def write_json(report: EvalReport, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(report.to_dict(), fh, indent=2)
        fh.write("\n")


def plot_curves(report: EvalReport, path: str) -> None:
    """ROC (log FAR axis, EER and TAR@FAR marked) beside genuine/impostor similarity histograms."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    v = report.verification
    fig, (ax_roc, ax_hist) = plt.subplots(1, 2, figsize=(11, 4.2))
    title = f"{os.path.basename(report.model) or 'model'}: R@1 {report.retrieval.recall_at.get(1, float('nan')):.3f}, " \
            f"MAP@R {report.retrieval.map_at_r:.3f}"
    fig.suptitle(title)
    if v is not None:
        far = np.maximum(v.curve.far, 1e-6)  # log axis: FAR 0 drawn at the left edge
        ax_roc.plot(far, v.curve.tar, lw=1.6, label=f"ROC (AUC {v.roc_auc:.3f})")
        ax_roc.scatter([max(v.eer, 1e-6)], [1 - v.eer], color="C3", zorder=3, label=f"EER {v.eer:.3f}")
        for f, t in v.tar_at_far.items():
            ax_roc.axvline(f, color="grey", lw=0.6, ls=":")
            ax_roc.annotate(f"{t:.2f}", (f, t), textcoords="offset points", xytext=(3, -10), fontsize=8)
        ax_roc.set_xscale("log")
        ax_roc.set_xlim(1e-4, 1)
        ax_roc.set_ylim(0, 1.01)
        ax_roc.set_xlabel("false accept rate")
        ax_roc.set_ylabel("true accept rate")
        ax_roc.legend(loc="lower right")
        ax_roc.grid(alpha=0.3)
        # bins over the scores' own range: trained embeddings often sit in [0.6, 1], where fixed
        # bins over [-1, 1] would put every score into a handful of bars
        scores = np.concatenate([v.impostor_scores, v.genuine_scores])
        low, high = float(scores.min()), float(scores.max())
        pad = max(high - low, 1e-3) * 0.02
        bins = np.linspace(low - pad, high + pad, 61)
        ax_hist.hist(v.impostor_scores, bins=bins, density=True, alpha=0.6, label=f"different class ({v.impostor_pairs:,})")
        ax_hist.hist(v.genuine_scores, bins=bins, density=True, alpha=0.6, label=f"same class ({v.genuine_pairs:,})")
        ax_hist.axvline(v.eer_threshold, color="C3", lw=1, ls="--", label="EER threshold")
        ax_hist.set_xlabel("cosine similarity")
        ax_hist.set_ylabel("density")
        ax_hist.legend(loc="upper left", fontsize=8)
    else:
        for ax in (ax_roc, ax_hist):
            ax.text(0.5, 0.5, "no verification pairs\n(one class, or no class with 2 images)", ha="center", va="center")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
