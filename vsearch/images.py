"""Decoding image files safely: every failure becomes an :class:`ImageDecodeError` with a reason.

Pillow is strict by default and we keep it that way: truncated files raise instead of being
padded with grey. Memory, not nominal pixels, is what is bounded: an image whose decoding would
take more than :data:`MAX_DECODE_BYTES` is refused as a decompression bomb, except that a big JPEG
is first decoded at a reduced scale (libjpeg's ``draft``: 1/2, 1/4 or 1/8), so a 108 MP phone
photo decodes in about a quarter of the memory instead of being refused. Before an encoder's
resize, :func:`limit_aspect` crops extreme aspect ratios (a 1×8000 strip would otherwise become a
224×1,792,000 tensor).
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

# what decoding one image may cost (decoded pixels, the RGB copy, a rotated copy), in bytes
MAX_DECODE_BYTES = 1 << 30
# files larger than this are not read at all (hashing and decoding would hold them for long)
MAX_FILE_BYTES = 1 << 30
# width/height (or height/width) an encoder is handed at most; encoders centre-crop a square, so
# cropping a longer strip to this ratio first changes nothing they see but bounds the resize
MAX_ASPECT = 4.0

# Pillow's own check (a warning above 89.5 MP, an error above twice that) looks at nominal pixels
# and runs before any reduced decode is possible; MAX_DECODE_BYTES takes its place in
# decode_image, so Pillow's limit only stops header sizes no reduced decode could bring down.
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 64 * (MAX_DECODE_BYTES // 8):
    Image.MAX_IMAGE_PIXELS = 64 * (MAX_DECODE_BYTES // 8)

# camera RAW files, read through rawpy (LibRaw): the embedded JPEG preview when there is one
RAW_EXTENSIONS = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf",
     ".pef", ".srw", ".raw", ".rwl", ".3fr", ".erf", ".kdc", ".mrw", ".x3f", ".iiq"}
)
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jfif",
     ".heic", ".heif", ".hif", ".avif"}
) | RAW_EXTENSIONS

_plugins_registered = False


def _register_plugins() -> None:
    """HEIC/HEIF through pillow-heif (most phone photos today); AVIF is Pillow's own. Registered on
    first use so that importing this module stays cheap."""
    global _plugins_registered
    if _plugins_registered:
        return
    _plugins_registered = True
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:  # without it a .heic file is reported as "not a recognised image format"
        pass


def _source_name(source) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else None


def _decode_raw(source, draft_size: int | None) -> "DecodedImage":
    """A camera RAW file: its embedded JPEG preview (fast, and what the camera showed) when there is
    one that is big enough, else LibRaw's demosaic at half size (camera white balance)."""
    try:
        import rawpy
    except ImportError:
        raise ImageDecodeError("camera RAW file: install rawpy to read it") from None
    path = _source_name(source)
    try:
        raw = rawpy.imread(source if isinstance(source, (str, os.PathLike)) or path is None else path)
    except Exception as exc:  # LibRawFileUnsupportedError, LibRawIOError, ...
        raise ImageDecodeError(f"unreadable RAW file: {type(exc).__name__}: {exc}") from None
    with raw:
        width, height = int(raw.sizes.width), int(raw.sizes.height)  # before postprocess halves them
        flip = {0: 1, 3: 3, 5: 8, 6: 6}.get(int(raw.sizes.flip), 1)  # LibRaw's flip as EXIF orientation
        try:
            thumb = raw.extract_thumb()
        except Exception:  # noqa: BLE001 - no preview in this file: demosaic below
            thumb = None
        if thumb is not None and thumb.format == rawpy.ThumbFormat.JPEG:
            try:
                preview = decode_image(bytes(thumb.data), draft_size=draft_size)
                if min(preview.width, preview.height) >= min(draft_size or 224, 224):
                    if preview.orientation in (None, 1) and flip != 1:  # the preview itself is not rotated
                        image = preview.image.transpose(_FLIP_TRANSPOSE[flip])
                        return DecodedImage(image, image.size[0], image.size[1], flip, preview.taken_at)
                    return preview
            except ImageDecodeError:
                pass  # a broken preview: demosaic instead
        try:
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)  # (H, W, 3) uint8, upright
        except Exception as exc:
            raise ImageDecodeError(f"unreadable RAW file: {type(exc).__name__}: {exc}") from None
    if flip in (5, 6, 7, 8):
        width, height = height, width
    return DecodedImage(Image.fromarray(rgb), width, height, flip, None)


_FLIP_TRANSPOSE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}

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


def exif_fields(img: Image.Image) -> tuple[int | None, str | None]:
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


def _bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow holds per pixel in ``mode`` (3- and 4-band modes take 4)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def decode_cost(mode: str, size: tuple[int, int], rotated: bool = False) -> int:
    """Bytes that decoding an image of this mode and size takes at the peak (see MAX_DECODE_BYTES)."""
    pixels = size[0] * size[1]
    per_pixel = _bytes_per_pixel(mode) + 4  # the decoded image and its RGB copy
    if mode in ("I", "F") or mode.startswith("I;16"):
        per_pixel += 8  # rescaling to 8 bits goes through float64
    if rotated:
        per_pixel += 4
    return pixels * per_pixel


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def _fit_memory(img: Image.Image, rotated: bool, draft_size: int | None) -> None:
    """Pick a JPEG's reduced decode scale (for ``draft_size`` and for MAX_DECODE_BYTES), and
    refuse any image whose decoding would still take more than MAX_DECODE_BYTES."""
    width, height = img.size
    size, mode = img.size, img.mode
    if img.format == "JPEG":
        scale = 1
        if draft_size:  # the largest reduction that keeps the short side at least draft_size
            while scale < 8 and min(width, height) // (scale * 2) >= draft_size:
                scale *= 2
        while scale < 8 and decode_cost("RGB", (width // scale, height // scale), rotated) > MAX_DECODE_BYTES:
            scale *= 2
        if scale > 1:
            # draft() keeps at least the size asked for, so asking for 1/scale selects that scale
            img.draft("RGB", (max(1, width // scale), max(1, height // scale)))
        size, mode = img.size, "RGB"
    cost = decode_cost(mode, size, rotated)
    if cost > MAX_DECODE_BYTES:
        raise ImageDecodeError(
            f"refused as a decompression bomb: {width}×{height} {img.mode} would take "
            f"{_gib(cost)} to decode (limit {_gib(MAX_DECODE_BYTES)})"
        )


def aspect_window(width: int, height: int, max_aspect: float = MAX_ASPECT) -> tuple[int, int, int, int]:
    """(left, top, right, bottom): the centre of a ``width`` × ``height`` image at most
    ``max_aspect``:1 either way, the whole image if it already fits (what :func:`limit_aspect` keeps)."""
    if width > height * max_aspect:
        keep = max(1, int(height * max_aspect))
        left = (width - keep) // 2
        return left, 0, left + keep, height
    if height > width * max_aspect:
        keep = max(1, int(width * max_aspect))
        top = (height - keep) // 2
        return 0, top, width, top + keep
    return 0, 0, width, height


def limit_aspect(image: Image.Image, max_aspect: float = MAX_ASPECT) -> Image.Image:
    """The centre of ``image`` cropped to at most ``max_aspect``:1 (either way), unchanged if it
    already fits. Call it before an encoder's ``preprocess``, and before anything else that
    scales a stored photo's short side up: resizing the short side of a 1×8000 strip to 224
    pixels would ask for 400 million pixels."""
    window = aspect_window(*image.size, max_aspect=max_aspect)
    return image if window == (0, 0, *image.size) else image.crop(window)


def not_a_file(path: str, shown: str | None = None) -> str | None:
    """Why ``path`` cannot be opened as an image file ("is a folder: PATH", "not found: PATH",
    naming it as ``shown``, by default as given), or None: one wording for query images and the
    indexer alike."""
    if os.path.isdir(path):
        return f"is a folder: {shown or path}"
    if not os.path.exists(path):
        return f"not found: {shown or path}"
    return None


def _open_source(source):
    """(file-like or path for Image.open, whether it is empty). Raises with a clear reason for a
    path that is missing or a folder."""
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(source), len(source) == 0
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        missing = not_a_file(path)
        if missing:
            raise ImageDecodeError(missing)
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise ImageDecodeError(f"too large to read: {_gib(size)} (limit {_gib(MAX_FILE_BYTES)})")
        return path, size == 0
    # an open binary file, positioned at its start
    here = source.tell()
    empty = source.read(1) == b""
    source.seek(here)
    return source, empty


def decode_image(source, draft_size: int | None = None) -> DecodedImage:
    """Open, fully decode and normalise one image: a path, the file's bytes, or an open binary file.

    ``draft_size``: for JPEGs, let libjpeg decode at a reduced scale no smaller than this many
    pixels on the short side (several times faster for big photos; the encoders resize anyway).
    A JPEG too big for MAX_DECODE_BYTES is decoded reduced even without it.
    """
    _register_plugins()
    try:
        fp, empty = _open_source(source)
        if empty:
            raise ImageDecodeError("empty file (0 bytes)")
        name = _source_name(source)
        if name is not None and os.path.splitext(name)[1].lower() in RAW_EXTENSIONS:
            return _decode_raw(fp, draft_size)
        with warnings.catch_warnings():
            # memory is bounded by _fit_memory below, not by Pillow's nominal-pixel warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
            orientation, taken_at = exif_fields(img)
            width, height = img.size
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            _fit_memory(img, orientation not in (None, 1), draft_size)
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


def sha256_file(fh, chunk_size: int = 1 << 20) -> str:
    """sha256 of an open binary file, read ``chunk_size`` bytes at a time (memory stays flat)."""
    import hashlib

    h = hashlib.sha256()
    for block in iter(lambda: fh.read(chunk_size), b""):
        h.update(block)
    return h.hexdigest()


def open_rgb(path: str) -> Image.Image:
    """The public one-liner: an RGB, upright PIL image or an :class:`ImageDecodeError`."""
    return decode_image(path).image
