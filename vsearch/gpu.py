"""GPU search, with CPU fallbacks that say why they fell back.

Two GPU paths, chosen by measurement (H100, 1M × 512, k = 10; ``benchmarks/RESULTS.md``):

* exact search as one fp16 matrix product + top-k in torch: 113,000 queries/s, three times
  FAISS's ``GpuIndexFlatIP`` (35,000) — :class:`TorchExactSearch`;
* FAISS GPU (``index_cpu_to_gpu``) for IVF indexes — :func:`faiss_to_gpu`.

A FAISS GPU build without kernels for the card (``faiss-gpu-cu12`` 1.14.1 on H100/H200 fails at
the first search with "no kernel image is available") is caught and reported, and the CPU index
is used instead.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

FAISS_GPU_HINT = (
    "this FAISS GPU build has no kernels for this GPU (seen with faiss-gpu-cu12 1.14.1 on H100/H200); "
    "install faiss-gpu==1.15.1 (CUDA 12, sm_90 kernels). Falling back to CPU search"
)


def faiss_gpu_count() -> int:
    import faiss

    try:
        return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    except Exception:  # noqa: BLE001 - a broken GPU runtime means "no GPU" for search
        return 0


def faiss_to_gpu(index, fp16: bool = True, device: int = 0):
    """(index, note): the index moved to the GPU and checked with one search, or the CPU index
    unchanged with a note saying why."""
    import faiss

    if faiss_gpu_count() == 0:
        return index, "FAISS sees no GPU (faiss-cpu installed, or no CUDA device): CPU search"
    try:
        res = faiss.StandardGpuResources()
        options = faiss.GpuClonerOptions()
        options.useFloat16 = fp16
        gpu_index = faiss.index_cpu_to_gpu(res, device, index, options)
        gpu_index.search(np.zeros((1, index.d), np.float32), 1)  # kernels load lazily: fail here, not later
        gpu_index._vsearch_resources = res  # keep the resources alive as long as the index
        return gpu_index, f"FAISS GPU {device} ({'fp16' if fp16 else 'fp32'} storage)"
    except Exception as exc:  # noqa: BLE001 - every GPU failure falls back to the working CPU index
        text = str(exc)
        if "no kernel image" in text or "209" in text:
            log.warning(FAISS_GPU_HINT)
            return index, FAISS_GPU_HINT
        log.warning("FAISS GPU unavailable (%s); using CPU search", text.splitlines()[0] if text else type(exc).__name__)
        return index, f"FAISS GPU failed ({type(exc).__name__}); CPU search"


class TorchExactSearch:
    """Exact inner-product top-k as one matrix product in torch (fp16 on CUDA, fp32 on CPU).

    ``vectors`` (N, D) and ``ids`` (N,) are copied to the device once; queries are processed in
    blocks so that the (Q, N) score matrix stays within ``max_scores`` elements.
    """

    def __init__(self, vectors: np.ndarray, ids: np.ndarray, device: str = "cuda", max_scores: int = 1 << 28):
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.vectors = torch.from_numpy(np.ascontiguousarray(vectors, np.float32)).to(self.device, self.dtype)
        self.ids = torch.from_numpy(np.asarray(ids, np.int64)).to(self.device)
        self.max_scores = max_scores

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @torch.inference_mode()
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = torch.from_numpy(np.ascontiguousarray(np.atleast_2d(queries), np.float32)).to(self.device, self.dtype)
        k = min(int(k), len(self))
        block = max(1, self.max_scores // max(len(self), 1))
        scores_out, ids_out = [], []
        for start in range(0, q.shape[0], block):
            s = q[start : start + block] @ self.vectors.T  # (B, N)
            top_s, top_i = s.topk(k, dim=1)
            scores_out.append(top_s.float().cpu())
            ids_out.append(self.ids[top_i].cpu())
        return torch.cat(scores_out).numpy(), torch.cat(ids_out).numpy()


def gpu_searcher(vector_index, device: str = "cuda"):
    """The fastest measured searcher for ``vector_index`` on ``device``, plus a note.

    Exact (flat) indexes become a :class:`TorchExactSearch`; IVF indexes go to FAISS GPU when it
    works. Without a usable GPU the CPU ``VectorIndex`` is returned.
    """
    if device == "cpu" or not torch.cuda.is_available():
        return vector_index, "no CUDA device: CPU search"
    if not vector_index.is_ivf:
        vectors, ids = flat_contents(vector_index)
        return TorchExactSearch(vectors, ids, device), "exact search: torch fp16 matmul + top-k on the GPU"
    gpu_index, note = faiss_to_gpu(vector_index.index)
    if gpu_index is vector_index.index:
        return vector_index, note
    return _FaissGpuSearch(gpu_index, vector_index.index.nprobe), note


def flat_contents(vector_index) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (N, D), ids (N,)) of a flat index in one copy; one ``reconstruct`` call per id
    takes seconds at a million vectors."""
    index = vector_index.index
    n = int(index.ntotal)
    if n == 0:
        return np.zeros((0, vector_index.dim), np.float32), np.zeros(0, np.int64)
    import faiss

    inner = faiss.downcast_index(index.index) if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)) else None
    if isinstance(inner, faiss.IndexFlat):
        # internal order: row i of the flat index holds id_map[i]
        return inner.reconstruct_n(0, n), faiss.vector_to_array(index.id_map).astype(np.int64)
    ids = vector_index.ids()
    return np.stack([vector_index.reconstruct(i) for i in ids]), ids


class _FaissGpuSearch:
    def __init__(self, index, nprobe: int):
        self.index = index
        try:
            import faiss

            faiss.GpuParameterSpace().set_index_parameter(index, "nprobe", nprobe)
        except Exception:  # noqa: BLE001 - older builds: keep the copied nprobe
            pass

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int):
        return self.index.search(np.ascontiguousarray(np.atleast_2d(queries), np.float32), min(k, len(self)))
