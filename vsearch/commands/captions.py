"""`vsearch captions ...`: caption sets stored and embedded in the catalog."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from vsearch.commands.common import (CatalogRef, DbOpt, DbUrlOpt, console, err_console, escape, handle_errors, json_flag,
                                     plural, print_json, print_rows, print_warning)

captions_app = typer.Typer(help="Caption sets: add them, find the best captions for an image, search captions.",
                           no_args_is_help=True)

SetOpt = Annotated[Optional[str], typer.Option("--set", help="Caption set name (default: all sets / the file name).")]
KOpt = Annotated[int, typer.Option("-k", min=1, help="Number of captions.")]
JsonOpt = Annotated[bool, json_flag("Print JSON.")]


def _print_hits(hits, as_json: bool) -> None:
    if as_json:
        print_json([h.to_json() for h in hits])
        return
    if not hits:
        err_console.print("no captions found")
    # a table on a terminal; piped, rank<TAB>score<TAB>caption as `vsearch search` writes its hits
    print_rows(["#", "score", "caption"], [[str(h.rank), f"{h.score:.3f}", h.text] for h in hits],
               justify=["right", "right", "left"])


@captions_app.command("add")
@handle_errors
def add(
    file: Annotated[str, typer.Argument(help="Captions: .txt (one per line), .csv/.tsv (caption[, id, image]) or .jsonl.")],
    caption_set: SetOpt = None,
    db: DbOpt = None,
    db_url: DbUrlOpt = None,
    as_json: Annotated[bool, json_flag("Print JSON: {added, skipped_empty, missing_images}.")] = False,
) -> None:
    """Store and embed a caption file as a caption set."""
    from vsearch.captions import add_captions

    with CatalogRef(db, db_url).collection() as coll:
        summary = add_captions(coll, file, caption_set)
    if as_json:
        print_json(summary.to_json())
    (err_console if as_json else console).print(
        f"added {plural(summary.added, 'caption')}"
        + (f", skipped {plural(summary.skipped_empty, 'empty line')}" if summary.skipped_empty else ""))
    if summary.missing_images:
        n = len(summary.missing_images)
        print_warning(f"{plural(n, 'caption')} {'refers' if n == 1 else 'refer'} to images that do not exist, e.g. "
                      f"{summary.missing_images[0]} (captions kept)")


@captions_app.command("for-image")
@handle_errors
def for_image(image: Annotated[str, typer.Argument(help="An image file or an http(s) URL.")], k: KOpt = 5, caption_set: SetOpt = None,
              as_json: JsonOpt = False, db: DbOpt = None, db_url: DbUrlOpt = None) -> None:
    """The best captions for an image."""
    from vsearch.captions import captions_for_image

    from vsearch.fetch import local_image

    with local_image(image) as image_file, CatalogRef(db, db_url).collection() as coll:
        hits = captions_for_image(coll, image_file, k, caption_set)
    _print_hits(hits, as_json)


@captions_app.command("search")
@handle_errors
def search(text: Annotated[str, typer.Argument(help="Text to match captions against.")], k: KOpt = 5,
           caption_set: SetOpt = None, as_json: JsonOpt = False, db: DbOpt = None, db_url: DbUrlOpt = None) -> None:
    """Captions similar to a text."""
    from vsearch.captions import search_captions

    with CatalogRef(db, db_url).collection() as coll:
        hits = search_captions(coll, text, k, caption_set)
    _print_hits(hits, as_json)


@captions_app.command("list")
@handle_errors
def list_sets(db: DbOpt = None, db_url: DbUrlOpt = None,
              as_json: Annotated[bool, json_flag("Print JSON: [{set, captions}].")] = False) -> None:
    """Caption sets in the catalog, with their sizes."""
    from vsearch.captions import caption_sets

    with CatalogRef(db, db_url).catalog() as catalog:
        sets = caption_sets(catalog)
    if as_json:
        print_json([{"set": name, "captions": n} for name, n in sets])
        return
    print_rows(["set", "captions"], [[name, str(n)] for name, n in sets], justify=["left", "right"])


@captions_app.command("remove")
@handle_errors
def remove(caption_set: Annotated[str, typer.Argument(help="Set name.")], db: DbOpt = None, db_url: DbUrlOpt = None) -> None:
    """Delete a caption set (rows and vectors)."""
    from vsearch.captions import remove_caption_set

    with CatalogRef(db, db_url).catalog() as catalog:
        n = remove_caption_set(catalog, caption_set)
    console.print(f"removed {plural(n, 'caption')}")
    if n == 0:
        raise typer.Exit(1)
