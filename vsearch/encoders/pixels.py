"""Image preprocessing in numpy and Pillow, equal to the torchvision transforms the models were
trained with (resize the short side, centre-crop, scale to [0, 1], normalise), so that a query
image needs no torch.

:func:`transform_from_torchvision` reads a torchvision ``Compose`` once, at export, into a plain
description that is stored next to the exported model; a transform it does not know is refused
rather than approximated.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

# torchvision's InterpolationMode values -> Pillow resampling filters (what torchvision calls for PIL input)
_PIL_FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


class UnsupportedTransform(ValueError):
    """A preprocessing step this module cannot reproduce exactly."""


@dataclass(frozen=True)
class ImageTransform:
    resize: int  # the short side is scaled to this
    crop: tuple[int, int]  # (height, width) of the centre crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def __call__(self, image: Image.Image) -> np.ndarray:
        """RGB PIL image -> (3, H, W) float32, as torchvision's Resize/CenterCrop/ToTensor/Normalize."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        image = self._resize(image)
        pixels = np.asarray(self._centre_crop(image), dtype=np.uint8)
        x = pixels.astype(np.float32) / np.float32(255)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def _resize(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        if short == self.resize:  # torchvision leaves such an image untouched
            return image
        new_short, new_long = self.resize, int(self.resize * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        return image.resize(size, _PIL_FILTERS[self.interpolation])

    def _centre_crop(self, image: Image.Image) -> Image.Image:
        ch, cw = self.crop
        w, h = image.size
        if cw > w or ch > h:  # torchvision pads with black first, then crops
            left, top = (cw - w) // 2 if cw > w else 0, (ch - h) // 2 if ch > h else 0
            padded = Image.new("RGB", (max(w, cw), max(h, ch)))
            padded.paste(image, (left, top))
            image, (w, h) = padded, padded.size
        top = int(round((h - ch) / 2.0))
        left = int(round((w - cw) / 2.0))
        return image.crop((left, top, left + cw, top + ch))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ImageTransform":
        return cls(int(d["resize"]), tuple(d["crop"]), tuple(d["mean"]), tuple(d["std"]), d["interpolation"])


def transform_from_torchvision(compose) -> ImageTransform:
    """The :class:`ImageTransform` doing what a torchvision ``Compose`` does, or UnsupportedTransform."""
    resize = crop = mean = std = None
    interpolation = "bilinear"
    has_to_tensor = False
    for t in getattr(compose, "transforms", [compose]):
        kind = type(t).__name__
        if kind == "Resize":
            size = t.size if isinstance(t.size, int) else (t.size[0] if len(t.size) == 1 else None)
            if size is None or t.max_size is not None:
                raise UnsupportedTransform(f"Resize to a fixed shape {t.size} (only a short side is supported)")
            resize, interpolation = int(size), t.interpolation.value
            if interpolation not in _PIL_FILTERS:
                raise UnsupportedTransform(f"interpolation {interpolation}")
        elif kind == "CenterCrop":
            size = t.size if not isinstance(t.size, int) else (t.size, t.size)
            crop = (int(size[0]), int(size[-1]))
        elif kind in ("ToTensor", "MaybeToTensor"):
            has_to_tensor = True
        elif kind == "Normalize":
            mean, std = tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std)
        elif kind == "MaybeConvertMode" and getattr(t, "mode", "RGB") == "RGB":
            pass
        elif callable(t) and getattr(t, "__name__", "") == "_convert_to_rgb":
            pass
        else:
            raise UnsupportedTransform(f"{kind}")
    if resize is None or crop is None or mean is None or not has_to_tensor:
        raise UnsupportedTransform(f"expected Resize, CenterCrop, ToTensor and Normalize in {compose}")
    return ImageTransform(resize, crop, mean, std, interpolation)
