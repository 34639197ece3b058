"""The encoder contract every model in vsearch follows.

An encoder turns images and/or texts into L2-normalised ``float32`` arrays of shape ``(N, D)``
so that an inner product is a cosine similarity, which is what the FAISS indexes rank by.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is not imported at run time: the ONNX query path works without it
    import torch


@dataclass(frozen=True)
class EncoderInfo:
    """What the catalog records about the model that filled it."""

    name: str  # canonical spec, e.g. "clip:ViT-B-32@/w.pt" or "packaged:effnet-lite0+minilm"
    dim: int
    weights: str  # where the weights came from, for `vsearch doctor` and error messages
    image_size: int


@runtime_checkable
class ImageEncoder(Protocol):
    info: EncoderInfo

    def preprocess(self, image: Image.Image) -> "torch.Tensor | np.ndarray":
        """RGB PIL image -> (3, H, W) float tensor (or array, for ONNX) ready for :meth:`encode_pixels`.

        Runs in data-loader worker processes, so it must not touch the model.
        """

    def encode_pixels(self, pixels: "torch.Tensor | np.ndarray") -> np.ndarray:
        """(B, 3, H, W) batch -> (B, D) L2-normalised float32."""


@runtime_checkable
class TextEncoder(Protocol):
    info: EncoderInfo

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """N strings -> (N, D) L2-normalised float32."""


class Encoder(ImageEncoder, TextEncoder, Protocol):
    """A model that puts images and texts into one space (CLIP, the packaged ConSE model)."""


def l2_normalize(x: "np.ndarray | torch.Tensor", eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length, returned as contiguous float32 numpy (FAISS wants exactly that)."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, eps), dtype=np.float32)


def encode_images(encoder: ImageEncoder, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
    """Convenience for the Python API: PIL images -> (N, D), batched."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pixels = stack_pixels([encoder.preprocess(im) for im in chunk])
        out.append(encoder.encode_pixels(pixels))
    if not out:
        return np.zeros((0, encoder.info.dim), dtype=np.float32)
    return np.concatenate(out)


def stack_pixels(items: Sequence[Any]):
    """A batch from preprocessed images: numpy arrays stay numpy, torch tensors stay torch."""
    if items and hasattr(items[0], "detach"):
        import torch

        return torch.stack(list(items))
    return np.stack(items)


Preprocess = Callable[[Image.Image], Any]
