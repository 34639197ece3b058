"""The face pipeline on real photos, and on bad probes: a clear result, never a crash."""
import os

import numpy as np
import pytest
from PIL import Image

from tests.faces.conftest import OBAMA, paste_on_canvas
from vsearch.errors import ImageDecodeError
from vsearch.faces.detectors import HaarDetector, build_detector
from vsearch.faces.errors import FaceError

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def test_one_face_per_portrait_with_landmarks_in_the_box(face_pipeline, face_images):
    for name in OBAMA + ["biden.jpg"]:
        result = face_pipeline.analyze(os.path.join(face_images, name))
        assert len(result.faces) == 1, name
        face = result.faces[0]
        x0, y0, x1, y1 = face.box
        assert 0 <= x0 < x1 <= result.image_size[0] and 0 <= y0 < y1 <= result.image_size[1]
        lm = face.landmarks
        assert lm.shape == (5, 2)
        assert np.all((lm[:, 0] > x0) & (lm[:, 0] < x1) & (lm[:, 1] > y0) & (lm[:, 1] < y1)), name
        assert face.embedding.shape == (128,) and np.linalg.norm(face.embedding) == pytest.approx(1, abs=1e-5)
        assert set(result.timings_ms) == {"decode", "detect", "align", "embed"}


def test_boxes_are_in_original_pixels_whatever_the_downscale(face_pipeline, face_images):
    path = os.path.join(face_images, "obama3.jpg")  # 1434 x 2333: decoded at reduced scale
    big = face_pipeline.analyze(path)
    img = Image.open(path).convert("RGB")
    half = face_pipeline.analyze(np.asarray(img.resize((img.width // 2, img.height // 2))))
    assert big.image_size == img.size
    assert np.allclose(np.array(big.faces[0].box) / 2, half.faces[0].box, atol=12)
    assert float(big.faces[0].embedding @ half.faces[0].embedding) > 0.95


def test_same_person_scores_above_other_people(face_pipeline, face_images, other_people):
    emb = {n: face_pipeline.analyze(os.path.join(face_images, n)).faces[0].embedding for n in OBAMA + ["biden.jpg"]}
    for name, path in other_people.items():
        emb[name] = face_pipeline.analyze(path).faces[0].embedding
    genuine = [emb[a] @ emb[b] for i, a in enumerate(OBAMA) for b in OBAMA[i + 1:]]
    impostor = [emb[a] @ emb[b] for a in emb for b in emb if a < b and not (a in OBAMA and b in OBAMA)]
    assert min(genuine) > max(impostor)
    # the default threshold (dlib's 0.6 distance as a cosine) separates them too
    from vsearch.faces.embedders import DLIB_DEFAULT_THRESHOLD

    assert min(genuine) > DLIB_DEFAULT_THRESHOLD > max(impostor)


def test_grayscale_and_rgba_probes_still_match(face_pipeline, face_images):
    ref = face_pipeline.analyze(os.path.join(face_images, "obama2.jpg")).faces[0].embedding
    gray = Image.open(os.path.join(face_images, "obama2.jpg")).convert("L")
    g = face_pipeline.analyze(gray).faces[0].embedding
    rgba = face_pipeline.analyze(os.path.join(face_images, "32bit.png")).faces[0].embedding  # RGBA copy
    assert g @ ref > 0.95 and rgba @ ref > 0.99


def test_no_face_gives_an_empty_result(face_pipeline):
    from skimage import data

    result = face_pipeline.analyze(data.coffee())
    assert result.faces == [] and result.too_small == 0


def test_several_faces_are_all_found_largest_first(face_pipeline, face_images, other_people):
    canvas = Image.new("RGB", (1400, 700), (90, 90, 90))
    canvas.paste(Image.open(os.path.join(face_images, "obama2.jpg")).convert("RGB").resize((313, 600)), (20, 50))
    canvas.paste(Image.open(other_people["hopper"]).convert("RGB").resize((400, 586)), (700, 60))
    result = face_pipeline.analyze(canvas)
    assert len(result.faces) == 2
    assert result.faces[0].area >= result.faces[1].area
    assert result.faces[0].box[0] > 600  # Hopper's face is the bigger one here


def test_tiny_face_is_not_used(face_pipeline, face_images):
    # the portrait 60 px wide: a face of about 30 px, below what HOG finds after a 640 -> 400
    # downscale and one upsampling (about 64 px here), so none is found, and the result says so
    tiny = paste_on_canvas(os.path.join(face_images, "obama2.jpg"), (640, 480), 60)
    result = face_pipeline.analyze(tiny)
    assert result.faces == [] and result.min_detectable == pytest.approx(64)


def test_face_found_but_too_small_is_counted_not_used(face_images):
    from vsearch.faces.pipeline import FacePipeline

    haar = FacePipeline(detector=build_detector("haar"))  # finds faces of 24 px and up
    tiny = paste_on_canvas(os.path.join(face_images, "obama2.jpg"), (400, 300), 60, at=(150, 100))
    result = haar.analyze(tiny)
    assert result.faces == [] and result.too_small == 1


def test_face_turned_sideways_is_not_found(face_pipeline, face_images):
    # HOG finds frontal and slightly turned faces; a face lying on its side is out of its range
    img = Image.open(os.path.join(face_images, "obama2.jpg")).convert("RGB").rotate(90, expand=True)
    assert face_pipeline.analyze(img).faces == []


def test_huge_and_corrupt_files(face_pipeline, face_images, tmp_path):
    huge = paste_on_canvas(os.path.join(face_images, "obama.jpg"), (8000, 6000), 2000, at=(3000, 2000))
    huge.save(tmp_path / "huge.jpg", quality=85)
    result = face_pipeline.analyze(str(tmp_path / "huge.jpg"))
    assert result.image_size == (8000, 6000) and len(result.faces) == 1
    assert 3000 < result.faces[0].box[0] < 5000  # box in original pixels
    data = open(os.path.join(face_images, "obama.jpg"), "rb").read()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    for bad in ["cut.jpg", "junk.jpg", "empty.jpg", "missing.jpg"]:
        with pytest.raises(ImageDecodeError):
            face_pipeline.analyze(str(tmp_path / bad))
    with pytest.raises(ImageDecodeError):
        face_pipeline.analyze(np.zeros((10, 10, 3), np.float32))


def test_haar_is_a_second_detector_that_agrees_on_portraits(face_images):
    import cv2  # noqa: F401

    haar = build_detector("haar")
    assert isinstance(haar, HaarDetector)
    hog = build_detector("hog")
    img = np.asarray(Image.open(os.path.join(face_images, "obama2.jpg")).convert("RGB"))
    (h,), (d,) = haar.detect(img), hog.detect(img)
    cx = lambda b: ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)  # noqa: E731
    assert np.hypot(*np.subtract(cx(h.box), cx(d.box))) < 0.25 * d.width
    with pytest.raises(FaceError):
        build_detector("nope")


@pytest.mark.slow
def test_cnn_detector_finds_the_faces(face_images):
    cnn = build_detector("cnn")
    img = Image.open(os.path.join(face_images, "obama2.jpg")).convert("RGB")
    img.thumbnail((400, 400))
    found = cnn.detect(np.asarray(img))
    assert len(found) == 1 and found[0].score > 0.5


def test_torch_port_of_dlib_resnet_gives_dlibs_descriptors(face_pipeline, face_images, other_people):
    """The default embedder runs dlib's weights on PyTorch; it must agree with dlib itself."""
    from vsearch.faces.dlib_torch import TorchDlibResNetEmbedder
    from vsearch.faces.embedders import DlibResNetEmbedder, build_embedder

    assert isinstance(face_pipeline.embedder, TorchDlibResNetEmbedder)
    native = DlibResNetEmbedder()
    assert build_embedder("dlib-native").name == face_pipeline.embedder.name == native.name
    chips = []
    for path in [os.path.join(face_images, n) for n in OBAMA + ["biden.jpg"]] + list(other_people.values()):
        work, size = face_pipeline.load(path)
        for f in face_pipeline.analyze_array(work, size).faces:
            box = tuple(v * work.shape[1] / size[0] for v in f.box)
            chips.append(face_pipeline.aligner.align(work, box, 150, 0.25).chip)
    raw_native = np.asarray(native._model.compute_face_descriptor(chips))
    raw_torch = face_pipeline.embedder.raw(chips)
    assert len(chips) >= 6 and np.abs(raw_native - raw_torch).max() < 1e-4
    assert np.allclose(face_pipeline.embedder.embed(chips), native.embed(chips), atol=1e-5)


def test_mission_patch_is_not_a_face(face_pipeline, tmp_path):
    """HOG finds a face in the round mission patch of the astronaut photo saved as a JPEG; its
    landmarks do not lock on, so only Eileen Collins' face is kept (index and probe settings)."""
    from dataclasses import replace

    from skimage import data

    from vsearch.faces.pipeline import INDEX_CONFIG, PROBE_CONFIG
    from vsearch.faces.quality import MAX_DRIFT, landmark_drift

    path = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=90)
    for cfg in (INDEX_CONFIG, PROBE_CONFIG):
        unchecked = face_pipeline.analyze(str(path), replace(cfg, check_landmarks=False))
        assert len(unchecked.faces) == 2  # Collins and the patch (lower on the suit)
        patch = max(unchecked.faces, key=lambda f: f.box[1])
        work, _ = face_pipeline.load(str(path), cfg)
        assert landmark_drift(face_pipeline.aligner.landmarks, work, patch.box) > MAX_DRIFT
        result = face_pipeline.analyze(str(path), cfg)
        assert len(result.faces) == 1 and result.not_faces == 1
        assert result.faces[0].box[1] < 150  # the face at the top, not the patch on the chest


def test_landmark_check_keeps_the_real_faces(face_pipeline, face_images):
    from vsearch.faces.quality import MAX_DRIFT, landmark_drift

    for name in OBAMA + ["biden.jpg"]:
        work, _ = face_pipeline.load(os.path.join(face_images, name))
        face = face_pipeline.analyze_array(work).faces[0]
        assert landmark_drift(face_pipeline.aligner.landmarks, work, face.box) < MAX_DRIFT
