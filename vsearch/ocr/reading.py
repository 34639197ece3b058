"""Reading the text of a catalog's photos: a pass of its own after embedding, resumable.

Photos are embedded (and searchable) first; the text of each photo is read afterwards, one photo
per transaction, so an interrupted pass keeps what it read and the next one starts where it
stopped. Which photos need reading is the store's answer (:func:`vsearch.ocr.store.pending_photos`):
those never read, those whose content changed since (another sha256: the indexer replaced the
photo), and those read with other settings; an unchanged photo is never read twice.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from vsearch.errors import ImageDecodeError
from vsearch.fsutil import text_to_path
from vsearch.ocr import store
from vsearch.ocr.engine import TextReader


class _NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass
class ReadSummary:
    """What a reading pass did; ``to_json()`` is what ``--json`` prints."""

    read: int = 0  # photos read this pass (through the gate or in full)
    with_text: int = 0  # of those, photos where text was kept
    gated: int = 0  # of those, photos the gate found no text in (nothing recognised)
    lines: int = 0  # lines stored
    already: int = 0  # photos whose current content was read before: not read again
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): read again next time
    seconds: float = 0.0
    engine: str = ""

    @property
    def images_per_second(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["failed"] = [{"path": path, "reason": reason} for path, reason in self.failed]
        d["images_per_second"] = round(self.images_per_second, 3)
        return d


def read_pending(catalog, reader: TextReader, progress=None) -> ReadSummary:
    """Read and store the text of every photo of ``catalog`` that needs it (see the module's
    notes); the caller holds the writer lock. A file that cannot be read is reported in
    ``failed``, stores nothing, and is tried again by the next pass."""
    progress = progress or _NoProgress()
    started = time.perf_counter()
    summary = ReadSummary(engine=reader.settings)
    with catalog.reading() as r:
        todo = store.pending_photos(r, reader.settings)
        summary.already = store.read_count(r, reader.settings)
    progress.start(len(todo))
    for photo in todo:
        path = text_to_path(photo.path)
        try:
            result = reader.read_file(path)
        except ImageDecodeError as exc:
            summary.failed.append((path, str(exc)))
            progress.advance(1)
            continue
        with catalog.transaction() as tx:
            store.store_text(tx, photo.media_id, photo.sha256, reader.settings,
                             [(line.text, line.folded, line.box, line.score) for line in result.lines])
        summary.read += 1
        summary.gated += result.gated
        summary.with_text += bool(result.lines)
        summary.lines += len(result.lines)
        progress.advance(1)
    summary.seconds = time.perf_counter() - started
    return summary


__all__ = ["ReadSummary", "read_pending"]
