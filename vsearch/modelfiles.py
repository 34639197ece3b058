"""Models as files: export every model a CPU needs into one folder, and say which models an
install can run and from where.

``export_models(DIR)`` (an install with torch) makes each model's ONNX export through the usual
loaders — the export into the ONNX cache, checked against torch on real photos and texts
(:mod:`vsearch.encoders.onnx_export`) — then copies it into ``DIR`` and lists it in
``DIR/manifest.json`` with its files' SHA-256 and fidelity figures (:mod:`vsearch.encoders.model_dir`).
An install without torch runs them from there (``VSEARCH_MODEL_DIR=DIR``).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field

from vsearch.encoders.model_dir import (DLIB_FILES, MODEL_DIR_ENV, ModelEntry, add_model, model_dir, read_manifest,
                                        torch_installed)
from vsearch.errors import VSearchError


class ExportError(VSearchError):
    """The model folder cannot be written, or this install cannot export (no torch)."""


@dataclass(frozen=True)
class ModelExport:
    """What became of one model: ``exported`` (with its fidelity figures against torch) or
    ``refused`` (with the reason; it keeps running on torch where torch is installed)."""

    name: str
    precision: str
    status: str
    reason: str = ""
    fidelity: dict = field(default_factory=dict)
    bytes: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _without_model_dir():
    """Exports are made from the weights, never from another model folder."""
    saved = os.environ.pop(MODEL_DIR_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[MODEL_DIR_ENV] = saved


def default_specs() -> list[str]:
    """The models a plain ``vsearch models export DIR`` writes: the packaged model, and the CLIP
    model whose weights are on this machine (what ``--model auto`` would pick), if any."""
    from vsearch.encoders import PACKAGED, local_clip_spec

    with _without_model_dir():
        clip = local_clip_spec()
    return [PACKAGED] + ([clip] if clip else [])


def export_models(directory: str, specs: list[str] | None = None, faces: bool = True,
                  precision: str = "fp32") -> list[ModelExport]:
    """Export ``specs`` (default :func:`default_specs`) and, with ``faces``, dlib's face embedder
    and its detector and landmark files into ``directory`` (created if missing)."""
    if not torch_installed():
        raise ExportError("exporting models needs torch, which this install lacks: pip install 'vsearch[torch]'")
    directory = os.path.abspath(os.path.expanduser(directory))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ExportError(f"{directory} is a file: give a folder to export the models into")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {directory}: {exc.strerror or exc}") from None
    results = []
    with _without_model_dir():
        for spec in specs or default_specs():
            results.append(_export_encoder(directory, spec, precision))
        if faces:
            results.extend(_export_faces(directory))
    return results


def _export_encoder(directory: str, spec: str, precision: str) -> ModelExport:
    from vsearch.encoders import canonical_spec, load_encoder
    from vsearch.encoders.onnx_encoder import OnnxEncoder

    spec = canonical_spec(spec)
    if spec == "auto":
        raise ExportError("name the model to export (packaged, clip:ARCH/TAG, clip:ARCH@FILE, trained:FILE), not auto")
    if spec.startswith("trained:"):
        # exported here only: on an install with torch, trained models keep running on torch
        from vsearch.encoders import _torch_factory
        from vsearch.encoders.onnx_loader import load_onnx

        encoder = load_onnx(spec, _torch_factory(spec), precision)
    else:
        encoder = load_encoder(spec, "cpu", runtime="onnx", precision=precision)
    if not isinstance(encoder, OnnxEncoder) or encoder.precision != precision:
        reason = getattr(encoder, "runtime_notice", None) or f"{type(encoder).__name__} models run on torch only"
        return ModelExport(spec, precision, "refused", reason)
    entry = add_model(directory, spec, precision, encoder.kind, encoder.directory, encoder.meta.get("fidelity"))
    return _exported(entry)


def _export_faces(directory: str) -> list[ModelExport]:
    from vsearch.faces.embedders import OnnxDlibResNetEmbedder, load_dlib_resnet
    from vsearch.faces.models import DLIB_RESNET, MMOD, RESNET, SHAPE_5, dlib_model_path

    out = []
    embedder = load_dlib_resnet("cpu", "onnx")
    if isinstance(embedder, OnnxDlibResNetEmbedder):
        import json

        with open(os.path.join(embedder.directory, "meta.json")) as fh:
            fidelity = json.load(fh).get("fidelity", {})
        out.append(_exported(add_model(directory, DLIB_RESNET, "fp32", "face", embedder.directory, fidelity)))
    else:
        out.append(ModelExport(DLIB_RESNET, "fp32", "refused", getattr(embedder, "runtime_notice", "")))
    source = os.path.dirname(dlib_model_path(SHAPE_5))
    names = [n for n in (SHAPE_5, RESNET, MMOD) if os.path.dirname(dlib_model_path(n)) == source]
    out.append(_exported(add_model(directory, DLIB_FILES, "fp32", "dlib", source, files=names)))
    return out


def _exported(entry: ModelEntry) -> ModelExport:
    size = sum(os.path.getsize(os.path.join(entry.folder, rel)) for rel in entry.files)
    return ModelExport(entry.name, entry.precision, "exported", fidelity=entry.fidelity, bytes=size)


def available_models() -> dict[str, str]:
    """For ``vsearch doctor``: each model of the model folder and where it is, or why there is none."""
    folder = model_dir()
    if folder is None:
        where = "torch exports models into the ONNX cache on first use" if torch_installed() else \
            "none: this install has no torch, so its models come from a folder `vsearch models export DIR` wrote"
        return {"model folder ($VSEARCH_MODEL_DIR)": f"not set ({where})"}
    out = {"model folder ($VSEARCH_MODEL_DIR)": folder}
    try:
        entries = read_manifest(folder)
    except VSearchError as exc:
        out["models"] = f"unusable: {exc}"
        return out
    for entry in entries:
        label = entry.name if entry.precision == "fp32" else f"{entry.name} ({entry.precision})"
        fid = entry.fidelity
        cosines = " ".join(f"{k.split('_')[0]} {v}" for k, v in fid.items() if k.endswith("_min_cosine"))
        out[label] = f"{entry.folder}" + (f" (min cosine vs torch: {cosines})" if cosines else "")
    return out
