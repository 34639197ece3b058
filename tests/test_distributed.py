"""The Ray executor on a local Ray instance: same shard files as the local loop."""
import numpy as np
import pytest

from indexer import manifest as mf
from indexer.distributed import RayExecutor, local_runtime_env
from indexer.embed import LocalExecutor, embed_shards
from indexer.shards import read_shard, shard_paths
from vsearch.errors import VSearchError


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, runtime_env=local_runtime_env())
    yield ray
    ray.shutdown()


def test_placement_one_actor_per_gpu_or_per_cpu_slot():
    assert RayExecutor()._placement({"CPU": 64, "GPU": 8}, n_jobs=100) == (8, 1.0, "cuda")
    assert RayExecutor()._placement({"CPU": 64, "GPU": 8}, n_jobs=3) == (3, 1.0, "cuda")  # no idle actors
    assert RayExecutor(cpus_per_actor=4)._placement({"CPU": 16}, n_jobs=100) == (4, 0.0, "cpu")
    assert RayExecutor(actors=2, gpus_per_actor=0)._placement({"CPU": 16, "GPU": 2}, 10) == (2, 0.0, "cpu")
    with pytest.raises(VSearchError, match="asks for 1 GPU but the Ray cluster has 0"):
        RayExecutor(gpus_per_actor=1)._placement({"CPU": 16}, 10)


def test_ray_executor_writes_the_same_shards_as_the_local_loop(ray_local, photos, tmp_path, tiny_clip_spec):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    entries = mf.from_paths([str(photos)]).entries
    local = embed_shards(entries, str(tmp_path / "local"), tiny_clip_spec, shard_size=4,
                         executor=LocalExecutor(batch_size=8))
    executor = RayExecutor(actors=2, batch_size=8)
    remote = embed_shards(entries, str(tmp_path / "ray"), tiny_clip_spec, shard_size=4, executor=executor)

    assert executor.plan["actors"] == 2 and executor.plan["device"] == "cpu"
    assert [s.index for s in remote.shards] == [0, 1, 2]
    assert (remote.embedded, remote.failed) == (local.embedded, local.failed) == (10, 1)
    a_paths, b_paths = shard_paths(str(tmp_path / "local")), shard_paths(str(tmp_path / "ray"))
    assert [p.rsplit("/", 1)[1] for p in a_paths] == [p.rsplit("/", 1)[1] for p in b_paths]
    for a, b in zip(map(read_shard, a_paths), map(read_shard, b_paths)):
        assert a.meta["inputs_sha256"] == b.meta["inputs_sha256"]
        assert a.records == b.records and a.failures == b.failures
        np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)

    # a finished run is not redone
    again = embed_shards(entries, str(tmp_path / "ray"), tiny_clip_spec, shard_size=4, executor=executor)
    assert again.skipped_shards == 3 and again.shards == []
