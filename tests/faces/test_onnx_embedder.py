"""dlib's face ResNet on ONNX Runtime against the same network on torch, on real face photos."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.faces.conftest import OBAMA

pytest.importorskip("onnxruntime")
pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """A fresh ONNX cache, so the export (once per module) is part of what is tested."""
    mp = pytest.MonkeyPatch()
    mp.setenv("VSEARCH_ONNX_CACHE", str(tmp_path_factory.mktemp("face-onnx-cache")))
    yield os.environ["VSEARCH_ONNX_CACHE"]
    mp.undo()


@pytest.fixture(scope="module")
def onnx_embedder(onnx_cache):
    from vsearch.faces.embedders import build_embedder

    return build_embedder("dlib", runtime="onnx")


@pytest.fixture(scope="module")
def onnx_pipeline(face_pipeline, onnx_embedder):
    from vsearch.faces.pipeline import FacePipeline

    # the same detector and aligner objects: only the embedder's runtime differs
    return FacePipeline(face_pipeline.detector, face_pipeline.aligner, onnx_embedder, face_pipeline.config)


def test_export_is_cached_checked_and_reused(onnx_cache, onnx_embedder):
    from vsearch.faces.embedders import OnnxDlibResNetEmbedder, build_embedder
    from vsearch.faces.models import DLIB_RESNET

    assert isinstance(onnx_embedder, OnnxDlibResNetEmbedder) and onnx_embedder.name == DLIB_RESNET
    assert os.path.dirname(onnx_embedder.directory) == onnx_cache
    with open(os.path.join(onnx_embedder.directory, "meta.json")) as fh:
        meta = json.load(fh)
    assert meta["kind"] == "face" and meta["fidelity"]["image_min_cosine"] >= 0.9999
    stamp = os.stat(os.path.join(onnx_embedder.directory, "face.onnx")).st_mtime_ns
    again = build_embedder("dlib", runtime="onnx")  # loaded from the cache, not exported again
    assert again.directory == onnx_embedder.directory
    assert os.stat(os.path.join(again.directory, "face.onnx")).st_mtime_ns == stamp


def test_runtime_choice(onnx_cache, monkeypatch):
    from vsearch.faces.dlib_torch import TorchDlibResNetEmbedder
    from vsearch.faces.embedders import OnnxDlibResNetEmbedder, build_embedder

    assert isinstance(build_embedder("dlib", runtime="torch"), TorchDlibResNetEmbedder)
    monkeypatch.setenv("VSEARCH_RUNTIME", "auto")  # a CPU: ONNX Runtime by default
    assert isinstance(build_embedder("dlib"), OnnxDlibResNetEmbedder)


def test_onnx_descriptors_match_torch_on_real_faces(face_images, other_people, face_pipeline, onnx_pipeline):
    photos = [os.path.join(face_images, f) for f in OBAMA + ["biden.jpg"]] + list(other_people.values())
    faces = 0
    for photo in photos:
        ref, got = face_pipeline.analyze(photo), onnx_pipeline.analyze(photo)
        assert len(ref.faces) == len(got.faces) >= 1, photo
        for a, b in zip(ref.faces, got.faces):
            assert float(np.dot(a.embedding, b.embedding)) >= 0.9999, photo
            faces += 1
    assert faces >= len(photos)


def test_verify_decisions_identical(tmp_path, face_images, other_people, face_pipeline, onnx_pipeline):
    from vsearch.catalog import Catalog
    from vsearch.faces.service import FaceService

    probes = [os.path.join(face_images, f) for f in OBAMA[1:] + ["biden.jpg"]] + list(other_people.values())
    results = {}
    for name, pipeline in (("torch", face_pipeline), ("onnx", onnx_pipeline)):
        catalog = Catalog(tmp_path / name)
        try:
            svc = FaceService(catalog, pipeline=pipeline)
            svc.enroll("obama", [os.path.join(face_images, OBAMA[0])])
            results[name] = [svc.verify("obama", p) for p in probes]
        finally:
            catalog.close()
    assert [r.match for r in results["torch"]] == [r.match for r in results["onnx"]]
    assert [r.match for r in results["onnx"]] == [True, True, False, False, False]
    for a, b in zip(results["torch"], results["onnx"]):
        assert abs(a.score - b.score) < 1e-4


def test_refused_export_falls_back_to_torch_with_a_notice(onnx_cache, monkeypatch, tmp_path):
    from vsearch.faces.dlib_torch import TorchDlibResNetEmbedder
    from vsearch.faces.embedders import build_embedder

    monkeypatch.setenv("VSEARCH_ONNX_CACHE", str(tmp_path))
    first = build_embedder("dlib", runtime="onnx")
    with open(os.path.join(first.directory, "meta.json"), "w") as fh:
        json.dump({"refused": "ONNX output differs from torch"}, fh)
    embedder = build_embedder("dlib", runtime="onnx")
    assert isinstance(embedder, TorchDlibResNetEmbedder)
    assert "ONNX output differs from torch" in embedder.runtime_notice


def test_cached_export_runs_without_torch(onnx_cache, onnx_embedder):
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from vsearch.faces.embedders import build_embedder\n"
            "e = build_embedder('dlib', runtime='onnx')\n"
            "v = e.embed([np.full((150, 150, 3), 128, np.uint8)])\n"
            "print(type(e).__name__, v.shape, 'torch' in sys.modules)\n")
    env = {**os.environ, "VSEARCH_ONNX_CACHE": onnx_cache,
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["OnnxDlibResNetEmbedder", "(1,", "128)", "False"]


def test_doctor_shows_the_face_export_as_one_tower(onnx_cache, onnx_embedder):
    from vsearch.doctor import _inference
    from vsearch.faces.models import DLIB_RESNET

    listed = _inference()["cached exports"]
    assert f"{DLIB_RESNET} fp32: min cosine vs torch 0.99" in listed and "face chips" in listed
    assert "text None" not in listed and "image" not in listed.split(DLIB_RESNET, 1)[1].split(";")[0]
