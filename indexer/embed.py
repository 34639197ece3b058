"""Embedding a manifest into shard files, with a pluggable executor (a local loop, or Ray).

reader → mapper → writer, as in clip-retrieval, built once per worker: :class:`ShardEmbedder`
loads the model once and turns one :class:`~indexer.shards.ShardJob` at a time into one shard
file. Reading and decoding reuse the indexer's ``DecodeDataset`` (sha256 of the bytes read once,
safe decoding, the encoder's own preprocessing), so a shard holds exactly what ``vsearch index``
would have stored.

Executors only decide *where* jobs run: :class:`LocalExecutor` runs them one after another in this
process, :class:`indexer.distributed.RayExecutor` spreads them over encoder actors. Both write the
same files, so the format is not tied to Ray.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from indexer.manifest import entries_digest
from indexer.gpu_decode import select_decoder
from indexer.decode import DecodeDataset, collate_decoded
from indexer.scan import FileEntry
from indexer.shards import ShardJob, is_done, plan_shards, read_run, shard_paths, write_run, write_shard
from vsearch.catalog import MediaRecord
from vsearch.errors import ShardError

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 10_000


@dataclass(frozen=True)
class ShardSummary:
    """What one shard job did (returned by every executor)."""

    index: int
    files: int
    embedded: int
    failed: int
    seconds: float
    host: str
    decode_wait: float = 0.0  # seconds the encoder waited for decoded images
    encode: float = 0.0


@dataclass
class EmbedReport:
    out_dir: str
    model: str
    total_shards: int
    shards: list[ShardSummary] = field(default_factory=list)  # made by this run
    skipped_shards: int = 0  # already complete from an earlier run with the same inputs
    seconds: float = 0.0

    @property
    def files(self) -> int:
        return sum(s.files for s in self.shards)

    @property
    def embedded(self) -> int:
        return sum(s.embedded for s in self.shards)

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.shards)

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        """What `vsearch embed-shards --json` prints: the run, the shards it wrote, the totals."""
        return {"out_dir": self.out_dir, "model": self.model, "total_shards": self.total_shards,
                "shards": [asdict(s) for s in self.shards], "skipped_shards": self.skipped_shards,
                "files": self.files, "embedded": self.embedded, "failed": self.failed,
                "seconds": round(self.seconds, 3), "images_per_second": round(self.images_per_second, 3)}


class ShardEmbedder:
    """Model loaded once; :meth:`run` turns one shard job into one shard file.

    ``decode_threads`` > 0 decodes in a thread pool while the model encodes the previous batch:
    Pillow and hashlib release the GIL while they work, so threads use several cores inside one
    process. That matters on a GPU actor, which would otherwise be held to one core's decoding
    (about 190 JPEGs/s) against an encoder that can do 30,000 (``benchmarks/RESULTS.md``). With the
    encoder on CUDA, JPEGs are decoded a batch at a time on the GPU instead
    (:mod:`indexer.gpu_decode`; the threads then only read and hash files).
    """

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 64, decode_threads: int = 0,
                 prefetch_batches: int = 2):
        from vsearch.encoders import load_encoder

        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.encoder = load_encoder(model, device)
        self.jpeg_decoder = select_decoder(self.encoder)  # None: Pillow decodes every file
        self.batch_size = batch_size
        self.decode_threads = decode_threads
        self.prefetch_batches = max(1, prefetch_batches)

    def _batches(self, dataset) -> Iterator[list]:
        """Decoded items, batch by batch, in manifest order; with threads, at most
        ``prefetch_batches`` batches are decoded ahead (bounded memory)."""
        n, bs = len(dataset), self.batch_size
        starts = range(0, n, bs)
        if not self.decode_threads:
            for s in starts:
                yield [dataset[i] for i in range(s, min(n, s + bs))]
            return
        with ThreadPoolExecutor(self.decode_threads, thread_name_prefix="vsearch-decode") as pool:
            window: deque = deque()
            for s in starts:
                window.append([pool.submit(dataset.__getitem__, i) for i in range(s, min(n, s + bs))])
                if len(window) > self.prefetch_batches:
                    yield [f.result() for f in window.popleft()]
            while window:
                yield [f.result() for f in window.popleft()]

    def embed(self, entries: Sequence[FileEntry]) -> tuple[list[MediaRecord], np.ndarray,
                                                            list[tuple[MediaRecord, str]], dict[str, float]]:
        """(records, vectors (N, D), failures, timings) for these files, in their order."""
        info = self.encoder.info
        dataset = DecodeDataset(entries, self.encoder.preprocess, draft_size=info.image_size)
        decoder = self.jpeg_decoder
        records: list[MediaRecord] = []
        parts: list[np.ndarray] = []
        failures: list[tuple[MediaRecord, str]] = []
        timings = {"decode_wait": 0.0, "encode": 0.0}
        wait_start = time.perf_counter()
        for batch in self._batches(decoder.wrap(dataset) if decoder else dataset):
            items, pixels = decoder.finish(*decoder.collate(batch)) if decoder else collate_decoded(batch)
            timings["decode_wait"] += time.perf_counter() - wait_start
            for item in items:
                if item.error:
                    rec = item.record or MediaRecord(item.entry.path, item.entry.size, item.entry.mtime)
                    failures.append((rec, item.error))
            if pixels is not None:  # one row per item without an error, in order
                t = time.perf_counter()
                parts.append(self.encoder.encode_pixels(pixels))
                timings["encode"] += time.perf_counter() - t
                records.extend(i.record for i in items if not i.error)
            wait_start = time.perf_counter()
        vectors = np.concatenate(parts) if parts else np.zeros((0, info.dim), np.float32)
        return records, vectors, failures, timings

    def run(self, job: ShardJob, out_dir: str) -> ShardSummary:
        """Embed ``job`` and write its shard into ``out_dir`` (atomically)."""
        started, cpu_started = time.perf_counter(), time.process_time()
        records, vectors, failures, timings = self.embed(job.entries)
        # CPU seconds of this process (all its threads): comparable across executors even when
        # other jobs share the machine, unlike wall time
        timings["cpu"] = time.process_time() - cpu_started
        info = self.encoder.info
        meta = {"shard": job.index, "encoder": info.name, "dim": info.dim, "inputs": len(job.entries),
                "inputs_sha256": job.digest(), "seconds": round(time.perf_counter() - started, 3),
                "timings": {k: round(v, 3) for k, v in timings.items()}}
        write_shard(os.path.join(out_dir, job.name), records, vectors, failures, meta)
        return ShardSummary(job.index, len(job.entries), len(records), len(failures),
                            time.perf_counter() - started, socket.gethostname(), timings["decode_wait"],
                            timings["encode"])


class Executor(Protocol):
    def run(self, jobs: Sequence[ShardJob], model: str, out_dir: str) -> list[ShardSummary]: ...


class LocalExecutor:
    """Every job in this process, one after another: no cluster, same shard files."""

    def __init__(self, device: str = "cpu", batch_size: int = 64, decode_threads: int = 0,
                 on_shard: Callable[[ShardSummary], None] | None = None):
        self.device, self.batch_size, self.decode_threads = device, batch_size, decode_threads
        self.on_shard = on_shard

    def run(self, jobs: Sequence[ShardJob], model: str, out_dir: str) -> list[ShardSummary]:
        if not jobs:
            return []
        embedder = ShardEmbedder(model, self.device, self.batch_size, self.decode_threads)
        out = []
        for job in jobs:
            out.append(embedder.run(job, out_dir))
            if self.on_shard:
                self.on_shard(out[-1])
        return out


def resolve_model(model: str) -> str:
    """A concrete model spec for workers: ``auto`` is settled once here, so that every worker
    loads the same model whatever it finds on its own machine."""
    from vsearch.encoders import canonical_spec, resolve_encoder

    spec = canonical_spec(model)
    if spec == "auto":
        encoder, _notice = resolve_encoder(spec, "cpu")
        return encoder.info.name
    return spec


def embed_shards(entries: Sequence[FileEntry], out_dir: str, model: str, shard_size: int = DEFAULT_SHARD_SIZE,
                 executor: Executor | None = None, overwrite: bool = False) -> EmbedReport:
    """Embed ``entries`` (a manifest, sorted) into shard files in ``out_dir``.

    Resumable: run the same command again and shards already written from the same inputs are
    kept. A folder holding another run's shards (other files, model or shard size) is refused
    unless ``overwrite``, because merging a mix of two runs would be wrong in ways nobody sees.
    """
    started = time.perf_counter()
    if not entries:
        raise ShardError("nothing to embed: the manifest is empty")
    model = resolve_model(model)
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    jobs = plan_shards(list(entries), shard_size)
    run = {"format": "vsearch-shards", "version": 1, "model": model, "shard_size": shard_size,
           "files": len(entries), "shards": len(jobs), "manifest_sha256": entries_digest(entries)}
    previous = read_run(out_dir)
    same = previous is not None and all(previous.get(k) == run[k] for k in ("model", "shard_size", "manifest_sha256"))
    if not same and (previous is not None or shard_paths(out_dir)):
        if not overwrite:
            what = (f"a run of {previous.get('files')} files with {previous.get('model')}" if previous
                    else "shard files without a run.json")
            raise ShardError(f"{out_dir} already holds {what}, not this one: choose another --out, or pass "
                             f"--overwrite to delete those shards (merge them first if they are wanted)")
        for path in shard_paths(out_dir):
            os.unlink(path)
    write_run(out_dir, run)
    todo = [job for job in jobs if not is_done(out_dir, job)]
    report = EmbedReport(out_dir, model, len(jobs), skipped_shards=len(jobs) - len(todo))
    if todo:
        log.info("embedding %d files in %d shards (%d already done) into %s", sum(len(j.entries) for j in todo),
                 len(todo), report.skipped_shards, out_dir)
        report.shards = (executor or LocalExecutor()).run(todo, model, out_dir)
    report.seconds = time.perf_counter() - started
    return report
