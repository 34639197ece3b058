"""Models as files: `vsearch models export DIR`, the manifest and its digests, loading from
$VSEARCH_MODEL_DIR, and the one-line messages of an install without torch."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from vsearch.encoders import model_dir as md
from vsearch.errors import ModelUnavailableError

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def exported(tiny_clip_spec, tmp_path_factory):
    """The tiny CLIP model exported into a model folder (no faces: quick)."""
    from vsearch.modelfiles import export_models

    folder = str(tmp_path_factory.mktemp("models"))
    results = export_models(folder, [tiny_clip_spec], faces=False)
    assert [r.status for r in results] == ["exported"], results
    return folder


@pytest.fixture
def models_env(exported, monkeypatch):
    monkeypatch.setenv(md.MODEL_DIR_ENV, exported)
    return exported


def test_export_lists_each_file_with_its_digest(exported, tiny_clip_spec):
    with open(os.path.join(exported, md.MANIFEST)) as fh:
        doc = json.load(fh)
    (entry,) = doc["models"]
    assert entry["name"] == tiny_clip_spec and entry["precision"] == "fp32" and entry["kind"] == "clip"
    assert {"image.onnx", "text.onnx", "bpe.txt.gz", "meta.json"} <= set(entry["files"])
    assert not any(name.startswith("optimized-") for name in entry["files"])  # machine-specific copies stay behind
    assert entry["fidelity"]["image_min_cosine"] >= 0.9999
    assert doc["exported_by"]["torch"]


def test_a_model_of_the_folder_runs_from_it_with_the_same_vectors(models_env, tiny_clip_spec, photo_dir):
    from PIL import Image

    from vsearch.encoders import load_encoder
    from vsearch.encoders.onnx_encoder import OnnxEncoder

    enc = load_encoder(tiny_clip_spec, runtime="onnx")
    assert isinstance(enc, OnnxEncoder) and enc.directory.startswith(models_env)
    os.environ.pop(md.MODEL_DIR_ENV)
    cached = load_encoder(tiny_clip_spec, runtime="onnx")  # the ONNX cache the export was copied from
    assert cached.directory != enc.directory
    pixels = np.stack([enc.preprocess(Image.open(photo_dir / "chelsea.jpg").convert("RGB"))])
    assert np.array_equal(enc.encode_pixels(pixels), cached.encode_pixels(pixels))
    assert np.array_equal(enc.encode_text(["a cat"]), cached.encode_text(["a cat"]))


def test_a_changed_file_is_a_one_line_error_naming_it(exported, tiny_clip_spec, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(exported, copy)
    (entry,) = md.read_manifest(str(copy))
    tower = os.path.join(entry.folder, "text.onnx")
    with open(tower, "ab") as fh:
        fh.write(b"\0")
    monkeypatch.setenv(md.MODEL_DIR_ENV, str(copy))
    from vsearch.encoders import load_encoder

    with pytest.raises(md.ModelDirError) as err:
        load_encoder(tiny_clip_spec, runtime="onnx")
    assert tower in str(err.value) and "\n" not in str(err.value)


def test_a_folder_without_manifest_is_refused_in_one_line(tmp_path, monkeypatch, tiny_clip_spec, photo_dir):
    monkeypatch.setenv(md.MODEL_DIR_ENV, str(tmp_path))
    result = invoke("classify", photo_dir / "chelsea.jpg", "-l", "cat,dog", "--db", tmp_path / "db",
                    "--model", tiny_clip_spec, "--runtime", "onnx")
    assert result.exit_code == 2
    assert "manifest.json is missing" in result.output and "Traceback" not in result.output


def test_without_torch_a_missing_model_says_what_to_run(models_env, monkeypatch):
    from vsearch.encoders import load_encoder

    monkeypatch.setattr(md, "torch_installed", lambda: False)
    with pytest.raises(ModelUnavailableError) as err:
        load_encoder("packaged", runtime="onnx")
    message = str(err.value)
    assert f"vsearch models export {models_env} --model packaged:effnet-lite0+minilm" in message
    assert "vsearch[torch]" in message and "\n" not in message
    monkeypatch.delenv(md.MODEL_DIR_ENV)
    with pytest.raises(ModelUnavailableError, match="VSEARCH_MODEL_DIR=DIR"):
        md.require_model("packaged:effnet-lite0+minilm")


def test_without_torch_runtime_torch_and_cuda_say_which_extra(monkeypatch):
    import importlib.util

    from vsearch.encoders.runtime import choose_runtime
    from vsearch.errors import VSearchError

    monkeypatch.delenv("VSEARCH_RUNTIME", raising=False)  # the suite's default is torch
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    assert choose_runtime("cpu") == "onnx"
    for device, runtime in (("cpu", "torch"), ("cuda", None)):
        with pytest.raises(VSearchError, match=r"pip install 'vsearch\[torch\]'"):
            choose_runtime(device, runtime)


def test_cli_export_then_doctor_shows_the_folder(tiny_clip_spec, tmp_path):
    folder = tmp_path / "m"
    result = invoke("models", "export", folder, "--model", tiny_clip_spec, "--no-faces", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["status"] == "exported"
    report = json.loads(invoke("--models", folder, "doctor", "--db", tmp_path / "db", "--json").stdout)
    assert report["models"]["model folder ($VSEARCH_MODEL_DIR)"] == str(folder)
    assert str(folder) in report["models"][tiny_clip_spec]


def test_export_into_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    result = invoke("models", "export", target, "--no-faces")
    assert result.exit_code == 2 and "is a file" in result.output


def test_a_missing_extra_module_is_one_line_naming_the_extra(capsys):
    import typer

    from vsearch.commands.common import handle_errors

    @handle_errors
    def needs_torch():
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    with pytest.raises(typer.Exit):
        needs_torch()
    err = capsys.readouterr().err.strip()
    assert err == "error: this needs torch, which this install lacks: pip install 'vsearch[torch]'"
