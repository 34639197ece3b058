"""Merging shard files into a catalog through its normal API (``add_media``, ``record_failures``).

Idempotent: a shard record equal to the catalog's row (path, size, mtime, sha256, indexed) is
skipped, so merging twice adds nothing and a merge can run while more shards are being made.
A record that differs replaces the row (a changed file), unless the catalog's row was written
after the shard was made: then the catalog holds newer work (``vsearch index`` ran since) and
the shard record is stale. Merging adds and replaces only; files deleted from disk are swept by
``vsearch index``, which is the one that looks at the disk.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

from indexer.shards import read_run, read_shard, read_shard_meta, shard_paths
from vsearch.catalog import IMAGE_SPACE, Catalog
from vsearch.errors import ShardError

log = logging.getLogger(__name__)


@dataclass
class MergeSummary:
    shards: int = 0
    missing_shards: list[int] = field(default_factory=list)  # planned in run.json, not written (yet)
    added: int = 0  # new paths
    replaced: int = 0  # paths whose file changed since the catalog saw it
    unchanged: int = 0  # already in the catalog exactly so (an earlier merge, or `vsearch index`)
    stale: int = 0  # the catalog row is newer than the shard
    failed: int = 0  # failures recorded in the catalog
    failed_known: int = 0  # failures for files the catalog already holds at that size and mtime
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) recorded now

    def to_json(self) -> dict:
        """What `vsearch merge-shards --json` prints: every field, failures as {path, reason}."""
        d = asdict(self)
        d["failures"] = [{"path": path, "reason": reason} for path, reason in self.failures]
        d["seconds"] = round(self.seconds, 3)
        return d


def merge_shards(catalog: Catalog, shard_dir: str, space: str = IMAGE_SPACE, chunk: int = 1000,
                 checkpoint_seconds: float = 30.0) -> MergeSummary:
    """Put every complete shard of ``shard_dir`` into ``catalog`` and save its index files.

    All shards must come from one model, and the catalog's ``space`` must be empty or filled by
    that same model (else :class:`~vsearch.errors.ModelMismatchError`); both are checked before
    anything is written. Each shard is committed in transactions of ``chunk`` files; the index
    files are saved every ``checkpoint_seconds`` (between shards) and at the end. SQL is the truth,
    so an interrupted merge loses nothing committed: merging again skips what is there, and the
    catalog brings a lagging index file level with SQL when it loads it. The merge holds the
    catalog's writer lock, like ``vsearch index``.
    """
    with catalog.writing():
        return _merge_shards(catalog, shard_dir, space, chunk, checkpoint_seconds)


def _merge_shards(catalog: Catalog, shard_dir: str, space: str, chunk: int, checkpoint_seconds: float) -> MergeSummary:
    started = time.perf_counter()
    if not os.path.isdir(shard_dir):
        raise ShardError(f"no such shard folder: {shard_dir}")
    paths = shard_paths(shard_dir)
    if not paths:
        raise ShardError(f"no shard files (shard-NNNNN.npz) in {shard_dir}")
    metas = [read_shard_meta(p) for p in paths]
    models = {(m["encoder"], int(m["dim"])) for m in metas}
    if len(models) > 1:
        raise ShardError(f"{shard_dir} mixes shards of several models: {sorted(models)}")
    (encoder_name, dim), = models
    summary = MergeSummary()
    run = read_run(shard_dir)
    if run is not None:
        present = {int(m["shard"]) for m in metas}
        summary.missing_shards = [i for i in range(int(run["shards"])) if i not in present]

    catalog.bind_space(space, encoder_name, dim)
    catalog.index(space)  # load and, after a crash, bring level with SQL before adding
    last_save = time.perf_counter()
    try:
        for path in paths:
            _merge_one(catalog, read_shard(path), space, chunk, summary)
            summary.shards += 1
            log.info("merged %s (%d of %d)", os.path.basename(path), summary.shards, len(paths))
            # not after every shard: each save rewrites the whole index file
            if time.perf_counter() - last_save > checkpoint_seconds:
                catalog.save()
                last_save = time.perf_counter()
    finally:
        catalog.save()
    summary.seconds = time.perf_counter() - started
    return summary


def _merge_one(catalog: Catalog, shard, space: str, chunk: int, summary: MergeSummary) -> None:
    created = shard.created
    for start in range(0, len(shard.records), chunk):
        records = shard.records[start : start + chunk]
        vectors = shard.vectors[start : start + chunk]
        known = catalog.media_at([r.path for r in records])
        keep = []
        for i, rec in enumerate(records):
            state = known.get(rec.path)
            if state is None:
                summary.added += 1
            elif (state.status == "indexed" and state.size == rec.size and state.mtime == rec.mtime
                  and state.sha256 == rec.sha256):
                summary.unchanged += 1
                continue
            elif state.indexed_at is not None and state.indexed_at > created:
                summary.stale += 1
                continue
            else:
                summary.replaced += 1
            keep.append(i)
        if keep:
            catalog.add_media([records[i] for i in keep], vectors[keep], space=space)

    for start in range(0, len(shard.failures), chunk):
        failures = shard.failures[start : start + chunk]
        known = catalog.media_at([r.path for r, _ in failures])
        todo = []
        for rec, reason in failures:
            state = known.get(rec.path)
            if state is not None and state.size == rec.size and state.mtime == rec.mtime:
                summary.failed_known += 1  # never let a failure overwrite a good row of the same file
            elif state is not None and state.indexed_at is not None and state.indexed_at > created:
                summary.stale += 1
            else:
                todo.append((rec, reason))
        catalog.record_failures(todo)
        summary.failed += len(todo)
        summary.failures.extend((rec.path, reason) for rec, reason in todo)
