"""`vsearch eval ...`: measure models on your own labelled data."""
from __future__ import annotations

import os
import time
from typing import Annotated, Optional

import typer

from vsearch.commands.common import (CatalogRef, DbOpt, DbUrlOpt, DeviceOpt, ModelOpt, check_output_file, console,
                                     err_console, escape, handle_errors, json_flag, print_json, resolve_device)

eval_app = typer.Typer(help="Evaluate models: zero-shot classification, image-text retrieval, embeddings, detection.",
                       no_args_is_help=True)
JsonOpt = Annotated[bool, json_flag("Print the figures as JSON.")]
PLAIN_EVERY_S = 5.0  # seconds between progress lines when stderr is not a terminal


class _Progress:
    """Images done, with rate and ETA: a rich bar on a terminal, a plain line every few seconds
    (and at the end) when stderr is piped or logged; nothing with ``enabled=False``."""

    def __init__(self, what: str, total: int, enabled: bool = True):
        self.what, self.total, self.done = what, total, 0
        self.enabled = enabled and total > 0
        self.started = self.last = time.perf_counter()
        self.bar = self.task = None
        if self.enabled and err_console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.bar = Progress(TextColumn(f"[bold]{escape(what)}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err_console)

    def __enter__(self) -> "_Progress":
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task(self.what, total=self.total)
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.advance(self.task, n)
            return
        now = time.perf_counter()
        if self.enabled and (now - self.last >= PLAIN_EVERY_S or self.done >= self.total):
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            left = (self.total - self.done) / rate if rate else 0.0
            err_console.print(f"{self.what}: {self.done}/{self.total} images, {rate:.1f}/s, {left:.0f}s left",
                              highlight=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


@eval_app.command("classify")
@handle_errors
def eval_classify(
    root: Annotated[str, typer.Argument(help="Dataset folder: one sub-folder per class, named by its label.")],
    templates: Annotated[str, typer.Option("--templates", help="default, plain, or a file of templates.")] = "default",
    as_json: JsonOpt = False,
    db: DbOpt = None, db_url: DbUrlOpt = None, model: ModelOpt = "auto", device: DeviceOpt = "cpu",
) -> None:
    """Zero-shot top-1/top-5 accuracy and the most confused class pairs."""
    from vsearch.evaluate import evaluate_classification
    from vsearch.zeroshot import load_templates

    with CatalogRef(db, db_url).collection(model, device, create=None) as coll:
        r = evaluate_classification(coll.encoder, root, load_templates(templates), progress=_Progress)
    if as_json:
        print_json(r.to_json())
    else:
        console.print(f"{r.n_images} images, {len(r.labels)} classes, model {r.model}", highlight=False)
        console.print(f"top-1 {r.top1:.3f}   top-5 {r.top5:.3f}   (chance top-1 {1 / len(r.labels):.3f})")
        for t, p, n in r.confused:
            console.print(f"  {t} → {p}: {n}", highlight=False)
    for path, reason in r.skipped:
        err_console.print(f"  skipped {path}: {reason}", highlight=False)


@eval_app.command("retrieval")
@handle_errors
def eval_retrieval(
    pairs_file: Annotated[str, typer.Argument(help="CSV/TSV (columns image, caption) or JSONL of pairs.")],
    as_json: JsonOpt = False,
    db: DbOpt = None, db_url: DbUrlOpt = None, model: ModelOpt = "auto", device: DeviceOpt = "cpu",
) -> None:
    """Image→text and text→image Recall@1/5/10 (Flickr30k/COCO protocol)."""
    from vsearch.evaluate import evaluate_retrieval, read_pairs

    with CatalogRef(db, db_url).collection(model, device, create=None) as coll:
        r = evaluate_retrieval(coll.encoder, read_pairs(pairs_file), progress=_Progress)
    if as_json:
        print_json(r.to_json())
    else:
        console.print(f"{r.n_images} images, {r.n_captions} captions, model {r.model}", highlight=False)
        for name, rec in (("image→text", r.image_to_text), ("text→image", r.text_to_image)):
            console.print(f"  {name}: " + "  ".join(f"R@{k} {v:.3f}" for k, v in rec.items()))
    for path, reason in r.skipped:
        err_console.print(f"  skipped {path}: {reason}", highlight=False)


def _model_spec(model: str) -> str:
    """A path means ``trained:PATH`` (a missing file then gets the trainer's "no such model file");
    a registry spec (``packaged``, ``clip:...``, ``trained:...``) is passed on as it is."""
    if ":" in model or model in ("auto", "packaged", "default"):
        return model
    return "trained:" + model


@eval_app.command("embeddings")
@handle_errors
def embeddings(
    data: Annotated[str, typer.Argument(help="Labelled images: a folder per class, or a CSV with path,label columns.")],
    model: Annotated[str, typer.Option("--model", "-m", help="A file from `vsearch train --out`, or any --model spec (packaged, clip:...).")],
    report: Annotated[Optional[str], typer.Option("--report", help="Write the metrics (and a ROC curve) as JSON here.")] = None,
    baselines: Annotated[bool, typer.Option("--baselines/--no-baselines", help="Also score raw pixels and, for a trained model, the network before training, on the same images.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write a PNG of the ROC curve and score histograms here.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1)] = 64,
    workers: Annotated[int, typer.Option("--workers", "-w", min=0, help="Decode worker processes.")] = 0,
    device: DeviceOpt = "cpu",
    as_json: Annotated[bool, json_flag("Print the metrics as JSON instead of a table.")] = False,
) -> None:
    """Retrieval (Recall@1/5, MAP@R) and verification (ROC AUC, EER, TAR@FAR) of a model's embeddings.

    Every image queries all the others; images of a class are the relevant results.
    """
    from training.data import discover
    from training.evaluate import baseline, embed_with_encoder, plot_curves, score, write_json
    from vsearch.encoders import resolve_encoder

    from vsearch.commands.train import print_report, warn_if_not_better

    report = check_output_file(report, "--report")
    plot = check_output_file(plot, "--plot")
    listed = discover(data)  # a missing or empty folder costs no model load
    spec = _model_spec(model)
    encoder, notice = resolve_encoder(spec, resolve_device(device))
    if notice:
        err_console.print(escape(notice))
    untrained = encoder.untrained() if baselines and hasattr(encoder, "untrained") else None
    started = time.perf_counter()
    with _Progress("embedding", len(listed.paths), enabled=not quiet) as bar:
        encoded = embed_with_encoder(encoder, listed, batch_size=batch_size, workers=workers,
                                     baseline_encoders={"untrained model": untrained} if untrained else None,
                                     on_batch=bar.advance)
    labels, skipped = encoded.labels, encoded.skipped
    if len(labels) < 2:
        from training.errors import TrainingDataError

        raise TrainingDataError(f"{data}: fewer than 2 readable images ({len(skipped)} skipped)")
    compared = []
    if baselines:
        compared = [baseline("raw pixels", encoded.raw_pixels, labels)]
        compared += [baseline(name, emb, labels) for name, emb in encoded.baselines.items()]
    result = score(encoded.embeddings, labels, model=encoder.info.name, data=data, skipped=skipped,
                   seconds=time.perf_counter() - started, baselines=compared)
    for path, reason in skipped:
        err_console.print(f"  [red]skipped[/] {path}: {reason}", highlight=False, soft_wrap=True)
    if report:
        write_json(result, report)
    if plot:
        plot_curves(result, plot)
    if as_json:
        d = result.to_dict()
        if d["verification"]:
            d["verification"].pop("roc")  # the curve belongs in --report, not on the terminal
        print_json(d)
    else:
        print_report(result, what=os.path.basename(os.path.normpath(data)) or data)
    warn_if_not_better(result)
    for path in filter(None, (report, plot)):
        err_console.print(f"wrote {path}", highlight=False)
