"""Commands for living photo libraries: `vsearch duplicates`, and the checks and loops behind
`search --explain` and `index --watch`."""
from __future__ import annotations

import json
from typing import Annotated, Optional, Sequence

import typer

from vsearch.commands.common import DbOpt, DbUrlOpt, console, err_console, handle_errors, open_collection


def check_weighted_terms(plus: Sequence[str], minus: Sequence[str]) -> None:
    """``--plus``/``--minus`` terms: a text, or ``text=WEIGHT`` with a number. ``night=abc`` is a
    typo for a weight, not a text to search for, so it is refused."""
    from vsearch.errors import QueryError

    for option, terms in (("--plus", plus), ("--minus", minus)):
        for term in terms:
            head, sep, tail = term.rpartition("=")
            if not sep:
                continue
            try:
                float(tail)
            except ValueError:
                raise QueryError(f"{option} {term!r}: the weight after '=' must be a number, "
                                 f"e.g. {head.strip() or 'night'}=0.5") from None
            if not head.strip():
                raise QueryError(f"{option} {term!r}: no text before '='")
