"""Reading and decoding photos for the indexer: the dataset its loader workers run, the item each
file becomes, and the collate function that stacks their pixels.

Shared by the indexing pipeline (:mod:`indexer.pipeline`), the GPU JPEG decoder
(:mod:`indexer.gpu_decode`) and shard embedding (:mod:`indexer.embed`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from indexer.scan import FileEntry
from vsearch.catalog import MediaRecord
from vsearch.errors import ImageDecodeError
from vsearch.images import MAX_FILE_BYTES, decode_image, limit_aspect, sha256_file

VANISHED = "file vanished before it could be read"


@dataclass(frozen=True)
class ExtractInput:
    """What an extractor sees: the upright RGB photo, at most ``max_side`` pixels on its long
    side, and the size of the original file so that boxes can be given in original pixels."""

    image: Image.Image
    original_size: tuple[int, int]  # (width, height)

    @property
    def scale(self) -> float:
        """Multiply coordinates in ``image`` by this to get original-image pixels."""
        return self.original_size[0] / self.image.size[0]


@dataclass(frozen=True)
class DecodedFile:
    """One file as a loader worker returns it: its record and pixels, or why it has none."""

    entry: FileEntry
    record: MediaRecord | None
    pixels: "torch.Tensor | np.ndarray | None"  # a torch tensor where torch runs the loader
    error: str | None
    extract_input: ExtractInput | None = None
    media_id: int | None = None  # set for already-indexed photos that only extractors need
    row: int | None = None  # this item's row in the batch's stacked pixel tensor


class DecodeDataset:
    """Reads each file once: hashes its bytes and decodes them. Runs in loader workers (a map-style
    dataset for torch's ``DataLoader``, or :func:`indexer.batches.iterate_batches` without torch)."""

    def __init__(self, entries: Sequence[FileEntry], preprocess, draft_size: int,
                 extract_side: int = 0, media_ids: Sequence[int | None] | None = None):
        self.entries = list(entries)
        self.preprocess = preprocess
        self.draft_size = max(draft_size, extract_side // 2)
        self.extract_side = extract_side
        self.media_ids = list(media_ids) if media_ids is not None else [None] * len(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> DecodedFile:
        entry = self.entries[i]
        media_id = self.media_ids[i]
        if entry.size > MAX_FILE_BYTES:
            return DecodedFile(entry, None, None, f"too large to index: {entry.size / (1 << 30):.1f} GiB "
                         f"(limit {MAX_FILE_BYTES / (1 << 30):.1f} GiB)", media_id=media_id)
        try:
            fh = open(entry.path, "rb")
        except FileNotFoundError:
            return DecodedFile(entry, None, None, VANISHED, media_id=media_id)
        except OSError as exc:
            return DecodedFile(entry, None, None, f"cannot read: {exc.strerror or exc}", media_id=media_id)
        with fh:
            try:
                digest = sha256_file(fh)  # in chunks: a huge file never sits in memory whole
                fh.seek(0)
            except OSError as exc:
                return DecodedFile(entry, None, None, f"cannot read: {exc.strerror or exc}", media_id=media_id)
            record = MediaRecord(entry.path, entry.size, entry.mtime, digest)
            decoded, pixels, error = decode_pixels(fh, self.preprocess, self.draft_size, want_pixels=media_id is None)
        if error is not None:
            return DecodedFile(entry, record, None, error, media_id=media_id)
        record = with_decoded(record, decoded)
        extract_input = None
        if self.extract_side:
            image = decoded.image
            if max(image.size) > self.extract_side:
                image = image.copy()
                image.thumbnail((self.extract_side, self.extract_side), Image.Resampling.BILINEAR)
            extract_input = ExtractInput(image, (decoded.width, decoded.height))
        return DecodedFile(entry, record, pixels, None, extract_input, media_id)


def decode_pixels(source, preprocess, draft_size: int, want_pixels: bool = True):
    """``(decoded, pixels, None)`` for one image (a path, bytes or an open file), or
    ``(None, None, reason)``: a decoding or preprocessing failure is the file's own problem, never
    the run's. ``pixels`` is None when not wanted (photos only extractors need)."""
    try:
        decoded = decode_image(source, draft_size=draft_size)
        pixels = preprocess(limit_aspect(decoded.image)) if want_pixels else None
    except ImageDecodeError as exc:
        return None, None, str(exc)
    except MemoryError:
        return None, None, "out of memory while decoding"
    except Exception as exc:  # noqa: BLE001 - a preprocessing failure is this file's problem, not the run's
        return None, None, f"preprocessing failed: {type(exc).__name__}: {exc}"
    return decoded, pixels, None


def with_decoded(record: MediaRecord, decoded) -> MediaRecord:
    """``record`` completed with what decoding learned: size after orientation, capture time."""
    return dataclasses.replace(record, width=decoded.width, height=decoded.height, taken_at=decoded.taken_at,
                               orientation=decoded.orientation)


def collate_decoded(items: list[DecodedFile]):
    """Stack the pixels in the worker (off the encoder's thread); items keep their row number.
    Returns ``(items, pixels)``: a torch tensor for torch pixels, else a numpy array (or None).

    A (list, tensor) tuple is also what DataLoader's ``pin_memory`` knows how to page-lock."""
    rows = [i for i in items if i.pixels is not None]
    stacked = None
    if rows and isinstance(rows[0].pixels, np.ndarray):
        stacked = np.stack([i.pixels for i in rows])
    elif rows:
        import torch

        stacked = torch.stack([i.pixels for i in rows])
    out, row = [], 0
    for item in items:
        if item.pixels is not None:
            item = dataclasses.replace(item, pixels=None, row=row)
            row += 1
        out.append(item)
    return out, stacked

