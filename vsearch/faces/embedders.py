"""Face embedders: aligned face chips in, L2-normalised ``float32 (N, D)`` vectors out.

Any object with ``name``, ``dim``, ``chip_size``, ``chip_padding`` and ``embed(chips)`` fits
:class:`FaceEmbedder`. Two kinds ship:

* ``dlib`` — dlib's ResNet (``dlib_face_recognition_resnet_model_v1.dat``, 128-d, 99.38% on LFW
  as published), fed 150x150 chips with 0.25 padding, exactly as dlib's own pipeline does. It runs
  on PyTorch (:mod:`vsearch.faces.dlib_torch`, same weights and outputs, faster); ``dlib-native``
  runs it through dlib itself.
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
        import torch
        from PIL import Image

        pixels = torch.stack([self.encoder.preprocess(Image.fromarray(np.asarray(c, np.uint8))) for c in chips])
        return l2_normalize(self.encoder.encode_pixels(pixels))


def build_embedder(spec: str = "dlib", device: str = "cpu") -> FaceEmbedder:
    """``dlib`` (default), ``dlib-native``, or any encoder spec the registry loads, e.g.
    ``trained:model.pt``."""
    spec = (spec or "dlib").strip()
    if spec in ("dlib", DLIB_RESNET):
        # dlib's network and weights, run by PyTorch (several times faster than dlib-bin's own
        # BLAS-less CPU code; tests check both give the same descriptors)
        from vsearch.faces.dlib_torch import TorchDlibResNetEmbedder

        return TorchDlibResNetEmbedder(device)
    if spec == "dlib-native":  # the same model through dlib itself
        return DlibResNetEmbedder()
    from vsearch.encoders import canonical_spec, load_encoder

    encoder = load_encoder(canonical_spec(spec), device)
    if not hasattr(encoder, "encode_pixels"):
        raise FaceModelError(f"{spec} cannot embed images, so it cannot embed faces")
    return EncoderFaceEmbedder(encoder)
