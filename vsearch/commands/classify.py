"""`vsearch classify` and `vsearch tag`: zero-shot labels for photos."""
from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from vsearch.commands.common import (CatalogRef, DbOpt, DbUrlOpt, DeviceOpt, JsonOpt, ModelOpt, console, err_console,
                                     escape, handle_errors, print_json)

LabelsOpt = Annotated[Optional[str], typer.Option("--labels", "-l", help="Comma-separated labels, e.g. \"cat,dog,car\".")]
LabelsFileOpt = Annotated[Optional[str], typer.Option("--labels-file", help="A file with one label per line.")]
TemplatesOpt = Annotated[str, typer.Option("--templates", help="default (8 CLIP prompts), plain, or a file with one "
                                           "template per line containing {}.")]


def _labels(labels, labels_file):
    from vsearch.zeroshot import parse_labels

    label_set = parse_labels(labels, labels_file)
    if label_set.duplicates:
        err_console.print(f"note: ignoring repeated labels: {escape(', '.join(label_set.duplicates))}")
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
    from vsearch.errors import QueryError
    from vsearch.zeroshot import ClassifierCache, class_probabilities, load_templates, logit_scale, top_k

    label_list = _labels(labels, labels_file)
    template_list = load_templates(templates)
    if not paths and not all_photos:
        raise QueryError("give image paths or --all")
    with CatalogRef(db, db_url).collection(model, device, create=False if all_photos else None) as coll:
        names, vectors, failures = _vectors(coll, paths, all_photos)
        if coll.notice:
            err_console.print(escape(coll.notice))
        classifier = ClassifierCache().get(coll.encoder, label_list, template_list)
        results = top_k(class_probabilities(vectors, classifier, logit_scale(coll.encoder)), label_list, k) if len(names) else []
    if as_json:
        print_json([{"path": n, "labels": [{"label": lab, "p": round(p, 6)} for lab, p in r]}
                    for n, r in zip(names, results)])
    else:  # one line per image: "PATH: label p, label p" (never wrapped, see common.console)
        for n, r in zip(names, results):
            console.print(escape(f"{n}: " + ", ".join(f"{lab} {p:.2f}" for lab, p in r)))
    for path, reason in failures:
        err_console.print(f"  [red]skipped[/] {escape(path)}: {escape(reason)}")
    if not names:
        raise typer.Exit(1)


def _vectors(coll, paths, all_photos: bool):
    """(names, (N, D) vectors, failures): stored vectors of the whole catalog, or the given files embedded."""
    import numpy as np

    from indexer.scan import scan_paths
    from vsearch.catalog import IMAGE_SPACE

    if all_photos:
        names, vectors = coll.catalog.media_vectors(IMAGE_SPACE)
        return names, vectors, []
    scan = scan_paths(paths)
    failures = list(scan.problems)
    names, vecs = [], []
    for f in scan.files:
        try:
            vecs.append(coll.embed_image_file(f.path))
            names.append(f.path)
        except Exception as exc:  # noqa: BLE001 - reported per file, the rest still classified
            failures.append((f.path, str(exc)))
    vectors = np.stack(vecs) if vecs else np.zeros((0, coll.encoder.info.dim), np.float32)
    return names, vectors, failures


@handle_errors
def tag(
    labels: LabelsOpt = None,
    labels_file: LabelsFileOpt = None,
    templates: TemplatesOpt = "default",
    threshold: Annotated[float, typer.Option("--threshold", "-t", min=0.0, max=1.0,
                         help="Store a label when its probability is at least this.")] = 0.5,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tag the whole collection with your labels; then `vsearch search ... --tag LABEL` filters.

    The labels are remembered: photos added or changed later are tagged by `vsearch index`.
    """
    from vsearch.tags import TaggingConfig, tag_collection
    from vsearch.zeroshot import load_templates

    config = TaggingConfig(_labels(labels, labels_file), load_templates(templates), threshold)
    with CatalogRef(db, db_url).collection(create=False) as coll:
        summary = tag_collection(coll, config)
    counts = sorted(summary.counts.items(), key=lambda kv: -kv[1])
    if as_json:
        print_json({"tagged": summary.tagged, "tags_stored": summary.labels_stored, "counts": dict(counts)})
        return
    console.print(f"tagged {summary.tagged} photos, {summary.labels_stored} tags stored")
    for label, n in counts:
        console.print(f"  {escape(label)}: {n}")
