"""ONNX Runtime sessions that start fast: each tower's optimized graph is saved once, beside its export.

Making a session from an exported model parses the whole protobuf (90 MB for MiniLM) and runs every
graph optimization again: about 0.6 s of a cold text query on a 2-core CPU, several times the query
itself. So the first session of a tower saves ONNX Runtime's optimized graph (the
``optimized_model_filepath`` option) with its weights in an external file, which later sessions map
instead of parsing, and later sessions load that copy without optimizing it again: the text
tower's session starts about 3x faster and the process stays smaller (benchmarks/RESULTS.md).

* The copy is saved at ``ORT_ENABLE_EXTENDED``: those fusions do not depend on the CPU. The layout
  changes of ``ORT_ENABLE_ALL`` (blocked NCHWc convolutions) do, so they are not saved: an image
  tower (convolutions) is loaded at ``ORT_ENABLE_ALL`` to get them back, a text tower (a
  transformer, nothing left to do) with optimizations off. Either way its outputs are bit-identical
  to those of a session on the export itself (``tests/test_onnx.py``).
* It is kept per ONNX Runtime version and machine type (``optimized-ort<version>-<machine>/``),
  written in a temporary folder, synced, and moved in place weights first, so another process (or
  the next start after a power cut) sees either no copy or a whole one.
* A cache that cannot be written (read-only, full) or a damaged copy costs only the speed: the
  session is then made from the export, as before (a damaged copy is removed, to be saved again).
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import uuid

log = logging.getLogger(__name__)

# towers whose graphs have convolutions (EfficientNet, a ViT's patch embedding): their layout
# optimizations are redone at load time
CONVOLUTIONAL_TOWERS = ("image",)


def optimized_dir(directory: str, ort_version: str) -> str:
    """Where the optimized copies of an export's towers live for this ONNX Runtime and machine."""
    return os.path.join(directory, f"optimized-ort{ort_version}-{platform.machine() or 'cpu'}")


def open_session(directory: str, tower: str, threads: int | None = None):
    """An ``InferenceSession`` for ``<directory>/<tower>.onnx`` on the CPU, from its optimized copy
    (saved first if there is none yet). ``threads``: intra-op threads (None: ONNX Runtime's default)."""
    import onnxruntime as ort

    source = os.path.join(directory, f"{tower}.onnx")
    optimized = os.path.join(optimized_dir(directory, ort.__version__), f"{tower}.onnx")
    load_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if tower in CONVOLUTIONAL_TOWERS
                  else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if not os.path.exists(optimized) and os.access(directory, os.W_OK):
        try:
            _save_optimized(ort, source, optimized, tower)
        except Exception as exc:  # noqa: BLE001 - a cache we cannot write only costs start-up time
            log.info("could not save the optimized %s graph in %s (%s); using the export", tower, directory, exc)
    if os.path.exists(optimized):
        try:
            return ort.InferenceSession(optimized, _options(ort, threads, load_level), providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a damaged copy: the export itself still works
            log.warning("optimized %s graph %s unusable (%s); using the export", tower, optimized, exc)
            try:
                os.unlink(optimized)  # the next session saves a good one
            except OSError:
                pass
    return ort.InferenceSession(source, _options(ort, threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                                providers=["CPUExecutionProvider"])


def _options(ort, threads: int | None, level):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = level
    # idle ONNX Runtime threads otherwise spin for a while after each run, taking the cores from
    # torch, decoding workers and other processes (2-core machines notice)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
    return opts


def _save_optimized(ort, source: str, optimized: str, tower: str) -> None:
    """Write the optimized copy through a throwaway session, in a temporary folder beside the
    export, then move its weights and then its graph into place."""
    final_dir = os.path.dirname(optimized)
    tmp = os.path.join(os.path.dirname(final_dir), f".optimizing-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        opts = _options(ort, 1, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        opts.optimized_model_filepath = os.path.join(tmp, f"{tower}.onnx")
        opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{tower}.data")
        opts.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        os.makedirs(final_dir, exist_ok=True)
        if not os.path.exists(optimized):  # another process may have just written the same copy
            weights = os.path.join(tmp, f"{tower}.data")
            if os.path.exists(weights):  # absent when no weight is large enough to go outside
                _sync(weights)
                os.replace(weights, os.path.join(final_dir, f"{tower}.data"))
            _sync(os.path.join(tmp, f"{tower}.onnx"))
            os.replace(os.path.join(tmp, f"{tower}.onnx"), optimized)
            _sync(final_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sync(path: str) -> None:
    """Put a file's bytes (or a folder's entries) on the disk before it is renamed into place:
    after a power cut, a renamed file that was not synced may keep its size but read as zeros on
    some file systems, and a session would load such weights without an error."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
