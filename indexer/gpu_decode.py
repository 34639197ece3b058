"""Decoding JPEGs in batches with torchvision (nvJPEG on a GPU) instead of one by one with Pillow.

On a GPU the encoder outruns Pillow by far: one core of Pillow decodes about 190 photos of
640×480 a second (270 with ``draft``), a ViT-B-32 in fp16 encodes tens of thousands, and nvJPEG
decodes about 10,000 (figures in ``benchmarks/RESULTS.md``). So when the encoder is on CUDA,
loader workers only read, hash and parse the header of a JPEG, and the main process decodes
the whole batch with ``torchvision.io.decode_jpeg(..., device="cuda")`` and resizes, crops and
normalises it on the GPU with the encoder's own transforms applied to tensors.

Pillow still decodes everything else: other formats, JPEGs whose header Pillow cannot read
(it then gives the reason), CMYK JPEGs, JPEGs without an end-of-image marker (truncated: Pillow
refuses them, a GPU decoder might return grey), and any file the batch decoder refuses.

Selection (:func:`select_decoder`): ``VSEARCH_JPEG_DECODER`` = ``auto`` (the default: batch
decoding when the encoder is on CUDA), ``pillow`` (never), or ``torchvision`` (always, also on
the CPU, where ``decode_jpeg`` is libjpeg-turbo without Pillow's ``draft``).

Use from a loop over batches::

    decoder = select_decoder(encoder)
    dataset = decoder.wrap(dataset) if decoder else dataset
    collate = decoder.collate if decoder else collate_decoded
    for batch, payload in DataLoader(dataset, collate_fn=collate, ...):
        items, pixels = decoder.finish(batch, payload) if decoder else (batch, payload)
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import warnings
from collections import defaultdict
from typing import Callable, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from indexer.decode import DecodeDataset, DecodedFile, collate_decoded, decode_pixels, with_decoded
from indexer.scan import FileEntry
from vsearch.catalog import MediaRecord
from vsearch.images import MAX_ASPECT, exif_fields

log = logging.getLogger(__name__)

DECODER_ENV = "VSEARCH_JPEG_DECODER"
DECODER_CHOICES = ("auto", "pillow", "torchvision")

_JPEG_START = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"

# transforms that only make sure a PIL image is RGB: a decoded tensor already is
# decoded pixels held at once per decoder call: 2^28 RGB pixels are 768 MiB of uint8
MAX_DECODED_PIXELS = 1 << 28

_RGB_STEPS = {"MaybeConvertMode", "_convert_to_rgb", "convert_to_rgb"}
_TO_TENSOR_STEPS = {"ToTensor", "MaybeToTensor"}


class TensorPreprocess:
    """The encoder's PIL preprocessing (resize, centre crop, to-tensor, normalise) done on uint8
    image tensors, on whatever device they are on.

    It is built from the encoder's own torchvision ``Compose``, so sizes, interpolation,
    antialiasing and mean/std are the encoder's; resize and crop work on uint8 values as Pillow
    does, so the result differs from Pillow's only by rounding in the resampling.
    """

    def __init__(self, geometry: Sequence[Callable], normalize: Callable | None):
        self.geometry = list(geometry)
        self.normalize = normalize

    @classmethod
    def from_transform(cls, transform) -> "TensorPreprocess | None":
        """None when ``transform`` holds a step this class cannot do on tensors."""
        steps = getattr(transform, "transforms", None)
        if steps is None:
            return None
        geometry, normalize, to_float = [], None, False
        for step in steps:
            name = getattr(step, "__name__", type(step).__name__)
            if name in _RGB_STEPS:
                continue
            if name in _TO_TENSOR_STEPS and not to_float:
                to_float = True
            elif name in ("Resize", "CenterCrop") and not to_float:
                geometry.append(step)
            elif name == "Normalize" and to_float and normalize is None:
                normalize = step
            else:
                return None
        return cls(geometry, normalize) if to_float else None

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """(3, H, W) uint8 tensors of any sizes -> (N, 3, S, S) float32, in their order.

        Images of one size are resized together (one kernel call per size, not per image)."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            groups[tuple(image.shape)].append(i)
        out: torch.Tensor | None = None
        for rows in groups.values():
            x = torch.stack([images[i] for i in rows])  # (n, 3, H, W) uint8
            for step in self.geometry:
                x = step(x)
            x = x.float().div_(255)
            if self.normalize is not None:
                x = self.normalize(x)
            if out is None:
                out = x.new_empty((len(images), *x.shape[1:]))
            out[torch.as_tensor(rows, device=x.device)] = x
        assert out is not None, "no images"
        return out


def encoder_transform(encoder):
    """The torchvision transform behind ``encoder.preprocess`` (both of vsearch's encoder
    families keep it as ``_preprocess``), or None."""
    return getattr(encoder, "_preprocess", None)


def upright(image: torch.Tensor, orientation: int | None) -> torch.Tensor:
    """(3, H, W) as stored -> as seen, for an EXIF orientation; what Pillow's ``exif_transpose``
    does (nvJPEG ignores EXIF, so this is done here for every device alike)."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-2, -1)
    if orientation == 6:
        return torch.rot90(image, -1, dims=(-2, -1))
    if orientation == 7:
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return torch.rot90(image, 1, dims=(-2, -1))
    return image


def is_complete_jpeg(data: bytes) -> bool:
    """Starts like a JPEG and ends with its end-of-image marker (a truncated file does not)."""
    return data[:3] == _JPEG_START and data.rstrip(b"\x00")[-2:] == _JPEG_END


def jpeg_header(data: bytes) -> tuple[int, int, int | None, str | None] | None:
    """(width, height after EXIF rotation, orientation, taken_at) without decoding pixels, or
    None when the batch decoder should not get this file (Pillow will say why, if anything is wrong)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format != "JPEG" or img.mode not in ("RGB", "L"):
                return None
            orientation, taken_at = exif_fields(img)
            width, height = img.size
    except Exception:  # noqa: BLE001 - bombs and broken headers go to Pillow, which names the problem
        return None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height, orientation, taken_at


# Files above these take the Pillow path (see DeferredJpegDataset): a 50 MP JPEG is ~150 MB decoded.
BATCH_MAX_FILE_BYTES = 64 << 20
BATCH_MAX_PIXELS = 50_000_000


def pillow_item(entry: FileEntry, record: MediaRecord, data: bytes, preprocess, draft_size: int) -> DecodedFile:
    """What the Pillow path makes of these bytes: pixels and the full record, or the error."""
    decoded, pixels, error = decode_pixels(data, preprocess, draft_size)
    if error is not None:
        return DecodedFile(entry, record, None, error)
    return DecodedFile(entry, with_decoded(record, decoded), pixels, None)


class DeferredJpegDataset(Dataset):
    """``DecodeDataset`` whose JPEGs are read, hashed and header-parsed but not decoded.

    Items are ``(item, jpeg)``: ``jpeg`` is the file's bytes as a uint8 tensor for the batch
    decoder (``item.pixels`` is then None), or None when the item was finished here by Pillow.
    Runs in loader workers: nothing here touches CUDA.
    """

    def __init__(self, base: DecodeDataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[DecodedFile, torch.Tensor | None]:
        base = self.base
        if base.extract_side or base.media_ids[i] is not None:  # extractors need a PIL image
            return base[i], None
        entry = base.entries[i]
        # Only ordinary JPEGs take the batch path; everything else, and any file that is large or
        # odd, goes through the Pillow dataset with its limits (chunked hashing, size limit,
        # reduced decoding, aspect crop), which reads the file again: rare, so cheap.
        if not entry.path.lower().endswith((".jpg", ".jpeg", ".jpe")) or entry.size > BATCH_MAX_FILE_BYTES:
            return base[i], None
        try:
            with open(entry.path, "rb") as fh:
                data = fh.read(BATCH_MAX_FILE_BYTES + 1)
        except OSError:
            return base[i], None  # the Pillow path names the reason the same way a normal run does
        header = jpeg_header(data) if len(data) <= BATCH_MAX_FILE_BYTES and is_complete_jpeg(data) else None
        if header is None:
            return base[i], None
        width, height, orientation, taken_at = header
        if max(width, height) > MAX_ASPECT * max(min(width, height), 1) or width * height > BATCH_MAX_PIXELS:
            return base[i], None  # strips need the aspect crop; huge photos need reduced decoding
        record = MediaRecord(entry.path, entry.size, entry.mtime, hashlib.sha256(data).hexdigest())
        record = dataclasses.replace(record, width=width, height=height, taken_at=taken_at, orientation=orientation)
        return DecodedFile(entry, record, None, None), torch.frombuffer(bytearray(data), dtype=torch.uint8)


class BatchJpegDecoder:
    """Decodes a batch's JPEGs with ``torchvision.io.decode_jpeg`` on ``device`` and preprocesses
    them there; files it refuses go through Pillow. ``counts`` says how many took which way."""

    def __init__(self, device: str | torch.device, tensor_preprocess: TensorPreprocess, preprocess, draft_size: int,
                 max_pixels: int = MAX_DECODED_PIXELS):
        self.device = torch.device(device)
        self.tensor_preprocess = tensor_preprocess
        self.preprocess = preprocess
        self.draft_size = draft_size
        self.max_pixels = max_pixels
        self.counts = {"batch": 0, "pillow": 0, "refused": 0}

    def wrap(self, dataset: DecodeDataset) -> DeferredJpegDataset:
        return DeferredJpegDataset(dataset)

    @staticmethod
    def collate(pairs: list[tuple[DecodedFile, torch.Tensor | None]]):
        """(items, (pixels of the Pillow-decoded items stacked, positions of the JPEGs, their
        bytes end to end in one tensor, their lengths)).

        One tensor for all the bytes because a loader worker hands each tensor over through a
        shared-memory file of its own: one per file would exhaust the open-file limit."""
        items, pixels = collate_decoded([item for item, _ in pairs])
        jpegs = [(pos, jpeg) for pos, (_, jpeg) in enumerate(pairs) if jpeg is not None]
        blob = torch.cat([jpeg for _, jpeg in jpegs]) if jpegs else torch.zeros(0, dtype=torch.uint8)
        return items, (pixels, [pos for pos, _ in jpegs], blob, [len(jpeg) for _, jpeg in jpegs])

    def finish(self, items: list[DecodedFile], payload) -> tuple[list[DecodedFile], torch.Tensor | None]:
        """The batch as ``collate_decoded`` gives it (items with ``row`` set, stacked pixels), with the
        JPEGs decoded; the pixels are on :attr:`device`."""
        pillow_pixels, positions, blob, lengths = payload
        jpegs = list(zip(positions, torch.split(blob, lengths)))  # views: contiguous 1-D slices
        items = list(items)
        device_rows: dict[int, torch.Tensor] = {}  # position in the batch -> (3, S, S)
        fallback: dict[int, torch.Tensor] = {}
        for chunk in self._chunks(jpegs, items):
            decoded, done = self._decode([jpeg for _, jpeg in chunk]), []
            for (pos, jpeg), image in zip(chunk, decoded):
                if image is not None:
                    done.append((pos, upright(image, items[pos].record.orientation)))
                    continue
                self.counts["refused"] += 1
                item = items[pos]
                items[pos] = pillow_item(item.entry, item.record, jpeg.numpy().tobytes(), self.preprocess, self.draft_size)
                if items[pos].pixels is not None:
                    fallback[pos] = items[pos].pixels
            if done:  # preprocess now, so full-size decoded images of one chunk at a time are held
                for (pos, _), row in zip(done, self.tensor_preprocess([image for _, image in done])):
                    device_rows[pos] = row
        self.counts["batch"] += len(device_rows)
        self.counts["pillow"] += sum(1 for i in items if i.row is not None) + len(fallback)

        parts, out = [], []
        for pos, item in enumerate(items):
            if item.row is not None:  # decoded by Pillow in the worker
                parts.append(pillow_pixels[item.row].to(self.device, non_blocking=True))
            elif pos in device_rows:
                parts.append(device_rows[pos])
            elif pos in fallback:
                parts.append(fallback[pos].to(self.device))
            else:
                out.append(dataclasses.replace(item, pixels=None, row=None))
                continue
            out.append(dataclasses.replace(item, pixels=None, row=len(parts) - 1))
        return out, (torch.stack(parts) if parts else None)

    def _chunks(self, jpegs: list[tuple[int, torch.Tensor]], items: list[DecodedFile]):
        """The batch's JPEGs in runs of at most ``max_pixels`` decoded pixels (at least one file
        each): 256 photos of 24 megapixels would need 18 GB decoded at once."""
        chunk, pixels = [], 0
        for pos, jpeg in jpegs:
            record = items[pos].record
            size = (record.width or 0) * (record.height or 0)
            if chunk and pixels + size > self.max_pixels:
                yield chunk
                chunk, pixels = [], 0
            chunk.append((pos, jpeg))
            pixels += size
        if chunk:
            yield chunk

    def _decode(self, jpegs: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """Decoded (3, H, W) uint8 images as stored (not rotated), on the device; None where the
        decoder refused.

        One call for the batch; if it raises, one call per file, so one bad file costs only itself."""
        if not jpegs:
            return []
        from torchvision.io import ImageReadMode, decode_jpeg

        def run(batch):
            return decode_jpeg(batch, mode=ImageReadMode.RGB, device=self.device)

        try:
            return list(run(jpegs))
        except Exception:  # noqa: BLE001 - find the file(s) it refused
            pass
        out: list[torch.Tensor | None] = []
        for jpeg in jpegs:
            try:
                out.append(run([jpeg])[0])
            except Exception as exc:  # noqa: BLE001 - Pillow gets this one
                log.debug("batch JPEG decoder refused a file (%s); decoding it with Pillow", exc)
                out.append(None)
        return out


def decoder_choice(choice: str | None = None) -> str:
    choice = (choice or os.environ.get(DECODER_ENV) or "auto").strip().lower()
    if choice not in DECODER_CHOICES:
        raise ValueError(f"{DECODER_ENV} must be one of {', '.join(DECODER_CHOICES)}, not {choice!r}")
    return choice


def select_decoder(encoder, extract_side: int = 0, choice: str | None = None) -> BatchJpegDecoder | None:
    """A batch JPEG decoder for ``encoder``, or None for Pillow throughout.

    ``auto`` picks batch decoding when the encoder runs on CUDA and its preprocessing can be done
    on tensors. Extractors (faces, regions) need a PIL image of every photo, so with them the
    batch decoder is never used.
    """
    choice = decoder_choice(choice)
    device = torch.device(str(getattr(encoder, "device", "cpu")))
    if choice == "pillow" or extract_side:
        return None
    if choice == "auto" and device.type != "cuda":
        return None
    tensor_preprocess = TensorPreprocess.from_transform(encoder_transform(encoder))
    if tensor_preprocess is None:
        log.info("the encoder's preprocessing has steps that only work on PIL images: decoding with Pillow")
        return None
    return BatchJpegDecoder(device, tensor_preprocess, encoder.preprocess, encoder.info.image_size)


__all__ = ["BatchJpegDecoder", "DeferredJpegDataset", "TensorPreprocess", "select_decoder", "DECODER_ENV"]
