"""Real face photos and a loaded face pipeline for the faces tests.

The photos come from the ``face_recognition==1.3.0`` sdist on PyPI (``tests/test_images/``:
three distinct photos of Barack Obama, two crops of one of them with the face cut by the border,
an RGBA PNG copy of one of them, Joe Biden), fetched once with pip into the vsearch cache and
skipped cleanly when the registry cannot be reached; plus Grace Hopper (matplotlib) and Eileen
Collins (scikit-image's ``astronaut``). Their licence is unclear, so they are not committed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

SDIST = "face_recognition==1.3.0"
SDIST_DIR = "face_recognition-1.3.0"
OBAMA = ["obama.jpg", "obama2.jpg", "obama3.jpg"]  # three distinct photos
OBAMA_CROPS = ["obama_partial_face.jpg", "obama_partial_face2.jpg"]  # crops of obama.jpg


def _cache_dir() -> str:
    base = os.environ.get("VSEARCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vsearch")
    return os.path.join(base, "test-faces")


@pytest.fixture(scope="session")
def face_images(tmp_path_factory) -> str:
    """Folder with the sdist's test photos (read-only for tests)."""
    target = os.path.join(_cache_dir(), "test_images")
    if not os.path.isfile(os.path.join(target, "obama.jpg")):
        tmp = tmp_path_factory.mktemp("sdist")
        try:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                            "--disable-pip-version-check", "-q", "-d", str(tmp), SDIST],
                           check=True, capture_output=True, timeout=180)
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"cannot fetch the {SDIST} sdist for its face photos: {exc}")
        archive = next(p for p in tmp.iterdir() if p.name.endswith(".tar.gz"))
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith(f"{SDIST_DIR}/tests/test_images/") and m.isfile()]
            tar.extractall(tmp, members=members, filter="data")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        staging = target + f".tmp{os.getpid()}"
        shutil.copytree(tmp / SDIST_DIR / "tests" / "test_images", staging)
        try:
            os.replace(staging, target)  # atomic: parallel sessions never see half a folder
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return target


@pytest.fixture(scope="session")
def other_people(tmp_path_factory) -> dict[str, str]:
    """Photos of people other than Obama and Biden that ship with installed packages."""
    import matplotlib.cbook as cbook
    from skimage import data

    d = tmp_path_factory.mktemp("others")
    Image.fromarray(data.astronaut()).save(d / "collins.jpg", quality=92)
    shutil.copy(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), d / "hopper.jpg")
    return {"collins": str(d / "collins.jpg"), "hopper": str(d / "hopper.jpg")}


@pytest.fixture(scope="session")
def identity_folder(face_images, other_people, tmp_path_factory) -> str:
    """``DIR/<identity>/*.jpg`` for calibration: Obama (3 photos + 2 crops), Biden, Hopper, Collins."""
    d = tmp_path_factory.mktemp("identities")
    for sub, files in {"obama": OBAMA + OBAMA_CROPS, "biden": ["biden.jpg"]}.items():
        (d / sub).mkdir()
        for f in files:
            shutil.copy(os.path.join(face_images, f), d / sub / f)
    for name, path in other_people.items():
        (d / name).mkdir()
        shutil.copy(path, d / name / os.path.basename(path))
    return str(d)


@pytest.fixture(scope="session")
def face_pipeline():
    pytest.importorskip("dlib")
    from vsearch.faces.pipeline import load_pipeline

    return load_pipeline()


@pytest.fixture
def face_service(tmp_path, face_pipeline):
    from vsearch.catalog import Catalog
    from vsearch.faces.service import FaceService

    catalog = Catalog(tmp_path / "facedb")
    svc = FaceService(catalog, pipeline=face_pipeline)
    yield svc
    catalog.close()


def paste_on_canvas(face_photo: str, canvas_size: tuple[int, int], face_width: int, at=(10, 10)) -> Image.Image:
    """A grey canvas with a photo scaled so that its width is ``face_width`` pixels."""
    img = Image.open(face_photo).convert("RGB")
    img = img.resize((face_width, max(1, round(img.height * face_width / img.width))), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", canvas_size, (128, 128, 128))
    canvas.paste(img, at)
    return canvas


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
