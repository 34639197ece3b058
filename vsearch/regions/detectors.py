"""Learned detectors and segmenters from torchvision, loaded from a weights file on this machine.

Every architecture of ``torchvision.models.detection`` works: Faster R-CNN, RetinaNet, SSD,
SSDlite, FCOS, Mask R-CNN (whose masks become background-blanked crops), Keypoint R-CNN (boxes).
vsearch never downloads weights; the user names a file:

* ``detector:FILE`` where FILE was written by :func:`save_detector` (architecture, classes and
  constructor options travel inside it), or is a state dict named like torchvision's own
  downloads (``fasterrcnn_resnet50_fpn_coco-258fb6c6.pth``: the name says the architecture);
* ``detector:ARCH@FILE`` for any other plain state dict of architecture ARCH.

The number of classes of a plain state dict is read off its classification layers, and the
class names are torchvision's COCO names when the count matches them. Files are read with
``torch.load(weights_only=True)``: a weights file cannot run code.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from PIL import Image

from vsearch.regions.base import RegionError, Regions

FORMAT = "vsearch-detector/1"
DEFAULT_MIN_SCORE = 0.5
_PROBE_CLASSES = 91  # COCO as torchvision numbers it; any count works for the shape probe


def detection_architectures() -> list[str]:
    """Names of torchvision's detection builders (``fasterrcnn_resnet50_fpn``, …)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models.detection))


@dataclass(frozen=True)
class DetectorCheckpoint:
    arch: str
    num_classes: int
    categories: tuple[str, ...]  # index = the model's label id; 0 is the background
    state_dict: Mapping[str, torch.Tensor] = field(repr=False)
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # constructor options (min_size, …)
    sha256: str = ""


def parse_detector_spec(rest: str) -> tuple[str | None, str]:
    """``"FILE"`` or ``"ARCH@FILE"`` (the part after ``detector:``) -> (arch or None, path)."""
    if not rest:
        raise RegionError("detector: needs a weights file, e.g. --regions detector:/path/to/model.pt")
    head, sep, tail = rest.partition("@")
    if sep and head in detection_architectures():
        return head, os.path.abspath(os.path.expanduser(tail))
    return None, os.path.abspath(os.path.expanduser(rest))


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _arch_from_filename(path: str) -> str | None:
    base = os.path.basename(path)
    matches = [a for a in detection_architectures() if base.startswith(a)]
    return max(matches, key=len) if matches else None  # fasterrcnn_resnet50_fpn_v2 over _fpn


def _coco_categories(arch: str, num_classes: int) -> tuple[str, ...] | None:
    """The class names torchvision publishes for ``arch``'s weights (metadata only, no download)."""
    import torchvision

    try:
        meta = torchvision.models.get_model_weights(arch).DEFAULT.meta
    except Exception:
        return None
    cats = meta.get("categories")
    return tuple(cats) if cats and len(cats) == num_classes else None


def _build(arch: str, num_classes: int, kwargs: Mapping[str, Any]) -> torch.nn.Module:
    import torchvision

    try:
        # weights=None and weights_backbone=None: nothing is fetched; the file supplies every tensor
        return torchvision.models.get_model(arch, weights=None, weights_backbone=None,
                                            num_classes=num_classes, **dict(kwargs))
    except TypeError as exc:
        raise RegionError(f"cannot build {arch} with options {dict(kwargs)}: {exc}") from None


def _check_kwargs(kwargs: Any, path: str) -> dict[str, Any]:
    if not isinstance(kwargs, Mapping):
        raise RegionError(f"{path}: 'kwargs' must be a mapping of constructor options")
    for k, v in kwargs.items():
        if not isinstance(k, str) or not isinstance(v, (bool, int, float, str, list, tuple)):
            raise RegionError(f"{path}: constructor option {k!r} must be a plain value, got {type(v).__name__}")
    return dict(kwargs)


def read_checkpoint(path: str, arch: str | None = None) -> DetectorCheckpoint:
    """Read a detector weights file (see the module docstring for the accepted forms)."""
    if not os.path.isfile(path):
        raise RegionError(f"detector weights not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph with terminal escapes; the line naming the object is enough
        why = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln), "")
        if not why:
            raise RegionError(f"cannot read detector weights {path}: not a PyTorch weights file") from None
        raise RegionError(
            f"{path} holds Python objects besides tensors, which loading with weights_only=True refuses "
            f"({why}). Save only the weights: torch.save(model.state_dict(), FILE), "
            "or vsearch.regions.detectors.save_detector(model, ARCH, FILE, categories)"
        ) from None
    except Exception as exc:
        raise RegionError(f"cannot read detector weights {path}: {type(exc).__name__}: {exc}") from None
    sha = _file_sha256(path)
    categories: tuple[str, ...] | None = None
    num_classes: int | None = None
    kwargs: dict[str, Any] = {}
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        file_arch = obj.get("arch")
        if arch is not None and file_arch != arch:
            raise RegionError(f"{path} holds a {file_arch}, not a {arch}")
        arch = file_arch
        num_classes = obj.get("num_classes")
        categories = tuple(obj["categories"]) if obj.get("categories") else None
        kwargs = _check_kwargs(obj.get("kwargs", {}), path)
        state = obj.get("state_dict")
    elif isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):  # torchvision reference scripts
        state = obj["model"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        state = obj["state_dict"]
    else:
        state = obj
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RegionError(f"{path} is not a detector state dict (a mapping of parameter names to tensors)")
    arch = arch or _arch_from_filename(path)
    if arch is None:
        raise RegionError(
            f"cannot tell which torchvision architecture {os.path.basename(path)} is: name it, e.g. "
            f"--regions detector:fasterrcnn_resnet50_fpn@{path} (known: {', '.join(detection_architectures())})"
        )
    if arch not in detection_architectures():
        raise RegionError(f"unknown detection architecture {arch!r} (known: {', '.join(detection_architectures())})")
    if num_classes is None:
        num_classes = infer_num_classes(arch, state, kwargs, path)
    if categories is not None and len(categories) != num_classes:
        raise RegionError(f"{path}: {len(categories)} category names for {num_classes} classes")
    if categories is None:
        categories = _coco_categories(arch, num_classes) or \
            ("__background__",) + tuple(f"class {i}" for i in range(1, num_classes))
    return DetectorCheckpoint(arch, int(num_classes), categories, state, kwargs, sha)


def infer_num_classes(arch: str, state: Mapping[str, torch.Tensor], kwargs: Mapping[str, Any], path: str = "") -> int:
    """The class count of a state dict of ``arch``, read off its classification layers.

    Every class-dependent layer of torchvision's detectors has ``anchors × classes`` (or
    ``4 × classes``) output rows, so comparing each mismatching tensor with a model built for a
    known count gives the count; all of them must agree."""
    expected = _build(arch, _PROBE_CLASSES, kwargs).state_dict()
    _check_keys(arch, expected, state, path)
    counts = set()
    for key, tensor in state.items():
        want = expected[key]
        if tuple(tensor.shape) == tuple(want.shape):
            continue
        rows, want_rows = tensor.shape[0] if tensor.ndim else 0, want.shape[0] if want.ndim else 0
        if (tensor.ndim != want.ndim or tuple(tensor.shape[1:]) != tuple(want.shape[1:]) or not want_rows
                or (rows * _PROBE_CLASSES) % want_rows):
            raise RegionError(f"{path}: {key} has shape {tuple(tensor.shape)}, which no class count of "
                              f"{arch} gives (expected like {tuple(want.shape)})")
        counts.add(rows * _PROBE_CLASSES // want_rows)
    if len(counts) > 1:
        raise RegionError(f"{path}: classification layers disagree on the number of classes ({sorted(counts)})")
    return counts.pop() if counts else _PROBE_CLASSES


def _check_keys(arch: str, expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], path: str) -> None:
    # torchvision's pretrained R-CNNs use FrozenBatchNorm2d, which has no num_batches_tracked
    # buffer; a model built without weights uses BatchNorm2d, which has. That buffer only matters
    # when training, so its absence is not a mismatch.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise RegionError(f"{path} does not hold {arch} weights: {'; '.join(parts)}. "
                          "Name the right architecture with detector:ARCH@FILE")


def build_model(ckpt: DetectorCheckpoint, path: str = "") -> torch.nn.Module:
    model = _build(ckpt.arch, ckpt.num_classes, ckpt.kwargs)
    _check_keys(ckpt.arch, model.state_dict(), ckpt.state_dict, path)
    try:
        model.load_state_dict(ckpt.state_dict, strict=False)  # keys checked above
    except RuntimeError as exc:
        raise RegionError(f"{path}: weights do not fit {ckpt.arch} with {ckpt.num_classes} classes: "
                          f"{str(exc).splitlines()[-1].strip()}") from None
    return model.eval()


def save_detector(model: torch.nn.Module, arch: str, path: str, categories: Sequence[str], **kwargs) -> None:
    """Write ``model`` (a torchvision detector of architecture ``arch``, built with ``kwargs``) in
    the self-describing format ``detector:FILE`` reads. ``categories[i]`` names label id ``i``
    (``categories[0]`` is the background), so their number is the model's class count; a
    mismatch shows when the file is loaded."""
    if arch not in detection_architectures():
        raise RegionError(f"unknown detection architecture {arch!r}")
    if len(categories) < 2 or not all(isinstance(c, str) for c in categories):
        raise RegionError("categories: the background's name and at least one class name, as strings")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "arch": arch, "num_classes": len(categories), "categories": list(categories),
                "kwargs": _check_kwargs(kwargs, path), "state_dict": state}, path)


class TorchvisionDetector:
    """A :class:`~vsearch.regions.base.RegionSource` around a torchvision detection model:
    boxes with class names and scores (≥ ``min_score``), and masks for Mask R-CNN."""

    def __init__(self, model: torch.nn.Module, arch: str, categories: tuple[str, ...], device: str = "cpu",
                 min_score: float = DEFAULT_MIN_SCORE, weights_id: str = ""):
        if not 0.0 <= min_score <= 1.0:
            raise RegionError("min_score must be between 0 and 1")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.arch = arch
        self.categories = categories
        self.min_score = min_score
        self.name = f"detector:{arch}"
        self.settings = f"{arch} weights={weights_id[:16]} min_score={min_score}"

    @torch.inference_mode()
    def __call__(self, image: Image.Image) -> Regions:
        from torchvision.transforms.functional import pil_to_tensor

        x = pil_to_tensor(image.convert("RGB")).float().div_(255.0).to(self.device)  # (3, H, W) in [0, 1]
        out = self.model([x])[0]
        boxes = out["boxes"].float().cpu()
        scores = out["scores"].float().cpu()
        keep = (scores >= self.min_score) & (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        idx = torch.nonzero(keep).flatten()
        labels = out["labels"].cpu()[idx].tolist()
        names = tuple(self.categories[i] if 0 <= i < len(self.categories) else f"class {i}" for i in labels)
        masks = None
        if "masks" in out:  # (N, 1, H, W) probabilities; 0.5 is Mask R-CNN's own threshold
            masks = (out["masks"][idx, 0] > 0.5).cpu().numpy()
        return Regions(boxes[idx].numpy(), scores[idx].numpy(), names, masks).top(len(idx))


def load_detector(spec_rest: str, device: str = "cpu", min_score: float = DEFAULT_MIN_SCORE) -> TorchvisionDetector:
    """``"FILE"`` or ``"ARCH@FILE"`` -> a ready detector (on ``device``, in eval mode)."""
    arch, path = parse_detector_spec(spec_rest)
    ckpt = read_checkpoint(path, arch)
    model = build_model(ckpt, path)
    return TorchvisionDetector(model, ckpt.arch, ckpt.categories, device, min_score, ckpt.sha256)


__all__ = ["FORMAT", "DetectorCheckpoint", "TorchvisionDetector", "detection_architectures", "parse_detector_spec",
           "read_checkpoint", "infer_num_classes", "build_model", "save_detector", "load_detector",
           "DEFAULT_MIN_SCORE"]
