"""`vsearch index --faces`: faces stored with their photo, no duplicates, removal, pending photos,
clustering and `search --face`."""
import json
import os
import shutil

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import vsearch
from indexer import index_paths
from tests.faces.conftest import OBAMA
from vsearch.encoders import load_encoder
from vsearch.faces.extractor import FaceExtractor
from vsearch.faces.schema import FACE_SPACE, Face, FaceScan
from vsearch.faces.service import FaceService


@pytest.fixture
def album(tmp_path, face_images, other_people):
    """Obama x3, Biden, Hopper, and two photos without faces."""
    from skimage import data
    from PIL import Image

    d = tmp_path / "album"
    d.mkdir()
    for n in OBAMA + ["biden.jpg"]:
        shutil.copy(os.path.join(face_images, n), d / n)
    shutil.copy(other_people["hopper"], d / "hopper.jpg")
    Image.fromarray(data.coffee()).save(d / "coffee.jpg")
    Image.fromarray(data.rocket()).save(d / "rocket.jpg")
    return d


@pytest.fixture
def extractor(face_pipeline):
    from vsearch.faces.pipeline import INDEX_CONFIG, FacePipeline

    p = face_pipeline
    return FaceExtractor(pipeline=FacePipeline(p.detector, p.aligner, p.embedder, INDEX_CONFIG))


def _index(db, paths, encoder, extractors=()):
    coll = vsearch.open(db)
    summary = index_paths(coll.catalog, encoder, [str(p) for p in paths], workers=0, extractors=extractors)
    return summary, coll


def _faces(catalog) -> list[tuple[str, int]]:
    with Session(catalog.engine) as s:
        rows = s.execute(select(Face.media_id, func.count()).group_by(Face.media_id)).all()
    return sorted((os.path.basename(catalog.media(m).path), n) for m, n in rows)


def test_index_faces_stores_each_face_with_its_photo_once(album, tmp_path, tiny_clip_spec, extractor):
    enc = load_encoder(tiny_clip_spec)
    s, coll = _index(tmp_path / "db", [album], enc, [extractor])
    cat = coll.catalog
    assert s.added == 7 and not s.failed
    assert _faces(cat) == [("biden.jpg", 1), ("hopper.jpg", 1), ("obama.jpg", 1), ("obama2.jpg", 1), ("obama3.jpg", 1)]
    with Session(cat.engine) as sess:
        face = sess.scalars(select(Face).order_by(Face.id)).first()
        media = cat.media(face.media_id)
        assert 0 <= face.x0 < face.x1 <= media.width and 0 <= face.y0 < face.y1 <= media.height
        assert np.array(json.loads(face.landmarks)).shape == (5, 2) and face.score > 0
        assert sess.scalar(select(func.count()).select_from(FaceScan)) == 7  # faceless photos too
    assert all(r.ok for r in cat.verify())
    from vsearch.vector_index import VectorIndex

    file_ids = VectorIndex.load(cat.index_path(FACE_SPACE), 128).ids()
    assert len(file_ids) == len(set(file_ids.tolist())) == 5  # each face once in FAISS too

    s2, coll = _index(tmp_path / "db", [album], enc, [extractor])  # re-run: nothing new
    assert (s2.added, s2.revisited) == (0, 0) and len(_faces(coll.catalog)) == 5
    assert sum(n for _, n in _faces(coll.catalog)) == 5

    (album / "obama2.jpg").unlink()  # removing a photo removes its face, SQL and index
    s3, coll = _index(tmp_path / "db", [album], enc, [extractor])
    assert s3.removed == 1 and "obama2.jpg" not in dict(_faces(coll.catalog))
    reports = {r.space: r for r in coll.catalog.verify()}
    assert reports[FACE_SPACE].ok and reports[FACE_SPACE].sql_count == 4


def test_photos_indexed_before_faces_are_picked_up(album, tmp_path, tiny_clip_spec, extractor):
    enc = load_encoder(tiny_clip_spec)
    s, coll = _index(tmp_path / "db", [album], enc)  # no --faces
    assert s.added == 7 and coll.catalog.space_model(FACE_SPACE) is None
    s2, coll = _index(tmp_path / "db", [album], enc, [extractor])
    assert (s2.added, s2.unchanged, s2.revisited) == (0, 7, 7)
    assert len(_faces(coll.catalog)) == 5
    # a copy reuses the image vector; the indexer runs extractors on it only on the next run
    # (it is made during the run, after `pending` was asked), and that run gives it its face
    shutil.copy(album / "biden.jpg", album / "biden_copy.jpg")
    s3, coll = _index(tmp_path / "db", [album], enc, [extractor])
    assert s3.copied == 1
    s4, coll = _index(tmp_path / "db", [album], enc, [extractor])
    assert s4.revisited == 1 and dict(_faces(coll.catalog))["biden_copy.jpg"] == 1
    assert all(r.ok for r in coll.catalog.verify())


def test_search_by_face_and_clusters(album, tmp_path, tiny_clip_spec, extractor, face_pipeline, face_images):
    enc = load_encoder(tiny_clip_spec)
    _, coll = _index(tmp_path / "db", [album], enc, [extractor])
    svc = FaceService(coll.catalog, pipeline=face_pipeline)
    probe = os.path.join(face_images, "obama_partial_face.jpg")  # not in the album
    hits = svc.search_photos(probe, k=10)
    assert sorted(os.path.basename(h.path) for h in hits) == sorted(OBAMA)
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].score >= hits[-1].score >= svc.threshold

    groups = svc.cluster()
    assert len(groups) == 1 and groups[0].size == 3  # Obama; the others are alone in the album
    assert sorted(os.path.basename(p) for p in groups[0].photos) == sorted(OBAMA)
    res = svc.name_cluster(groups[0].cluster, "obama")
    assert res.created and res.templates == 3
    assert svc.verify("obama", probe).match
    assert svc.cluster() == []  # named faces are no longer clustered
    assert [(p.name, p.faces_in_collection) for p in svc.people()] == [("obama", 3)]


def test_cluster_listing_gives_non_utf8_names_as_the_file_system_has_them(tmp_path, tiny_clip_spec, extractor,
                                                                         face_pipeline, face_images):
    if os.fsencode("\udce9") != b"\xe9":
        pytest.skip("needs a file system that takes any byte in names")
    d = tmp_path / "album"
    d.mkdir()
    paths = [str(d / os.fsdecode(f"caf\xe9-{n}".encode("latin-1"))) for n in OBAMA]  # not UTF-8
    try:
        for n, path in zip(OBAMA, paths):
            shutil.copy(os.path.join(face_images, n), path)
    except (OSError, UnicodeEncodeError):
        pytest.skip("the file system refuses these names")
    _, coll = _index(tmp_path / "db", [d], load_encoder(tiny_clip_spec), [extractor])
    svc = FaceService(coll.catalog, pipeline=face_pipeline)
    assert [g.size for g in svc.cluster()] == [3]
    (listed,) = svc.clusters(examples=3)
    assert sorted(listed.photos) == sorted(paths) and all(os.path.exists(p) for p in listed.photos)


def test_two_faces_in_one_photo_are_two_clusters(tmp_path, tiny_clip_spec, extractor, face_pipeline, face_images):
    from PIL import Image

    d = tmp_path / "pairs"
    d.mkdir()
    face = Image.open(os.path.join(face_images, "obama2.jpg")).convert("RGB").resize((313, 600))
    for i in range(2):  # the same face twice in each of two photos: identical faces, one photo
        canvas = Image.new("RGB", (700 + 20 * i, 650), (90, 90, 90))
        canvas.paste(face, (10, 20))
        canvas.paste(face, (360, 20))
        canvas.save(d / f"twins{i}.jpg")
    _, coll = _index(tmp_path / "db", [d], load_encoder(tiny_clip_spec), [extractor])
    groups = FaceService(coll.catalog, pipeline=face_pipeline).cluster()
    assert [g.size for g in groups] == [2, 2]
    with Session(coll.catalog.engine) as s:
        for media_id, n_clusters in s.execute(select(Face.media_id, func.count(func.distinct(Face.cluster)))
                                              .group_by(Face.media_id)):
            assert n_clusters == 2
