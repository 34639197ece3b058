"""The catalog's small value types: what the indexer tells it about a file, what it answers, and
how vectors are stored in SQL (float32 bytes)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from vsearch.fsutil import text_to_path

if TYPE_CHECKING:  # a search imports these types without SQLAlchemy (vsearch.catalog.reader)
    from vsearch.schema import Media


# SQLite refuses a statement with more than 999 bound variables (older builds): id lists go in
# chunks of this many
ID_CHUNK = 900


def chunks(values: Sequence, size: int = ID_CHUNK) -> Iterator[list]:
    """``values`` ``size`` at a time (for ``column.in_(chunk)``)."""
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def id_chunks(ids: Iterable[int], size: int = ID_CHUNK) -> Iterator[list[int]]:
    """``ids`` as plain ints (not numpy's, which drivers refuse), ``size`` at a time."""
    return chunks([int(i) for i in ids], size)


IMAGE_SPACE = "image"


@dataclass(frozen=True)
class MediaRecord:
    """What the indexer learned about one file."""

    path: str
    size: int
    mtime: float
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    taken_at: str | None = None
    orientation: int | None = None


@dataclass(frozen=True)
class MediaState:
    """The catalog's view of a file, used by the indexer to decide what changed."""

    id: int
    path: str
    size: int
    mtime: float
    sha256: str | None
    status: str
    error: str | None
    indexed_at: float | None = None  # when this row was last written (merge_shards skips older shards)
    device: int | None = None  # st_dev of the folder the file was last seen in; None when not recorded


@dataclass(frozen=True)
class SearchHit:
    media_id: int
    path: str
    score: float
    rank: int
    vector_id: int


@dataclass(frozen=True)
class VerifyReport:
    """Differences between a space's SQL rows and its index file on disk."""

    space: str
    sql_count: int
    index_count: int
    missing_from_index: tuple[int, ...] = ()
    extra_in_index: tuple[int, ...] = ()
    index_file_missing: bool = False
    duplicated_in_index: tuple[int, ...] = ()  # ids stored more than once in the index file

    @property
    def ok(self) -> bool:
        return not self.missing_from_index and not self.extra_in_index and not self.duplicated_in_index

    @property
    def only_lagging(self) -> bool:
        """The file only lacks ids the database has: what a writer's unsaved work looks like."""
        return not self.extra_in_index and not self.duplicated_in_index

    def to_json(self) -> dict:
        """One space as `vsearch verify --json` prints it (every differing id)."""
        return {"space": self.space, "ok": self.ok, "sql_count": self.sql_count, "index_count": self.index_count,
                "index_file_missing": self.index_file_missing,
                "missing_from_index": [int(i) for i in self.missing_from_index],
                "extra_in_index": [int(i) for i in self.extra_in_index],
                "duplicated_in_index": [int(i) for i in self.duplicated_in_index]}


@dataclass
class SyncResult:
    added: int = 0
    removed: int = 0
    rebuilt: bool = False
    details: list[str] = field(default_factory=list)



def _duplicates(ids: np.ndarray) -> tuple[int, ...]:
    values, counts = np.unique(ids, return_counts=True)
    return tuple(int(v) for v in values[counts > 1])


def vector_blob(vector: np.ndarray) -> bytes:
    """How a vector is stored in SQL: its float32 bytes."""
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def vectors_from_blobs(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Stored vectors (:func:`vector_blob`) back as one ``(N, dim)`` float32 array."""
    if not blobs:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim).copy()


def device_to_sql(dev: int) -> int:
    """An ``st_dev`` (unsigned, up to 64 bits) as a signed 64-bit SQL integer."""
    return dev - (1 << 64) if dev >= 1 << 63 else dev


def device_from_sql(value: int | None) -> int | None:
    return None if value is None else value % (1 << 64)


def _state(m: Media) -> MediaState:
    return MediaState(m.id, text_to_path(m.path), m.size, m.mtime, m.sha256, m.status, m.error, m.indexed_at,
                      device_from_sql(m.device))
