"""Face embedders: aligned face chips in, L2-normalised ``float32 (N, D)`` vectors out.

Any object with ``name``, ``dim``, ``chip_size``, ``chip_padding`` and ``embed(chips)`` fits
:class:`FaceEmbedder`. Two kinds ship:

* ``dlib`` — dlib's ResNet (``dlib_face_recognition_resnet_model_v1.dat``, 128-d, 99.38% on LFW
  as published), fed 150x150 chips with 0.25 padding, exactly as dlib's own pipeline does. It runs
  on ONNX Runtime on a CPU and on PyTorch on CUDA (:mod:`vsearch.faces.dlib_torch`, same weights
  and outputs, faster; ``VSEARCH_RUNTIME`` or ``runtime=`` chooses); ``dlib-native`` runs it
  through dlib itself.
* any image encoder spec of the encoder registry, e.g. ``trained:model.pt`` written by
  ``vsearch train``: the chip is handed to the encoder's own ``preprocess``.

The name is what the catalog records for the face spaces, and :func:`build_embedder` turns it
back into the embedder, so a catalog always compares faces with the model that filled it.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from vsearch.encoders.base import l2_normalize
from vsearch.faces.errors import FaceModelError
from vsearch.faces.models import (  # noqa: F401  (the dlib model's name and threshold, re-exported)
    DLIB_DEFAULT_THRESHOLD, DLIB_MEDIAN_DESCRIPTOR_NORM, DLIB_RESNET, RESNET, dlib_model_path,
    dlib_rule_as_cosine, import_dlib)


@runtime_checkable
class FaceEmbedder(Protocol):
    name: str
    dim: int
    chip_size: int
    chip_padding: float
    default_threshold: float  # score at or above which two faces count as one person, uncalibrated

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """N chips of (chip_size, chip_size, 3) uint8 RGB -> (N, dim) float32, unit rows."""


class DlibResNetEmbedder:
    name = DLIB_RESNET
    dim = 128
    chip_size = 150
    chip_padding = 0.25
    default_threshold = DLIB_DEFAULT_THRESHOLD

    def __init__(self):
        dlib = import_dlib()
        self._model = dlib.face_recognition_model_v1(dlib_model_path(RESNET))

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        batch = [np.ascontiguousarray(c, dtype=np.uint8) for c in chips]
        # dlib's descriptors are not unit length (about 1.4 here); vsearch compares unit vectors
        # by inner product, which keeps the ranking of dlib's Euclidean distance for equal norms.
        return l2_normalize(np.asarray(self._model.compute_face_descriptor(batch), dtype=np.float32))


class EncoderFaceEmbedder:
    """Adapter: an image encoder of the registry (a ``trained:`` metric-learning model) as a face
    embedder. The chip is cut at ``chip_size`` and the encoder resizes and normalises it itself."""

    chip_padding = 0.25
    # a trained model has no published operating point: `vsearch faces calibrate` gives it one
    default_threshold = 0.5

    def __init__(self, encoder, chip_size: int = 150):
        self.encoder = encoder
        self.name = encoder.info.name
        self.dim = encoder.info.dim
        self.chip_size = chip_size

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        from PIL import Image

        from vsearch.encoders.base import stack_pixels

        pixels = stack_pixels([self.encoder.preprocess(Image.fromarray(np.asarray(c, np.uint8))) for c in chips])
        return l2_normalize(self.encoder.encode_pixels(pixels))


class OnnxDlibResNetEmbedder:
    """The dlib ResNet exported from :class:`~vsearch.faces.dlib_torch.DlibFaceResNet` and run by
    ONNX Runtime: same weights, chips and name, about 1.5x faster per chip than torch on a CPU
    (benchmarks/RESULTS.md), and no torch in the process once the export is cached."""

    runtime = "onnx"
    dim = 128
    chip_size = 150
    chip_padding = 0.25
    default_threshold = DLIB_DEFAULT_THRESHOLD

    def __init__(self, directory: str, threads: int | None = 1):
        import os

        import onnxruntime as ort

        self.name = DLIB_RESNET
        self.directory = directory
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # one thread per call, as the torch embedder: on a shared 2-core machine more threads per
        # call only wait for each other; concurrent calls use the other core. No idle spinning.
        if threads:
            opts.intra_op_num_threads = threads
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(os.path.join(directory, "face.onnx"), opts,
                                             providers=["CPUExecutionProvider"])

    def raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.stack([np.asarray(c, dtype=np.uint8) for c in chips])
        return self._session.run(None, {"chips": batch})[0].astype(np.float32, copy=False)

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(self.raw(chips))


def load_dlib_resnet(device: str = "cpu", runtime: str | None = None) -> FaceEmbedder:
    """dlib's ResNet on the runtime :func:`~vsearch.encoders.runtime.choose_runtime` picks: ONNX
    Runtime on a CPU, exported once into the ONNX cache (keyed by the weights file's hash) and kept
    only if it matches torch on real face chips; torch otherwise, with ``runtime_notice`` set."""
    import json
    import logging
    import os

    from vsearch.encoders.runtime import choose_runtime, export_dir

    if choose_runtime(device, runtime) == "torch":
        from vsearch.faces.dlib_torch import TorchDlibResNetEmbedder

        return TorchDlibResNetEmbedder(device)
    from vsearch.encoders.model_dir import find_model, torch_installed

    exported = find_model(DLIB_RESNET)  # the model folder ($VSEARCH_MODEL_DIR), digests checked
    if exported is not None:
        return OnnxDlibResNetEmbedder(exported.folder)
    directory = export_dir(DLIB_RESNET, "fp32", [dlib_model_path(RESNET)])
    try:
        with open(os.path.join(directory, "meta.json")) as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        meta = None
    if meta is not None and not meta.get("refused"):
        return OnnxDlibResNetEmbedder(directory)
    if not torch_installed():  # the same network through dlib itself: slower, no export needed
        native = DlibResNetEmbedder()
        native.runtime_notice = (f"runtime: dlib for {DLIB_RESNET} (no ONNX export of it here; `vsearch models "
                                 "export DIR` on an install with torch makes one, several times faster)")
        logging.getLogger(__name__).warning("%s", native.runtime_notice)
        return native
    from vsearch.faces.dlib_torch import TorchDlibResNetEmbedder

    torch_embedder = TorchDlibResNetEmbedder("cpu")
    reason = meta.get("refused") if meta else None
    if reason is None:
        from vsearch.encoders.onnx_export import ExportRefused, export_face_model

        logging.getLogger(__name__).warning("exporting %s to ONNX (once) into %s", DLIB_RESNET, directory)
        try:
            export_face_model(torch_embedder.model, directory, DLIB_RESNET)
            return OnnxDlibResNetEmbedder(directory)
        except ExportRefused as exc:
            reason = str(exc)
    notice = f"runtime: torch for {DLIB_RESNET}: ONNX export refused ({reason}; delete {directory} to try again)"
    logging.getLogger(__name__).warning("%s", notice)
    torch_embedder.runtime_notice = notice
    return torch_embedder


def build_embedder(spec: str = "dlib", device: str = "cpu", runtime: str | None = None) -> FaceEmbedder:
    """``dlib`` (default), ``dlib-native``, or any encoder spec the registry loads, e.g.
    ``trained:model.pt``. ``runtime`` (torch, onnx, auto; default ``VSEARCH_RUNTIME``) chooses
    what runs the dlib ResNet."""
    spec = (spec or "dlib").strip()
    if spec in ("dlib", DLIB_RESNET):
        # dlib's network and weights, run by ONNX Runtime or PyTorch (several times faster than
        # dlib-bin's own BLAS-less CPU code; tests check all give the same descriptors)
        return load_dlib_resnet(device, runtime)
    if spec == "dlib-native":  # the same model through dlib itself
        return DlibResNetEmbedder()
    from vsearch.encoders import canonical_spec, load_encoder

    encoder = load_encoder(canonical_spec(spec), device)
    if not hasattr(encoder, "encode_pixels"):
        raise FaceModelError(f"{spec} cannot embed images, so it cannot embed faces")
    return EncoderFaceEmbedder(encoder)
