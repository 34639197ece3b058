"""A whole training run, as ``vsearch train`` does it: data -> fit -> export -> held-out report."""
from __future__ import annotations

import datetime as _dt
import logging
import time
from dataclasses import asdict, dataclass

from training.config import TrainConfig
from training.data import ImageSet, discover, load_images, split_by_class
from training.evaluate import EvalReport, embed_image_set, plot_curves, score, write_json
from training.export import save_model
from training.trainer import FitResult, TrainProgress, fit, model_spec

log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    fit: FitResult
    train: ImageSet
    val: ImageSet | None
    model_path: str
    report: EvalReport | None  # on the held-out classes; None without a validation split
    report_paths: tuple[str, str] | None


def load_split(cfg: TrainConfig) -> tuple[ImageSet, ImageSet | None]:
    """Decode the data of ``cfg`` and split it by class (classes with one image leave training)."""
    listed = discover(cfg.data)
    train_paths, val_paths = split_by_class(listed, cfg.val_classes, cfg.val_fraction, cfg.seed)
    preprocessing = model_spec(cfg).preprocessing
    train = load_images(train_paths, preprocessing, workers=cfg.workers, min_per_class=2)
    val = load_images(val_paths, preprocessing, workers=cfg.workers) if len(val_paths) else None
    return train, val


def run(cfg: TrainConfig, progress: TrainProgress | None = None) -> TrainOutcome:
    cfg.validate()
    train, val = load_split(cfg)
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
    return TrainOutcome(result, train, val, cfg.out, report, paths)


def result_margin(cfg: TrainConfig) -> float:
    from training.losses import DEFAULT_MARGINS

    return DEFAULT_MARGINS[cfg.loss] if cfg.margin is None else cfg.margin
