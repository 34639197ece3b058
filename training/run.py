"""A whole training run, as ``vsearch train`` does it: data -> fit -> export -> held-out report."""
from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from training.config import TrainConfig, recipe_for
from training.data import (ImageSet, LabelledPaths, choose_image_size, discover, load_images, median_short_side,
                           split_by_class)
from training.errors import CollapsedEmbeddingError
from training.evaluate import (Baseline, EvalReport, baseline, collapse_reason, embed_image_set, plot_curves,
                               raw_pixel_vectors_of_files, score, write_json)
from training.export import save_model
from training.model import initial_model
from training.trainer import FitResult, TrainProgress, fit, model_spec

log = logging.getLogger(__name__)


@dataclass
class TrainPlan:
    """What a run will do, known before the first step: shown to the user up front."""

    image_size: int
    backbone_size: int  # the backbone's own input size
    size_reason: str  # "--image-size", "the data", ...
    recipe: str  # which defaults ``auto`` stood for ("small images", "photos")
    backbone: str
    lr: float
    epochs: int
    miner: str
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
            "empty_batches": self.fit.empty_batches, "best_epoch": self.fit.best_epoch,
            "stopped_early": self.fit.stopped_early, "train_images": len(self.train),
            "train_classes": list(self.train.class_names),
            "held_out": held_out, "warnings": self.warnings,
            "report_files": list(self.report_paths) if self.report_paths else None,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }


def resolve_settings(cfg: TrainConfig, listed: LabelledPaths) -> tuple[TrainConfig, int, str]:
    """``cfg`` with the recipe's settings filled in from the data and ``image_size`` set: as given,
    else chosen from the data (capped by the backbone's own size). Returns (cfg, the backbone's
    size, where the size came from)."""
    from training.model import default_preprocessing

    side = median_short_side(listed.paths)
    cfg = cfg.with_recipe(side)
    backbone_size = default_preprocessing(cfg.backbone).image_size
    if cfg.image_size is not None:
        return cfg, backbone_size, "--image-size"
    chosen = choose_image_size(side, backbone_size)
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
    recipe = recipe_for(median_short_side(listed.paths)).name
    cfg, backbone_size, reason = resolve_settings(cfg, listed)
    train_paths, val_paths = split_by_class(listed, cfg.val_classes, cfg.val_fraction, cfg.seed)
    plan = TrainPlan(image_size=cfg.image_size, backbone_size=backbone_size, size_reason=reason, recipe=recipe,
                     backbone=cfg.backbone, lr=cfg.lr, epochs=cfg.epochs, miner=cfg.miner,
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
                       seconds=time.perf_counter() - started, seed=cfg.seed, baselines=held_out_baselines(cfg, result, val))
        reason = collapse_reason(report)
        if reason:
            raise CollapsedEmbeddingError(
                f"training collapsed: {reason}; no model written. Try a lower --lr, a larger --margin, "
                f"more --epochs or another --backbone (the last epoch's weights are in {cfg.checkpoint_path})")
        paths = cfg.report_paths
        write_json(report, paths[0])
        plot_curves(report, paths[1])
    else:
        _check_spread(result, train, cfg)

    meta = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loss": cfg.loss, "miner": cfg.miner, "margin": result_margin(cfg), "steps": result.steps,
        "seed": cfg.seed, "weights_init": cfg.weights, "train_classes": result.train_classes,
        "backbone": cfg.backbone, "lr": cfg.lr, "shift": cfg.shift, "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "val_classes": list(val.class_names) if val is not None else [],
        "history": [asdict(h) for h in result.history],
    }
    if report is not None:
        d = report.to_dict()
        meta["held_out"] = {"recall_at": d["recall_at"], "map_at_r": d["map_at_r"],
                            "roc_auc": (d["verification"] or {}).get("roc_auc"), "baselines": d["baselines"],
                            "chance_recall_at_1": d["chance_recall_at_1"]}
    save_model(cfg.out, result.model.cpu(), result.spec, meta)
    return TrainOutcome(result, train, val, cfg.out, report, paths, plans[0].warnings)


def held_out_baselines(cfg: TrainConfig, result: FitResult, val: ImageSet) -> list[Baseline]:
    """Raw pixels and the network as it started, on the held-out images the model is scored on."""
    labels = val.targets.numpy()
    untrained = initial_model(result.spec, cfg.weights, cfg.seed).to(next(result.model.parameters()).device)
    return [baseline("raw pixels", raw_pixel_vectors_of_files(val.paths), labels),
            baseline("untrained model", embed_image_set(untrained, val, str(next(untrained.parameters()).device)), labels)]


def _check_spread(result: FitResult, train: ImageSet, cfg: TrainConfig, sample: int = 512) -> None:
    """Without held-out classes: refuse a model that maps every training image to the same point."""
    import numpy as np
    import torch

    from training.evaluate import COLLAPSE_SPREAD

    pick = torch.linspace(0, len(train) - 1, min(sample, len(train))).long().unique()
    emb = embed_image_set(result.model, replace(train, pixels=train.pixels[pick], targets=train.targets[pick],
                                                paths=[train.paths[i] for i in pick.tolist()]),
                          str(next(result.model.parameters()).device))
    sims = emb @ emb.T
    spread = float(np.std(sims[np.triu_indices(len(emb), 1)])) if len(emb) > 1 else 1.0
    if spread < COLLAPSE_SPREAD:
        raise CollapsedEmbeddingError(
            f"training collapsed: every training image gets nearly the same embedding (similarity spread "
            f"{spread:.1e}); no model written. Try a lower --lr, a larger --margin or more --epochs (the last "
            f"epoch's weights are in {cfg.checkpoint_path})")


def result_margin(cfg: TrainConfig) -> float:
    from training.losses import DEFAULT_MARGINS

    return DEFAULT_MARGINS[cfg.loss] if cfg.margin is None else cfg.margin
