"""Load a model on ONNX Runtime: from the cache when it was exported before (no torch imported),
else export it now from the torch model, or fall back to torch with a notice when the export is
refused. The notice is left on the returned encoder as ``runtime_notice`` for the CLI to print."""
from __future__ import annotations

import logging
from typing import Callable

from vsearch.encoders.onnx_encoder import OnnxEncoder
from vsearch.encoders.runtime import cached_export, export_dir, record_weights, weights_files

log = logging.getLogger(__name__)


def load_onnx(spec: str, make_torch: Callable[[str], object], precision: str = "fp32"):
    directory, meta = cached_export(spec, precision)
    if meta is not None and not meta.get("refused"):
        return OnnxEncoder(directory, meta)
    if meta is not None:  # refused before: do not pay for a failing export on every start
        return _fallback(spec, make_torch, precision, meta["refused"], directory)

    torch_encoder = make_torch("cpu")
    from vsearch.encoders.onnx_export import ExportRefused, export_model

    files = weights_files(spec) or _resolved_weights(torch_encoder)
    directory = export_dir(spec, precision, files)
    if directory is None:
        return _notice(torch_encoder, f"runtime: torch for {spec} (its weights file is not known, nothing to cache)")
    try:
        import os

        os.makedirs(os.path.dirname(directory), exist_ok=True)
        log.warning("exporting %s to ONNX (once) into %s", spec, directory)
        meta = export_model(spec, torch_encoder, directory, precision)
    except ExportRefused as exc:
        return _fallback(spec, lambda _device: torch_encoder, precision, str(exc), directory)
    except OSError as exc:  # a cache folder that cannot be written (read-only, full): torch still runs
        where = exc.filename or directory
        return _notice(torch_encoder, f"runtime: torch for {spec}: cannot write the ONNX cache at {where} "
                                      f"({exc.strerror or exc}; set VSEARCH_ONNX_CACHE to a writable folder)")
    if not spec.startswith("packaged:") and "@" not in spec:
        record_weights(spec, files)
    return OnnxEncoder(directory, meta)


def _fallback(spec, make_torch, precision, reason: str, directory: str):
    if precision == "int8":  # int8 did not hold on these weights: fp32 ONNX still does
        enc = load_onnx(spec, make_torch, "fp32")
        return _notice(enc, f"runtime: onnx fp32 for {spec}: int8 refused ({reason})")
    return _notice(make_torch("cpu"), f"runtime: torch for {spec}: ONNX export refused ({reason}; "
                                      f"delete {directory} to try again)")


def _notice(encoder, text: str):
    log.warning("%s", text)
    try:
        encoder.runtime_notice = text
    except AttributeError:
        pass
    return encoder


def _resolved_weights(encoder) -> list[str] | None:
    import os

    path = getattr(encoder.info, "weights", None)
    return [path] if path and os.path.isfile(path) else None
