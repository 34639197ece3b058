"""`vsearch classify` and `vsearch tag`: zero-shot labels for photos."""
from __future__ import annotations

import os
from typing import Annotated, List, Optional

import typer

from vsearch.commands.common import (CatalogRef, DbOpt, DbUrlOpt, DeviceOpt, JsonOpt, ModelOpt, PrecisionOpt, RuntimeOpt,
                                     console, err_console, escape, handle_errors, json_flag, plural, print_json, progress,
                                     warn_if_not_english)

LabelsOpt = Annotated[Optional[str], typer.Option("--labels", "-l", help="Comma-separated labels, e.g. \"cat,dog,car\".")]
LabelsFileOpt = Annotated[Optional[str], typer.Option("--labels-file", help="A file with one label per line.")]
LabelThresholdOpt = Annotated[List[str], typer.Option(
    "--label-threshold", help="LABEL=COSINE: this label's own threshold (default: the model's calibrated one); repeatable.")]
TemplatesOpt = Annotated[str, typer.Option("--templates", help="default (8 CLIP prompts), plain, or a file with one "
                                           "template per line containing {}.")]


def _labels(labels, labels_file):
    from vsearch.zeroshot import parse_labels

    label_set = parse_labels(labels, labels_file)
    if label_set.duplicates:
        err_console.print(f"note: ignoring repeated labels: {', '.join(label_set.duplicates)}", highlight=False)
    return label_set.labels


@handle_errors
def classify(
    paths: Annotated[Optional[List[str]], typer.Argument(help="Images or folders to classify.")] = None,
    all_photos: Annotated[bool, typer.Option("--all", help="Classify every photo in the catalog instead.")] = False,
    labels: LabelsOpt = None,
    labels_file: LabelsFileOpt = None,
    templates: TemplatesOpt = "default",
    k: Annotated[int, typer.Option("-k", min=1, help="Labels to show per image.")] = 3,
    label_threshold: LabelThresholdOpt = [],  # noqa: B006 - typer needs a list
    closed_set: Annotated[bool, typer.Option("--closed-set", help="Always pick one of the labels (no \"none of "
                          "these\"): a softmax over your labels only.")] = False,
    as_json: Annotated[bool, json_flag("Print JSON: [{path, top, none, labels: [{label, p}]}]; "
                                       "top is null when none of the labels fits.")] = False,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    model: ModelOpt = "auto",
    device: DeviceOpt = "cpu",
    runtime: RuntimeOpt = None,
    precision: PrecisionOpt = "fp32",
) -> None:
    """Zero-shot classification: the top-k of your labels for each image, with probabilities.

    A label must reach its own cosine threshold (calibrated per model; --label-threshold sets one),
    so an image none of the labels fits is reported as "none of these".
    """
    from vsearch.errors import QueryError
    from vsearch.zeroshot import load_templates, parse_label_thresholds

    label_list = _labels(labels, labels_file)
    template_list = load_templates(templates)
    if not paths and not all_photos:
        raise QueryError("give image paths or --all")
    if paths and not all_photos:  # a mistyped path fails here, before the model loads
        missing = [p for p in paths if not os.path.lexists(p)]
        if missing:
            raise QueryError(f"not found: {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    overrides = parse_label_thresholds(label_threshold, label_list)
    with CatalogRef(db, db_url).collection(model, device, create=False if all_photos else None,
                                           runtime=runtime, precision=precision) as coll:
        warn_if_not_english(coll.encoder.info.name, label_list)
        with progress("classifying") as steps:
            result = coll.classify(label_list, None if all_photos else paths, template_list, k=k,
                                   label_thresholds=overrides, closed_set=closed_set, on_start=steps.start,
                                   on_done=steps)
        if coll.notice:
            err_console.print(escape(coll.notice))
    if as_json:
        print_json(result.to_json())
    else:  # one line per image: "PATH: label p, label p" (never wrapped, see common.console)
        for image in result.images:
            head = "" if image.top is not None else f"none of these {image.none:.2f}; "
            console.print(escape(f"{image.path}: {head}" + ", ".join(f"{lab} {p:.2f}" for lab, p in image.labels)))
    for path, reason in result.failures:
        err_console.print(f"  [red]skipped[/] {escape(path)}: {escape(reason)}")
    if not result.images:
        if not result.failures:
            err_console.print("[red]no photos in the catalog[/]" if all_photos else
                              f"[red]no image files found under[/] {escape(' '.join(paths or []))}")
        raise typer.Exit(1)


@handle_errors
def tag(
    labels: LabelsOpt = None,
    labels_file: LabelsFileOpt = None,
    templates: TemplatesOpt = "default",
    threshold: Annotated[float, typer.Option("--threshold", "-t", min=0.0, max=1.0,
                         help="Store a label when its presence probability is at least this (0.5: its cosine "
                         "reaches the label's threshold).")] = 0.5,
    label_threshold: LabelThresholdOpt = [],  # noqa: B006 - typer needs a list
    examples: Annotated[List[str], typer.Option("--example", help="LABEL=PATH: photos (a file or folder) that show "
                        "LABEL; its threshold is learned from them; repeatable.")] = [],  # noqa: B006
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tag the whole collection with your labels; then `vsearch search ... --tag LABEL` filters.

    Each label needs its own evidence (a cosine threshold calibrated for the model, or set with
    --label-threshold, or learned from --example photos): a photo none of the labels fits gets no
    tag. The labels are remembered: photos added or changed later are tagged by `vsearch index`.
    """
    from vsearch.api import parse_examples
    from vsearch.tags import TaggingConfig, tag_collection
    from vsearch.zeroshot import load_templates, parse_label_thresholds

    label_list = _labels(labels, labels_file)
    template_list = load_templates(templates)
    overrides = parse_label_thresholds(label_threshold, label_list)
    by_label = parse_examples(examples, label_list)
    with CatalogRef(db, db_url).collection(create=False) as coll:
        warn_if_not_english(coll.encoder.info.name, label_list)
        learned = coll.thresholds_from_examples(by_label, label_list, template_list)
        for label, value in learned.items():
            err_console.print(escape(f"{label}: threshold {value:.3f} learned from {plural(len(by_label[label]), 'example photo')}"))
        overrides.update(learned)
        config = TaggingConfig(label_list, template_list, threshold, label_thresholds=tuple(overrides.items()))
        with progress("tagging", coll.catalog.vector_count()) as advance:  # the image space's photos
            summary = tag_collection(coll, config, on_batch=advance)
    if as_json:
        print_json(summary.to_json())
        return
    console.print(f"tagged {plural(summary.tagged, 'photo')}, {plural(summary.labels_stored, 'tag')} stored")
    for label, n in summary.most_common():
        console.print(f"  {escape(label)}: {n}")


@handle_errors
def tags_list(
    as_json: Annotated[bool, json_flag("Print JSON: [{label, photos}].")] = False,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
) -> None:
    """The collection's tags with how many photos carry each (see `vsearch tag`)."""
    from vsearch.tags import tag_counts

    with CatalogRef(db, db_url).catalog() as catalog:
        counts = tag_counts(catalog)
    if as_json:
        print_json([c.to_json() for c in counts])
        return
    if not counts:
        console.print("no tags yet: run vsearch tag --labels \"cat,dog,beach\"")
        return
    for label, n in counts:
        console.print(escape(f"{n:6d}  {label}"))
