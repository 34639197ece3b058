"""``vsearch train DATA``: metric learning on labelled images (the work is done by :mod:`training`)."""
from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from vsearch.commands.common import console, err_console, handle_errors


class LossName(str, Enum):
    triplet = "triplet"
    contrastive = "contrastive"
    ranking = "ranking"


class MinerName(str, Enum):
    batch_hard = "batch-hard"
    semi_hard = "semi-hard"
    all = "all"
    random = "random"


class _RichTrainProgress:
    """Steps, loss and the fraction of active (non-zero loss) tuples, with a line per epoch."""

    def __init__(self, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err_console, disable=not enabled,
        )
        self.task = None
        self.loss = self.active = None

    def start(self, total_steps: int, done_steps: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("train", total=total_steps, completed=done_steps, info="")

    def step(self, step: int, loss: float, active_fraction: float, lr: float) -> None:
        # exponential moving averages: single P x K batches are noisy
        a = 0.1
        self.loss = loss if self.loss is None else (1 - a) * self.loss + a * loss
        self.active = active_fraction if self.active is None else (1 - a) * self.active + a * active_fraction
        self.progress.update(self.task, completed=step,
                             info=f"loss {self.loss:.4f}  active {self.active:5.1%}  lr {lr:.2e}")

    def epoch_end(self, log) -> None:
        val = ""
        if log.val_recall_at_1 is not None:
            val = f"  held-out R@1 {log.val_recall_at_1:.3f}  MAP@R {log.val_map_at_r:.3f}"
        self.progress.console.print(
            f"epoch {log.epoch}: loss {log.loss:.4f}, active {log.active_fraction:.1%}, "
            f"batches without a valid tuple {log.empty_batches}/{log.steps}, {log.seconds:.1f}s{val}", highlight=False)

    def stop(self) -> None:
        self.progress.stop()


@handle_errors
def train_cmd(
    data: Annotated[str, typer.Argument(help="A folder with one sub-folder per class (identity), or a CSV with path,label columns.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Where to write the model (use it as --model trained:OUT).")] = "model.pt",
    backbone: Annotated[str, typer.Option("--backbone", help="Any timm architecture; vsearch_tiny_cnn is a small CNN for small images.")] = "efficientnet_lite0",
    weights: Annotated[str, typer.Option("--weights", help="Initial backbone weights: auto (ImageNet for efficientnet_lite0, shipped offline), imagenet, none, or a timm state-dict FILE.")] = "auto",
    loss: Annotated[LossName, typer.Option("--loss", help="triplet (margin), contrastive (pairs), or ranking (hinge on cosine: query, good, bad).")] = LossName.triplet,
    miner: Annotated[MinerName, typer.Option("--miner", help="Which tuples of a batch train: hardest per anchor, semi-hard, all, or one random per anchor.")] = MinerName.batch_hard,
    margin: Annotated[Optional[float], typer.Option("--margin", min=0, help="Loss margin (default: triplet 0.2, contrastive 1.0, ranking 0.2).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 10,
    steps_per_epoch: Annotated[Optional[int], typer.Option("--steps-per-epoch", min=1, help="Default: enough batches to see the training set once.")] = None,
    embedding_dim: Annotated[int, typer.Option("--dim", min=2, help="Embedding size.")] = 128,
    image_size: Annotated[Optional[int], typer.Option("--image-size", min=4, help="Input size (default: the backbone's).")] = None,
    classes_per_batch: Annotated[int, typer.Option("--classes-per-batch", "-P", min=2, help="P: classes in a batch.")] = 16,
    samples_per_class: Annotated[int, typer.Option("--samples-per-class", "-K", min=2, help="K: images per class in a batch.")] = 4,
    lr: Annotated[float, typer.Option("--lr", min=0, help="Peak AdamW learning rate (cosine schedule).")] = 3e-4,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0)] = 0.01,
    grad_clip: Annotated[float, typer.Option("--grad-clip", min=0, help="Max gradient norm (0: off).")] = 1.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    val_classes: Annotated[Optional[str], typer.Option("--val-classes", help="Comma-separated classes held out for evaluation.")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0, max=0.95, help="Else hold out this fraction of classes (0: none).")] = 0.2,
    cross_batch_negatives: Annotated[int, typer.Option("--cross-batch-negatives", min=0, help="Per anchor, add this many hard negatives found in a FAISS index of all training embeddings.")] = 0,
    refresh_every: Annotated[Optional[int], typer.Option("--refresh-every", min=1, help="Steps between rebuilds of that index (default: one epoch).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | auto (mixed precision on CUDA).")] = "cpu",
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="Checkpoint file (default: OUT.ckpt).")] = None,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", min=1, help="Steps between checkpoints (also each epoch and on Ctrl-C).")] = 200,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")] = False,
    workers: Annotated[int, typer.Option("--workers", "-w", min=0, help="Processes decoding images before training.")] = 0,
    report: Annotated[Optional[str], typer.Option("--report", help="Held-out evaluation JSON (a PNG of the curves goes next to it). Default: OUT.eval.json.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train an image embedding model on labelled images with triplet/contrastive/ranking losses.

    Classes are split into training and held-out classes; the held-out ones are scored at the end
    (Recall@1/5, MAP@R, ROC AUC, EER, TAR@FAR). Ctrl-C keeps a checkpoint; rerun with --resume.
    """
    from training.config import TrainConfig
    from training.run import run
    from training.trainer import TrainingInterrupted

    cfg = TrainConfig(
        data=data, out=out, backbone=backbone, weights=weights, embedding_dim=embedding_dim, image_size=image_size,
        loss=loss.value, miner=miner.value, margin=margin, epochs=epochs, steps_per_epoch=steps_per_epoch,
        classes_per_batch=classes_per_batch, samples_per_class=samples_per_class, lr=lr, weight_decay=weight_decay,
        grad_clip=grad_clip, seed=seed,
        val_classes=[c.strip() for c in val_classes.split(",") if c.strip()] if val_classes else [],
        val_fraction=val_fraction, cross_batch_negatives=cross_batch_negatives, refresh_every=refresh_every,
        device=device, checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, workers=workers,
        report=report,
    )
    bar = _RichTrainProgress(enabled=not quiet)
    try:
        outcome = run(cfg, progress=bar)
    except TrainingInterrupted as exc:
        err_console.print(f"[yellow]{exc}[/]", highlight=False)
        raise typer.Exit(130) from None

    for path, reason in outcome.train.skipped + (outcome.val.skipped if outcome.val is not None else []):
        err_console.print(f"  [red]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
    if outcome.train.dropped_classes:
        err_console.print(f"  [yellow]classes with a single image, not trained on:[/] {', '.join(outcome.train.dropped_classes)}",
                          highlight=False)
    fit = outcome.fit
    err_console.print(
        f"[green]done[/]: {fit.steps} steps in {fit.seconds:.1f}s on {len(outcome.train)} images of "
        f"{len(outcome.train.class_names)} classes; {fit.empty_batches} batch(es) had no valid tuple; "
        f"wrote {outcome.model_path} (use --model trained:{outcome.model_path})", highlight=False)
    if outcome.report is not None:
        print_report(outcome.report)
        err_console.print(f"report: {outcome.report_paths[0]}, curves: {outcome.report_paths[1]}", highlight=False)


def print_report(report, what: str = "held-out") -> None:
    from rich.table import Table

    r, v = report.retrieval, report.verification
    table = Table(title=f"{what}: {report.images} images, {report.classes} classes, {r.queries} queries",
                  show_header=True, header_style="bold")
    for col in ("R@1", "R@5", "MAP@R", "ROC AUC", "EER", "TAR@FAR 1e-3", "TAR@FAR 1e-2"):
        table.add_column(col, justify="right")
    fmt = lambda x: "-" if x is None or x != x else f"{x:.3f}"  # noqa: E731 - NaN is "-" too
    table.add_row(fmt(r.recall_at.get(1)), fmt(r.recall_at.get(5)), fmt(r.map_at_r),
                  *(("-",) * 4 if v is None else (fmt(v.roc_auc), fmt(v.eer), fmt(v.tar_at_far.get(1e-3)),
                                                  fmt(v.tar_at_far.get(1e-2)))))
    console.print(table)
