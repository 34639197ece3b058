"""Enrollment, verification and identification over a catalog, on real photos."""
import os

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.faces.conftest import OBAMA, OBAMA_CROPS
from vsearch.faces.errors import MultipleFacesError, NoFaceError, UnknownPersonError
from vsearch.faces.schema import ENROLLED_SPACE, Person, Template
from vsearch.faces.service import CALIBRATION_KEY
from vsearch.metrics.verification import clopper_pearson_upper


def _count(catalog, table) -> int:
    with Session(catalog.engine) as s:
        return s.scalar(select(func.count()).select_from(table))


def test_enroll_one_photo_accepts_the_person_rejects_everyone_else_at_the_calibrated_threshold(
        face_service, face_images, other_people, identity_folder):
    report = face_service.calibrate(identity_folder, target_far=1e-3)
    # 8 photos: Obama x5 (3 photos + 2 crops), Biden, Hopper, Collins
    assert (report.identities, report.images, report.n_genuine, report.n_impostor) == (4, 8, 10, 18)
    assert report.auc == 1.0 and report.eer == 0.0
    assert report.method == "normal-tail extrapolation"  # 18 impostor pairs cannot measure 1e-3
    assert face_service.threshold == pytest.approx(report.threshold)
    assert report.impostor.max() < report.threshold < report.genuine.min()
    # what these 8 photos cannot promise is said, and the threshold looser than the default is flagged
    assert report.looser_than_default and "LOOSER" in report.warnings[0]
    assert any("only 4 people" in w for w in report.warnings)
    assert report.tar_at_threshold == 1.0 and report.false_accepts == 0
    bound = clopper_pearson_upper(0, 18)  # about 0.15: 0 of 18 is weak evidence
    assert report.far_upper == pytest.approx(bound)
    assert report.summary()["far_basis"]["method"] == "clopper-pearson upper bound"

    face_service.enroll("obama", [os.path.join(face_images, "obama.jpg")])
    face_service.enroll("biden", [os.path.join(face_images, "biden.jpg")])
    others = ["obama2.jpg", "obama3.jpg", "32bit.png"] + OBAMA_CROPS
    for name in others:
        res = face_service.verify("obama", os.path.join(face_images, name))
        assert res.match and res.score >= res.threshold, name
        assert res.far_estimate == pytest.approx(bound)  # above every impostor: an upper bound, not 0
        assert res.far_basis["false_accepts"] == 0 and res.far_basis["identities"] == 4
    impostors = [os.path.join(face_images, "biden.jpg")] + list(other_people.values())
    for path in impostors:
        res = face_service.verify("obama", path)
        assert not res.match, path
        assert res.far_estimate > bound
    for name in OBAMA[1:]:
        assert not face_service.verify("biden", os.path.join(face_images, name)).match


def test_verify_result_fields_and_default_threshold(face_service, face_images):
    face_service.enroll("obama", [os.path.join(face_images, "obama.jpg")])
    res = face_service.verify("obama", os.path.join(face_images, "obama2.jpg"))
    assert face_service.calibration() is None
    assert res.threshold == 0.915 and res.far_estimate is None  # dlib's 0.6, uncalibrated
    d = res.to_json()
    assert set(d) >= {"match", "score", "threshold", "far_estimate", "face_box", "latency_ms"}
    assert d["match"] is True and len(d["face_box"]) == 4 and d["latency_ms"] > 0
    assert set(res.timings_ms) == {"decode", "detect", "align", "embed", "compare"}


def test_enroll_refuses_zero_or_several_faces_and_stores_nothing(face_service, face_images, other_people, tmp_path):
    from skimage import data

    Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg")
    group = Image.new("RGB", (1400, 700), (90, 90, 90))
    group.paste(Image.open(os.path.join(face_images, "obama2.jpg")).convert("RGB").resize((313, 600)), (20, 50))
    group.paste(Image.open(other_people["hopper"]).convert("RGB").resize((400, 586)), (700, 60))
    group.save(tmp_path / "group.jpg")
    good = os.path.join(face_images, "obama.jpg")
    with pytest.raises(NoFaceError, match="coffee.jpg: no face found.*Nothing was enrolled"):
        face_service.enroll("x", [good, str(tmp_path / "coffee.jpg")])
    with pytest.raises(MultipleFacesError, match="group.jpg: 2 faces found"):
        face_service.enroll("x", [good, str(tmp_path / "group.jpg")])
    assert face_service.people() == [] and _count(face_service.catalog, Template) == 0
    assert face_service.catalog.space_model(ENROLLED_SPACE) is None


def test_several_photos_make_one_template_set_and_remove_deletes_everywhere(face_service, face_images):
    cat = face_service.catalog
    res = face_service.enroll("obama", [os.path.join(face_images, n) for n in OBAMA[:2]])
    assert (res.added, res.templates, res.created) == (2, 2, True)
    res = face_service.enroll("obama", [os.path.join(face_images, "obama3.jpg")])
    assert (res.added, res.templates, res.created) == (1, 3, False)
    face_service.enroll("biden", [os.path.join(face_images, "biden.jpg")])
    assert [(p.name, p.templates) for p in face_service.people()] == [("biden", 1), ("obama", 3)]
    assert face_service.templates("obama").shape == (3, 128)

    assert face_service.remove("obama") == 3
    assert [p.name for p in face_service.people()] == ["biden"]
    assert _count(cat, Template) == 1 and _count(cat, Person) == 1
    report = {r.space: r for r in cat.verify()}[ENROLLED_SPACE]
    assert report.ok and report.sql_count == report.index_count == 1
    with pytest.raises(UnknownPersonError):
        face_service.verify("obama", os.path.join(face_images, "obama2.jpg"))
    with pytest.raises(UnknownPersonError):
        face_service.remove("obama")


def test_identify_names_enrolled_people_and_says_unknown(face_service, face_images, other_people):
    face_service.enroll("obama", [os.path.join(face_images, "obama.jpg")])
    face_service.enroll("biden", [os.path.join(face_images, "biden.jpg")])
    (who,) = face_service.identify(os.path.join(face_images, "obama3.jpg"), k=3)
    assert who.name == "obama" and [c.name for c in who.candidates] == ["obama", "biden"]
    assert who.candidates[0].score > who.candidates[1].score
    (who,) = face_service.identify(other_people["hopper"], k=1)
    assert who.name == "unknown" and len(who.candidates) == 1


def two_person_photo(face_images: str, path) -> str:
    """A 1600x1000 group photo from two real photos: Obama large on the left, Biden small on the
    right (a face of about 90 px: below what the fast 400 px probe scan can see)."""
    canvas = Image.new("RGB", (1600, 1000), (128, 128, 128))
    for name, width, at in (("obama.jpg", 700, (20, 20)), ("biden.jpg", 300, (1280, 300))):
        photo = Image.open(os.path.join(face_images, name)).convert("RGB")
        canvas.paste(photo.resize((width, round(photo.height * width / photo.width)), Image.Resampling.LANCZOS), at)
    canvas.save(path, quality=92)
    return str(path)


def test_identify_finds_every_face_the_indexer_finds_in_a_group_photo(face_service, face_images, tmp_path):
    from vsearch.faces.pipeline import INDEX_CONFIG

    group = two_person_photo(face_images, tmp_path / "group.jpg")
    face_service.enroll("obama", [os.path.join(face_images, "obama2.jpg")])
    face_service.enroll("biden", [os.path.join(face_images, "biden.jpg")])
    assert len(face_service.pipeline.analyze(group).faces) == 1  # the fast probe scan sees one face
    indexed = face_service.pipeline.analyze(group, INDEX_CONFIG).faces  # what `index --faces` stores
    found = face_service.identify(group, k=2)
    assert len(found) == len(indexed) == 2
    assert [f.name for f in found] == ["obama", "biden"]  # largest first
    # verify keeps using the largest face
    res = face_service.verify("obama", group)
    assert res.match and res.faces_in_probe == 1


def test_probe_errors_are_clear(face_service, face_images, tmp_path):
    from skimage import data

    from vsearch.errors import ImageDecodeError

    face_service.enroll("obama", [os.path.join(face_images, "obama.jpg")])
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg")
    with pytest.raises(NoFaceError, match="no face found in the probe"):
        face_service.verify("obama", str(tmp_path / "coffee.jpg"))
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageDecodeError):
        face_service.verify("obama", str(tmp_path / "bad.jpg"))
    with pytest.raises(UnknownPersonError):
        face_service.verify("nobody", os.path.join(face_images, "obama2.jpg"))
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(ImageDecodeError, match=f"^not found: {missing}$"):
        face_service.verify("obama", missing)
    with pytest.raises(ImageDecodeError, match=f"^is a folder: {tmp_path}$"):
        face_service.identify(str(tmp_path))


def test_calibration_belongs_to_its_embedder(face_service, identity_folder):
    face_service.calibrate(identity_folder, target_far=0.1, store=True)
    assert face_service.calibration()["method"] == "empirical"  # 18 pairs resolve FAR 0.1
    import json

    cal = json.loads(face_service.catalog.get_meta(CALIBRATION_KEY))
    cal["embedder"] = "trained:/some/other.pt"
    face_service.catalog.set_meta(CALIBRATION_KEY, json.dumps(cal))
    assert face_service.calibration() is None and face_service.threshold == 0.915


def test_a_trained_encoder_plugs_in_as_embedder(tiny_clip_spec, face_images, tmp_path):
    """Any registry image encoder (e.g. `trained:` from the trainer) fits the embedder protocol;
    a catalog keeps the embedder it was filled with."""
    from vsearch.catalog import Catalog
    from vsearch.errors import ModelMismatchError
    from vsearch.faces.embedders import EncoderFaceEmbedder, build_embedder
    from vsearch.faces.service import FaceService

    emb = build_embedder(tiny_clip_spec)
    assert isinstance(emb, EncoderFaceEmbedder) and emb.dim == 32
    chips = np.random.default_rng(0).integers(0, 255, (2, 150, 150, 3), dtype=np.uint8)
    out = emb.embed(list(chips))
    assert out.shape == (2, 32) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    cat = Catalog(tmp_path / "db")
    svc = FaceService(cat, embedder=tiny_clip_spec)
    svc.enroll("obama", [os.path.join(face_images, "obama.jpg")])
    assert cat.space_model(ENROLLED_SPACE) == (emb.name, 32)
    with pytest.raises(ModelMismatchError):
        FaceService(cat, embedder="dlib")
    assert FaceService(cat).pipeline.embedder.name == emb.name
    cat.close()
