"""Embedding results as shard files: one ``shard-NNNNN.npz`` per fixed slice of a manifest.

A shard folder holds ``run.json`` (what the run covers: model, shard size, manifest digest) and
the shards. Each shard is a plain ``.npz`` (no pickles) with

* ``vectors`` float32 (N, D), L2-normalised, and per vector ``paths``, ``sizes``, ``mtimes``,
  ``sha256``, ``widths``/``heights``/``orientation`` (-1: unknown), ``taken_at`` ('' : unknown);
* the files that could not be embedded: ``failed_paths``, ``failed_sizes``, ``failed_mtimes``,
  ``failed_sha256`` ('' when unreadable), ``failed_reasons``;
* ``meta``: a JSON string (format version, shard number, encoder name and dimension, a digest
  of the shard's inputs, when and where it was made).

Shards carry no catalog ids: ids are given when a shard is merged (:mod:`indexer.merge`), so
shards can be made anywhere, by any executor, before any database is involved. A shard file is
written to a temporary name and renamed, so a shard that exists is complete; that is what makes
a run resumable (existing shards with the same inputs are skipped) and safe to retry (Ray
re-running a task only replaces a shard with an equal one).
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from indexer.manifest import entries_digest
from indexer.scan import FileEntry
from vsearch.catalog import MediaRecord
from vsearch.errors import ShardError
from vsearch.fsutil import atomic_write

SHARD_FORMAT = "vsearch-shard"
SHARD_VERSION = 1
RUN_FILE = "run.json"
_SHARD_RE = re.compile(r"^shard-(\d{5,})\.npz$")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


@dataclass(frozen=True)
class ShardJob:
    """One slice of a manifest: what one shard file will hold."""

    index: int
    entries: tuple[FileEntry, ...]

    @property
    def name(self) -> str:
        return shard_name(self.index)

    def digest(self) -> str:
        return entries_digest(self.entries)

    def to_json(self) -> str:
        return json.dumps({"index": self.index, "entries": [[e.path, e.size, e.mtime] for e in self.entries]},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "ShardJob":
        data = json.loads(text)
        return cls(int(data["index"]), tuple(FileEntry(p, int(s), float(m)) for p, s, m in data["entries"]))


def plan_shards(entries: Sequence[FileEntry], shard_size: int) -> list[ShardJob]:
    """Consecutive slices of ``shard_size`` entries (the manifest order is the shard order)."""
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    return [ShardJob(i, tuple(entries[start : start + shard_size]))
            for i, start in enumerate(range(0, len(entries), shard_size))]


@dataclass
class ShardData:
    meta: dict
    records: list[MediaRecord]
    vectors: np.ndarray  # (N, D) float32, one row per record
    failures: list[tuple[MediaRecord, str]] = field(default_factory=list)

    @property
    def created(self) -> float:
        return float(self.meta.get("created", 0.0))


def _opt_int(values) -> np.ndarray:
    return np.asarray([-1 if v is None else int(v) for v in values], dtype=np.int64)


def _text(values) -> np.ndarray:
    # fixed-width unicode keeps the file free of pickles; 'U1' so that an empty column has a dtype
    values = ["" if v is None else str(v) for v in values]
    return np.asarray(values, dtype=f"U{max([1] + [len(v) for v in values])}")


def _atomic_write(path: str, write) -> None:
    """``write(fh)`` fills a binary file handle; see :func:`vsearch.fsutil.atomic_write`."""

    def fill(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            write(fh)

    atomic_write(path, fill)


def write_shard(path: str, records: Sequence[MediaRecord], vectors: np.ndarray,
                failures: Sequence[tuple[MediaRecord, str]], meta: dict) -> None:
    """Write one shard atomically. ``meta`` must name the encoder (``encoder``, ``dim``)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = int(meta["dim"])
    if len(records) == 0:
        vectors = np.zeros((0, dim), np.float32)
    if vectors.shape != (len(records), dim):
        raise ValueError(f"expected vectors of shape ({len(records)}, {dim}), got {vectors.shape}")
    meta = {"format": SHARD_FORMAT, "version": SHARD_VERSION, "created": time.time(),
            "host": socket.gethostname(), **meta, "embedded": len(records), "failed": len(failures)}
    failed = [r for r, _ in failures]
    arrays = {
        "meta": np.asarray(json.dumps(meta, ensure_ascii=False)),
        "vectors": vectors,
        "paths": _text(r.path for r in records),
        "sizes": np.asarray([r.size for r in records], dtype=np.int64),
        "mtimes": np.asarray([r.mtime for r in records], dtype=np.float64),
        "sha256": _text(r.sha256 for r in records),
        "widths": _opt_int(r.width for r in records),
        "heights": _opt_int(r.height for r in records),
        "orientation": _opt_int(r.orientation for r in records),
        "taken_at": _text(r.taken_at for r in records),
        "failed_paths": _text(r.path for r in failed),
        "failed_sizes": np.asarray([r.size for r in failed], dtype=np.int64),
        "failed_mtimes": np.asarray([r.mtime for r in failed], dtype=np.float64),
        "failed_sha256": _text(r.sha256 for r in failed),
        "failed_reasons": _text(reason for _, reason in failures),
    }
    _atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _check_meta(meta: dict, path: str) -> dict:
    if meta.get("format") != SHARD_FORMAT:
        raise ShardError(f"{path} is not a vsearch shard")
    if int(meta.get("version", 0)) > SHARD_VERSION:
        raise ShardError(f"{path} has shard format version {meta['version']}, newer than this vsearch "
                         f"understands ({SHARD_VERSION}); upgrade vsearch")
    return meta


def read_shard_meta(path: str) -> dict:
    """Only the ``meta`` member (an npz is read member by member, so this skips the vectors)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return _check_meta(json.loads(str(z["meta"])), path)
    except ShardError:
        raise
    except Exception as exc:  # truncated copy, not a zip, no meta member
        raise ShardError(f"unreadable shard {path}: {type(exc).__name__}: {exc}") from None


def _none(value, sentinel):
    return None if value == sentinel else value


def read_shard(path: str) -> ShardData:
    """A whole shard, checked: every column as long as the vectors, vectors finite and (N, dim)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = _check_meta(json.loads(str(z["meta"])), path)
            cols = {k: z[k] for k in z.files if k != "meta"}
    except ShardError:
        raise
    except Exception as exc:
        raise ShardError(f"unreadable shard {path}: {type(exc).__name__}: {exc}") from None
    vectors = cols["vectors"]
    n, dim = len(cols["paths"]), int(meta["dim"])
    if vectors.dtype != np.float32 or vectors.shape != (n, dim):
        raise ShardError(f"{path}: vectors are {vectors.dtype} {vectors.shape}, expected float32 ({n}, {dim})")
    for key in ("sizes", "mtimes", "sha256", "widths", "heights", "orientation", "taken_at"):
        if len(cols[key]) != n:
            raise ShardError(f"{path}: column {key} has {len(cols[key])} rows, expected {n}")
    if not np.isfinite(vectors).all():
        raise ShardError(f"{path}: vectors contain NaN or infinity")
    records = [
        MediaRecord(str(p), int(s), float(m), _none(str(h), ""), _none(int(w), -1), _none(int(hh), -1),
                    _none(str(t), ""), _none(int(o), -1))
        for p, s, m, h, w, hh, t, o in zip(cols["paths"], cols["sizes"], cols["mtimes"], cols["sha256"],
                                            cols["widths"], cols["heights"], cols["taken_at"], cols["orientation"])
    ]
    failures = [
        (MediaRecord(str(p), int(s), float(m), _none(str(h), "")), str(reason))
        for p, s, m, h, reason in zip(cols["failed_paths"], cols["failed_sizes"], cols["failed_mtimes"],
                                      cols["failed_sha256"], cols["failed_reasons"])
    ]
    return ShardData(meta, records, vectors, failures)


def shard_paths(directory: str) -> list[str]:
    """The complete shard files in ``directory``, by shard number (temporary files are ignored)."""
    found = []
    for name in os.listdir(directory):
        m = _SHARD_RE.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return [p for _, p in sorted(found)]


def is_done(directory: str, job: ShardJob) -> bool:
    """Whether the shard for ``job`` exists and was made from exactly the same inputs."""
    path = os.path.join(directory, job.name)
    if not os.path.exists(path):
        return False
    try:
        return read_shard_meta(path).get("inputs_sha256") == job.digest()
    except ShardError:
        return False  # unreadable: make it again


def read_run(directory: str) -> dict | None:
    path = os.path.join(directory, RUN_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_run(directory: str, run: dict) -> None:
    _atomic_write(os.path.join(directory, RUN_FILE),
                  lambda fh: fh.write(json.dumps(run, indent=1, ensure_ascii=False).encode()))
