"""Export -> ``trained:`` encoder -> indexing and searching through the ordinary vsearch API."""
import pickle

import numpy as np
import pytest
import torch

from training.errors import CheckpointError, NoTextSideError
from training.evaluate import embed_image_set
from training.export import FORMAT, load_model
from vsearch.encoders import ImageEncoder, load_encoder, registered_prefixes
from vsearch.errors import VSearchError
from vsearch.images import open_rgb


def test_exported_file_is_weights_plus_plain_config(trained):
    payload = torch.load(trained.model_path, weights_only=True)  # nothing but tensors and plain values
    assert payload["format"] == FORMAT and payload["format_version"] == 1
    assert payload["spec"] == {"backbone": "vsearch_tiny_cnn", "embedding_dim": 16,
                               "preprocessing": {"image_size": 8, "mean": [0.5] * 3, "std": [0.5] * 3, "crop_pct": 1.0}}
    meta = payload["meta"]
    assert meta["loss"] == "triplet" and meta["steps"] == 8 and meta["val_classes"] == ["7", "8", "9"]
    assert meta["held_out"]["recall_at"]["1"] == pytest.approx(trained.report.retrieval.recall_at[1])


def test_loaded_model_embeds_exactly_like_the_trained_one(trained):
    model, spec, _ = load_model(trained.model_path)
    assert not model.training and spec.embedding_dim == 16
    a = embed_image_set(trained.fit.model, trained.val)
    b = embed_image_set(model, trained.val)
    assert np.array_equal(a, b)


def test_trained_prefix_is_a_registered_image_encoder(trained, digits_root):
    assert "trained" in registered_prefixes()
    enc = load_encoder(f"trained:{trained.model_path}")
    assert isinstance(enc, ImageEncoder)
    assert enc.info.name == f"trained:{trained.model_path}" and enc.info.dim == 16 and enc.info.image_size == 8
    paths = sorted((digits_root / "8").iterdir())[:3]
    pixels = torch.stack([enc.preprocess(open_rgb(str(p))) for p in paths])
    vecs = enc.encode_pixels(pixels)
    assert vecs.shape == (3, 16) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    # the same files went through the trainer's cached path: identical vectors
    rows = [trained.val.paths.index(str(p)) for p in paths]
    assert np.allclose(vecs, embed_image_set(trained.fit.model, trained.val)[rows], atol=1e-6)
    pickle.dumps(enc.preprocess)  # indexer workers get the transform, not the model


def test_text_queries_are_a_clear_error(trained):
    enc = load_encoder(f"trained:{trained.model_path}")
    with pytest.raises(NoTextSideError, match="image-only") as info:
        enc.encode_text(["a seven"])
    assert isinstance(info.value, VSearchError)


def test_index_and_search_a_folder_with_the_trained_model(trained, digits_root, tmp_path):
    import shutil

    import vsearch
    from indexer import index_paths

    photos = tmp_path / "photos"
    for label in ("7", "8"):
        (photos / label).mkdir(parents=True)
        for p in sorted((digits_root / label).iterdir())[:4]:
            shutil.copy(p, photos / label / p.name)
    spec = f"trained:{trained.model_path}"
    with vsearch.open(tmp_path / "db", model=spec) as coll:
        summary = index_paths(coll.catalog, coll.encoder, [str(photos)], workers=0)
        assert summary.added == 8 and not summary.failed
        query = sorted((photos / "7").iterdir())[0]
        hits = coll.search(image=str(query), k=3)
        assert hits[0].path == str(query) and hits[0].score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(NoTextSideError):
            coll.search(text="a seven")
    with vsearch.open(tmp_path / "db", model=spec) as again:  # the catalog recorded this spec
        assert again.encoder.info.name == spec


class Arbitrary:
    """Unpickling this would import and run code from this module: weights_only must refuse it."""


@pytest.mark.parametrize("content", ["missing", "garbage", "other_torch", "pickled_code"])
def test_unusable_model_files_are_clear_errors(tmp_path, content):
    path = tmp_path / "m.pt"
    if content == "garbage":
        path.write_bytes(b"not a torch file")
    elif content == "other_torch":
        torch.save({"state_dict": {}}, path)
    elif content == "pickled_code":
        torch.save({"format": FORMAT, "spec": Arbitrary()}, path)  # any class: refused by weights_only
    with pytest.raises(CheckpointError):
        load_model(str(path))
    with pytest.raises(VSearchError):
        load_encoder(f"trained:{path}-{content}" if content == "missing" else f"trained:{path}")
