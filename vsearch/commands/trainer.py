"""``main(argv) -> exit code``: the trainer's commands without a shell (``python -m training``).

The same typer commands as ``vsearch train`` and ``vsearch eval embeddings``, so tests and
scripts exercise exactly what users run. It lives with the commands (not in ``training/``) so
that the trainer library never imports the command line built on top of it.
"""
from __future__ import annotations

import sys
from typing import Sequence


def build_app():
    import typer

    from vsearch.commands.eval import eval_app
    from vsearch.commands.train import train_cmd

    app = typer.Typer(help="vsearch trainer: `train DATA ...` and `eval embeddings DATA --model FILE`.",
                      no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                      rich_markup_mode=None)
    app.command("train")(train_cmd)
    app.add_typer(eval_app, name="eval")
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``train ...`` or ``eval embeddings ...``; returns the exit code (0 ok, 2 bad input, 130 Ctrl-C)."""
    import typer

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = build_app()(args=args, prog_name="python -m training", standalone_mode=False)
    except typer.Exit as exc:  # raised by commands (handle_errors turns library errors into Exit(2))
        return int(exc.exit_code)
    except typer.Abort:
        return 130
    except typer.TyperException as exc:  # usage errors from typer's (vendored) click: bad option, bad choice
        if hasattr(exc, "show"):
            exc.show()
        return int(getattr(exc, "exit_code", 2))
    return int(code) if isinstance(code, int) else 0
