"""GPU search paths. The torch exact-search code runs on the CPU too, so it is checked against
FAISS here; the FAISS GPU fallback is checked by making the GPU conversion fail the way a build
without kernels for the card fails. Tests marked `gpu` need CUDA and skip without it."""
import numpy as np
import pytest
import torch

from vsearch import gpu
from vsearch.vector_index import VectorIndex


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_torch_exact_search_matches_faiss_flat_on_cpu():
    rng = np.random.default_rng(0)
    db, q = _unit(rng.normal(size=(3000, 64))), _unit(rng.normal(size=(50, 64)))
    ids = np.arange(3000, dtype=np.int64) * 7 + 1
    want_s, want_i = VectorIndex.build(64, db, ids).search(q, 10)
    # a tiny block size exercises the blocked loop
    got_s, got_i = gpu.TorchExactSearch(db, ids, device="cpu", max_scores=3000 * 7).search(q, 10)
    np.testing.assert_allclose(got_s, want_s, rtol=1e-4, atol=1e-5)
    assert (got_i == want_i).mean() > 0.99


def test_faiss_gpu_absent_falls_back(monkeypatch):
    import faiss

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0, raising=False)
    index = faiss.IndexFlatIP(8)
    out, note = gpu.faiss_to_gpu(index)
    assert out is index and "no GPU" in note


def test_faiss_gpu_without_kernels_falls_back_naming_the_fix(monkeypatch):
    import faiss

    def broken(*_a, **_k):  # what faiss-gpu-cu12 1.14.1 raises on an H100 at first use
        raise RuntimeError("CUDA error 209 no kernel image is available for execution on the device")

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "GpuClonerOptions", lambda: type("O", (), {})(), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", broken, raising=False)
    index = faiss.IndexFlatIP(8)
    out, note = gpu.faiss_to_gpu(index)
    assert out is index and "faiss-gpu==1.15.1" in note


def test_gpu_searcher_on_cpu_returns_the_cpu_index():
    vi = VectorIndex.build(4, _unit(np.eye(4, dtype=np.float32)), [1, 2, 3, 4])
    searcher, note = gpu.gpu_searcher(vi, device="cpu")
    assert searcher is vi and "CPU" in note


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_exact_search_agrees_with_cpu():
    rng = np.random.default_rng(1)
    db, q = _unit(rng.normal(size=(20000, 128))), _unit(rng.normal(size=(100, 128)))
    vi = VectorIndex.build(128, db, np.arange(20000))
    searcher, _ = gpu.gpu_searcher(vi, device="cuda")
    _, want = vi.search(q, 10)
    _, got = searcher.search(q, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)]) > 0.98  # fp16 ties aside
