"""CLIP encoders through open_clip.

Specs:
  ``clip:ViT-B-32/laion2b_s34b_b79k``  an open_clip architecture with a pretrained tag
                                        (downloaded by open_clip when online, or found in its cache)
  ``clip:ViT-B-32@/path/to/weights.pt`` an architecture with a local weights file (never networked)
  ``clip:/path/to/arch.json@/path/w.pt`` a custom open_clip model config (JSON) with its weights
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from vsearch.encoders.base import EncoderInfo, l2_normalize
from vsearch.errors import ModelUnavailableError, UnknownModelError

DEFAULT_ARCH = "ViT-B-32"
DEFAULT_TAG = "laion2b_s34b_b79k"


def _known_arch(arch: str) -> bool:
    import open_clip

    return arch in open_clip.list_models()


def register_config_file(arch: str) -> str:
    """An architecture given as a JSON config file is registered with open_clip under its stem."""
    if arch.endswith(".json") and os.path.isfile(os.path.expanduser(arch)):
        import open_clip

        path = os.path.abspath(os.path.expanduser(arch))
        open_clip.add_model_config(path)
        return os.path.splitext(os.path.basename(path))[0]
    return arch


def cached_pretrained_file(arch: str, tag: str) -> str | None:
    """The local file of an open_clip pretrained tag if it was downloaded before, else None."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        return None
    hub_id = cfg.get("hf_hub", "")
    if hub_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            repo_id = "/".join(hub_id.rstrip("/").split("/")[:2])
            for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
                found = try_to_load_from_cache(repo_id, filename)
                if isinstance(found, str) and os.path.exists(found):
                    return found
        except Exception:
            return None
    return None


class ClipEncoder:
    def __init__(self, arch: str, tag: str | None = None, weights_path: str | None = None, device: str = "cpu"):
        import open_clip

        spec_arch = arch
        arch = register_config_file(arch)
        if not _known_arch(arch):
            raise UnknownModelError(
                f"open_clip has no architecture {arch!r}; known ones include "
                f"{', '.join(m for m in open_clip.list_models() if m.startswith('ViT-B'))}"
            )
        if tag is None and weights_path is None:
            raise ModelUnavailableError(
                f"clip:{arch} needs weights: pass clip:{arch}@/path/to/weights.pt for a local file, "
                f"or clip:{arch}/TAG (tags: {', '.join(open_clip.list_pretrained_tags_by_model(arch)[:4]) or 'none'}) "
                "when online"
            )
        if weights_path is not None and not os.path.isfile(weights_path):
            raise ModelUnavailableError(f"weights file not found: {weights_path}")
        pretrained = weights_path
        if tag is not None:
            pretrained = cached_pretrained_file(arch, tag) or tag
        try:
            # fp16 on a GPU: twice the throughput and half the memory, same rankings in practice
            precision = "fp16" if str(device).startswith("cuda") else "fp32"
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=pretrained, device=device, precision=precision)
        except Exception as exc:
            where = f"local file {weights_path}" if weights_path else f"pretrained tag {tag!r}"
            raise ModelUnavailableError(
                f"could not load CLIP {arch} from {where}: {type(exc).__name__}: {exc}. "
                f"Offline? Pass a local file with --model clip:{arch}@/path/to/open_clip_pytorch_model.bin, "
                "or use --model packaged"
            ) from None
        self.model = model.eval()
        self.device = torch.device(device)
        self.tokenizer = open_clip.get_tokenizer(arch)
        self._preprocess = preprocess
        with torch.inference_mode():  # the embedding width, whatever the architecture calls it
            dim = int(self.model.encode_text(self.tokenizer(["x"]).to(self.device)).shape[1])
        image_size = model.visual.image_size
        image_size = image_size[0] if isinstance(image_size, (tuple, list)) else int(image_size)
        name = f"clip:{spec_arch}@{weights_path}" if weights_path else f"clip:{spec_arch}/{tag}"
        self.info = EncoderInfo(name, dim, weights_path or str(pretrained), image_size)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        dtype = next(self.model.parameters()).dtype
        return l2_normalize(self.model.encode_image(pixels.to(self.device, dtype, non_blocking=True)))

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.info.dim), np.float32)
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start : start + batch_size])).to(self.device)
            out.append(l2_normalize(self.model.encode_text(tokens)))
        return np.concatenate(out)
