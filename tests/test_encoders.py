import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import skimage_rgb
from vsearch.encoders import canonical_spec, encode_images, load_encoder, resolve_auto
from vsearch.errors import ModelUnavailableError


def test_clip_local_weights_are_loaded_not_random(tiny_clip_spec, tiny_clip_weights):
    enc = load_encoder(tiny_clip_spec)
    emb = encode_images(enc, [skimage_rgb("chelsea"), skimage_rgb("coffee")])
    assert emb.shape == (2, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    # the checkpoint's weights are really in the model (a silently random init would differ)
    saved = torch.load(tiny_clip_weights, weights_only=True)
    name, tensor = next(iter(saved.items()))
    assert torch.equal(enc.model.state_dict()[name], tensor)
    txt = enc.encode_text(["a cat", "a cup"])
    assert txt.shape == (2, 32)


def test_canonical_spec_makes_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert canonical_spec("clip:ViT-B-32@w.pt") == f"clip:ViT-B-32@{tmp_path}/w.pt"
    assert canonical_spec("packaged") == "packaged:effnet-lite0+minilm"


def test_auto_falls_back_to_packaged_offline(monkeypatch, packaged_encoder):
    monkeypatch.delenv("VSEARCH_CLIP_WEIGHTS", raising=False)
    enc, notice = resolve_auto()
    assert enc.info.name == "packaged:effnet-lite0+minilm" and "weaker than CLIP" in notice


def test_auto_prefers_local_clip_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("VSEARCH_CLIP_WEIGHTS", str(tmp_path / "missing.pt"))
    from vsearch.encoders import local_clip_spec

    assert local_clip_spec() is None  # a path that does not exist is not "available"
    (tmp_path / "w.pt").write_bytes(b"x")
    monkeypatch.setenv("VSEARCH_CLIP_WEIGHTS", str(tmp_path / "w.pt"))
    assert local_clip_spec() == f"clip:ViT-B-32@{tmp_path}/w.pt"


def test_corrupt_local_weights_error_says_what_to_pass(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailableError, match="clip:ViT-B-32@"):
        load_encoder(f"clip:ViT-B-32@{bad}")


class TestPackagedModel:
    """The offline default on real photos (real shipped weights, nothing mocked)."""

    def test_imagenet_head_is_real(self, packaged_encoder):
        probs = packaged_encoder.class_probabilities(torch.stack([packaged_encoder.preprocess(skimage_rgb("coffee"))]))
        top = packaged_encoder.classnames[int(probs.argmax())]
        assert top in ("espresso", "cup", "coffee mug")

    def test_a_cat_finds_chelsea_in_top_3(self, photo_dir, tmp_path, packaged_encoder):
        import vsearch
        from indexer import index_paths

        coll = vsearch.open(tmp_path / "db", model="packaged")
        summary = index_paths(coll.catalog, coll.encoder, [str(photo_dir)], workers=0)
        assert summary.added == 10
        top3 = [h.path.rsplit("/", 1)[-1] for h in coll.search("a cat", k=3)]
        assert "chelsea.jpg" in top3, top3
        for name in ("coffee", "rocket", "astronaut"):
            hits = coll.search(image=str(photo_dir / f"{name}.jpg"), k=1)
            assert hits[0].path.endswith(f"{name}.jpg")

    def test_image_query_not_in_catalog_returns_its_twin_first(self, photo_dir, tmp_path, packaged_encoder):
        import vsearch
        from indexer import index_paths

        coll = vsearch.open(tmp_path / "db", model="packaged")
        index_paths(coll.catalog, coll.encoder, [str(photo_dir)], workers=0)
        probe = tmp_path / "probe.png"  # same picture, other file, other size and format
        skimage_rgb("horse").resize((200, 160)).save(probe)
        assert coll.search(image=str(probe), k=1)[0].path.endswith("horse.jpg")


def test_equivalent_specs_share_one_loaded_model(packaged_encoder):
    """Regression: "packaged" and "packaged" with an explicit device were two cache entries, so the
    model could be loaded twice in one process."""
    assert load_encoder("packaged") is load_encoder("packaged", "cpu") is load_encoder("packaged:effnet-lite0+minilm")


def test_one_parser_for_model_specs(tmp_path, monkeypatch):
    from vsearch.encoders import EncoderSpec

    monkeypatch.chdir(tmp_path)
    cfg = EncoderSpec.parse(" clip:cfg.json@w.pt ")
    assert str(cfg) == f"clip:{tmp_path}/cfg.json@{tmp_path}/w.pt" and cfg.family == "clip"
    assert cfg.clip_parts() == (f"{tmp_path}/cfg.json", None, f"{tmp_path}/w.pt")
    assert cfg.weights_files() == [f"{tmp_path}/w.pt", f"{tmp_path}/cfg.json"]
    tagged = EncoderSpec.parse("clip:ViT-B-32/laion2b_s34b_b79k")
    assert tagged.clip_parts() == ("ViT-B-32", "laion2b_s34b_b79k", None) and tagged.weights_files() is None
    assert EncoderSpec.parse("trained:m.pt") == EncoderSpec.parse(f"trained:{tmp_path}/m.pt")
    assert EncoderSpec.parse("default") == EncoderSpec.parse("packaged:effnet-lite0+minilm")
    assert EncoderSpec.parse("packaged").rest == "effnet-lite0+minilm"
    auto = EncoderSpec.parse("auto")
    assert (str(auto), auto.family, auto.rest) == ("auto", "auto", "")
