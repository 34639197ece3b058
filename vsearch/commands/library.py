"""Commands for living photo libraries: `vsearch duplicates`, and the checks and loops behind
`search --explain` and `index --watch`."""
from __future__ import annotations

from typing import Annotated, Optional, Sequence

import typer

from vsearch.commands.common import (CatalogRef, DbOpt, DbUrlOpt, check_output_file, console, err_console, escape,
                                     handle_errors, json_flag, print_json, progress)


def check_weighted_terms(plus: Sequence[str], minus: Sequence[str]) -> None:
    """``--plus``/``--minus`` terms: a text, or ``text=WEIGHT`` with a number. ``night=abc`` is a
    typo for a weight, not a text to search for, so it is refused before any model loads."""
    from vsearch.api import parse_weighted
    from vsearch.errors import QueryError

    for option, terms in (("--plus", plus), ("--minus", minus)):
        for term in terms:
            try:
                parse_weighted(term)
            except QueryError as exc:
                raise QueryError(f"{option} {exc}") from None


class DuplicatesProgress:
    """`vsearch duplicates`: a bar on a terminal (photos rated, then candidate pairs settled);
    off a terminal, a plain line at most every ``EVERY`` seconds, so a log shows it is working."""

    EVERY = 5.0

    def __init__(self, enabled: bool):
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.enabled = enabled
        self.clock = time.monotonic
        self.progress = Progress(
            TextColumn("[bold]finding duplicates"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=err_console,
            disable=not enabled or not err_console.is_terminal, transient=True)
        self.task = None
        self.total = self.done = 0
        self.started = self.last_line = 0.0

    def start(self, total: int) -> None:
        self.total, self.done = total, 0
        self.started = self.last_line = self.clock()
        self.progress.start()
        self.task = self.progress.add_task("duplicates", total=total)

    def advance(self, n: int) -> None:
        self.done += n
        self.progress.advance(self.task, n)
        now = self.clock()
        if self.enabled and not err_console.is_terminal and now - self.last_line >= self.EVERY and self.done < self.total:
            self.last_line = now
            err_console.print(f"finding duplicates: {self.done:,} of {self.total:,} steps ({self.done / self.total:.0%}), "
                              f"{now - self.started:.0f} s", highlight=False)

    def stop(self) -> None:
        self.progress.stop()


@handle_errors
def duplicates(
    threshold: Annotated[Optional[float], typer.Option("--threshold", "-t", min=-1.0, max=1.0,
                         help="Cosine from which two photos are candidates (default by model: 0.60 packaged, 0.92 CLIP); "
                         "lower finds more candidates, each still checked.")] = None,
    geometric: Annotated[Optional[bool], typer.Option("--geometric/--no-geometric",
                         help="Check candidates by matching keypoints against the copy kept (default: on). "
                         "Off: a candidate at the threshold to the kept copy is redundant, bursts included.")] = None,
    as_json: Annotated[bool, json_flag("Print the groups as JSON.")] = False,
    html_out: Annotated[Optional[str], typer.Option("--html", help="Write a page with the groups' thumbnails here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
) -> None:
    """Groups of photos that are the same picture (re-encoded, resized, cropped, lightly edited,
    or byte-identical), each with its best copy (most pixels, then sharpest) named first: every
    other file of a group matches that copy itself, which shows all of it. Photos that only look
    alike (bursts, re-shoots, other crops of a scene) are listed apart as similar shots."""
    from vsearch.duplicates import duplicates_html, find_duplicates

    html_out = check_output_file(html_out, "--html")
    bar = DuplicatesProgress(enabled=not quiet)
    with CatalogRef(db, db_url).catalog() as catalog:
        try:
            report = find_duplicates(catalog, threshold=threshold, geometric_check=geometric, progress=bar)
        finally:
            bar.stop()
    if html_out:
        with open(html_out, "w", encoding="utf-8") as fh:
            fh.write(duplicates_html(report))
        err_console.print(f"wrote {escape(html_out)}", highlight=False)
    summary = report.to_json()
    if as_json:
        print_json(summary)
        return
    for g in report.groups:
        console.print(f"[bold]{g.kind}[/] keep {escape(g.best.path)} ({g.best.width}×{g.best.height})", highlight=False, soft_wrap=True)
        for m in g.others:
            why = "same bytes" if m.same_bytes_as is not None else f"{m.similarity:.3f}"
            console.print(escape(f"    {why:>10}  {m.path} ({m.width}×{m.height})"), highlight=False, soft_wrap=True)
    for g in report.similar:
        console.print(f"[bold]similar[/] shots, keep all: {escape(g.best.path)} ({g.best.width}×{g.best.height})",
                      highlight=False, soft_wrap=True)
        for m in g.others:
            console.print(escape(f"    {m.similarity:>10.3f}  {m.path} ({m.width}×{m.height})"), highlight=False,
                          soft_wrap=True)
    console.print(f"{summary['exact_groups']} exact and {summary['near_groups']} near-duplicate groups among "
                  f"{report.photos} photos ({summary['exact_copies']} byte-identical copies); "
                  f"{summary['redundant_files']} redundant files, "
                  f"{summary['redundant_bytes'] / 1e6:.1f} MB; {summary['similar_groups']} groups of similar shots "
                  "(not redundant)", highlight=False, soft_wrap=True)


def _print_notice(message: str) -> None:
    err_console.print(f"[yellow]watch[/] {escape(message)}", highlight=False, soft_wrap=True)


def watch_forever(db, db_url, model, device, paths: Sequence[str], batch_size: int, debounce: float,
                  faces: bool = False, regions: str | None = None, max_regions: int | None = None,
                  include_hidden: bool = False, exclude: Sequence[str] = (), ocr: bool = False) -> None:
    """`vsearch index PATHS --watch`: after the first run, re-index what changes until Ctrl-C,
    leaving out what the first run left out (hidden and system folders, ``--exclude``)."""
    from vsearch.watch import watch

    def report(batch) -> None:
        where = ", ".join(batch.paths[:3]) + (f" and {len(batch.paths) - 3} more" if len(batch.paths) > 3 else "")
        if batch.error is not None:
            err_console.print(f"[red]watch[/] {escape(where)}: {escape(str(batch.error))}", highlight=False)
            return
        s = batch.summary
        if s.added or s.moved or s.copied or s.removed or s.failed:
            err_console.print(
                f"[green]watch[/] {escape(where)}: added {s.added}, moved {s.moved}, copied {s.copied}, "
                f"removed {s.removed}, failed {len(s.failed)} ({batch.seconds:.1f}s)", highlight=False)
        for path, reason in s.failed:
            err_console.print(f"  [red]failed[/] {escape(path)}: {escape(reason)}", highlight=False)

    try:
        with CatalogRef(db, db_url).collection(model, device, create=True) as coll:
            err_console.print(f"watching {', '.join(paths)} for changes (Ctrl-C to stop)", highlight=False)
            # catch_up: one more (stat-only) pass once events are being watched, so that nothing
            # written between the first run's scan and the watcher's start is missed
            watch(coll, paths, on_batch=report, debounce=debounce, catch_up=True, batch_size=batch_size,
                  faces=faces, regions=regions, max_regions=max_regions, workers=0, include_hidden=include_hidden,
                  exclude=tuple(exclude), ocr=ocr, on_notice=_print_notice)
    except KeyboardInterrupt:  # Ctrl-C is how watching ends: the catalog is closed (saved) by now
        err_console.print("stopped watching; everything indexed is saved", highlight=False)


def explain_search(coll, hits, query, image, plus, minus, face) -> list:
    """`search --explain`: (explanation, thumbnail JPEG with its overlay) per hit."""
    from vsearch.errors import QueryError
    from vsearch.explain import explain_hits, explained_thumbnail_jpeg, query_vector_for

    if face is not None:
        raise QueryError("--explain works with text and image queries, not --face")
    # a search by read text alone (--text-in) has no query vector: its hits explain by their text boxes
    vector = query_vector_for(coll, query, image, plus, minus) if (query or image or plus or minus) else None
    with progress("explaining", len(hits), "results") as advance:
        explanations = explain_hits(coll, hits, vector, on_hit=advance)
    return [(e, explained_thumbnail_jpeg(h.path, e)) for h, e in zip(hits, explanations)]


def start_background_watch(db, db_url, device: str, paths: Sequence[str], ocr: bool = False):
    """`serve --watch PATH`: index PATHS in a background thread and keep them current (``ocr``:
    and read the text of what arrives, after it is searchable); the server picks new photos up
    when the watcher saves the index. Returns a function that stops it."""
    import threading
    from contextlib import ExitStack

    from vsearch.watch import watch

    opened = ExitStack()  # opened here, so that a bad catalog is an error at once; closed by the thread
    coll = opened.enter_context(CatalogRef(db, db_url).collection("auto", device, create=True))
    stop = threading.Event()

    def report(batch) -> None:
        s = batch.summary
        if batch.error is not None:
            err_console.print(f"[red]watch[/] {', '.join(batch.paths[:3])}: {batch.error}", highlight=False)
        elif s.added or s.moved or s.copied or s.removed or s.failed:
            err_console.print(f"[green]watch[/]: added {s.added}, moved {s.moved}, copied {s.copied}, removed "
                              f"{s.removed}, failed {len(s.failed)}", highlight=False)

    def run() -> None:
        with opened:
            watch(coll, paths, on_batch=report, stop=stop, workers=0, ocr=ocr, on_notice=_print_notice)

    thread = threading.Thread(target=run, name="vsearch-watch", daemon=True)
    thread.start()
    err_console.print(f"watching {', '.join(paths)}: new and changed photos are indexed while serving", highlight=False)

    def stop_watching() -> None:
        stop.set()
        thread.join(timeout=30)

    return stop_watching
