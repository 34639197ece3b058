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
from vsearch.faces.models import RESNET, dlib_model_path, import_dlib

DLIB_RESNET = "dlib:resnet_v1"
# dlib's customary rule is "same person if the Euclidean distance of the raw descriptors is below
# 0.6". vsearch compares unit vectors by cosine, and for raw descriptors of lengths a and b the rule
# is cos > (a^2 + b^2 - 0.36) / (2ab). On real photos the raw length has a median of 1.43 (1.29-1.63
# over 191 photos of 42 people, longer for women; 1.37-1.45 on the test photos, see
# benchmarks/RESULTS.md): for two descriptors of the median length that is cos 0.912, and pairs of
# unequal length need more (1.38 against 1.48: 0.914). The default is 0.915: not looser than dlib's
# own rule for pairs around the median length (long descriptors, 1.55 and more, make dlib's rule
# stricter still). The earlier 0.907 (from lengths of 1.39) accepted about 4.7 times as many
# impostor pairs as dlib at 0.6 on those 191 photos.
DLIB_MEDIAN_DESCRIPTOR_NORM = 1.43


def dlib_rule_as_cosine(norm_a: float, norm_b: float, distance: float = 0.6) -> float:
    """The cosine at which raw descriptors of these lengths are exactly ``distance`` apart."""
    return (norm_a ** 2 + norm_b ** 2 - distance ** 2) / (2.0 * norm_a * norm_b)


DLIB_DEFAULT_THRESHOLD = 0.915  # dlib_rule_as_cosine(1.38, 1.48) = 0.9144, rounded up


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
