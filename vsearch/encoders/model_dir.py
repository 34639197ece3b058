"""Exported models as files: a folder that ``vsearch models export DIR`` writes on an install with
torch, and that an install without torch (``pip install vsearch``) runs its models from.

``DIR/manifest.json`` lists each model once per precision::

    {"format": 1, "exported_by": {"vsearch": ..., "torch": ..., "onnxruntime": ...},
     "models": [{"name": "packaged:effnet-lite0+minilm", "precision": "fp32", "kind": "conse",
                 "folder": "packaged_effnet-lite0+minilm-fp32",
                 "files": {"image.onnx": "<sha256>", ...}, "fidelity": {...}}, ...]}

Each model's folder is an export folder as the ONNX cache holds one (``meta.json``, the towers,
tokenizer data, preprocessing); ``dlib-files`` holds dlib's own model files for face detection and
alignment. The folder is found through ``$VSEARCH_MODEL_DIR`` (``vsearch --models DIR`` sets it).
Each file's SHA-256 is checked before a model is used (remembered by path, size and mtime, as the
ONNX cache does): a changed or damaged file is a one-line error naming it, never a wrong vector.

Nothing here imports torch: it is the core install's way to its models.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from dataclasses import dataclass, field

from vsearch.encoders.runtime import fingerprint
from vsearch.errors import ModelUnavailableError

MODEL_DIR_ENV = "VSEARCH_MODEL_DIR"
MANIFEST = "manifest.json"
FORMAT = 1
TORCH_EXTRA = "pip install 'vsearch[torch]'"
DLIB_FILES = "dlib-files"  # the manifest name of dlib's detector and landmark files


class ModelDirError(ModelUnavailableError):
    """A model folder is missing, is not one ``vsearch models export`` wrote, or a file in it changed."""


def torch_installed() -> bool:
    """Whether torch can be imported here, asked without importing it."""
    return importlib.util.find_spec("torch") is not None


def model_dir() -> str | None:
    """The model folder named by ``$VSEARCH_MODEL_DIR``, or None."""
    folder = os.environ.get(MODEL_DIR_ENV, "").strip()
    return os.path.abspath(os.path.expanduser(folder)) if folder else None


@dataclass(frozen=True)
class ModelEntry:
    """One exported model: its name (a canonical model spec, or ``dlib:resnet_v1``) and precision,
    its folder (absolute), and the SHA-256 of each file in it."""

    name: str
    precision: str
    kind: str
    folder: str
    files: dict = field(default_factory=dict, compare=False)
    fidelity: dict = field(default_factory=dict, compare=False)

    def to_json(self, root: str) -> dict:
        return {"name": self.name, "precision": self.precision, "kind": self.kind,
                "folder": os.path.relpath(self.folder, root), "files": self.files, "fidelity": self.fidelity}


def read_manifest(directory: str) -> list[ModelEntry]:
    """The models listed in ``directory/manifest.json``; ModelDirError when there is none."""
    if not os.path.isdir(directory):
        raise ModelDirError(f"model folder {directory} does not exist (set by {MODEL_DIR_ENV} or --models)")
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as fh:
            doc = json.load(fh)
        entries = [ModelEntry(m["name"], m.get("precision", "fp32"), m.get("kind", ""),
                              os.path.join(directory, m["folder"]), dict(m.get("files", {})), dict(m.get("fidelity", {})))
                   for m in doc["models"]]
    except FileNotFoundError:
        raise ModelDirError(f"{path} is missing: {directory} is not a folder written by `vsearch models export`") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelDirError(f"{path}: not a model manifest ({type(exc).__name__}: {exc})") from None
    if doc.get("format", FORMAT) > FORMAT:
        raise ModelDirError(f"{path} has format {doc['format']}, newer than this vsearch reads ({FORMAT}): upgrade vsearch")
    return entries


def find_model(name: str, precision: str = "fp32", directory: str | None = None) -> ModelEntry | None:
    """The entry of ``name`` at ``precision`` in the model folder (default ``$VSEARCH_MODEL_DIR``),
    with its files' digests checked; None when there is no model folder or it lacks that model."""
    directory = directory or model_dir()
    if directory is None:
        return None
    for entry in read_manifest(directory):
        if entry.name == name and entry.precision == precision:
            check_digests(entry)
            return entry
    return None


def check_digests(entry: ModelEntry) -> None:
    """ModelDirError naming the first file that is missing or whose SHA-256 differs from the manifest's."""
    for rel, digest in sorted(entry.files.items()):
        path = os.path.join(entry.folder, rel)
        if not os.path.isfile(path):
            raise ModelDirError(f"{path} is missing (listed in {_manifest_of(entry)}): export the models again")
        if fingerprint(path) != digest:
            raise ModelDirError(f"{path} differs from the digest in {_manifest_of(entry)}: the file changed "
                                "since it was exported; export the models again")


def _manifest_of(entry: ModelEntry) -> str:
    return os.path.join(os.path.dirname(entry.folder), MANIFEST)


def missing_model_message(name: str, precision: str = "fp32", directory: str | None = None) -> str:
    """One line: which model is missing and what to run where."""
    directory = directory or model_dir()
    what = name if precision == "fp32" else f"{name} ({precision})"
    flags = f" --model {name}" + (f" --precision {precision}" if precision != "fp32" else "")
    if directory:
        return (f"model {what} is not in {directory}: on an install with torch ({TORCH_EXTRA}) run "
                f"`vsearch models export {directory}{flags}`, or pick a model it holds (vsearch doctor)")
    return (f"model {what} needs torch or an exported copy: this install has no torch, so run "
            f"`vsearch models export DIR{flags}` on one that has ({TORCH_EXTRA}) and set {MODEL_DIR_ENV}=DIR "
            "(or pass --models DIR)")


def require_model(name: str, precision: str = "fp32") -> ModelEntry | None:
    """The exported ``name`` when the model folder holds it; None when it does not but torch can
    make the model here; ModelUnavailableError (one line, what to run) when neither."""
    entry = find_model(name, precision)
    if entry is None and not torch_installed():
        raise ModelUnavailableError(missing_model_message(name, precision))
    return entry


# -- writing (vsearch models export) ------------------------------------------------------------------
def folder_name(name: str, precision: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", name.split("@")[0].replace("/", "_")).strip("_")[-60:]
    return f"{slug}-{precision}"


def add_model(directory: str, name: str, precision: str, kind: str, source: str,
              fidelity: dict | None = None, files: list[str] | None = None) -> ModelEntry:
    """Copy an export folder (or just ``files`` of ``source``) into ``directory`` under its own
    name, hash its files and list it in the manifest (replacing an entry of the same name and
    precision). ONNX Runtime's optimized session copies are left behind: they belong to one machine."""
    target = os.path.join(directory, folder_name(name, precision))
    tmp = f"{target}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if files is None:
        shutil.copytree(source, tmp, ignore=lambda _d, names: [n for n in names if n.startswith(("optimized-", "."))])
    else:
        os.makedirs(tmp)
        for rel in files:
            shutil.copy2(os.path.join(source, rel), os.path.join(tmp, rel))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    digests = {}
    for root, _dirs, names in os.walk(target):
        for n in names:
            path = os.path.join(root, n)
            digests[os.path.relpath(path, target)] = fingerprint(path)
    entry = ModelEntry(name, precision, kind, target, digests, dict(fidelity or {}))
    kept = [e for e in _entries_or_none(directory) if (e.name, e.precision) != (name, precision)]
    write_manifest(directory, kept + [entry])
    return entry


def _entries_or_none(directory: str) -> list[ModelEntry]:
    if not os.path.exists(os.path.join(directory, MANIFEST)):
        return []
    return read_manifest(directory)


def write_manifest(directory: str, entries: list[ModelEntry]) -> None:
    """``manifest.json`` written atomically (a reader sees the old list or the new one)."""
    versions = {}
    for module in ("vsearch", "torch", "onnxruntime"):
        try:
            versions[module] = importlib.import_module(module).__version__
        except Exception:  # noqa: BLE001 - a version is information, not a requirement
            pass
    doc = {"format": FORMAT, "exported_by": versions, "models": [e.to_json(directory) for e in entries]}
    path = os.path.join(directory, MANIFEST)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1)
    os.replace(tmp, path)
