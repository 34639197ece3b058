"""``vsearch models export DIR``: every model a CPU needs, as files an install without torch runs."""
from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from vsearch.commands.common import JsonOpt, console, escape, handle_errors, print_json

models_app = typer.Typer(help="Models as files: export them on an install with torch, run them anywhere.",
                         no_args_is_help=True, rich_markup_mode=None)


@models_app.command("export")
@handle_errors
def export(
    directory: Annotated[str, typer.Argument(help="Folder to write the models and manifest.json into (created if missing).")],
    model: Annotated[Optional[List[str]], typer.Option(
        "--model", "-m", help="A model to export (repeat for several): packaged | clip:ARCH/TAG | "
        "clip:ARCH@WEIGHTS.pt | trained:FILE. Default: the packaged model, and the CLIP model whose weights are here.")] = None,
    faces: Annotated[bool, typer.Option("--faces/--no-faces", help="Also export dlib's face embedder and files.")] = True,
    precision: Annotated[str, typer.Option("--precision", help="fp32 | int8 (CLIP models only).")] = "fp32",
    as_json: JsonOpt = False,
) -> None:
    """Export models to ONNX into DIRECTORY with a manifest (names, SHA-256 digests, fidelity against
    torch). Needs torch; an install without it runs them with VSEARCH_MODEL_DIR=DIRECTORY (or --models)."""
    from vsearch.modelfiles import export_models

    results = export_models(directory, model or None, faces=faces, precision=precision)
    if as_json:
        print_json([r.to_json() for r in results])
    else:
        for r in results:
            if r.status == "exported":
                cosines = " ".join(f"{k.split('_')[0]} {v}" for k, v in r.fidelity.items() if k.endswith("_min_cosine"))
                console.print(f"exported {escape(r.name)} {r.precision}: {r.bytes / 1e6:.1f} MB"
                              + (f", min cosine vs torch {cosines}" if cosines else ""), highlight=False)
            else:
                console.print(f"[red]refused[/] {escape(r.name)} {r.precision}: {escape(r.reason)}", highlight=False)
        console.print(f"run on an install without torch with VSEARCH_MODEL_DIR={escape(directory)} "
                      f"(or vsearch --models {escape(directory)} ...)", highlight=False)
    if any(r.status != "exported" for r in results):
        raise typer.Exit(1)
