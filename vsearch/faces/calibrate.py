"""Calibration: score every genuine and impostor pair of a labelled folder, report ROC figures,
and choose the threshold that meets a target false accept rate.

The folder holds one sub-folder per identity (``DIR/<name>/*.jpg``, listed by
:func:`vsearch.datasets.folder_per_class`). Each image contributes its
largest face; images without a usable face are listed and skipped.

What a calibration set can promise is limited by *people*, not pairs: pairs share photos and a few
look-alike people make most false accepts, so a FAR measured on a few dozen people can be several
times higher on a few dozen others at the same threshold. The report
therefore counts identities and warns below :data:`MIN_IDENTITIES`, gives a bootstrap interval
over identities, bounds the FAR from above (Clopper–Pearson), states the true accept rate at the
stored threshold, and says loudly when the threshold is looser than the embedder's default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from vsearch.datasets import folder_per_class
from vsearch.errors import ImageDecodeError, VSearchError
from vsearch.faces.errors import FaceError
from vsearch.faces.impostors import ImpostorModel
from vsearch.faces.types import Progress
from vsearch.metrics.verification import (BootstrapInterval, TarAtFar, all_pairs, clopper_pearson_upper,
                                          equal_error_rate, identity_bootstrap, roc, roc_auc, tar_at_far,
                                          threshold_at_far)

REPORT_FARS = (1e-2, 1e-3, 1e-4)
MIN_IDENTITIES = 50  # fewer people than this: the FAR on other people can be several times higher
MIN_EXPECTED_FALSE_ACCEPTS = 10  # impostor pairs x target below this: the target is barely measured


@dataclass
class LabelledFaces:
    embeddings: np.ndarray  # (N, D)
    labels: list[str]
    paths: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    several: list[str] = field(default_factory=list)  # images with more than one face (largest used)


def embed_folder(pipeline, root: str, progress: Progress | None = None) -> LabelledFaces:
    """Every photo's largest face, with its identity (the sub-folder); ``progress(done, total)``
    after each photo."""
    listed = folder_per_class(os.path.abspath(os.path.expanduser(root)), member="identity")
    vectors, labels, paths, several = [], [], [], []
    skipped = list(listed.problems)
    for done, (path, name) in enumerate(zip(listed.paths, listed.labels)):
        if progress is not None:
            progress(done, len(listed.paths))
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
    if progress is not None:
        progress(len(listed.paths), len(listed.paths))
    dim = pipeline.embedder.dim
    emb = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return LabelledFaces(emb, labels, paths, skipped, several)


def pair_scores(embeddings: np.ndarray, labels: list[str], max_impostor: int = 5_000_000,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores of all unordered pairs i < j."""
    scores, a, b, _ = all_pairs(embeddings, labels, max_pairs=max_impostor, seed=seed)
    return scores[a == b], scores[a != b]


@dataclass(frozen=True)
class ThresholdAt:
    """A threshold for a target FAR: measured when the impostor pairs resolve the target, else
    extrapolated from a normal fit of the impostor scores, with what it costs in true accepts."""

    target_far: float
    threshold: float
    method: str  # "empirical" or "normal-tail extrapolation"
    tar: float

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "method": self.method, "tar": self.tar}


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
    extrapolated: list[ThresholdAt]  # report targets the impostor pairs cannot resolve
    target_far: float
    threshold: float
    method: str  # "empirical" or "normal-tail extrapolation"
    tar_at_threshold: float
    false_accepts: int  # impostor pairs accepted at the threshold
    far_upper: float  # Clopper-Pearson upper bound of the FAR at the threshold
    bootstrap: BootstrapInterval
    default_threshold: float
    impostor_model: ImpostorModel
    genuine: np.ndarray
    impostor: np.ndarray
    skipped: list[tuple[str, str]]
    several: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def looser_than_default(self) -> bool:
        return self.threshold < self.default_threshold

    def summary(self) -> dict:
        """The report's figures (what ``faces calibrate --json`` prints), without the raw scores."""
        return self.to_json()

    def to_json(self) -> dict:
        return {
            "identities": self.identities, "images": self.images,
            "genuine_pairs": self.n_genuine, "impostor_pairs": self.n_impostor,
            "roc_auc": self.auc, "eer": self.eer, "eer_threshold": self.eer_threshold,
            "tar_at_far": {f"{t.target_far:g}": ({"tar": t.tar, "threshold": t.threshold, "far": t.far}
                                                if t.resolved else None) for t in self.tar_at},
            "extrapolated": {f"{e.target_far:g}": e.to_json() for e in self.extrapolated},
            "target_far": self.target_far, "threshold": self.threshold, "method": self.method,
            "tar_at_threshold": self.tar_at_threshold,
            "far_measured": self.false_accepts / self.n_impostor,
            "far_estimate": self.far_upper,
            "far_basis": {"method": "clopper-pearson upper bound", "confidence": self.bootstrap.confidence,
                          "false_accepts": self.false_accepts, "impostor_pairs": self.n_impostor,
                          "identities": self.identities},
            "bootstrap": self.bootstrap.to_json(),
            "default_threshold": self.default_threshold, "looser_than_default": self.looser_than_default,
            "warnings": list(self.warnings),
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


def calibration_warnings(report: CalibrationReport) -> list[str]:
    """What the figures cannot promise, worst first."""
    out = []
    if report.looser_than_default:
        out.append(f"the calibrated threshold {report.threshold:.3f} is LOOSER than the default "
                   f"{report.default_threshold:.3f}: it accepts impostors the default would refuse; trust it only "
                   f"if the {report.identities} calibration people are like the people it will meet")
    if report.identities < MIN_IDENTITIES:
        out.append(f"only {report.identities} people: a few look-alikes decide the false accept rate, and on "
                   f"other people it can be several times higher; calibrate on {MIN_IDENTITIES}+ people")
    expected = report.n_impostor * report.target_far
    if expected < MIN_EXPECTED_FALSE_ACCEPTS:
        out.append(f"{report.n_impostor} impostor pairs x target {report.target_far:g} = {expected:.2g} expected "
                   f"false accepts (under {MIN_EXPECTED_FALSE_ACCEPTS}): the target is "
                   + ("not measurable; the threshold is extrapolated" if expected < 1 else "barely measured"))
    if report.method != "empirical":
        out.append(f"the extrapolated threshold {report.threshold:.3f} keeps {report.tar_at_threshold:.1%} "
                   "of the genuine pairs")
    return out


def calibrate_faces(faces: LabelledFaces, target_far: float = 1e-3, default_threshold: float = 0.0,
                    replicates: int = 1000, seed: int = 0) -> CalibrationReport:
    if len(set(faces.labels)) < 2:
        raise VSearchError("calibration needs faces of at least two identities (one sub-folder each)")
    scores, a, b, _ = all_pairs(faces.embeddings, faces.labels, seed=seed)
    genuine, impostor = scores[a == b], scores[a != b]
    if genuine.size == 0:
        raise VSearchError("calibration needs at least one identity with two usable photos (genuine pairs)")
    identities = len(set(faces.labels))
    eer, eer_t = equal_error_rate(roc(genuine, impostor))
    threshold, method, model = calibrate_scores(genuine, impostor, target_far)
    model = ImpostorModel.from_json({**model.to_json(), "identities": identities})
    tar_at = [tar_at_far(genuine, impostor, f) for f in REPORT_FARS]
    extrapolated = []
    for t in tar_at:
        if not t.resolved:
            x, how, _ = calibrate_scores(genuine, impostor, t.target_far)
            extrapolated.append(ThresholdAt(t.target_far, float(x), how, float(np.mean(genuine >= x))))
    false_accepts = int(np.count_nonzero(impostor >= threshold))
    report = CalibrationReport(
        identities=identities, images=len(faces.labels),
        n_genuine=int(genuine.size), n_impostor=int(impostor.size),
        auc=roc_auc(genuine, impostor), eer=eer, eer_threshold=eer_t,
        tar_at=tar_at, extrapolated=extrapolated,
        target_far=target_far, threshold=float(threshold), method=method,
        tar_at_threshold=float(np.mean(genuine >= threshold)), false_accepts=false_accepts,
        far_upper=clopper_pearson_upper(false_accepts, int(impostor.size)),
        bootstrap=identity_bootstrap(scores, a, b, float(threshold), replicates=replicates, seed=seed),
        default_threshold=float(default_threshold), impostor_model=model,
        genuine=genuine, impostor=impostor, skipped=faces.skipped, several=faces.several,
    )
    report.warnings = calibration_warnings(report)
    return report


def plot_roc(report: CalibrationReport, path: str, title: str = "face verification ROC") -> str:
    """ROC (TAR against FAR, log FAR axis) with the chosen operating point, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = roc(report.genuine, report.impostor)
    far, tar = curve.far, curve.tar
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
