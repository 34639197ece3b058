"""Decoding image files safely: every failure becomes an :class:`ImageDecodeError` with a reason.

Pillow is strict by default and we keep it that way: truncated files raise instead of being
padded with grey, and images above Pillow's pixel limit are refused as decompression bombs.
"""
from __future__ import annotations

import datetime as _dt
import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vsearch.errors import ImageDecodeError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif"}
)

_EXIF_ORIENTATION = 0x0112
_EXIF_DATETIME = 0x0132
_EXIF_DATETIME_ORIGINAL = 0x9003
_EXIF_IFD = 0x8769


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied
    width: int  # of the original file, before any draft downscale, after orientation
    height: int
    orientation: int | None
    taken_at: str | None  # ISO 8601 from EXIF DateTimeOriginal/DateTime, if present


def is_image_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _exif_fields(img: Image.Image) -> tuple[int | None, str | None]:
    try:
        exif = img.getexif()
    except Exception:  # broken EXIF must not cost us the picture
        return None, None
    orientation = exif.get(_EXIF_ORIENTATION)
    raw = None
    try:
        raw = exif.get_ifd(_EXIF_IFD).get(_EXIF_DATETIME_ORIGINAL)
    except Exception:
        pass
    raw = raw or exif.get(_EXIF_DATETIME)
    taken_at = None
    if isinstance(raw, str):
        try:
            taken_at = _dt.datetime.strptime(raw.strip("\x00 "), "%Y:%m:%d %H:%M:%S").isoformat()
        except ValueError:
            taken_at = None
    return (int(orientation) if isinstance(orientation, int) else None), taken_at


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB. Alpha is composited on white; 16/32-bit grey is rescaled."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(source: str | bytes, draft_size: int | None = None) -> DecodedImage:
    """Open, fully decode and normalise one image.

    ``draft_size``: for JPEGs, let libjpeg decode at a reduced scale no smaller than this many
    pixels on the short side (several times faster for big photos; the encoders resize anyway).
    """
    try:
        if isinstance(source, (bytes, bytearray)):
            if len(source) == 0:
                raise ImageDecodeError("empty file (0 bytes)")
            fp = io.BytesIO(source)
        else:
            if os.path.getsize(source) == 0:
                raise ImageDecodeError("empty file (0 bytes)")
            fp = source
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            orientation, taken_at = _exif_fields(img)
            width, height = img.size
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            if draft_size and img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            img.load()
            img = ImageOps.exif_transpose(img)
            img = to_rgb(img)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"refused as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not a recognised image format") from None
    except PermissionError:
        raise ImageDecodeError("permission denied") from None
    except FileNotFoundError:
        raise ImageDecodeError("file vanished before it could be read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports truncation and corrupt streams as OSError/SyntaxError with its own text.
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None
    except Exception as exc:  # a decoder bug in a plugin must not stop an indexing run
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from None
    return DecodedImage(img, width, height, orientation, taken_at)


def open_rgb(path: str) -> Image.Image:
    """The public one-liner: an RGB, upright PIL image or an :class:`ImageDecodeError`."""
    return decode_image(path).image
