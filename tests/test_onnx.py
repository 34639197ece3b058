"""ONNX Runtime against torch on real photos: the packaged model (real shipped weights) and a tiny
seeded open_clip model, the torch-free preprocessing and tokenizer, the cache, and a query process
that imports no torch."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import SKIMAGE_PHOTOS, skimage_caption, skimage_rgb
from vsearch.encoders import PACKAGED, load_encoder
from vsearch.encoders.onnx_encoder import OnnxEncoder
from vsearch.encoders.onnx_loader import load_onnx
from vsearch.encoders.pixels import transform_from_torchvision
from vsearch.encoders.runtime import choose_runtime, export_dir
from vsearch.errors import VSearchError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """One ONNX cache for the session (exports are the slow part), in a temporary folder."""
    path = str(tmp_path_factory.mktemp("onnx-cache"))
    old = os.environ.get("VSEARCH_ONNX_CACHE")
    os.environ["VSEARCH_ONNX_CACHE"] = path
    yield path
    if old is None:
        os.environ.pop("VSEARCH_ONNX_CACHE", None)
    else:
        os.environ["VSEARCH_ONNX_CACHE"] = old


@pytest.fixture(scope="session")
def packaged_onnx(onnx_cache, packaged_encoder):
    """The packaged model exported once (from the torch model already loaded for the session)."""
    enc = load_onnx(PACKAGED, lambda _device: packaged_encoder)
    assert isinstance(enc, OnnxEncoder), getattr(enc, "runtime_notice", "")
    return enc


@pytest.fixture(scope="session")
def tiny_clip_pair(onnx_cache, tiny_clip_spec):
    from vsearch.encoders import canonical_spec

    spec = canonical_spec(tiny_clip_spec)
    # a copy: a fallback test marks it with a notice, which the process-wide cached one must not keep
    torch_enc = copy.copy(load_encoder(spec, runtime="torch"))
    return torch_enc, load_onnx(spec, lambda _device: torch_enc)


def _photos():
    return [skimage_rgb(n) for n in SKIMAGE_PHOTOS]


def _torch_vectors(enc, images):
    return enc.encode_pixels(torch.stack([enc.preprocess(im) for im in images]))


def _onnx_vectors(enc, images):
    return enc.encode_pixels(np.stack([enc._transform(im) for im in images]))


# -- torch-free preprocessing and tokenizer ------------------------------------------------------
@pytest.mark.parametrize("model", ["packaged", "clip"])
def test_numpy_preprocessing_equals_torchvision(model, packaged_encoder, tiny_clip_pair):
    from PIL import Image

    torch_enc = packaged_encoder if model == "packaged" else tiny_clip_pair[0]
    transform = transform_from_torchvision(torch_enc._preprocess)
    odd = [Image.new("RGB", (201, 97), (10, 200, 30)), Image.new("RGB", (7, 5), (255, 0, 0)),
           skimage_rgb("astronaut").resize((transform.resize, 333)), skimage_rgb("coffee").convert("L")]
    for image in _photos() + odd:
        ours = transform(image)
        theirs = torch_enc.preprocess(image.convert("RGB")).numpy()
        assert ours.dtype == np.float32 and ours.shape == theirs.shape
        assert np.array_equal(ours, theirs), float(np.abs(ours - theirs).max())


def test_clip_tokenizer_gives_open_clips_ids():
    import open_clip
    from open_clip.tokenizer import default_bpe

    from vsearch.encoders.token_ids import ClipBPE

    texts = ["a cat", "A  Photo of the CAT!!", "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e", "&amp; html &lt;b&gt;",
             "\u732b\u306e\u5199\u771f", "emoji \U0001F408 cat", "", "it's 1984's 3rd try", " ".join(["word"] * 120)]
    ours = ClipBPE(default_bpe())(texts)
    theirs = open_clip.get_tokenizer("ViT-B-32")(texts).numpy()
    assert ours.dtype == np.int64 and np.array_equal(ours, theirs)


# -- outputs against torch on real photos ----------------------------------------------------------
def test_packaged_onnx_matches_torch_on_photos(packaged_onnx, packaged_encoder):
    photos = _photos()
    ref, got = _torch_vectors(packaged_encoder, photos), _onnx_vectors(packaged_onnx, photos)
    assert np.min(np.sum(ref * got, axis=1)) >= 0.9999
    pixels = torch.stack([packaged_encoder.preprocess(im) for im in photos])
    top_ref = packaged_encoder.class_probabilities(pixels).topk(5).indices.numpy()
    top_got = np.argsort(-packaged_onnx.class_probabilities(pixels.numpy()), axis=1)[:, :5]
    assert (top_ref == top_got).all()  # the same five ImageNet classes, in the same order
    captions = [skimage_caption(n) for n in SKIMAGE_PHOTOS] + ["a cat"]
    ref_t, got_t = packaged_encoder.encode_text(captions), packaged_onnx.encode_text(captions)
    assert np.min(np.sum(ref_t * got_t, axis=1)) >= 0.9999
    one = packaged_onnx.encode_text(["a cat"])  # batch 1, its own sequence length
    assert float(one[0] @ ref_t[-1]) >= 0.9999
    assert packaged_onnx.meta["fidelity"]["max_pixel_diff"] == 0.0


def test_tiny_clip_onnx_matches_torch(tiny_clip_pair):
    torch_enc, onnx_enc = tiny_clip_pair
    assert isinstance(onnx_enc, OnnxEncoder)
    photos = _photos()
    assert np.min(np.sum(_torch_vectors(torch_enc, photos) * _onnx_vectors(onnx_enc, photos), axis=1)) >= 0.9999
    texts = ["a cat", "a cup of coffee", "a rocket", "x " * 100]
    assert np.min(np.sum(torch_enc.encode_text(texts) * onnx_enc.encode_text(texts), axis=1)) >= 0.9999
    from vsearch.zeroshot import logit_scale

    assert logit_scale(onnx_enc) == pytest.approx(logit_scale(torch_enc))


@pytest.mark.parametrize("which", ["packaged", "clip"])
def test_optimized_session_copy_gives_identical_outputs(which, packaged_onnx, tiny_clip_pair):
    """The saved optimized graph (vsearch.encoders.onnx_session) answers bit for bit as a session
    made from the export itself, for both towers, on real photos and texts."""
    import onnxruntime as ort

    from vsearch.encoders.onnx_session import open_session, optimized_dir

    enc = packaged_onnx if which == "packaged" else tiny_clip_pair[1]
    pixels = np.stack([enc._transform(im) for im in _photos()])
    tokens = enc._tokens(["a cat", "a cup of coffee", "x " * 40])
    for tower, feeds in (("image", {"pixels": pixels}), ("text", tokens)):
        plain = ort.InferenceSession(os.path.join(enc.directory, f"{tower}.onnx"), providers=["CPUExecutionProvider"])
        feeds = {k: v for k, v in feeds.items() if k in {i.name for i in plain.get_inputs()}}
        fast = open_session(enc.directory, tower)
        saved = os.path.join(optimized_dir(enc.directory, ort.__version__), f"{tower}.onnx")
        assert os.path.isfile(saved) and fast._model_path == saved
        assert np.array_equal(fast.run(None, feeds)[0], plain.run(None, feeds)[0])
    # a damaged copy is set aside for the export, never an error
    with open(saved, "wb") as fh:
        fh.write(b"not a model")
    assert np.array_equal(open_session(enc.directory, "text").run(None, feeds)[0], plain.run(None, feeds)[0])
    assert not os.path.exists(saved)  # removed, so that the next session saves a good copy
    assert open_session(enc.directory, "text")._model_path == saved


@pytest.mark.parametrize("tower", ["image", "text"])
def test_int8_session_keeps_the_fused_integer_matmuls(tower, tiny_clip_pair, tmp_path):
    """An int8 tower's saved optimized copy, loaded without re-optimizing (text) or at the layout
    level (image), still runs every quantized MatMul as one fused ``DynamicQuantizeMatMul`` (an
    unfused ``DynamicQuantizeLinear`` + ``MatMulInteger`` + rescale would cost the int8 gain), and
    answers as a fully optimized session on the quantized export does."""
    import shutil

    import onnx
    import onnxruntime as ort

    from vsearch.encoders.onnx_export import quantize_int8
    from vsearch.encoders.onnx_session import open_session, optimized_dir

    enc = tiny_clip_pair[1]
    shutil.copy(os.path.join(enc.directory, f"{tower}.onnx"), tmp_path / f"{tower}.onnx")
    quantize_int8(str(tmp_path / f"{tower}.onnx"))
    quantized_ops = [n.op_type for n in onnx.load(str(tmp_path / f"{tower}.onnx")).graph.node]
    assert quantized_ops.count("MatMulInteger") > 0
    session = open_session(str(tmp_path), tower)
    saved = os.path.join(optimized_dir(str(tmp_path), ort.__version__), f"{tower}.onnx")
    assert session._model_path == saved
    saved_ops = [n.op_type for n in onnx.load(saved, load_external_data=False).graph.node]
    assert "MatMulInteger" not in saved_ops  # (the patch embedding's ConvInteger keeps its own quantize step)
    assert saved_ops.count("DynamicQuantizeMatMul") == quantized_ops.count("MatMulInteger")
    feeds = ({"pixels": np.stack([enc._transform(im) for im in _photos()])} if tower == "image"
             else enc._tokens(["a cat", "a cup of coffee"]))
    full = ort.InferenceSession(str(tmp_path / f"{tower}.onnx"), providers=["CPUExecutionProvider"])
    assert np.allclose(session.run(None, feeds)[0], full.run(None, feeds)[0], rtol=1e-5, atol=1e-6)


def test_int8_export_runs_and_checks_the_quantized_towers(tiny_clip_pair, tmp_path):
    """The fp32 check's sessions save optimized copies of the towers; once a tower is quantized,
    its sessions (the int8 check's, and every later one) must run the quantized graph, not a
    stale fp32 copy that would pass any check and give no speed-up."""
    import onnx
    import onnxruntime as ort

    from vsearch.encoders.onnx_export import ExportRefused, export_model
    from vsearch.encoders.onnx_session import optimized_dir

    torch_enc = tiny_clip_pair[0]
    directory = str(tmp_path / "int8")
    try:
        meta = export_model(torch_enc.info.name, torch_enc, directory, "int8")
    except ExportRefused as exc:  # both towers drifted: that verdict needs the quantized graphs
        assert "int8" in str(exc)
        return
    enc = OnnxEncoder(directory, meta)
    enc.encode_pixels(np.stack([enc._transform(im) for im in _photos()]))
    enc.encode_text(["a cat"])
    for tower in ("image", "text"):
        saved = os.path.join(optimized_dir(directory, ort.__version__), f"{tower}.onnx")
        ops = {n.op_type for n in onnx.load(saved, load_external_data=False).graph.node}
        assert ("DynamicQuantizeMatMul" in ops) == (tower in meta["int8_towers"]), (tower, meta["int8_towers"])
    if "image" in meta["int8_towers"]:  # a quantized graph is never bit-identical to torch's
        assert meta["fidelity"]["image_min_cosine"] < 0.9999999


def test_int8_is_for_clip_on_onnx_only(tiny_clip_pair, tiny_clip_spec):
    with pytest.raises(VSearchError, match="CLIP models only"):
        load_encoder("packaged", runtime="onnx", precision="int8")
    with pytest.raises(VSearchError, match="--runtime onnx"):
        load_encoder(tiny_clip_spec, runtime="torch", precision="int8")
    torch_enc, _ = tiny_clip_pair
    enc = load_onnx(torch_enc.info.name, lambda _d: torch_enc, "int8")
    assert isinstance(enc, OnnxEncoder)
    if enc.precision == "int8":  # kept: then it passed the fidelity check
        assert min(enc.meta["fidelity"]["image_min_cosine"], enc.meta["fidelity"]["text_min_cosine"]) >= 0.999
    else:  # refused on these weights: fp32 ONNX with a notice saying so
        assert "int8 refused" in enc.runtime_notice


def test_refused_export_falls_back_to_torch_once(tiny_clip_pair, monkeypatch, tmp_path):
    from vsearch.encoders import onnx_export

    monkeypatch.setenv("VSEARCH_ONNX_CACHE", str(tmp_path))
    monkeypatch.setattr(onnx_export, "MIN_COSINE", 1.01)  # no export can pass this
    torch_enc, _ = tiny_clip_pair
    loads = []

    def make(device):
        loads.append(device)
        return torch_enc

    enc = load_onnx(torch_enc.info.name, make)
    assert enc is torch_enc and "export refused" in enc.runtime_notice
    meta = json.load(open(os.path.join(export_dir(torch_enc.info.name), "meta.json")))
    assert "differs from torch" in meta["refused"]
    monkeypatch.setattr(onnx_export, "export_model", None)  # a second start must not export again
    assert load_onnx(torch_enc.info.name, make) is torch_enc


def test_cache_is_keyed_by_weights(tmp_path, tiny_clip_weights, onnx_cache):
    import shutil

    weights = tmp_path / "w.pt"
    shutil.copy(tiny_clip_weights, weights)
    spec = f"clip:ViT-B-32@{weights}"
    before = export_dir(spec)
    assert before and before.startswith(onnx_cache)
    state = torch.load(weights, weights_only=True)
    state[next(reversed(state))] += 1.0  # retrained weights
    torch.save(state, weights)
    assert export_dir(spec) != before
    assert export_dir(spec, "int8") != export_dir(spec)


def test_runtime_choice(monkeypatch):
    monkeypatch.delenv("VSEARCH_RUNTIME", raising=False)
    assert choose_runtime("cpu") == "onnx" and choose_runtime("cuda") == "torch"
    assert choose_runtime("cpu", "torch") == "torch"
    monkeypatch.setenv("VSEARCH_RUNTIME", "torch")
    assert choose_runtime("cpu") == "torch" and choose_runtime("cpu", "onnx") == "onnx"
    with pytest.raises(VSearchError, match="unknown runtime"):
        choose_runtime("cpu", "tensorflow")


# -- the query path imports no torch -------------------------------------------------------------------
QUERY_SCRIPT = r"""
import json, sys
import vsearch
from vsearch.zeroshot import ClassifierCache, class_probabilities, logit_scale, top_k
out = {}
with vsearch.open(sys.argv[1], create=False) as coll:
    out["text"] = [h.path for h in coll.search("a cat", k=3)]
    out["sqlalchemy after text"] = "sqlalchemy" in sys.modules  # a SQLite catalog is read through sqlite3
    out["image"] = [h.path for h in coll.search(image=sys.argv[2], k=3)]
    labels = ["cat", "rocket", "coffee"]
    vec = coll.embed_image_file(sys.argv[2])[None]
    clf = ClassifierCache(sys.argv[3]).get(coll.encoder, labels, ["a photo of a {}."])
    out["classify"] = top_k(class_probabilities(vec, clf, logit_scale(coll.encoder)), labels, 1)[0][0][0]
    out["encoder"] = type(coll.encoder).__name__
out["imported"] = sorted(m for m in ("torch", "torchvision", "open_clip", "transformers", "sentence_transformers",
                                      "timm") if m in sys.modules)
print(json.dumps(out))
"""


def test_query_process_imports_no_torch(packaged_onnx, photo_dir, tmp_path):
    import shutil

    import vsearch

    with vsearch.open(tmp_path / "db", model="packaged", runtime="onnx") as coll:
        coll.index([str(photo_dir)], workers=0)
        expected = [h.path for h in coll.search("a cat", k=3)]
    outside = tmp_path / "query.jpg"  # not in the catalog: its vector comes from the image tower
    shutil.copy(photo_dir / "chelsea.jpg", outside)
    env = {**os.environ, "PYTHONPATH": REPO, "VSEARCH_RUNTIME": "onnx"}
    done = subprocess.run([sys.executable, "-c", QUERY_SCRIPT, str(tmp_path / "db"), str(outside),
                           str(tmp_path / "zs")], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["imported"] == [] and out["encoder"] == "OnnxEncoder"
    assert out["sqlalchemy after text"] is False
    assert out["text"] == expected and out["text"][0].endswith("chelsea.jpg")
    assert out["image"][0].endswith("chelsea.jpg") and out["classify"] == "cat"


def test_doctor_shows_runtime_and_cache(packaged_onnx, onnx_cache, monkeypatch):
    from vsearch.doctor import _inference

    monkeypatch.delenv("VSEARCH_RUNTIME", raising=False)
    report = _inference()
    assert report["runtime on cpu"] == "onnx" and report["ONNX cache"] == onnx_cache
    assert "packaged:effnet-lite0+minilm fp32: min cosine vs torch image 0.99999" in report["cached exports"]
