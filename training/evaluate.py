"""Held-out evaluation: embed labelled images, score retrieval and verification, write JSON + PNG."""
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

    def to_dict(self, curve_points: int = 200) -> dict:
        out = {
            "model": self.model, "data": self.data, "images": self.images, "classes": self.classes,
            "queries": self.retrieval.queries,
            "recall_at": {str(k): _num(v) for k, v in self.retrieval.recall_at.items()},
            "map_at_r": _num(self.retrieval.map_at_r),
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
          skipped: Sequence[tuple[str, str]] = (), seconds: float = 0.0, seed: int = 0) -> EvalReport:
    labels = np.asarray(labels)
    return EvalReport(
        model=model, data=data, images=len(labels), classes=len(np.unique(labels)),
        retrieval=retrieval_metrics(embeddings, labels, ks=(1, 5)),
        verification=verification_metrics(embeddings, labels, fars=FARS, seed=seed),
        skipped=list(skipped), seconds=seconds,
    )


@torch.no_grad()
def embed_image_set(model: torch.nn.Module, images: ImageSet, device: str = "cpu", batch_size: int = 256) -> np.ndarray:
    """``(N, D)`` float32 embeddings of a decoded set, model in eval mode (its mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        out = [model(images.batch(range(a, min(a + batch_size, len(images)))).to(device)).float().cpu()
               for a in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    dim = model.head.out_features if hasattr(model, "head") else 0
    return l2_normalize(torch.cat(out)) if out else np.zeros((0, dim), np.float32)


class _EncoderInputs(Dataset):
    def __init__(self, paths: Sequence[str], preprocess):
        self.paths, self.preprocess = list(paths), preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return i, self.preprocess(decode_image(self.paths[i]).image), None
        except ImageDecodeError as exc:
            return i, None, str(exc)
        except Exception as exc:
            return i, None, f"preprocessing failed: {type(exc).__name__}: {exc}"


def _as_list(items: list) -> list:
    return items


def embed_with_encoder(encoder, data: LabelledPaths, batch_size: int = 64,
                       workers: int = 0) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Embed labelled files with any registered image encoder (``trained:``, ``packaged``, ``clip:``).

    Returns (embeddings of the readable files, their labels, skipped (path, reason)).
    """
    loader = DataLoader(_EncoderInputs(data.paths, encoder.preprocess), batch_size=batch_size,
                        num_workers=workers, collate_fn=_as_list)
    vectors, labels, skipped = [], [], list(data.problems)
    for items in loader:
        ok = [(i, px) for i, px, err in items if err is None]
        skipped += [(data.paths[i], err) for i, _, err in items if err is not None]
        if ok:
            vectors.append(encoder.encode_pixels(torch.stack([px for _, px in ok])))
            labels += [data.labels[i] for i, _ in ok]
    emb = np.concatenate(vectors) if vectors else np.zeros((0, encoder.info.dim), np.float32)
    return emb, labels, skipped


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
