"""The one image transform shared by training, evaluation and the exported ``trained:`` encoder.

It is split in two halves so the trainer can cache the expensive, deterministic half:

* :meth:`Preprocessing.to_uint8`: decode-side geometry (resize the short side, centre-crop) to a
  ``uint8 (3, S, S)`` tensor, 4x smaller than float pixels, computed once per image;
* :meth:`Preprocessing.normalize`: ``uint8 (B, 3, S, S)`` -> float, mean/std normalised, per batch.

``Preprocessing(image)`` runs both, which is what the encoder protocol's ``preprocess`` means.
The instance is a plain frozen dataclass, so it pickles cheaply into data-loader workers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from PIL import Image

from training.errors import TrainingConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    image_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Fraction of the resized short side kept by the centre crop. 1.0 keeps the whole short side
    # (right for digits, faces and product shots framed by the user); ImageNet evaluation uses 0.875.
    crop_pct: float = 1.0

    def __post_init__(self) -> None:
        if self.image_size < 4:
            raise TrainingConfigError(f"image size must be at least 4 pixels, got {self.image_size}")
        if not 0.1 <= self.crop_pct <= 1.0:
            raise TrainingConfigError(f"crop_pct must be in [0.1, 1], got {self.crop_pct}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise TrainingConfigError("mean and std need three values each, std positive")

    def to_uint8(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> ``uint8 (3, S, S)``: short side resized to S / crop_pct, centre crop S."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        if image.mode != "RGB":
            image = image.convert("RGB")
        short = int(round(self.image_size / self.crop_pct))
        if min(image.size) != short:
            image = TF.resize(image, short, interpolation=InterpolationMode.BICUBIC, antialias=True)
        image = TF.center_crop(image, [self.image_size, self.image_size])
        return TF.pil_to_tensor(image)  # (3, S, S) uint8

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """``uint8 (..., 3, S, S)`` -> float32 normalised with this transform's mean and std."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=pixels.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=pixels.device).view(3, 1, 1)
        return (pixels.float() / 255.0 - mean) / std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.normalize(self.to_uint8(image))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(image_size=int(d["image_size"]), mean=tuple(float(x) for x in d["mean"]),
                   std=tuple(float(x) for x in d["std"]), crop_pct=float(d.get("crop_pct", 1.0)))
