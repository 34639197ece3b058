import numpy as np
import pytest

from benchmarks.common import clustered_with_queries
from tests.conftest import unit as _unit
from vsearch.vector_index import VectorIndex, ivf_params


def brute_force(db, ids, q, k):
    scores = q @ db.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), ids[order]


def test_flat_matches_numpy_brute_force():
    rng = np.random.default_rng(0)
    db = _unit(rng.normal(size=(500, 24)))
    ids = np.arange(1000, 1500, dtype=np.int64)
    q = _unit(rng.normal(size=(20, 24)))
    vi = VectorIndex.build(24, db, ids)
    assert vi.kind == "flat"
    scores, got = vi.search(q, 10)
    want_scores, want_ids = brute_force(db, ids, q, 10)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert (got == want_ids).mean() > 0.99  # ties aside, identical


def test_remove_and_ids():
    rng = np.random.default_rng(1)
    db = _unit(rng.normal(size=(50, 8)))
    vi = VectorIndex.build(8, db, np.arange(50) + 10)
    assert vi.remove([10, 11, 12]) == 3
    assert sorted(vi.ids().tolist()) == list(range(13, 60))
    _, got = vi.search(db[:3], 1)
    assert not set(got.ravel().tolist()) & {10, 11, 12}


def test_search_never_pads_with_minus_one():
    vi = VectorIndex.build(4, _unit(np.eye(4, dtype=np.float32)[:2]), [5, 6])
    scores, ids = vi.search(np.eye(4, dtype=np.float32)[:1], 10)
    assert ids.shape == (1, 2) and (ids >= 0).all()


def test_ivf_recall_against_exact_on_clustered_vectors():
    n, dim = 20_000, 64
    # queries are held-out points of the database's clusters, as photo queries resemble photos
    db, q = clustered_with_queries(n, 200, dim, 200, seed=2)
    ids = np.arange(n, dtype=np.int64) * 3 + 7
    vi = VectorIndex.build(dim, db, ids, ann_threshold=1000)
    assert vi.kind == "ivf"
    _, got = vi.search(q, 10)
    _, want = brute_force(db, ids, q, 10)
    recall = np.mean([len(set(g) & set(w)) / 10 for g, w in zip(got, want)])
    assert recall >= 0.95, recall
    # removal works on IVF (the reason we use it instead of HNSW)
    assert vi.remove(ids[:100]) == 100
    assert len(vi) == n - 100 and not set(vi.ids().tolist()) & set(ids[:100].tolist())


def test_save_is_atomic_and_roundtrips(tmp_path):
    rng = np.random.default_rng(4)
    vi = VectorIndex.build(8, _unit(rng.normal(size=(30, 8))), np.arange(30))
    path = tmp_path / "x.faiss"
    vi.save(str(path))
    loaded = VectorIndex.load(str(path), 8)
    assert sorted(loaded.ids().tolist()) == list(range(30))
    assert [p.name for p in tmp_path.iterdir()] == ["x.faiss"]  # no temp file left behind
    with pytest.raises(ValueError):
        VectorIndex.load(str(path), 16)


def test_ivf_params_grow_with_n():
    assert ivf_params(10_000)[0] < ivf_params(1_000_000)[0]
    nlist, nprobe = ivf_params(1_000_000)
    assert 1 <= nprobe <= nlist


def test_filtered_search_survives_faiss_torch_utils():
    """pytorch-metric-learning imports faiss.contrib.torch_utils, which swaps Index.search for a
    wrapper without ``params=`` in the whole process; a filtered search must still work after it.
    Run in a subprocess so the swap does not leak into other tests."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import numpy as np
        import faiss.contrib.torch_utils  # noqa: F401 - the swap under test
        from vsearch.vector_index import VectorIndex
        rng = np.random.default_rng(0)
        x = rng.standard_normal((50, 8)).astype("float32")
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        index = VectorIndex(8)
        index.add(x, np.arange(50))
        scores, ids = index.search(x[:2], 3, allowed_ids=[7, 9, 11])
        assert set(ids.ravel().tolist()) <= {7, 9, 11}, ids
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
