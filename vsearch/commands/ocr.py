"""`vsearch ocr`: the text in one image, or the text of a whole catalog read without embedding
anything again; and what `vsearch index --ocr` shows of its text-reading pass."""
from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from vsearch.commands.common import (CatalogRef, DbOpt, DbUrlOpt, RateProgress, console, err_console, escape, handle_errors,
                                     json_flag, print_json)


def text_progress(enabled: bool) -> RateProgress:
    """Progress bar of the text-reading pass: photos read, photos/s, ETA."""
    return RateProgress("reading text", enabled, rate_digits=2)


def print_text_summary(summary: dict) -> None:
    """One line for a text-reading pass (a ``ReadSummary.to_json()``), then its failures."""
    from vsearch.fsutil import display_path

    err_console.print(
        f"[green]text read[/] in {summary['seconds']:.1f}s: {summary['read']} photos read "
        f"({summary['with_text']} with text, {summary['lines']} lines; {summary['gated']} without text "
        f"by the gate), {summary['already']} read before, failed {len(summary['failed'])}"
        + (f" — {summary['images_per_second']:.2f} img/s" if summary["read"] else ""), highlight=False)
    for failure in summary["failed"]:
        err_console.print(f"  [red]failed[/] {escape(display_path(failure['path']))}: {escape(failure['reason'])}",
                          highlight=False, soft_wrap=True)


@handle_errors
def ocr_cmd(
    photos: Annotated[Optional[List[str]], typer.Argument(help="Image files to read the text of (nothing is stored).")] = None,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="If another process is writing to the catalog, wait for it.")] = False,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="With PHOTOS: read them even where the quick look finds no text.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[bool, json_flag("PHOTOS: [{path, lines: [{text, box, score}]}]; a catalog: the pass's counts.")] = False,
) -> None:
    """Read the text in photos: print it for PHOTOS, or, without PHOTOS, read and store the text of
    every photo of the catalog that needs it (never read, or changed since), without embedding
    anything again. Safe to interrupt: run it again and it resumes.

    Reads Chinese and English (PP-OCRv4 models, offline); search the text with
    `vsearch search --text-in WORD`."""
    if photos:
        _print_photos(photos, gate=not no_gate, as_json=as_json)
        return
    with CatalogRef(db, db_url).collection(create=False, load_model=False) as coll:
        bar = text_progress(not quiet)
        try:
            summary = coll.read_text(progress=bar, wait=wait, on_wait=lambda who: err_console.print(
                f"waiting for the catalog: another process is writing to it ({who})", highlight=False))
        finally:
            bar.stop()
    print_text_summary(summary.to_json())
    if as_json:
        print_json(summary.to_json())


def _print_photos(photos: List[str], gate: bool, as_json: bool) -> None:
    from vsearch.ocr.engine import TextReader

    reader = TextReader()
    results = [(path, reader.read_file(path, gate=gate)) for path in photos]  # a bad file: one line, exit 2
    if as_json:
        print_json([{"path": path, "lines": [line.to_json() for line in result.lines]} for path, result in results])
        return
    for path, result in results:
        if len(photos) > 1:
            console.print(f"[bold]{escape(path)}[/]", highlight=False)
        if not result.lines:
            err_console.print(f"no text found in {escape(path)}", highlight=False)
        for line in result.lines:
            console.print(escape(line.text), highlight=False, soft_wrap=True)
