"""Calibration: score every genuine and impostor pair of a labelled folder, report ROC figures,
and choose the threshold that meets a target false accept rate.

The folder holds one sub-folder per identity (``DIR/<name>/*.jpg``). Each image contributes its
largest face; images without a usable face are listed and skipped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from vsearch.errors import ImageDecodeError, VSearchError
from vsearch.faces.errors import FaceError
from vsearch.faces.metrics import ImpostorModel, TarAtFar, equal_error_rate, roc_auc, roc_curve, tar_at_far, threshold_at_far
from vsearch.images import is_image_path

REPORT_FARS = (1e-2, 1e-3, 1e-4)


@dataclass
class LabelledFaces:
    embeddings: np.ndarray  # (N, D)
    labels: list[str]
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    several: list[str] = field(default_factory=list)  # images with more than one face (largest used)


def embed_folder(pipeline, root: str) -> LabelledFaces:
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise VSearchError(f"{root} is not a folder (expected one sub-folder per identity)")
    vectors, labels, paths, skipped, several = [], [], [], [], []
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if not os.path.isdir(folder) or name.startswith("."):
            continue
        for fname in sorted(os.listdir(folder)):
            path = os.path.join(folder, fname)
            if not (os.path.isfile(path) and is_image_path(path)):
                continue
            try:
                result = pipeline.analyze(path)
            except (ImageDecodeError, FaceError) as exc:
                skipped.append((path, str(exc)))
                continue
            if not result.faces:
                skipped.append((path, "no usable face" + (f" ({result.too_small} too small)" if result.too_small else "")))
                continue
            if len(result.faces) > 1:
                several.append(path)
            vectors.append(result.faces[0].embedding)
            labels.append(name)
            paths.append(path)
    dim = pipeline.embedder.dim
    emb = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return LabelledFaces(emb, labels, paths, skipped, several)


def pair_scores(embeddings: np.ndarray, labels: list[str], max_impostor: int = 5_000_000,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores of all unordered pairs i < j. Beyond ``max_impostor``
    impostor pairs a seeded uniform sample is kept (memory), every genuine pair always."""
    n = len(labels)
    lab = np.asarray(labels)
    genuine, impostor = [], []
    for start in range(0, n, 1024):  # row blocks bound the memory of the score matrix
        block = embeddings[start:start + 1024] @ embeddings.T  # (b, N)
        for r in range(block.shape[0]):
            i = start + r
            s = block[r, i + 1:]
            same = lab[i + 1:] == lab[i]
            genuine.append(s[same])
            impostor.append(s[~same])
    g = np.concatenate(genuine) if genuine else np.zeros(0, np.float32)
    imp = np.concatenate(impostor) if impostor else np.zeros(0, np.float32)
    if imp.size > max_impostor:
        imp = np.random.default_rng(seed).choice(imp, max_impostor, replace=False)
    return g.astype(np.float64), imp.astype(np.float64)


@dataclass
class CalibrationReport:
    identities: int
    images: int
    n_genuine: int
    n_impostor: int
    auc: float
    eer: float
    eer_threshold: float
    tar_at: list[TarAtFar]
    target_far: float
    threshold: float
    method: str  # "empirical" or "normal-tail extrapolation"
    impostor_model: ImpostorModel
    genuine: np.ndarray
    impostor: np.ndarray
    skipped: list[tuple[str, str]]
    several: list[str]

    def summary(self) -> dict:
        return {
            "identities": self.identities, "images": self.images,
            "genuine_pairs": self.n_genuine, "impostor_pairs": self.n_impostor,
            "roc_auc": self.auc, "eer": self.eer, "eer_threshold": self.eer_threshold,
            "tar_at_far": {f"{t.target_far:g}": ({"tar": t.tar, "threshold": t.threshold, "far": t.far}
                                                if t.resolved else None) for t in self.tar_at},
            "target_far": self.target_far, "threshold": self.threshold, "method": self.method,
            "skipped": len(self.skipped),
        }


def calibrate_scores(genuine: np.ndarray, impostor: np.ndarray, target_far: float = 1e-3) -> tuple[float, str, ImpostorModel]:
    """(threshold, method, impostor model) for a target FAR. When the impostor pairs resolve the
    target (N * target >= 1) the empirical threshold is used; otherwise the empirical one (above
    every impostor) is raised to the normal fit's quantile, so that a small calibration set never
    yields a looser threshold than its own impostor spread suggests."""
    if not 0 < target_far < 1:
        raise VSearchError("--target-far must be between 0 and 1")
    model = ImpostorModel.from_scores(impostor)
    threshold = threshold_at_far(impostor, target_far)
    if impostor.size * target_far >= 1.0 - 1e-9:
        return threshold, "empirical", model
    return max(threshold, model.gaussian_threshold(target_far)), "normal-tail extrapolation", model


def calibrate_faces(faces: LabelledFaces, target_far: float = 1e-3) -> CalibrationReport:
    if len(set(faces.labels)) < 2:
        raise VSearchError("calibration needs faces of at least two identities (one sub-folder each)")
    genuine, impostor = pair_scores(faces.embeddings, faces.labels)
    if genuine.size == 0:
        raise VSearchError("calibration needs at least one identity with two usable photos (genuine pairs)")
    eer, eer_t = equal_error_rate(genuine, impostor)
    threshold, method, model = calibrate_scores(genuine, impostor, target_far)
    return CalibrationReport(
        identities=len(set(faces.labels)), images=len(faces.labels),
        n_genuine=int(genuine.size), n_impostor=int(impostor.size),
        auc=roc_auc(genuine, impostor), eer=eer, eer_threshold=eer_t,
        tar_at=[tar_at_far(genuine, impostor, f) for f in REPORT_FARS],
        target_far=target_far, threshold=float(threshold), method=method, impostor_model=model,
        genuine=genuine, impostor=impostor, skipped=faces.skipped, several=faces.several,
    )


def plot_roc(report: CalibrationReport, path: str, title: str = "face verification ROC") -> str:
    """ROC (TAR against FAR, log FAR axis) with the chosen operating point, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    far, tar, _ = roc_curve(report.genuine, report.impostor)
    floor = 0.5 / report.n_impostor  # FAR 0 drawn at half the resolution, log axes need > 0
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=110)
    ax.step(np.maximum(far, floor), tar, where="post", label=f"AUC {report.auc:.4f}, EER {report.eer:.2%}")
    op_tar = float(np.mean(report.genuine >= report.threshold))
    op_far = float(np.mean(report.impostor >= report.threshold))
    ax.plot([max(op_far, floor)], [op_tar], "o", color="C3",
            label=f"threshold {report.threshold:.3f} (target FAR {report.target_far:g})")
    ax.axvline(1.0 / report.n_impostor, color="grey", ls=":", lw=1, label=f"1/{report.n_impostor} impostor pairs")
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"{title}\n{report.n_genuine} genuine / {report.n_impostor} impostor pairs", fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
