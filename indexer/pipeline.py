"""The indexing pipeline: read → decode/preprocess (worker processes) → encode (batched) → write.

Each stage is timed separately (as in clip-retrieval), and every batch is committed to the catalog
before the next one is encoded, so an interrupted run loses at most one batch of work and the next
run picks up where it stopped: files already in the catalog are unchanged (size + mtime) and are
not decoded again.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from indexer.scan import FileEntry, scan_paths
from vsearch.catalog import IMAGE_SPACE, Catalog, MediaRecord
from vsearch.errors import ImageDecodeError, VSearchError
from vsearch.images import decode_image

log = logging.getLogger(__name__)


class ProgressHook(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, n: int) -> None: ...


class _NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass
class IndexSummary:
    added: int = 0
    unchanged: int = 0
    moved: int = 0  # content already indexed under a path that is gone: the vector was reused
    copied: int = 0  # content already indexed under another existing path: vectors copied
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason), this run
    known_failures: int = 0  # unchanged files that failed in an earlier run (not retried)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: {"decode_wait": 0.0, "encode": 0.0, "write": 0.0})

    @property
    def indexed_ok(self) -> int:
        return self.added + self.unchanged + self.moved + self.copied

    @property
    def images_per_second(self) -> float:
        return self.added / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Item:
    entry: FileEntry
    record: MediaRecord | None
    pixels: torch.Tensor | None
    error: str | None


class _DecodeDataset(Dataset):
    """Reads each file once: hashes its bytes and decodes them. Runs in loader workers."""

    def __init__(self, entries: Sequence[FileEntry], preprocess, draft_size: int):
        self.entries = list(entries)
        self.preprocess = preprocess
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> _Item:
        entry = self.entries[i]
        try:
            with open(entry.path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            return _Item(entry, None, None, f"cannot read: {exc.strerror or exc}")
        record = MediaRecord(entry.path, entry.size, entry.mtime, hashlib.sha256(data).hexdigest())
        try:
            decoded = decode_image(data, draft_size=self.draft_size)
            pixels = self.preprocess(decoded.image)
        except ImageDecodeError as exc:
            return _Item(entry, record, None, str(exc))
        except Exception as exc:  # a preprocessing failure is this file's problem, not the run's
            return _Item(entry, record, None, f"preprocessing failed: {type(exc).__name__}: {exc}")
        record = MediaRecord(entry.path, entry.size, entry.mtime, record.sha256, decoded.width,
                             decoded.height, decoded.taken_at, decoded.orientation)
        return _Item(entry, record, pixels, None)


def _collate(items: list[_Item]) -> list[_Item]:
    return items


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # decode workers must not fight the encoder for cores


def index_paths(
    catalog: Catalog,
    encoder,
    paths: Sequence[str],
    batch_size: int = 32,
    workers: int | None = None,
    progress: ProgressHook | None = None,
    checkpoint_seconds: float = 30.0,
) -> IndexSummary:
    """Index every image under ``paths`` into ``catalog`` with ``encoder``.

    Unchanged files are skipped, changed ones re-embedded, renamed/copied ones reuse their vectors
    (matched by sha256), files gone from under ``paths`` are removed. Bad files are recorded and
    listed in the summary; they never stop the run.
    """
    started = time.perf_counter()
    progress = progress or _NoProgress()
    if workers is None:
        workers = max(1, min(4, (os.cpu_count() or 2) - 1))
    catalog.bind_space(IMAGE_SPACE, encoder.info.name, encoder.info.dim)
    catalog.index(IMAGE_SPACE)  # load and, after a crash, bring level with SQL before adding
    summary = IndexSummary()

    scan = scan_paths(paths)
    summary.failed.extend(scan.problems)
    known = catalog.media_under(scan.roots)
    seen = {f.path for f in scan.files}

    todo: list[FileEntry] = []
    for entry in scan.files:
        state = known.get(entry.path)
        if state is not None and state.size == entry.size and state.mtime == entry.mtime:
            if state.status == "failed":
                summary.known_failures += 1
            else:
                summary.unchanged += 1
        else:
            todo.append(entry)

    progress.start(len(todo))
    gone_ids = {s.id for p, s in known.items() if p not in seen}
    dataset = _DecodeDataset(todo, encoder.preprocess, draft_size=encoder.info.image_size)
    loader = DataLoader(
        dataset, batch_size=batch_size, num_workers=workers, collate_fn=_collate,
        worker_init_fn=_worker_init if workers else None, prefetch_factor=4 if workers else None,
    )
    last_save = time.perf_counter()
    try:
        wait_start = time.perf_counter()
        for batch in loader:
            summary.timings["decode_wait"] += time.perf_counter() - wait_start
            _process_batch(catalog, encoder, batch, known, gone_ids, summary)
            progress.advance(len(batch))
            if time.perf_counter() - last_save > checkpoint_seconds:
                catalog.save()
                last_save = time.perf_counter()
            wait_start = time.perf_counter()
        # sweep: files that were under the given paths and are gone now
        summary.removed = catalog.remove_media(sorted(gone_ids))
    finally:
        # whatever happened (Ctrl-C included), what SQL committed goes into the index file
        catalog.save()
        summary.seconds = time.perf_counter() - started
    return summary


def _process_batch(catalog: Catalog, encoder, batch: list[_Item], known, gone_ids: set[int],
                   summary: IndexSummary) -> None:
    t0 = time.perf_counter()
    failures = [(item.record or MediaRecord(item.entry.path, item.entry.size, item.entry.mtime), item.error)
                for item in batch if item.error]
    catalog.record_failures(failures)
    summary.failed.extend((rec.path, reason) for rec, reason in failures)

    to_encode: list[_Item] = []
    for item in (i for i in batch if not i.error):
        state = known.get(item.entry.path)
        if state is not None and state.sha256 == item.record.sha256 and state.status == "indexed":
            # touched but same bytes: keep the vector, just remember the new mtime
            catalog.reuse_media(state.id, item.record, move=True)
            summary.unchanged += 1
            continue
        source = _reusable_source(catalog, item.record.sha256, exclude=state.id if state else None)
        if source is not None:
            is_move = source.id in gone_ids or not os.path.exists(source.path)
            catalog.reuse_media(source.id, item.record, move=is_move)
            if is_move:
                gone_ids.discard(source.id)
                summary.moved += 1
            else:
                summary.copied += 1
            continue
        to_encode.append(item)
    summary.timings["write"] += time.perf_counter() - t0
    if not to_encode:
        return
    t1 = time.perf_counter()
    vectors = encoder.encode_pixels(torch.stack([i.pixels for i in to_encode]))
    t2 = time.perf_counter()
    catalog.add_media([i.record for i in to_encode], vectors)
    summary.timings["encode"] += t2 - t1
    summary.timings["write"] += time.perf_counter() - t2
    summary.added += len(to_encode)


def _reusable_source(catalog: Catalog, sha256: str, exclude: int | None):
    for state in catalog.media_by_sha(sha256):
        if state.id != exclude:
            return state
    return None


__all__ = ["index_paths", "IndexSummary", "ProgressHook", "VSearchError"]
