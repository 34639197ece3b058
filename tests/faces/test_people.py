"""Enrolled people linked to the faces of the collection: a person's photos are the indexed faces
that verify against them, whenever they were enrolled; groups that match an enrolled person are
offered as that person; naming one offers a merge; the same photo is not enrolled twice."""
import os
import shutil

import pytest
from PIL import Image, ImageOps

import vsearch
from indexer import index_paths
from tests.faces.conftest import OBAMA
from vsearch.encoders import load_encoder
from vsearch.faces.errors import AlreadyEnrolledError, LooksLikeError, UnknownPersonError
from vsearch.faces.extractor import FaceExtractor
from vsearch.faces.service import FaceService


@pytest.fixture
def album(tmp_path, face_images, other_people):
    """Obama x3, Biden and a mirrored Biden, Hopper."""
    d = tmp_path / "album"
    d.mkdir()
    for n in OBAMA + ["biden.jpg"]:
        shutil.copy(os.path.join(face_images, n), d / n)
    ImageOps.mirror(Image.open(d / "biden.jpg")).save(d / "biden-mirrored.jpg", quality=92)
    shutil.copy(other_people["hopper"], d / "hopper.jpg")
    return d


@pytest.fixture
def indexed(album, tmp_path, tiny_clip_spec, face_pipeline):
    """(the collection, a face service on it, the indexing function for more photos later)."""
    from vsearch.faces.pipeline import INDEX_CONFIG, FacePipeline

    p = face_pipeline
    extractor = FaceExtractor(pipeline=FacePipeline(p.detector, p.aligner, p.embedder, INDEX_CONFIG))
    enc = load_encoder(tiny_clip_spec)
    coll = vsearch.open(tmp_path / "db")

    def index(*paths):
        index_paths(coll.catalog, enc, [str(x) for x in paths], workers=0, extractors=[extractor])

    index(album)
    yield coll, FaceService(coll.catalog, pipeline=face_pipeline), index
    coll.close()


def _photos(svc, name) -> list[str]:
    media = svc.person_photos(name).media_ids
    return sorted(os.path.basename(svc.catalog.media(m).path) for m in media)


def test_a_person_enrolled_after_indexing_is_in_their_photos_and_never_stale(indexed, face_images, tmp_path):
    coll, svc, index = indexed
    svc.enroll("obama", [os.path.join(face_images, "obama3.jpg")])
    (obama,) = svc.people()
    assert (obama.photos, obama.faces_in_collection) == (3, 3)  # was "in 0 photos"
    assert _photos(svc, "obama") == sorted(OBAMA)
    assert obama.to_json()["photos"] == 3
    # a photo indexed later is linked at once, with no step in between
    extra = tmp_path / "later"
    extra.mkdir()
    shutil.copy(os.path.join(face_images, "obama_partial_face2.jpg"), extra / "obama-later.jpg")
    index(extra)
    assert _photos(svc, "obama") == sorted(OBAMA + ["obama-later.jpg"])
    # another process's enrollment and removal are seen too
    other = FaceService(vsearch.open(coll.catalog.directory).catalog, pipeline=svc.pipeline)
    other.enroll("biden", [os.path.join(face_images, "biden.jpg")])
    assert _photos(svc, "biden") == ["biden-mirrored.jpg", "biden.jpg"]
    other.remove("obama")
    assert [p.name for p in svc.people()] == ["biden"]
    with pytest.raises(UnknownPersonError):
        svc.person_photos("obama")
    other.catalog.close()


def test_groups_that_match_an_enrolled_person_are_offered_as_them(indexed, face_images):
    _, svc, _ = indexed
    svc.enroll("biden", [os.path.join(face_images, "biden.jpg")])
    groups = {g.size: g for g in svc.cluster()}
    assert groups[2].person == "biden" and groups[2].score >= svc.threshold  # not an unnamed group
    assert groups[3].person is None  # Obama is not enrolled
    assert groups[2].to_json()["person"] == "biden"


def test_naming_a_group_like_an_enrolled_person_offers_the_merge(indexed, face_images):
    _, svc, _ = indexed
    svc.enroll("biden", [os.path.join(face_images, "biden.jpg")])
    biden_group = next(g for g in svc.cluster() if g.person == "biden").cluster
    with pytest.raises(LooksLikeError, match=r"looks like biden \(\d\.\d\d\)") as caught:
        svc.name_cluster(biden_group, "joe")
    assert caught.value.person == "biden" and [p.name for p in svc.people()] == ["biden"]  # nothing created
    res = svc.name_cluster(biden_group, "biden")  # the merge
    assert not res.created and res.templates == 3
    # a group of someone not enrolled is named as before; --new creates a second person knowingly
    obama_group = next(g for g in svc.cluster() if g.person is None).cluster
    assert svc.name_cluster(obama_group, "obama").created


def test_naming_a_look_alike_group_as_someone_new_on_purpose(indexed, face_images):
    _, svc, _ = indexed
    svc.enroll("biden", [os.path.join(face_images, "biden.jpg")])
    biden_group = next(g for g in svc.cluster() if g.person == "biden").cluster
    assert svc.name_cluster(biden_group, "joe", new_person=True).created


def test_the_same_photo_is_not_enrolled_twice(face_service, face_images, tmp_path):
    obama = os.path.join(face_images, "obama.jpg")
    Image.open(obama).convert("RGB").resize((400, 500)).save(tmp_path / "copy.jpg", quality=70)
    first = face_service.enroll("obama", [obama, os.path.join(face_images, "obama2.jpg")])
    assert (first.added, first.templates) == (2, 2)
    again = face_service.enroll("obama", [obama, str(tmp_path / "copy.jpg"), os.path.join(face_images, "obama3.jpg")])
    assert (again.added, again.templates, again.skipped) == (1, 3, (obama, str(tmp_path / "copy.jpg")))
    assert again.to_json()["already_enrolled"] == [obama, str(tmp_path / "copy.jpg")]
    none = face_service.enroll("obama", [obama])
    assert (none.added, none.templates, none.created) == (0, 3, False)
    with pytest.raises(AlreadyEnrolledError, match="already enrolled as obama"):
        face_service.enroll("barack", [os.path.join(face_images, "obama2.jpg")])
    assert [p.name for p in face_service.people()] == ["obama"]
    # one photo given twice in one call counts once
    twice = face_service.enroll("biden", [os.path.join(face_images, "biden.jpg")] * 2)
    assert (twice.added, twice.templates) == (1, 1)


def test_faces_indexed_later_are_compared_alone_and_match_a_full_search(indexed, face_images, tmp_path):
    """While an index run adds faces, only the new faces are compared with the templates; the
    answer is the one a search from scratch gives."""
    from vsearch.faces.people import FaceLinks

    coll, svc, index = indexed
    svc.enroll("obama", [os.path.join(face_images, "obama3.jpg")])
    svc.enroll("biden", [os.path.join(face_images, "biden.jpg")])
    threshold = svc.threshold
    before = svc.links.people(threshold)
    searches = []
    real_search = svc.links._search
    svc.links._search = lambda *a: searches.append(1) or real_search(*a)
    extra = tmp_path / "later"
    extra.mkdir()
    shutil.copy(os.path.join(face_images, "obama_partial_face.jpg"), extra / "obama-later.jpg")
    shutil.copy(os.path.join(face_images, "biden.jpg"), extra / "biden-later.jpg")
    index(extra)
    after = svc.links.people(threshold)
    assert searches == []  # the new face alone was compared
    fresh = FaceLinks(coll.catalog).people(threshold)
    assert {n: (p.faces, p.media_ids) for n, p in after.items()} == \
        {n: (pytest.approx(p.faces), p.media_ids) for n, p in fresh.items()}
    assert len(after["obama"].media_ids) == len(before["obama"].media_ids) + 1
    # a removed photo is not an addition: searched again
    os.remove(extra / "obama-later.jpg")
    index(extra)
    assert len(svc.links.people(threshold)["obama"].media_ids) == len(before["obama"].media_ids)
