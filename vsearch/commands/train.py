"""``vsearch train DATA``: metric learning on labelled images (the work is done by :mod:`training`)."""
from __future__ import annotations

import time
from dataclasses import fields
from enum import Enum
from typing import Annotated, Optional

import typer

from training.config import TrainConfig
from vsearch.commands.common import (JsonOpt, check_output_file, console, err_console, escape, handle_errors,
                                     print_error, print_json, print_rows)

D = TrainConfig()  # the defaults shown by --help are the dataclass's: one place to change them
ETA_AFTER_STEPS = 5  # steps timed (after the first, which warms up) before an ETA is printed


class LossName(str, Enum):
    triplet = "triplet"
    contrastive = "contrastive"
    ranking = "ranking"


class MinerName(str, Enum):
    batch_hard = "batch-hard"
    semi_hard = "semi-hard"
    all = "all"
    random = "random"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}"


class _RichTrainProgress:
    """Steps, loss and the fraction of active (non-zero loss) tuples, with a line per epoch, and
    once a few steps are timed, one line with the time per step and the ETA (also with --quiet)."""

    def __init__(self, enabled: bool, epochs: int | None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err_console, disable=not enabled or not err_console.is_terminal,
        )
        self.epochs = epochs
        self.task = None
        self.loss = self.active = None
        self.total = 0
        self._timed_from: tuple[int, float] | None = None
        self._eta_shown = False
        self._status = None

    def decoding(self, images: int) -> None:
        """A spinner while the images are decoded, before the first step (terminal only)."""
        if err_console.is_terminal:
            self._status = err_console.status(f"decoding {images} images…", spinner="dots")
            self._status.start()

    def end_decoding(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def start(self, total_steps: int, done_steps: int) -> None:
        self.end_decoding()
        self.total = total_steps
        per_epoch = total_steps // max(1, self.epochs or 1)
        err_console.print(f"{per_epoch} steps per epoch, {total_steps} in all"
                          + (f" ({done_steps} done, resuming)" if done_steps else ""))
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=done_steps, info="")

    def step(self, step: int, loss: float, active_fraction: float, lr: float) -> None:
        # exponential moving averages: single P x K batches are noisy
        a = 0.1
        self.loss = loss if self.loss is None else (1 - a) * self.loss + a * loss
        self.active = active_fraction if self.active is None else (1 - a) * self.active + a * active_fraction
        self.progress.update(self.task, completed=step,
                             info=f"loss {self.loss:.4f}  active {self.active:5.1%}  lr {lr:.2e}")
        now = time.perf_counter()
        if self._timed_from is None:
            self._timed_from = (step, now)
        elif not self._eta_shown and step - self._timed_from[0] >= ETA_AFTER_STEPS:
            per_step = (now - self._timed_from[1]) / (step - self._timed_from[0])
            left = per_step * (self.total - step)
            clock = time.strftime("%H:%M", time.localtime(time.time() + left))
            self.progress.console.print(f"{per_step:.2f}s per step: about {_duration(left)} to go (ETA {clock}, "
                                        "held-out evaluation not included)")
            self._eta_shown = True

    def epoch_end(self, log) -> None:
        val = ""
        if log.val_recall_at_1 is not None:
            val = f"  held-out R@1 {log.val_recall_at_1:.3f}  MAP@R {log.val_map_at_r:.3f}"
        self.progress.console.print(
            f"epoch {log.epoch}: loss {log.loss:.4f}, active {log.active_fraction:.1%}, "
            f"batches without a valid tuple {log.empty_batches}/{log.steps}, {log.seconds:.1f}s{val}")

    def stop(self) -> None:
        self.progress.stop()


def _print_plan(plan) -> None:
    err_console.print(f"{plan.recipe}: backbone {escape(plan.backbone)}, lr {plan.lr:g}, miner {plan.miner}, up to {plan.epochs} epochs "
                      "(options given override)", highlight=False)
    size = f"input {plan.image_size} px, from {plan.size_reason}"
    if plan.size_reason != "--image-size" and plan.image_size < plan.backbone_size:
        size += f" (the backbone takes up to {plan.backbone_size}; --image-size overrides)"
    err_console.print(f"{size}; training on {plan.train_images} images of {plan.train_classes} classes, "
                      f"holding out {plan.val_images} images of {plan.val_classes} classes")
    for warning in plan.warnings:
        err_console.print(f"[yellow]warning[/]: {escape(warning)}")


@handle_errors
def train_cmd(
    data: Annotated[str, typer.Argument(help="A folder with one sub-folder per class (identity), or a CSV with path,label columns.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Where to write the model (use it as --model trained:OUT).")] = D.out,
    backbone: Annotated[str, typer.Option("--backbone", help="Any timm architecture, or auto: vsearch_tiny_cnn (a small CNN) for images of 64 px or less, efficientnet_lite0 otherwise.")] = D.backbone,
    weights: Annotated[str, typer.Option("--weights", help="Initial backbone weights: auto (ImageNet for efficientnet_lite0, shipped offline), imagenet, none, or a timm state-dict FILE.")] = D.weights,
    loss: Annotated[LossName, typer.Option("--loss", help="triplet (margin), contrastive (pairs), or ranking (hinge on cosine: query, good, bad).")] = LossName(D.loss),
    miner: Annotated[Optional[MinerName], typer.Option("--miner", help="Which tuples of a batch train: hardest per anchor, semi-hard, all, or one random per anchor. Default: batch-hard on small images, semi-hard on photos.")] = None,
    margin: Annotated[Optional[float], typer.Option("--margin", min=0, help="Loss margin (default: triplet 0.3 on small images, else 0.2; contrastive 1.0, ranking 0.2).")] = D.margin,
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Default: 15 on small images, 10 on photos.")] = D.epochs,
    patience: Annotated[int, typer.Option("--patience", min=0, help="Stop after this many epochs without a better held-out MAP@R (0: never); the best epoch's model is written.")] = D.patience,
    steps_per_epoch: Annotated[Optional[int], typer.Option("--steps-per-epoch", min=1, help="Default: enough batches to see the training set once.")] = D.steps_per_epoch,
    embedding_dim: Annotated[int, typer.Option("--dim", min=2, help="Embedding size.")] = D.embedding_dim,
    image_size: Annotated[Optional[int], typer.Option("--image-size", min=4, help="Input size in pixels. Default: the median short side of the images, at most the backbone's.")] = D.image_size,
    classes_per_batch: Annotated[int, typer.Option("--classes-per-batch", "-P", min=2, help="P: classes in a batch.")] = D.classes_per_batch,
    samples_per_class: Annotated[int, typer.Option("--samples-per-class", "-K", min=2, help="K: images per class in a batch.")] = D.samples_per_class,
    lr: Annotated[Optional[float], typer.Option("--lr", min=0, help="Peak AdamW learning rate (cosine schedule). Default: 3e-3 for the small CNN, 3e-4 otherwise.")] = D.lr,
    shift: Annotated[Optional[float], typer.Option("--shift", min=0, max=0.49, help="Move training images by up to this fraction of their size (default: 1/16 on small images, 0 on photos).")] = D.shift,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0)] = D.weight_decay,
    grad_clip: Annotated[float, typer.Option("--grad-clip", min=0, help="Max gradient norm (0: off).")] = D.grad_clip,
    seed: Annotated[int, typer.Option("--seed")] = D.seed,
    val_classes: Annotated[Optional[str], typer.Option("--val-classes", help="Comma-separated classes held out for evaluation.")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0, max=0.95, help="Else hold out this fraction of classes (0: none).")] = D.val_fraction,
    cross_batch_negatives: Annotated[int, typer.Option("--cross-batch-negatives", min=0, help="Per anchor, add this many hard negatives found in a FAISS index of all training embeddings.")] = D.cross_batch_negatives,
    refresh_every: Annotated[Optional[int], typer.Option("--refresh-every", min=1, help="Steps between rebuilds of that index (default: one epoch).")] = D.refresh_every,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | auto (mixed precision on CUDA).")] = D.device,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="Checkpoint file (default: OUT.ckpt).")] = D.checkpoint,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1, help="Steps between checkpoints (also each epoch and on Ctrl-C).")] = D.checkpoint_every,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")] = D.resume,
    workers: Annotated[int, typer.Option("--workers", "-w", min=0, help="Processes decoding images before training.")] = D.workers,
    report: Annotated[Optional[str], typer.Option("--report", help="Held-out evaluation JSON (a PNG of the curves goes next to it). Default: OUT.eval.json.")] = D.report,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train an image embedding model on labelled images with triplet/contrastive/ranking losses.

    Classes are split into training and held-out classes; the held-out ones are scored at the end
    (Recall@1/5, MAP@R, ROC AUC, EER, TAR@FAR). Ctrl-C keeps a checkpoint; rerun with --resume.
    """
    from training.errors import CollapsedEmbeddingError
    from training.run import run
    from training.trainer import TrainingInterrupted

    out = check_output_file(out, "--out")
    checkpoint = check_output_file(checkpoint, "--checkpoint")
    report = check_output_file(report, "--report")
    given = dict(locals())
    given.update(loss=loss.value, miner=miner.value if miner is not None else None,
                 val_classes=[c.strip() for c in val_classes.split(",") if c.strip()] if val_classes else [])
    cfg = TrainConfig(**{f.name: given[f.name] for f in fields(TrainConfig) if f.name in given})
    bar = _RichTrainProgress(enabled=not quiet, epochs=epochs)

    def on_plan(plan) -> None:
        bar.epochs = plan.epochs
        _print_plan(plan)
        bar.decoding(plan.train_images + plan.val_images)

    try:
        outcome = run(cfg, progress=bar, on_plan=on_plan)
    except TrainingInterrupted as exc:
        err_console.print(f"[yellow]{escape(str(exc))}[/]")
        raise typer.Exit(130) from None
    except CollapsedEmbeddingError as exc:  # training ran but its result is useless: a failure, not bad input
        print_error(str(exc))
        raise typer.Exit(1) from None
    finally:
        bar.end_decoding()

    for path, reason in outcome.skipped:
        err_console.print(f"  [red]skipped[/] {escape(path)}: {escape(reason)}")
    if outcome.train.dropped_classes:
        err_console.print("  [yellow]classes with a single image, not trained on:[/] "
                          + escape(", ".join(outcome.train.dropped_classes)))
    fit = outcome.fit
    err_console.print(
        f"[green]done[/]: {fit.steps} steps in {fit.seconds:.1f}s on {len(outcome.train)} images of "
        f"{len(outcome.train.class_names)} classes; {fit.empty_batches} batch(es) had no valid tuple; "
        + (f"kept epoch {fit.best_epoch} (best held-out MAP@R{', stopped early' if fit.stopped_early else ''}); "
           if fit.best_epoch is not None else "")
        + f"wrote {escape(outcome.model_path)} (use --model trained:{escape(outcome.model_path)})")
    if as_json:
        print_json(outcome.to_json())
    elif outcome.report is not None:
        print_report(outcome.report)
    if outcome.report is not None:
        warn_if_not_better(outcome.report)
    if outcome.report is not None:
        err_console.print(f"report: {escape(outcome.report_paths[0])}, curves: {escape(outcome.report_paths[1])}")


def print_report(report, what: str = "held-out") -> None:
    r, v = report.retrieval, report.verification
    fmt = lambda x: "-" if x is None or x != x else f"{x:.3f}"  # noqa: E731 - NaN is "-" too
    columns = ("R@1", "R@5", "MAP@R", "ROC AUC", "EER", "TAR@FAR 1e-3", "TAR@FAR 1e-2")
    row = [fmt(r.recall_at.get(1)), fmt(r.recall_at.get(5)), fmt(r.map_at_r),
           *(("-",) * 4 if v is None else (fmt(v.roc_auc), fmt(v.eer), fmt(v.tar_at_far.get(1e-3)),
                                           fmt(v.tar_at_far.get(1e-2))))]
    title = f"{what}: {report.images} images, {report.classes} classes, {r.queries} queries"
    compared = [("this model", fmt(r.recall_at.get(1)), fmt(r.map_at_r))]
    compared += [(b.name, fmt(b.recall_at_1), fmt(b.map_at_r)) for b in report.baselines]
    compared.append(("chance", fmt(report.chance_recall_at_1), "-"))
    if not console.is_terminal:  # plain lines: the title, then name<TAB>value, for grep
        console.print(escape(title))
        extra = [(f"{metric} {name}", value) for name, r1, mapr in compared[1:]
                 for metric, value in (("R@1", r1), ("MAP@R", mapr)) if value != "-"]
        print_rows(("metric", "value"), list(zip(columns, row)) + extra)
        return
    print_rows(columns, [row], title=title, justify=["right"] * len(columns))
    print_rows(("compared with", "R@1", "MAP@R"), compared, justify=["left", "right", "right"])


def warn_if_not_better(report) -> None:
    """One line on stderr when the model's MAP@R does not beat a baseline on the same images."""
    lost = report.not_beaten()
    if lost:
        names = ", ".join(f"{b.name} ({b.map_at_r:.3f})" for b in lost)
        err_console.print(f"[yellow]warning[/]: MAP@R {report.retrieval.map_at_r:.3f} does not beat {names}",
                          highlight=False)
