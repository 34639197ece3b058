"""An exported model run by ONNX Runtime, with no torch, open_clip or transformers in the process.

An export folder (written by :mod:`vsearch.encoders.onnx_export`) holds ``image.onnx`` and
``text.onnx`` (a model trained by ``vsearch train``, kind ``image``, has no text tower), the
preprocessing and tokenizer they need, and ``meta.json``. Each tower's session
is opened on first use, so a text query never loads the image model and the other way round.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from typing import Sequence

import numpy as np

from vsearch.encoders.base import EncoderInfo, l2_normalize
from vsearch.encoders.pixels import ImageTransform


class OnnxEncoder:
    runtime = "onnx"

    def __init__(self, directory: str, meta: dict | None = None, threads: int | None = None):
        self.directory = directory
        if meta is None:
            with open(os.path.join(directory, "meta.json")) as fh:
                meta = json.load(fh)
        self.meta = meta
        self.kind = self.meta["kind"]  # "clip" | "conse"
        self.precision = self.meta.get("precision", "fp32")
        self.info = EncoderInfo(**self.meta["info"])
        self.logit_scale = float(self.meta.get("logit_scale", 100.0))
        self._transform = ImageTransform.from_dict(self.meta["transform"])
        self._threads = threads
        self._sessions: dict[str, object] = {}
        self._lock = threading.Lock()
        self._tokenizer = None
        self._labels = self._centre = None

    # -- sessions --------------------------------------------------------------------------------
    def _session(self, tower: str):
        with self._lock:
            if tower not in self._sessions:
                from vsearch.encoders.onnx_session import open_session

                self._sessions[tower] = open_session(self.directory, tower, self._threads)
            return self._sessions[tower]

    def set_threads(self, threads: int | None) -> None:
        """Intra-op threads of the towers' sessions (None: ONNX Runtime's default, one per core).
        A session already open keeps its threads."""
        with self._lock:
            self._threads = threads

    @property
    def threads(self) -> int | None:
        return self._threads

    def loaded_towers(self) -> list[str]:
        return sorted(self._sessions)

    def _conse_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._labels is None:
            self._labels = np.load(os.path.join(self.directory, "labels.npy"))
            self._centre = np.load(os.path.join(self.directory, "centre.npy"))
        return self._labels, self._centre

    @property
    def classnames(self) -> list[str]:
        return list(self.meta["classnames"])

    # -- ImageEncoder ----------------------------------------------------------------------------
    def preprocess(self, image):
        pixels = self._transform(image)
        if "torch" in sys.modules:
            # the indexer's data loader stacks items with torch.stack; a query process has no torch
            import torch

            return torch.from_numpy(pixels)
        return pixels

    def class_probabilities(self, pixels) -> np.ndarray:
        """(B, 1000) ImageNet probabilities (the packaged model only)."""
        logits = self._session("image").run(None, {"pixels": _numpy(pixels)})[0].astype(np.float32)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def encode_pixels(self, pixels) -> np.ndarray:
        if self.kind in ("clip", "image"):
            return l2_normalize(self._session("image").run(None, {"pixels": _numpy(pixels)})[0])
        labels, centre = self._conse_arrays()
        probs = self.class_probabilities(pixels)
        top_t = int(self.meta["top_t"])
        # the same order as torch.topk (descending); ties do not matter for a weighted mean
        top_i = np.argsort(-probs, axis=1, kind="stable")[:, :top_t]
        top_p = np.take_along_axis(probs, top_i, axis=1)
        top_p = top_p / top_p.sum(axis=1, keepdims=True)
        emb = np.einsum("bt,btd->bd", top_p, labels[top_i])
        return l2_normalize(emb - centre)

    # -- TextEncoder -----------------------------------------------------------------------------
    def _tokens(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self._tokenizer is None:
            from vsearch.encoders.token_ids import ClipBPE, WordPiece

            tok = self.meta["tokenizer"]
            path = os.path.join(self.directory, tok["file"])
            self._tokenizer = (ClipBPE(path, tok["context_length"]) if tok["kind"] == "clip-bpe"
                               else WordPiece(path, tok["max_length"]))
        out = self._tokenizer(list(texts))
        return {"tokens": out} if isinstance(out, np.ndarray) else out

    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if self.kind == "image":
            from vsearch.errors import QueryError

            raise QueryError(f"{self.info.name} is an image-only embedding model (trained by `vsearch train`): it "
                             "cannot embed text. Search its catalog with --image, or index with a CLIP or packaged "
                             "model for text queries")
        if len(texts) == 0:
            return np.zeros((0, self.info.dim), np.float32)
        session = self._session("text")
        wanted = {i.name for i in session.get_inputs()}
        out = []
        for start in range(0, len(texts), batch_size):
            feeds = {k: v for k, v in self._tokens(texts[start : start + batch_size]).items() if k in wanted}
            out.append(session.run(None, feeds)[0])
        emb = np.concatenate(out).astype(np.float32)
        if self.kind == "conse":
            emb = l2_normalize(emb) - self._conse_arrays()[1]
        return l2_normalize(emb)


def _numpy(pixels) -> np.ndarray:
    if hasattr(pixels, "detach"):  # a torch batch from the indexer's data loader
        pixels = pixels.detach().cpu().float().numpy()
    return np.ascontiguousarray(pixels, dtype=np.float32)
