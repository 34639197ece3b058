"""Options and error handling shared by every CLI command."""
from __future__ import annotations

import functools
import logging
import os
from typing import Annotated, Optional

import typer
from rich.console import Console

from vsearch.errors import VSearchError

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # messages stay one greppable line

DbOpt = Annotated[
    Optional[str],
    typer.Option("--db", help="Catalog folder (index files, and the SQLite file). Default: $VSEARCH_DB "
                 "or ~/.local/share/vsearch.", show_default=False),
]
DbUrlOpt = Annotated[
    Optional[str],
    typer.Option("--db-url", envvar="VSEARCH_DB_URL",
                 help="SQLAlchemy URL for the metadata instead of SQLite, e.g. postgresql+psycopg://u:p@host/db."),
]
ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="auto | packaged | clip:ARCH/TAG | clip:ARCH@WEIGHTS.pt | trained:FILE. "
                 "An existing catalog keeps the model it was built with."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu | cuda | auto")]
RuntimeOpt = Annotated[
    Optional[str],
    typer.Option("--runtime", envvar="VSEARCH_RUNTIME", show_default=False,
                 help="torch | onnx. Default: onnx on a CPU (exported once into a cache), torch on CUDA."),
]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="fp32 | int8 (CLIP models on onnx only).")]


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def handle_errors(fn):
    """Turn library exceptions into a one-line message and exit code 2 (only the CLI does this)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VSearchError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: everything committed so far is kept; run the same "
                              "command again to resume")
            raise typer.Exit(130) from None

    return wrapper


def setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False)], force=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def open_collection(db, db_url, model="auto", device="cpu", create: bool | None = True, runtime=None,
                    precision=None):
    """``create=None``: use the catalog if one exists at ``db``, else an in-memory-only view (a
    catalog in a temporary folder) so that commands like `classify` work without indexing first."""
    import tempfile

    import vsearch
    from vsearch.catalog import DB_FILENAME

    directory = db or vsearch.default_db_dir()
    if create is None:
        if db_url or os.path.exists(os.path.join(directory, DB_FILENAME)):
            create = False
        else:
            import atexit
            import shutil

            directory = tempfile.mkdtemp(prefix="vsearch-")
            atexit.register(shutil.rmtree, directory, True)
            create = True
    return vsearch.open(directory, model=model, url=db_url, device=resolve_device(device), create=create,
                        runtime=runtime, precision=precision)
