"""`vsearch classify` and `vsearch tag`: zero-shot labels for photos."""
from __future__ import annotations

import json
from typing import Annotated, List, Optional

import typer

from vsearch.commands.common import DbOpt, DbUrlOpt, DeviceOpt, ModelOpt, console, err_console, handle_errors, open_collection

LabelsOpt = Annotated[Optional[str], typer.Option("--labels", "-l", help="Comma-separated labels, e.g. \"cat,dog,car\".")]
LabelsFileOpt = Annotated[Optional[str], typer.Option("--labels-file", help="A file with one label per line.")]
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: [{path, labels: [{label, p}]}].")] = False,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    model: ModelOpt = "auto",
    device: DeviceOpt = "cpu",
) -> None:
    """Zero-shot classification: the top-k of your labels for each image, with probabilities."""
    from indexer.scan import scan_paths
    from vsearch.catalog import IMAGE_SPACE
    from vsearch.errors import QueryError
    from vsearch.zeroshot import ClassifierCache, class_probabilities, load_templates, logit_scale, top_k

    label_list = _labels(labels, labels_file)
    template_list = load_templates(templates)
    if not paths and not all_photos:
        raise QueryError("give image paths or --all")
    coll = open_collection(db, db_url, model, device, create=False if all_photos else None)
    failures = []
    if all_photos:
        names, vectors = coll.catalog.media_vectors(IMAGE_SPACE)
    else:
        scan = scan_paths(paths)
        failures += scan.problems
        names, vecs = [], []
        for f in scan.files:
            try:
                vecs.append(coll.embed_image_file(f.path))
                names.append(f.path)
            except Exception as exc:  # noqa: BLE001 - reported per file, the rest still classified
                failures.append((f.path, str(exc)))
        import numpy as np

        vectors = np.stack(vecs) if vecs else np.zeros((0, coll.encoder.info.dim), np.float32)
    if coll.notice:
        err_console.print(coll.notice, highlight=False)
    classifier = ClassifierCache().get(coll.encoder, label_list, template_list)
    results = top_k(class_probabilities(vectors, classifier, logit_scale(coll.encoder)), label_list, k) if len(names) else []
    if as_json:
        print(json.dumps([{"path": n, "labels": [{"label": lab, "p": round(p, 6)} for lab, p in r]}
                          for n, r in zip(names, results)], ensure_ascii=False))
    else:
        for n, r in zip(names, results):
            console.print(f"{n}: " + ", ".join(f"{lab} {p:.2f}" for lab, p in r), highlight=False)
    for path, reason in failures:
        err_console.print(f"  [red]skipped[/] {path}: {reason}", highlight=False)
    if not names:
        raise typer.Exit(1)


@handle_errors
def tag(
    labels: LabelsOpt = None,
    labels_file: LabelsFileOpt = None,
    templates: TemplatesOpt = "default",
    threshold: Annotated[float, typer.Option("--threshold", "-t", min=0.0, max=1.0,
                         help="Store a label when its probability is at least this.")] = 0.5,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
) -> None:
    """Tag the whole collection with your labels; then `vsearch search ... --tag LABEL` filters.

    The labels are remembered: photos added or changed later are tagged by `vsearch index`.
    """
    from vsearch.tags import TaggingConfig, tag_collection
    from vsearch.zeroshot import load_templates

    config = TaggingConfig(_labels(labels, labels_file), load_templates(templates), threshold)
    coll = open_collection(db, db_url, "auto", "cpu", create=False)
    summary = tag_collection(coll, config)
    console.print(f"tagged {summary.tagged} photos, {summary.labels_stored} tags stored", highlight=False)
    for label, n in sorted(summary.counts.items(), key=lambda kv: -kv[1]):
        console.print(f"  {label}: {n}", highlight=False)
