"""Shared fixtures: real photos from scikit-image, a tiny seeded CLIP checkpoint, temp catalogs."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("VSEARCH_OFFLINE", "1")  # tests never try to reach a model hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# the suite runs torch unless a test picks onnx (tests/test_onnx.py compares the two)
os.environ.setdefault("VSEARCH_RUNTIME", "torch")

# skimage loaders whose data ship inside the package (others need a download)
SKIMAGE_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "horse", "coins", "moon",
                  "clock", "hubble_deep_field"]
TINY_CLIP = "vsearch-test-tiny"


def skimage_rgb(name: str) -> Image.Image:
    from skimage import data

    arr = np.asarray(getattr(data, name)())
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    return Image.fromarray(arr).convert("RGB")


def skimage_caption(name: str) -> str:
    from skimage import data

    return getattr(data, name).__doc__.strip().splitlines()[0]


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """The skimage photos as JPEG files (read-only for tests: copy before changing)."""
    d = tmp_path_factory.mktemp("photos")
    for name in SKIMAGE_PHOTOS:
        skimage_rgb(name).save(d / f"{name}.jpg", quality=92)
    return d


@pytest.fixture
def photos(photo_dir, tmp_path):
    """A private, writable copy of the photo folder."""
    import shutil

    dst = tmp_path / "photos"
    shutil.copytree(photo_dir, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_clip_weights(tmp_path_factory):
    """A seeded random-weight open_clip model: its config registered, its checkpoint written, so
    tests load it through the real ``clip:ARCH@FILE`` path."""
    import open_clip
    import torch

    d = tmp_path_factory.mktemp("tiny_clip")
    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    cfg_path = d / f"{TINY_CLIP}.json"
    cfg_path.write_text(json.dumps(cfg))
    open_clip.add_model_config(str(cfg_path))
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    weights = d / "tiny.pt"
    torch.save(model.state_dict(), weights)
    return str(weights)


@pytest.fixture(scope="session")
def tiny_clip_spec(tiny_clip_weights):
    # the config file form works in subprocesses too (nothing registered in-process)
    return f"clip:{os.path.join(os.path.dirname(tiny_clip_weights), TINY_CLIP + '.json')}@{tiny_clip_weights}"


@pytest.fixture(scope="session")
def packaged_encoder():
    from vsearch.encoders import load_encoder

    return load_encoder("packaged")


# -- small catalog data for tests ------------------------------------------------------------------
def unit(x) -> np.ndarray:
    """Rows (or a vector) scaled to unit length, float32: what encoders give the catalog."""
    x = np.asarray(x)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def media_records(n: int, start: int = 0, folder: str = "/photos"):
    """``n`` distinct :class:`~vsearch.catalog.MediaRecord` s, ``FOLDER/<i>.jpg`` for i from ``start``."""
    from vsearch.catalog import MediaRecord

    return [MediaRecord(f"{folder}/{i}.jpg", 100 + i, 1.0 + i, sha256=f"{i:064x}") for i in range(start, start + n)]


# -- PostgreSQL (tests that need it are skipped unless VSEARCH_TEST_PG_URL names a server) ----------
PG_URL = os.environ.get("VSEARCH_TEST_PG_URL")


def empty_postgres(url: str | None = None) -> str:
    """Drop every table of the test database, those of the features too (found by reflection,
    dropped in dependency order); returns the URL."""
    from sqlalchemy import MetaData, create_engine

    url = url or PG_URL
    engine = create_engine(url)
    tables = MetaData()
    tables.reflect(engine)
    tables.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def pg_url():
    """An emptied PostgreSQL test database."""
    if not PG_URL:
        pytest.skip("no PostgreSQL: set VSEARCH_TEST_PG_URL")
    return empty_postgres()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No test writes to the real ~/.local/share/vsearch; the label cache stays shared."""
    monkeypatch.setenv("VSEARCH_DB", str(tmp_path / "default-db"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # notes said once (vsearch.commands.common)
    monkeypatch.setenv("VSEARCH_CACHE", os.environ.get("VSEARCH_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "vsearch")))
