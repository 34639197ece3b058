"""The indexing pipeline: read → decode/preprocess (worker processes) → encode (batched) → write.

Each stage is timed separately (as in clip-retrieval), and every batch is committed to the catalog
before the next one is encoded, so an interrupted run loses at most one batch of work and the next
run picks up where it stopped: files already in the catalog are unchanged (size + mtime) and are
not decoded again.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Sequence

from indexer.decode import VANISHED, DecodeDataset, DecodedFile, ExtractInput, collate_decoded  # noqa: F401  (ExtractInput re-exported)
from indexer.scan import FileEntry, ScanOptions, scan_paths
from indexer.sweep import kept_rows
from vsearch.catalog import IMAGE_SPACE, Catalog, MediaRecord, Transaction, rows_refused
from vsearch.errors import VSearchError

log = logging.getLogger(__name__)

# A failure with one of these reasons may go away without the file changing (a permission fixed,
# a drive that answered slowly): such files are tried again on the next run.
TRANSIENT_REASONS = ("cannot read", "permission denied", "file vanished", "cannot stat")


def is_transient(reason: str | None) -> bool:
    return bool(reason) and reason.startswith(TRANSIENT_REASONS)


class RegionExtractor(Protocol):
    """Adds vectors for parts of a photo (faces, objects) to a space of its own while indexing.

    ``extract`` does the model work outside any transaction; ``write`` stores its rows and vectors
    (``tx.add_vectors``) inside the catalog transaction ``tx`` that stores the photo, so a crash
    never leaves a photo half-processed. ``pending`` names already-indexed photos this extractor
    has not seen yet (first run with ``--faces`` on an old catalog, copies), which are then
    processed.
    """

    name: str
    max_side: int

    def prepare(self, catalog: Catalog) -> None: ...
    def pending(self, catalog: Catalog, media_ids: Sequence[int]) -> set[int]: ...
    def extract(self, item: ExtractInput) -> Any: ...
    def write(self, tx: Transaction, media_id: int, payload: Any) -> None: ...


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
    retried: int = 0  # files that failed before and were tried again (transient reason, or asked)
    # catalog rows kept although the scan did not see their file: (path, rows, why)
    kept: list[tuple[str, int, str]] = field(default_factory=list)
    # roots that could not be scanned, and folders whose photos all vanished as an unmounted drive's do
    unavailable: list[tuple[str, str]] = field(default_factory=list)
    revisited: int = 0  # unchanged photos processed only by extractors (faces, regions)
    skipped: int = 0  # files and folders left out: hidden, system folders, --exclude
    skipped_by_extension: int = 0  # files that are not images by their extension
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: {"decode_wait": 0.0, "encode": 0.0, "write": 0.0})
    model: str = ""  # the encoder the photos were embedded with
    text: dict | None = None  # with --ocr: the text-reading pass after embedding (ReadSummary.to_json())

    @property
    def indexed_ok(self) -> int:
        return self.added + self.unchanged + self.moved + self.copied

    @property
    def images_per_second(self) -> float:
        return self.added / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        """What `vsearch index --json` prints: every field, failures as {path, reason}, and the
        derived figures."""
        d = asdict(self)
        d["failed"] = [{"path": path, "reason": reason} for path, reason in self.failed]
        d.update(indexed_ok=self.indexed_ok, images_per_second=round(self.images_per_second, 3))
        return d


def init_decode_worker(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)  # decode workers must not fight the encoder for cores


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _batches(dataset: DecodeDataset, encoder, batch_size: int, workers: int):
    """(items, pixels) batches of ``dataset``: torch's DataLoader where torch is installed (and
    nvJPEG on CUDA), else the torch-free loader of :mod:`indexer.batches`."""
    if not _torch_installed():
        from indexer.batches import iterate_batches

        yield from iterate_batches(dataset, batch_size, workers, collate_decoded)
        return
    from torch.utils.data import DataLoader

    from indexer.gpu_decode import select_decoder

    # JPEGs decoded a batch at a time on the GPU (nvJPEG) when the encoder is on CUDA
    decoder = select_decoder(encoder, extract_side=dataset.extract_side)
    loader = DataLoader(
        decoder.wrap(dataset) if decoder else dataset, batch_size=batch_size, num_workers=workers,
        collate_fn=decoder.collate if decoder else collate_decoded,
        worker_init_fn=init_decode_worker if workers else None, prefetch_factor=4 if workers else None,
        # page-locked batches let the host→GPU copy overlap the previous batch's encoding
        pin_memory=str(getattr(encoder, "device", "cpu")).startswith("cuda"),
    )
    for batch, pixels in loader:
        yield decoder.finish(batch, pixels) if decoder else (batch, pixels)


def index_paths(
    catalog: Catalog,
    encoder,
    paths: Sequence[str],
    batch_size: int = 32,
    workers: int | None = None,
    progress: ProgressHook | None = None,
    checkpoint_seconds: float = 30.0,
    extractors: Sequence[RegionExtractor] = (),
    prune_missing: bool = False,
    retry_failed: bool = False,
    scan_options: ScanOptions | None = None,
) -> IndexSummary:
    """Index every image under ``paths`` into ``catalog`` with ``encoder``.

    Unchanged files are skipped, changed ones re-embedded, renamed/copied ones reuse their vectors
    (matched by sha256). A catalog row is removed only when the scan *saw* its file gone: rows
    under a root that is missing, unreadable or without any image file any more (an unmounted
    drive), or under a folder whose photos all vanished and that is now empty or on another
    device, are kept and the root or folder is listed in ``summary.unavailable`` (``prune_missing``
    removes them on purpose); rows under a folder or file that could not be listed or stat'ed are
    kept (see :mod:`indexer.sweep`).
    Bad files are recorded and listed in the summary; they never stop the run. Files that failed
    for a passing reason (a read error) are tried again; ``retry_failed`` retries every failure.

    The run holds the catalog's writer lock (:meth:`Catalog.lock_for_writing`); a second writer
    gets :class:`~vsearch.errors.CatalogBusyError`.
    """
    with catalog.writing():
        return _index_paths(catalog, encoder, paths, batch_size, workers, progress, checkpoint_seconds,
                            extractors, prune_missing, retry_failed, scan_options)


def _index_paths(catalog, encoder, paths, batch_size, workers, progress, checkpoint_seconds, extractors,
                 prune_missing, retry_failed, scan_options=None) -> IndexSummary:
    started = time.perf_counter()
    progress = progress or _NoProgress()
    if workers is None:
        workers = max(1, min(4, (os.cpu_count() or 2) - 1))
    catalog.bind_space(IMAGE_SPACE, encoder.info.name, encoder.info.dim)
    catalog.index(IMAGE_SPACE)  # load and, after a crash, bring level with SQL before adding
    summary = IndexSummary(model=encoder.info.name)

    scan = scan_paths(paths, scan_options)
    summary.skipped_by_extension = scan.skipped_by_extension
    summary.skipped = len(scan.skipped)
    known = catalog.media_under(scan.roots)
    unavailable = {root for root, _ in scan.unavailable}
    summary.failed.extend((p, r) for p, r in scan.problems if p not in unavailable)  # roots: summary.unavailable
    seen = {f.path for f in scan.files}

    todo: list[FileEntry] = []
    for entry in scan.files:
        state = known.get(entry.path)
        if state is not None and state.size == entry.size and state.mtime == entry.mtime:
            if state.status == "failed" and (retry_failed or is_transient(state.error)):
                summary.retried += 1
                todo.append(entry)
            elif state.status == "failed":
                summary.known_failures += 1
            else:
                summary.unchanged += 1
        else:
            todo.append(entry)

    # photos indexed before that an extractor has not processed yet
    revisit: list[tuple[FileEntry, int]] = []
    if extractors:
        for extractor in extractors:
            extractor.prepare(catalog)
        todo_paths = {e.path for e in todo}
        unchanged = {known[e.path].id: e for e in scan.files
                     if e.path in known and known[e.path].status == "indexed" and e.path not in todo_paths}
        wanted: set[int] = set()
        for extractor in extractors:
            wanted |= extractor.pending(catalog, sorted(unchanged))
        revisit = [(unchanged[m], m) for m in sorted(wanted)]

    progress.start(len(todo) + len(revisit))
    keep = kept_rows(scan, known, prune_missing, summary)
    gone_ids = {s.id for p, s in known.items() if p not in seen and p not in keep}
    dataset = DecodeDataset(
        todo + [e for e, _ in revisit], encoder.preprocess, draft_size=encoder.info.image_size,
        extract_side=max((x.max_side for x in extractors), default=0),
        media_ids=[None] * len(todo) + [m for _, m in revisit],
    )
    last_save = time.perf_counter()
    try:
        wait_start = time.perf_counter()
        for batch, pixels in _batches(dataset, encoder, batch_size, workers):
            summary.timings["decode_wait"] += time.perf_counter() - wait_start
            _process_batch(catalog, encoder, batch, pixels, known, gone_ids, summary, extractors)
            progress.advance(len(batch))
            if time.perf_counter() - last_save > checkpoint_seconds:
                catalog.save()
                last_save = time.perf_counter()
            wait_start = time.perf_counter()
        # sweep: files that were under the given paths and that the scan saw gone
        summary.removed = catalog.remove_media(sorted(gone_ids))
        # the device each file's folder is on, for telling an unmounted drive from a deletion later
        catalog.record_devices({f.path: f.folder_dev for f in scan.files if f.folder_dev is not None
                                and (f.path not in known or known[f.path].device != f.folder_dev)})
    finally:
        # whatever happened (Ctrl-C included), what SQL committed goes into the index file
        catalog.save()
        summary.seconds = time.perf_counter() - started
    return summary


def _run_extractors(extractors, items: list[DecodedFile], summary: IndexSummary) -> list[dict[str, Any]]:
    """Model work of every extractor for every item (outside any transaction)."""
    payloads = []
    for item in items:
        per_item = {}
        for extractor in extractors:
            try:
                per_item[extractor.name] = extractor.extract(item.extract_input)
            except Exception as exc:  # one extractor failing on one photo keeps the photo indexed
                summary.failed.append((item.entry.path, f"{extractor.name}: {type(exc).__name__}: {exc}"))
        payloads.append(per_item)
    return payloads


def _write_extracted(tx: Transaction, extractors, media_ids: Sequence[int], payloads: list[dict[str, Any]]) -> None:
    """Every extractor's rows for these photos, inside the transaction ``tx``."""
    for media_id, per_item in zip(media_ids, payloads):
        for extractor in extractors:
            if extractor.name not in per_item:
                continue
            extractor.write(tx, media_id, per_item[extractor.name])


def _process_batch(catalog: Catalog, encoder, batch: list[DecodedFile], pixels, known,
                   gone_ids: set[int], summary: IndexSummary, extractors: Sequence[RegionExtractor] = ()) -> None:
    revisits = [i for i in batch if i.media_id is not None and not i.error]
    if revisits:  # already indexed: only the extractors have work to do
        t = time.perf_counter()
        payloads = _run_extractors(extractors, revisits, summary)
        summary.timings["extract"] = summary.timings.get("extract", 0.0) + time.perf_counter() - t
        with catalog.transaction() as tx:
            _write_extracted(tx, extractors, [i.media_id for i in revisits], payloads)
        summary.revisited += len(revisits)
    for item in batch:
        if item.media_id is not None and item.error:
            summary.failed.append((item.entry.path, item.error))
    batch = [i for i in batch if i.media_id is None]
    t0 = time.perf_counter()
    failures = [(item.record or MediaRecord(item.entry.path, item.entry.size, item.entry.mtime), item.error)
                for item in batch if item.error]
    summary.failed.extend((rec.path, reason) for rec, reason in failures)
    # a file deleted since the scan is reported, not remembered: it has no row to keep
    failures = [(rec, reason) for rec, reason in failures if not reason.startswith(VANISHED)]
    _one_by_one_on_error(lambda part: catalog.record_failures(part), failures, None)

    to_encode: list[DecodedFile] = []
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
    rows = [i.row for i in to_encode]
    selected = pixels if len(rows) == pixels.shape[0] else pixels[rows]  # a list indexes torch and numpy alike
    vectors = encoder.encode_pixels(selected)
    summary.timings["encode"] += time.perf_counter() - t1
    payloads = [{} for _ in to_encode]
    if extractors:
        te = time.perf_counter()
        payloads = _run_extractors(extractors, to_encode, summary)
        summary.timings["extract"] = summary.timings.get("extract", 0.0) + time.perf_counter() - te
    t2 = time.perf_counter()

    def add(part):
        rows = [i for i, _ in part]
        with catalog.transaction() as tx:  # the photos and their extractors' rows commit together
            media_ids = tx.add_media([to_encode[i].record for i in rows], vectors[rows])
            _write_extracted(tx, extractors, media_ids, [payloads[i] for i in rows])

    failed = _one_by_one_on_error(add, [(i, None) for i in range(len(to_encode))], summary,
                                  name=lambda i: to_encode[i].record.path)
    summary.timings["write"] += time.perf_counter() - t2
    summary.added += len(to_encode) - failed


def _one_by_one_on_error(write, items: list, summary: IndexSummary | None, name=None) -> int:
    """``write(items)`` in one transaction; if the database refuses the batch, write the items one
    at a time so that one odd row costs only itself (it is reported in ``summary``). Errors of the
    database itself (a full disk, an I/O error, a lost connection: ``OperationalError`` and
    :class:`~vsearch.errors.StorageError`) are no item's fault and stop the run. Returns how many
    items could not be written."""
    if not items:
        return 0
    try:
        write(items)
        return 0
    except Exception as exc:
        if not rows_refused(exc):
            raise
        if len(items) == 1:
            if summary is not None:
                summary.failed.append((name(items[0][0]) if name else str(items[0][0]),
                                       f"could not be stored: {type(exc).__name__}: {str(exc).splitlines()[0]}"))
            else:
                log.warning("could not record a failure: %s", exc)
            return 1
    return sum(_one_by_one_on_error(write, [item], summary, name) for item in items)


def _reusable_source(catalog: Catalog, sha256: str, exclude: int | None):
    for state in catalog.media_by_sha(sha256):
        if state.id != exclude:
            return state
    return None


__all__ = ["index_paths", "IndexSummary", "ProgressHook", "RegionExtractor", "ExtractInput", "VSearchError"]
