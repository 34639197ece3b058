"""The ``vsearch`` command: a thin typer adapter over the Python API in :mod:`vsearch`.

Only light modules are imported here and in :mod:`vsearch.commands`: ``--help``, ``--version``,
shell completion and usage errors answer without loading torch or FAISS. Each command imports
what it needs when it runs.
"""
from __future__ import annotations

import os
import sys
from typing import Annotated, List, Optional

import typer

from vsearch.commands.common import (
    CatalogRef, DbOpt, DbUrlOpt, DeviceOpt, JsonOpt, ModelOpt, PrecisionOpt, RateProgress, RuntimeOpt, check_output_file, console,
    err_console, escape, handle_errors, json_flag, plural, print_json, print_names_as_bytes, print_rows, setup_logging,
    warn_if_not_english,
)
from vsearch.commands.captions import captions_app
from vsearch.commands.classify import classify, tag, tags_list
from vsearch.commands.eval import eval_app
from vsearch.commands.faces import faces_app
from vsearch.commands.regions import detect, detect_eval
from vsearch.commands.library import duplicates
from vsearch.commands.ocr import ocr_cmd, print_text_summary, text_progress
from vsearch.commands.models import models_app
from vsearch.commands.scale import scale_app
from vsearch.commands.serve import serve
from vsearch.commands.train import train_cmd

app = typer.Typer(
    help="vsearch: index a photo collection, then search it by text or by example image.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # help is plain text: "[x1, y1, x2, y2]" in a help string is not markup to swallow
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from vsearch import __version__

        print(f"vsearch {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_print_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    models: Annotated[Optional[str], typer.Option("--models", help="Folder of exported models (vsearch models "
                                                  "export), as $VSEARCH_MODEL_DIR.", show_default=False)] = None,
) -> None:
    setup_logging(verbose)
    if models:
        os.environ["VSEARCH_MODEL_DIR"] = os.path.abspath(os.path.expanduser(models))
    print_names_as_bytes()


def _holds_photos_under(ref: CatalogRef, paths) -> bool:
    """Whether the catalog keeps photos under any of ``paths`` (SQL only, no model): a vanished
    root it holds photos under gets the full run's report (kept, unavailable); a mistyped one
    fails at once."""
    if not ref.exists():
        return False
    try:
        with ref.catalog(save=False) as cat:
            return bool(cat.media_under([os.path.abspath(os.path.expanduser(p)) for p in paths]))
    except Exception:  # noqa: BLE001 - the full run reports a catalog it cannot open, in its own words
        return True


@app.command()
@handle_errors
def index(
    paths: Annotated[List[str], typer.Argument(help="Folders or image files to index (recursively).")],
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    model: ModelOpt = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="Images per encoder batch.")] = 32,
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", min=0,
                       help="Decode worker processes (0: decode in this process). Default: cores - 1.")] = None,
    device: DeviceOpt = "cpu",
    runtime: RuntimeOpt = None,
    precision: PrecisionOpt = "fp32",
    faces: Annotated[bool, typer.Option("--faces", help="Also detect faces and index each one (see `vsearch faces`).")] = False,
    regions: Annotated[Optional[str], typer.Option("--regions", help="Also index regions: proposals | detector:WEIGHTS.pt.")] = None,
    max_regions: Annotated[Optional[int], typer.Option("--max-regions", min=1, help="With --regions: at most N regions per photo (default 24).")] = None,
    ocr: Annotated[bool, typer.Option("--ocr", help="Then read the text in the photos (after they are searchable; see `vsearch ocr`).")] = False,
    prune_missing: Annotated[bool, typer.Option("--prune-missing", help="Remove the photos under a folder that is "
                             "missing or empty (normally kept: it may be an unmounted drive).")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Try every file that failed before again "
                            "(read errors are retried anyway).")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="If another process is writing to the catalog, wait for it "
                    "instead of stopping.")] = False,
    include_hidden: Annotated[bool, typer.Option("--include-hidden", help="Also index hidden files and folders and "
                              "system folders (.thumbnails, @eaDir, .Trash-*, $RECYCLE.BIN, .git, ...), skipped by default.")] = False,
    exclude: Annotated[List[str], typer.Option("--exclude", help="Leave out files and folders matching this glob "
                       "(name or path, e.g. \"*.tmp\", \"*/private/*\"); repeatable.")] = [],  # noqa: B006
    exclude_from: Annotated[Optional[str], typer.Option("--exclude-from", help="A file of --exclude globs, one a line "
                            "(# comments).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[bool, json_flag("Print the summary as JSON on stdout (counts, failures, seconds).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Then keep watching PATHS and index what changes (Ctrl-C stops).")] = False,
    debounce: Annotated[float, typer.Option("--debounce", min=0.0, help="With --watch: seconds of quiet before a batch is indexed.")] = 2.0,
) -> None:
    """Add new and changed photos under PATHS to the catalog, drop deleted ones, skip unchanged ones.

    Safe to interrupt (Ctrl-C or kill): run it again and it resumes where it stopped. Photos are
    removed only when their file is seen gone: a missing or empty folder (an unmounted drive) or
    one that cannot be read keeps its photos. Hidden files and folders and system folders are left
    out (--include-hidden takes them); HEIC/HEIF, AVIF and camera RAW files are read too.
    """
    from vsearch.errors import StorageError, VSearchError
    from vsearch.extractors import check_index_options
    from vsearch.fsutil import display_path

    check_index_options(regions, max_regions)
    if not prune_missing:  # a mistyped path fails here, before any model loads
        from indexer.scan import root_state

        unavailable = [(p, why) for p in paths if (why := root_state(p)) is not None]
        if len(unavailable) == len(paths) and not _holds_photos_under(CatalogRef(db, db_url), paths):
            for root, why in unavailable:
                err_console.print(f"[red]unavailable:[/] {escape(display_path(root))}: {escape(why)}",
                                  highlight=False, soft_wrap=True)
            raise typer.Exit(1)
    excludes = tuple(exclude)
    if exclude_from:
        from indexer.scan import read_exclude_file

        try:
            excludes += read_exclude_file(exclude_from)
        except OSError as exc:
            raise VSearchError(f"--exclude-from {exclude_from}: {exc.strerror or exc}") from None
    try:
        # closing saves what was committed and lets go of the writer lock; a first run that
        # indexed nothing leaves no empty catalog behind
        with CatalogRef(db, db_url).collection(model, device, create=True, runtime=runtime, precision=precision,
                                               discard_if_empty=True) as coll:
            encoder = coll.encoder
            if coll.notice:
                err_console.print(coll.notice, highlight=False)
            bar, text_bar = RateProgress("indexing", not quiet), text_progress(not quiet and ocr)
            try:
                summary = coll.index(paths, batch_size=batch_size, workers=workers, progress=bar, faces=faces,
                                     ocr=ocr, ocr_progress=text_bar,
                                     regions=regions, max_regions=max_regions, prune_missing=prune_missing,
                                     retry_failed=retry_failed, include_hidden=include_hidden, exclude=excludes,
                                     wait=wait, on_wait=lambda who: err_console.print(
                                         f"waiting for the catalog: another process is writing to it ({who})",
                                         highlight=False))
            finally:
                bar.stop()
                text_bar.stop()
    except StorageError as exc:  # one clear line; what was committed stays committed
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    err_console.print(
        f"[green]done[/] in {summary.seconds:.1f}s with {encoder.info.name}: "
        f"added {summary.added}, unchanged {summary.unchanged}, moved {summary.moved}, "
        f"copied {summary.copied}, removed {summary.removed}, failed {len(summary.failed)}"
        + (f" (+{summary.known_failures} known bad, not retried; --retry-failed tries them)" if summary.known_failures else "")
        + (f", retried {summary.retried}" if summary.retried else "")
        + (f", revisited {summary.revisited} for --faces/--regions" if summary.revisited else "")
        + (f"; left out {summary.skipped} hidden/system/excluded" if summary.skipped else "")
        + (f"; {plural(summary.skipped_by_extension, 'non-image file')}" if summary.skipped_by_extension else "")
        + (f" — {summary.images_per_second:.1f} img/s" if summary.added else ""),
        highlight=False,
    )
    for path, reason in summary.failed:
        err_console.print(f"  [red]failed[/] {escape(display_path(path))}: {escape(reason)}", highlight=False, soft_wrap=True)
    if summary.text is not None:
        print_text_summary(summary.text)
    for path, count, why in summary.kept:
        err_console.print(f"  [yellow]kept[/] {count} photo{'s' * (count != 1)} under {escape(display_path(path))}: "
                          f"{escape(why)}", highlight=False, soft_wrap=True)
    for root, why in summary.unavailable:
        err_console.print(f"[red]unavailable:[/] {escape(display_path(root))}: {escape(why)}", highlight=False, soft_wrap=True)
    if as_json:
        print_json(summary.to_json())
    if summary.unavailable and not prune_missing:
        raise typer.Exit(1)
    if watch:
        from vsearch.commands.library import watch_forever

        return watch_forever(db, db_url, model, device, paths, batch_size, debounce, faces=faces, regions=regions,
                             max_regions=max_regions, include_hidden=include_hidden, exclude=excludes, ocr=ocr)
    if summary.indexed_ok == 0 and summary.removed == 0:
        err_console.print("[red]nothing could be indexed[/]" if summary.failed else
                          f"[red]no image files found under[/] {escape(' '.join(paths))}")
        raise typer.Exit(1)


@app.command()
@handle_errors
def search(
    query: Annotated[Optional[str], typer.Argument(help="Text to search for, e.g. \"a dog on the beach\", with filters such as "
                     "year:2019 -tag:cat folder:~/trips type:raw (see README, Query language).")] = None,
    image: Annotated[Optional[str], typer.Option("--image", "-i", help="Search by an example image: a file or an http(s) URL.")] = None,
    face: Annotated[Optional[str], typer.Option("--face", help="Photos containing the person in this photo, a file or URL (needs index --faces).")] = None,
    plus: Annotated[List[str], typer.Option("--plus", help="Add a text concept; \"snow=0.5\" sets its weight.")] = [],  # noqa: B006 - typer needs a list
    minus: Annotated[List[str], typer.Option("--minus", help="Subtract a text concept; \"night=0.5\" sets its weight.")] = [],  # noqa: B006
    tags: Annotated[List[str], typer.Option("--tag", help="Only photos tagged with this (see `vsearch tag`); repeatable.")] = [],  # noqa: B006
    text_in: Annotated[List[str], typer.Option("--text-in", help="Only photos whose text (index --ocr) contains this word or "
                       "phrase, any case and accents, inside words too; repeatable (all must match).")] = [],  # noqa: B006
    k: Annotated[int, typer.Option("-k", min=1, help="Number of results.")] = 10,
    as_json: Annotated[bool, json_flag("Print a JSON list of {path, score}.")] = False,
    bare_paths: Annotated[bool, typer.Option("--paths", help="Print only the paths, one a line (for xargs, xdg-open).")] = False,
    null: Annotated[bool, typer.Option("--null", help="With --paths: end each path with a NUL byte instead of a "
                    "newline, for xargs -0 (a file name may hold a newline).")] = False,
    html_out: Annotated[Optional[str], typer.Option("--html", help="Write a self-contained gallery page here (its folder must exist).")] = None,
    regions: Annotated[bool, typer.Option("--regions", help="Match regions too (see index --regions); results carry the best box.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="For each hit, the part of the photo that matched best (its region, "
                       "else an occlusion heat map); drawn in --html, in --json as \"explain\".")] = False,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    model: ModelOpt = "auto",
    device: DeviceOpt = "cpu",
    runtime: RuntimeOpt = None,
    precision: PrecisionOpt = "fp32",
) -> None:
    """Find photos by text, by example image, or both (with --plus/--minus concepts).

    On a terminal the results are a table; piped, one tab-separated line per result
    (rank, score, path), never wrapped.
    """
    from contextlib import ExitStack, nullcontext

    from vsearch.commands.common import loading
    from vsearch.commands.library import check_weighted_terms
    from vsearch.errors import QueryError
    from vsearch.fetch import local_image

    if query is None and image is None and not plus and face is None and not text_in:
        raise QueryError("give a text query, --image FILE, --face FILE, --text-in WORD, or --plus terms")
    if as_json and bare_paths:
        raise QueryError("choose one of --json and --paths")
    if null and not bare_paths:
        raise QueryError("--null goes with --paths (NUL-separated paths for xargs -0)")
    check_weighted_terms(plus, minus)
    from vsearch.search import QUERY_LIMITS

    QUERY_LIMITS.check(query, plus, minus, k)  # thousands of --plus terms: refused before the model loads
    from vsearch.query import parse_query

    words = (parse_query(query).text or None) if query is not None else None  # the query without its filters
    listing = words is None and image is None and not plus and face is None  # filters alone: no score to show
    html_out = check_output_file(html_out, "--html")
    with ExitStack() as stack:
        image_file = stack.enter_context(local_image(image)) if image is not None else None
        face_file = stack.enter_context(local_image(face)) if face is not None else None
        coll = stack.enter_context(CatalogRef(db, db_url).collection(model, device, create=False,
                                                                     load_model=face is None, runtime=runtime,
                                                                     precision=precision))
        if face_file is None:
            warn_if_not_english(coll.encoder.info.name, [words, *plus, *minus])
        with loading("loading the face models") if face_file is not None else nullcontext():
            hits = coll.search(text=query, image=image_file, plus=plus, minus=minus, k=k, tags=tags, regions=regions,
                               face=face_file, text_in=text_in)
        explained = None
        if explain:
            from vsearch.commands.library import explain_search

            explained = explain_search(coll, hits, words, image_file, plus, minus, face_file)
    if html_out:
        from vsearch.report import GalleryQuery, gallery_html

        title = " + ".join(x for x in [query, image and f"image {os.path.basename(image)}"] if x) or "search"
        thumbs = None if explained is None else [t for _, t in explained]
        with open(html_out, "w", encoding="utf-8") as fh:
            fh.write(gallery_html(f"vsearch: {title}", hits, query=GalleryQuery(text=query, image=image, plus=plus,
                                                                 minus=minus, tags=tags), thumbnails=thumbs))
        err_console.print(f"wrote {escape(html_out)}")
    if as_json:
        from vsearch.regions.report import hit_json

        print_json([{**hit_json(h), **_exact_name(h.path), **({"explain": explained[i][0].to_json()} if explained else {})}
                    for i, h in enumerate(hits)])
        return
    if bare_paths:
        end = "\0" if null else "\n"
        sys.stdout.write("".join(h.path + end for h in hits))
        sys.stdout.flush()
        if not null and any("\n" in h.path for h in hits):
            err_console.print("warning: a path holds a newline, so lines do not match files: use --paths --null "
                              "with xargs -0", highlight=False)
        return
    if not hits:
        err_console.print("no results (is the catalog empty?)")
        return
    columns = ["#", "score", "path"] + (["matched here" if explained else "box"] if regions or explained else [])
    rows = []
    for i, h in enumerate(hits):
        box = explained[i][0].box if explained else getattr(h, "box", None)
        rows.append([str(h.rank), "-" if listing else f"{h.score:.3f}", h.path,
                     *(["[" + ", ".join(f"{v:.0f}" for v in box) + "]" if box is not None else ""]
                       if regions or explained else [])])
    print_rows(columns, rows, justify=["right", "right", "left", "left"])


def _exact_name(path: str) -> dict:
    """``{"path_bytes": base64}`` for a file name that is not UTF-8: its "path" shows the
    undecodable bytes as ``\\xNN``, as a name with a real backslash could read; the bytes say which."""
    from vsearch.fsutil import undecodable_name

    raw = undecodable_name(path)
    if raw is None:
        return {}
    import base64

    return {"path_bytes": base64.b64encode(raw).decode("ascii")}


@app.command()
@handle_errors
def verify(
    repair: Annotated[bool, typer.Option("--repair", help="Rewrite index files to match the database.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="With --repair: if an index run is writing, wait for it.")] = False,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    as_json: Annotated[bool, json_flag("Print {ok, writer, spaces: [...], repaired} (same exit codes).")] = False,
) -> None:
    """Check that the database and the FAISS index files hold the same ids (exit 1 if not).

    While an index run is writing, its index file trails the database until its next save (every
    30 s and at the end): ids only missing from the file are then expected, not a failure."""
    with CatalogRef(db, db_url).catalog(save=False) as cat:  # a check writes nothing (--repair saves itself)
        _verify_json(cat, repair, wait) if as_json else _verify(cat, repair, wait)


def _verify_json(cat, repair: bool, wait: bool) -> None:
    """`vsearch verify --json`: one document; exit 1 on a mismatch left (as without --json)."""
    writer = cat.writer()
    reports = cat.verify()
    bad = [r for r in reports if not r.ok and not (writer and r.only_lagging)]
    repaired = None
    if bad and repair:
        cat.repair(wait=wait)
        reports = cat.verify()
        bad = [r for r in reports if not r.ok]
        repaired = not bad
    print_json({"ok": not bad, "writer": writer or None, "repaired": repaired,
                "spaces": [{**r.to_json(), "catching_up": bool(writer and not r.ok and r.only_lagging)}
                           for r in reports]})
    if bad:
        raise typer.Exit(1)


def _verify(cat, repair: bool, wait: bool) -> None:
    """Print each space's report; repair if asked; exit 1 on a mismatch that is not an index run catching up."""
    writer = cat.writer()
    reports = cat.verify()
    bad = [r for r in reports if not r.ok and not (writer and r.only_lagging)]
    for r in reports:
        status = "[green]ok[/]" if r.ok else ("[yellow]catching up[/]" if writer and r.only_lagging else "[red]MISMATCH[/]")
        console.print(f"{r.space}: {status} — {r.sql_count} in database, {r.index_count} in index file"
                      + (" (index file missing)" if r.index_file_missing else ""), highlight=False)
        if r.missing_from_index:
            console.print(f"  ids missing from the index: {list(r.missing_from_index)[:20]}"
                          + (" …" if len(r.missing_from_index) > 20 else ""))
        if r.duplicated_in_index:
            console.print(f"  ids stored more than once in the index: {list(r.duplicated_in_index)[:20]}")
        if r.extra_in_index:
            console.print(f"  ids in the index but not the database: {list(r.extra_in_index)[:20]}"
                          + (" …" if len(r.extra_in_index) > 20 else ""))
    if writer:
        console.print(f"an index run is writing to this catalog ({writer}); its index file catches up when it "
                      "saves (every 30 s and at the end)", highlight=False)
    if bad and repair:
        cat.repair(wait=wait, on_wait=lambda who: err_console.print(
            f"waiting for the catalog: another process is writing to it ({who})", highlight=False))
        again = [r for r in cat.verify() if not r.ok]
        console.print("[green]repaired[/]" if not again else "[red]repair failed[/]")
        raise typer.Exit(1 if again else 0)
    if bad:
        console.print("run [bold]vsearch verify --repair[/] to fix")
        raise typer.Exit(1)


@app.command()
@handle_errors
def doctor(db: DbOpt = None, db_url: DbUrlOpt = None, as_json: JsonOpt = False) -> None:
    """Versions, devices, FAISS CPU/GPU, models available offline, and catalog stats."""
    from vsearch.commands.common import loading
    from vsearch.doctor import as_text, collect

    with loading("looking at the installation and the catalog"):
        report = collect(db, db_url)
    if as_json:
        print_json(report)
        return
    for section, items in report.items():
        console.print(f"[bold]{escape(section)}[/]")
        for key, value in items.items():
            console.print(f"  {escape(str(key))}: {escape(as_text(value, str(key)))}")


app.command("classify")(classify)
app.command("tag")(tag)
app.command("tags")(tags_list)
app.command("duplicates")(duplicates)
app.command("ocr")(ocr_cmd)
app.add_typer(captions_app, name="captions")
app.add_typer(eval_app, name="eval")
app.add_typer(faces_app, name="faces")
app.add_typer(models_app, name="models")
app.command("serve")(serve)

app.command("detect")(detect)
eval_app.command("detect")(detect_eval)
app.command("train")(train_cmd)
app.add_typer(scale_app)  # no name: embed-shards, merge-shards, build-index are top-level commands


if __name__ == "__main__":
    sys.exit(app())
