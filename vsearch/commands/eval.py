"""`vsearch eval ...`: measure models on your own labelled data."""
from __future__ import annotations

import json
from typing import Annotated

import typer

from vsearch.commands.common import DbOpt, DbUrlOpt, DeviceOpt, ModelOpt, console, err_console, handle_errors, open_collection

eval_app = typer.Typer(help="Evaluate models: zero-shot classification, image-text retrieval.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")]


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

    coll = open_collection(db, db_url, model, device, create=None)
    r = evaluate_classification(coll.encoder, root, load_templates(templates))
    if as_json:
        print(json.dumps({"images": r.n_images, "classes": len(r.labels), "top1": r.top1, "top5": r.top5,
                          "confused": r.confused, "model": coll.encoder.info.name}))
    else:
        console.print(f"{r.n_images} images, {len(r.labels)} classes, model {coll.encoder.info.name}", highlight=False)
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

    coll = open_collection(db, db_url, model, device, create=None)
    r = evaluate_retrieval(coll.encoder, read_pairs(pairs_file))
    if as_json:
        print(json.dumps({"images": r.n_images, "captions": r.n_captions, "image_to_text": r.image_to_text,
                          "text_to_image": r.text_to_image, "model": coll.encoder.info.name}))
    else:
        console.print(f"{r.n_images} images, {r.n_captions} captions, model {coll.encoder.info.name}", highlight=False)
        for name, rec in (("image→text", r.image_to_text), ("text→image", r.text_to_image)):
            console.print(f"  {name}: " + "  ".join(f"R@{k} {v:.3f}" for k, v in rec.items()))
    for path, reason in r.skipped:
        err_console.print(f"  skipped {path}: {reason}", highlight=False)
