"""Ray Data as an executor for shard jobs: one encoder actor per GPU (or per CPU slot), anywhere
in a Ray cluster.

The dataset is the list of shard jobs (one row each, one block each), mapped with
``map_batches`` over a fixed pool of :class:`ShardWorker` actors. Each actor loads the model once
and writes its shards itself, so vectors never travel through the driver; the driver only gets a
one-row summary per shard. One shard per call and one call in flight per actor keep the actors
evenly loaded (a slow actor does not hoard queued shards), and a task Ray retries after a worker
dies just writes the same shard again (writes are atomic, see :mod:`indexer.shards`).

On a cluster, ``out_dir`` and the image files must be at the same paths on every node (NFS or
another shared filesystem), and vsearch must be installed on every node.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np

from indexer.embed import ShardEmbedder, ShardSummary
from indexer.shards import ShardJob
from vsearch.errors import VSearchError

log = logging.getLogger(__name__)


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401 - the [data] extra, not only ray core
    except ImportError:
        raise VSearchError("Ray is not installed: pip install 'vsearch[scale]' (or 'ray[data]')") from None
    return ray


def local_runtime_env() -> dict:
    """For a Ray instance on this machine: workers import vsearch from where this process did
    (a checkout on PYTHONPATH, say), not from whatever installed copy their default path finds."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


class ShardWorker:
    """The Ray actor: a :class:`ShardEmbedder` built once, then one shard job per call."""

    def __init__(self, model: str, device: str, batch_size: int, decode_threads: int, out_dir: str):
        self.embedder = ShardEmbedder(model, device, batch_size, decode_threads)
        self.out_dir = out_dir

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done = [self.embedder.run(ShardJob.from_json(str(text)), self.out_dir) for text in batch["job"]]
        return {
            "index": np.asarray([s.index for s in done], np.int64),
            "files": np.asarray([s.files for s in done], np.int64),
            "embedded": np.asarray([s.embedded for s in done], np.int64),
            "failed": np.asarray([s.failed for s in done], np.int64),
            "seconds": np.asarray([s.seconds for s in done], np.float64),
            "decode_wait": np.asarray([s.decode_wait for s in done], np.float64),
            "encode": np.asarray([s.encode for s in done], np.float64),
            "host": np.asarray([s.host for s in done]),
        }


class RayExecutor:
    """Run shard jobs on Ray: a local instance started here, or the cluster at ``address``
    (also taken from ``RAY_ADDRESS``). A Ray already initialised by the caller is used as is.

    ``gpus_per_actor=None`` means one GPU per actor when the cluster has GPUs, else CPU actors.
    ``actors=None`` means one actor per GPU, or per ``cpus_per_actor`` CPUs. Each actor reserves
    ``cpus_per_actor`` CPUs and decodes with that many threads (when more than one).
    """

    def __init__(self, actors: int | None = None, gpus_per_actor: float | None = None, cpus_per_actor: int = 1,
                 batch_size: int = 64, address: str | None = None, num_cpus: int | None = None):
        if actors is not None and actors < 1:
            raise ValueError("actors must be at least 1")
        if cpus_per_actor < 1:
            raise ValueError("cpus_per_actor must be at least 1")
        self.actors, self.gpus_per_actor, self.cpus_per_actor = actors, gpus_per_actor, cpus_per_actor
        self.batch_size, self.address, self.num_cpus = batch_size, address, num_cpus
        self.plan: dict = {}  # what the last run used: actors, device, resources (for reports and tests)

    def _placement(self, resources: dict, n_jobs: int) -> tuple[int, float, str]:
        gpus = float(resources.get("GPU", 0))
        per_gpu = self.gpus_per_actor if self.gpus_per_actor is not None else (1.0 if gpus >= 1 else 0.0)
        if per_gpu > gpus:
            raise VSearchError(f"each actor asks for {per_gpu:g} GPU but the Ray cluster has {gpus:g}")
        if per_gpu:
            default = int(gpus // per_gpu)
        else:
            default = max(1, int(float(resources.get("CPU", 1)) // self.cpus_per_actor))
        actors = max(1, min(self.actors or default, n_jobs))  # an actor without a shard only costs its start
        return actors, per_gpu, "cuda" if per_gpu else "cpu"

    def run(self, jobs: Sequence[ShardJob], model: str, out_dir: str) -> list[ShardSummary]:
        if not jobs:
            return []
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            local = not (self.address or os.environ.get("RAY_ADDRESS"))
            ray.init(address=self.address, num_cpus=self.num_cpus if local else None, include_dashboard=False,
                     logging_level=logging.WARNING, runtime_env=local_runtime_env() if local else None)
        try:
            actors, per_gpu, device = self._placement(ray.cluster_resources(), len(jobs))
            threads = self.cpus_per_actor if self.cpus_per_actor > 1 else 0
            self.plan = {"actors": actors, "gpus_per_actor": per_gpu, "cpus_per_actor": self.cpus_per_actor,
                         "device": device, "decode_threads": threads}
            log.info("Ray: %d %s actor(s) for %d shard(s)", actors, device, len(jobs))
            ds = ray.data.from_items([{"job": job.to_json()} for job in jobs], override_num_blocks=len(jobs))
            out = ds.map_batches(
                ShardWorker,
                fn_constructor_kwargs={"model": model, "device": device, "batch_size": self.batch_size,
                                       "decode_threads": threads, "out_dir": os.path.abspath(out_dir)},
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1),
                num_cpus=self.cpus_per_actor,
                num_gpus=per_gpu or None,
            )
            rows = out.take_all()
        finally:
            if started_here:
                ray.shutdown()
        summaries = [ShardSummary(int(r["index"]), int(r["files"]), int(r["embedded"]), int(r["failed"]),
                                  float(r["seconds"]), str(r["host"]), float(r["decode_wait"]), float(r["encode"]))
                     for r in rows]
        return sorted(summaries, key=lambda s: s.index)
