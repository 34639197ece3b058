"""The SQL of the text-in-photos feature: its tables (:mod:`vsearch.ocr.schema`) read and written
inside a catalog transaction (``catalog.transaction()``) or read form (``catalog.reading()``).

Searching goes through the full-text index of the folded text (FTS5 trigram on SQLite, a
``pg_trgm`` GIN index on PostgreSQL), never a scan in Python: a folded term of three characters
or more is an FTS5 phrase of trigrams, a shorter one a ``LIKE`` (which scans on SQLite: a one- or
two-letter term has no trigram).
"""
from __future__ import annotations

import time
from typing import NamedTuple, Sequence

import numpy as np
from sqlalchemy import delete, func, select, text

from vsearch.catalog import IMAGE_SPACE, Reading, Transaction, id_chunks
from vsearch.ocr import HAS_TEXT_KEY
from vsearch.ocr.schema import FTS_TABLE, TextLine, TextRun
from vsearch.schema import Media, Meta, Vector



class StoredLine(NamedTuple):
    """A line of text stored for a photo; ``box`` is ``(x1, y1, x2, y2)`` in pixels of the upright photo."""

    media_id: int
    line_id: int
    text: str
    box: tuple[float, float, float, float]
    score: float


class PendingPhoto(NamedTuple):
    media_id: int
    path: str  # as stored (vsearch.fsutil.text_to_path gives the file's name)
    sha256: str | None


# -- the reading pass -----------------------------------------------------------------------------


def pending_photos(r: Reading, engine: str) -> list[PendingPhoto]:
    """Indexed photos whose text was not read from their current content by ``engine`` (never
    read, changed since, or read with other settings), in id order."""
    rows = r.session.execute(
        select(Media.id, Media.path, Media.sha256)
        .outerjoin(TextRun, TextRun.media_id == Media.id)
        .where(Media.status == "indexed")
        .where((TextRun.media_id.is_(None)) | (TextRun.engine != engine) |
               (TextRun.sha256.is_distinct_from(Media.sha256)))
        .order_by(Media.id))
    return [PendingPhoto(int(i), p, s) for i, p, s in rows]


def read_count(r: Reading, engine: str) -> int:
    """Photos whose current content was read by ``engine``."""
    return int(r.session.scalar(
        select(func.count()).select_from(TextRun).join(Media, Media.id == TextRun.media_id)
        .where(TextRun.engine == engine, TextRun.sha256.is_not_distinct_from(Media.sha256))) or 0)


def store_text(tx: Transaction, media_id: int, sha256: str | None, engine: str,
               lines: Sequence[tuple[str, str, tuple[float, float, float, float], float]]) -> None:
    """Replace a photo's text with ``lines`` (text as read, folded text, box, confidence), and
    record that ``engine`` read this content (also when it found nothing, so it is not read again)."""
    tx.session.execute(delete(TextLine).where(TextLine.media_id == media_id))
    tx.session.add_all([
        TextLine(media_id=media_id, line=i, text=raw, norm=norm, x1=float(b[0]), y1=float(b[1]), x2=float(b[2]),
                 y2=float(b[3]), score=float(score))
        for i, (raw, norm, b, score) in enumerate(lines)
    ])
    tx.session.merge(TextRun(media_id=media_id, sha256=sha256, engine=engine, lines=len(lines), created_at=time.time()))
    if lines:
        tx.session.merge(Meta(key=HAS_TEXT_KEY, value="1"))


# -- searching ------------------------------------------------------------------------------------


def lines_containing(r: Reading, term: str) -> list[StoredLine]:
    """Every stored line whose folded text contains the folded ``term`` (not empty), through the
    database's full-text index."""
    dialect = r.session.get_bind().dialect.name
    columns = "l.media_id, l.id, l.text, l.x1, l.y1, l.x2, l.y2, l.score"
    if dialect == "sqlite" and len(term) >= 3:
        # a phrase of the term's trigrams: the trigram tokenizer finds the substring through its index
        sql = (f"SELECT {columns} FROM {FTS_TABLE} JOIN ocr_lines l ON l.id = {FTS_TABLE}.rowid "
               f"WHERE {FTS_TABLE} MATCH :term ORDER BY l.media_id, l.line")
        params = {"term": '"' + term.replace('"', '""') + '"'}
    else:  # PostgreSQL's trigram index serves LIKE; folded terms hold no % or _
        sql = f"SELECT {columns} FROM ocr_lines l WHERE l.norm LIKE :pattern ORDER BY l.media_id, l.line"
        params = {"pattern": "%" + term.replace("\\", "").replace("%", "").replace("_", "") + "%"}
    return [StoredLine(int(m), int(i), t, (x1, y1, x2, y2), s)
            for m, i, t, x1, y1, x2, y2, s in r.session.execute(text(sql), params)]


def photo_lines(r: Reading, media_ids: Sequence[int]) -> dict[int, list[StoredLine]]:
    """Media id -> its stored lines in reading order."""
    out: dict[int, list[StoredLine]] = {}
    for chunk in id_chunks(sorted(set(media_ids))):
        rows = r.session.execute(select(TextLine.media_id, TextLine.id, TextLine.text, TextLine.x1, TextLine.y1,
                                        TextLine.x2, TextLine.y2, TextLine.score)
                                 .where(TextLine.media_id.in_(chunk)).order_by(TextLine.media_id, TextLine.line))
        for m, i, t, x1, y1, x2, y2, s in rows:
            out.setdefault(int(m), []).append(StoredLine(int(m), int(i), t, (x1, y1, x2, y2), s))
    return out


def image_vectors(r: Reading, media_ids: Sequence[int]) -> tuple[list[int], list[int], np.ndarray]:
    """(media ids, their image vector ids, the vectors ``(N, D)``) of these photos."""
    mids, vids, blobs = [], [], []
    for chunk in id_chunks(sorted(set(media_ids))):
        for vid, mid, blob in r.session.execute(select(Vector.id, Vector.media_id, Vector.embedding)
                                                .where(Vector.media_id.in_(chunk), Vector.space == IMAGE_SPACE)):
            mids.append(int(mid))
            vids.append(int(vid))
            blobs.append(blob)
    return mids, vids, r.vectors(IMAGE_SPACE, blobs)


def image_vector_ids(r: Reading, media_ids: Sequence[int]) -> dict[int, int]:
    """Media id -> its image vector id, for these photos (no embeddings read)."""
    out: dict[int, int] = {}
    for chunk in id_chunks(sorted(set(media_ids))):
        out.update((int(m), int(v)) for v, m in r.session.execute(
            select(Vector.id, Vector.media_id).where(Vector.media_id.in_(chunk), Vector.space == IMAGE_SPACE)))
    return out


def listing_order(r: Reading, media_ids: Sequence[int]) -> list[tuple[int, str]]:
    """(media id, stored path) of these photos, newest first (capture time, else file time)."""
    rows: list[tuple[int, str, str | None, float]] = []
    for chunk in id_chunks(sorted(set(media_ids))):
        rows += r.session.execute(select(Media.id, Media.path, Media.taken_at, Media.mtime)
                                  .where(Media.id.in_(chunk))).all()
    rows.sort(key=lambda row: (row[2] or "", row[3] or 0.0, -row[0]), reverse=True)
    return [(int(m), p) for m, p, _, _ in rows]


__all__ = ["HAS_TEXT_KEY", "StoredLine", "PendingPhoto", "pending_photos", "read_count", "store_text",
           "lines_containing", "photo_lines", "image_vectors", "image_vector_ids", "listing_order"]
