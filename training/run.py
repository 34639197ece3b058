"""A whole training run, as ``vsearch train`` does it: data -> fit -> export -> held-out report."""
from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from training.config import TrainConfig
from training.data import ImageSet, LabelledPaths, choose_image_size, discover, load_images, split_by_class
from training.evaluate import EvalReport, embed_image_set, plot_curves, score, write_json
from training.export import save_model
from training.trainer import FitResult, TrainProgress, fit, model_spec

log = logging.getLogger(__name__)


@dataclass
class TrainPlan:
    """What a run will do, known before the first step: shown to the user up front."""

    image_size: int
    backbone_size: int  # the backbone's own input size
    size_reason: str  # "--image-size", "the data", ...
    train_images: int
    train_classes: int
    val_images: int
    val_classes: int
    warnings: list[str] = field(default_factory=list)


@dataclass
class TrainOutcome:
    fit: FitResult
    train: ImageSet
    val: ImageSet | None
    model_path: str
    report: EvalReport | None  # on the held-out classes; None without a validation split
    report_paths: tuple[str, str] | None
    warnings: list[str] = field(default_factory=list)  # about the held-out set (see held_out_warnings)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(path, reason) of every image that could not be used, training and held-out."""
        return self.train.skipped + (self.val.skipped if self.val is not None else [])

    def to_json(self) -> dict:
        """What `vsearch train --json` prints: the held-out report without its ROC curve (that is
        in the report file)."""
        held_out = self.report.to_dict() if self.report is not None else None
        if held_out and held_out.get("verification"):
            held_out["verification"].pop("roc", None)
        return {
            "model": self.model_path, "steps": self.fit.steps, "seconds": round(self.fit.seconds, 3),
            "empty_batches": self.fit.empty_batches, "train_images": len(self.train),
            "train_classes": list(self.train.class_names),
            "held_out": held_out, "warnings": self.warnings,
            "report_files": list(self.report_paths) if self.report_paths else None,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }


def resolve_image_size(cfg: TrainConfig, listed: LabelledPaths) -> tuple[TrainConfig, int, str]:
    """``cfg`` with ``image_size`` set: as given, else chosen from the data (capped by the
    backbone's own size). Returns (cfg, the backbone's size, where the size came from)."""
    from training.model import default_preprocessing

    backbone_size = default_preprocessing(cfg.backbone).image_size
    if cfg.image_size is not None:
        return cfg, backbone_size, "--image-size"
    chosen = choose_image_size(listed.paths, backbone_size)
    if chosen is None:
        return replace(cfg, image_size=backbone_size), backbone_size, "the backbone (no image header readable)"
    return replace(cfg, image_size=chosen), backbone_size, "the data" if chosen < backbone_size else "the backbone"


def held_out_warnings(val: LabelledPaths) -> list[str]:
    """Why the held-out figures would mean nothing: every query needs another image of its class
    (a positive) and images of other classes (negatives) to rank."""
    if not len(val):
        return []
    counts: dict[str, int] = {}
    for label in val.labels:
        counts[label] = counts.get(label, 0) + 1
    scorable = [c for c, n in counts.items() if n >= 2]
    if len(counts) < 2:
        return [f"only {len(counts)} class is held out ({', '.join(counts)}): with nothing to tell apart, "
                "Recall@1 is 1.000 whatever the model; hold out 2+ classes (--val-classes A,B or a larger --val-fraction)"]
    if not scorable:
        return ["no held-out class has 2 images: Recall and MAP@R have no relevant result to find; "
                "hold out classes with several images each"]
    return []


def load_split(cfg: TrainConfig) -> tuple[ImageSet, ImageSet | None]:
    """Decode the data of ``cfg`` and split it by class (classes with one image leave training)."""
    train, val, _ = _load(cfg)
    return train, val


def _load(cfg: TrainConfig, on_plan: Callable[[TrainPlan], None] | None = None):
    listed = discover(cfg.data)
    cfg, backbone_size, reason = resolve_image_size(cfg, listed)
    train_paths, val_paths = split_by_class(listed, cfg.val_classes, cfg.val_fraction, cfg.seed)
    plan = TrainPlan(image_size=cfg.image_size, backbone_size=backbone_size, size_reason=reason,
                     train_images=len(train_paths), train_classes=len(train_paths.classes),
                     val_images=len(val_paths), val_classes=len(val_paths.classes),
                     warnings=held_out_warnings(val_paths))
    for warning in plan.warnings:
        log.info("held-out set: %s", warning)
    if on_plan is not None:
        on_plan(plan)  # before decoding: the user sees the size and the warnings at once
    preprocessing = model_spec(cfg).preprocessing
    train = load_images(train_paths, preprocessing, workers=cfg.workers, min_per_class=2)
    val = load_images(val_paths, preprocessing, workers=cfg.workers) if len(val_paths) else None
    return train, val, cfg


def run(cfg: TrainConfig, progress: TrainProgress | None = None,
        on_plan: Callable[[TrainPlan], None] | None = None) -> TrainOutcome:
    """Data -> fit -> export -> held-out report. ``on_plan`` hears the chosen input size, the
    split and any warning before images are decoded."""
    cfg.validate()
    plans: list[TrainPlan] = []
    train, val, cfg = _load(cfg, lambda plan: (plans.append(plan), on_plan and on_plan(plan)))
    result = fit(cfg, train, val, progress)

    report = paths = None
    if val is not None and len(val):
        started = time.perf_counter()
        emb = embed_image_set(result.model, val, str(next(result.model.parameters()).device))
        report = score(emb, val.targets.numpy(), model=cfg.out, data=cfg.data, skipped=val.skipped,
                       seconds=time.perf_counter() - started, seed=cfg.seed)
        paths = cfg.report_paths
        write_json(report, paths[0])
        plot_curves(report, paths[1])

    meta = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loss": cfg.loss, "miner": cfg.miner, "margin": result_margin(cfg), "steps": result.steps,
        "seed": cfg.seed, "weights_init": cfg.weights, "train_classes": result.train_classes,
        "val_classes": list(val.class_names) if val is not None else [],
        "history": [asdict(h) for h in result.history],
    }
    if report is not None:
        d = report.to_dict()
        meta["held_out"] = {"recall_at": d["recall_at"], "map_at_r": d["map_at_r"],
                            "roc_auc": (d["verification"] or {}).get("roc_auc")}
    save_model(cfg.out, result.model.cpu(), result.spec, meta)
    return TrainOutcome(result, train, val, cfg.out, report, paths, plans[0].warnings)


def result_margin(cfg: TrainConfig) -> float:
    from training.losses import DEFAULT_MARGINS

    return DEFAULT_MARGINS[cfg.loss] if cfg.margin is None else cfg.margin
