"""The exported model file: weights plus what is needed to use them (architecture, preprocessing).

One ``torch.save`` of a dict holding only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs when a file from elsewhere is opened)::

    {"format": "vsearch.trained-embedding", "format_version": 1,
     "spec": {"backbone", "embedding_dim", "preprocessing": {image_size, mean, std, crop_pct}},
     "state_dict": {...}, "meta": {loss, miner, steps, classes, held-out metrics, ...}}
"""
from __future__ import annotations

import os

import torch

from training.errors import CheckpointError
from training.model import EmbeddingNet, ModelSpec, build_model

FORMAT = "vsearch.trained-embedding"
FORMAT_VERSION = 1


def atomic_torch_save(obj: dict, path: str) -> None:
    """Write to a temporary file, then rename: a crash never leaves half a file under ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_model(path: str, model: EmbeddingNet, spec: ModelSpec, meta: dict | None = None) -> None:
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": FORMAT, "format_version": FORMAT_VERSION, "spec": spec.to_dict(),
                       "state_dict": state, "meta": dict(meta or {})}, path)


def read_model_file(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f"no such model file: {path} (write one with `vsearch train DATA --out {os.path.basename(path) or 'model.pt'}`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle refusals, truncation, not a torch file at all
        raise CheckpointError(f"{path} is not a loadable model file: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a model written by `vsearch train` (no {FORMAT!r} header)")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {payload['format_version']}; this vsearch reads up to "
                              f"{FORMAT_VERSION}: upgrade vsearch")
    return payload


def load_model(path: str, device: str = "cpu") -> tuple[EmbeddingNet, ModelSpec, dict]:
    """(model in eval mode on ``device``, its spec, its meta) from a file written by :func:`save_model`."""
    payload = read_model_file(path)
    spec = ModelSpec.from_dict(payload["spec"])
    with torch.random.fork_rng(devices=[]):  # random init is overwritten; leave the caller's RNG alone
        model = build_model(spec, weights="none")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {spec.backbone} -> {spec.embedding_dim}: {str(exc)[:300]}") from None
    return model.to(device).eval(), spec, dict(payload.get("meta") or {})
