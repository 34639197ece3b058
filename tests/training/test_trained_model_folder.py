"""A model written by `vsearch train`, exported with `vsearch models export` for an install
without torch: its image tower on ONNX Runtime, the same vectors, text refused in one line."""
import numpy as np
import pytest
import torch

from vsearch.encoders import load_encoder
from vsearch.encoders import model_dir as md
from vsearch.errors import QueryError
from vsearch.images import open_rgb


def test_a_trained_model_runs_from_the_model_folder(trained, digits_root, tmp_path, monkeypatch):
    from vsearch.encoders.onnx_encoder import OnnxEncoder
    from vsearch.modelfiles import export_models

    spec = f"trained:{trained.model_path}"
    (result,) = export_models(str(tmp_path / "models"), [spec], faces=False)
    assert result.status == "exported", result
    assert result.fidelity["image_min_cosine"] >= 0.9999 and "text_min_cosine" not in result.fidelity

    torch_encoder = load_encoder(spec, runtime="torch")
    monkeypatch.setenv(md.MODEL_DIR_ENV, str(tmp_path / "models"))
    onnx_encoder = load_encoder(spec, runtime="onnx")
    assert isinstance(onnx_encoder, OnnxEncoder) and onnx_encoder.kind == "image"
    images = [open_rgb(str(p)) for p in sorted((digits_root / "8").iterdir())[:4]]
    want = torch_encoder.encode_pixels(torch.stack([torch_encoder.preprocess(im) for im in images]))
    got = onnx_encoder.encode_pixels(np.stack([onnx_encoder._transform(im) for im in images]))
    assert np.min(np.sum(want * got, axis=1)) >= 0.9999
    with pytest.raises(QueryError, match="image-only") as err:
        onnx_encoder.encode_text(["a seven"])
    assert "\n" not in str(err.value)
