"""The one search path: query composition and distinct-photo search against numpy oracles."""
import numpy as np
import pytest

from tests.conftest import unit as _unit
from vsearch.catalog import Catalog, MediaRecord
from vsearch.errors import QueryError
from vsearch.search import QueryTerm, SpaceSearcher, catalog_searcher, compose_query, top_media

DIM = 16


class _TableEncoder:
    """Texts and image paths map to fixed random vectors; counts the batches it is asked for."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.table: dict[str, np.ndarray] = {}
        self.text_calls = 0

    def _vec(self, key):
        if key not in self.table:
            self.table[key] = _unit(self.rng.normal(size=DIM))
        return self.table[key]

    def encode_texts(self, texts):
        self.text_calls += 1
        return np.stack([self._vec("t:" + t) for t in texts])

    def encode_image(self, path):
        return self._vec("i:" + path)


def test_compose_query_matches_numpy_oracle():
    enc = _TableEncoder()
    given = _unit(np.random.default_rng(5).normal(size=DIM))
    terms = [QueryTerm(1.0, text="dog"), QueryTerm(0.7, image="/a.jpg"), QueryTerm(0.5, text="snow"),
             QueryTerm(-0.3, text="night"), QueryTerm(0.25, vector=given)]
    got = compose_query(terms, enc.encode_texts, enc.encode_image)
    oracle = (1.0 * enc.table["t:dog"] + 0.7 * enc.table["i:/a.jpg"] + 0.5 * enc.table["t:snow"]
              - 0.3 * enc.table["t:night"] + 0.25 * given)
    oracle = oracle / np.linalg.norm(oracle)
    assert got.dtype == np.float32 and np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(got, oracle, atol=1e-6)
    assert enc.text_calls == 1  # all texts in one batch


def test_compose_query_errors():
    enc = _TableEncoder()
    with pytest.raises(QueryError, match="empty query: give q"):
        compose_query([], empty_message="empty query: give q")
    with pytest.raises(QueryError, match="a text query is empty"):
        compose_query([QueryTerm(1.0, text="  ")], enc.encode_texts)
    with pytest.raises(QueryError, match="cancel out"):
        compose_query([QueryTerm(1.0, text="cat"), QueryTerm(-1.0, text="cat")], enc.encode_texts)
    # an image-only query never asks for the text encoder
    assert compose_query([QueryTerm(2.0, image="/b.jpg")], None, enc.encode_image).shape == (DIM,)


@pytest.fixture
def parts_catalog(tmp_path):
    """30 photos with 1..6 vectors each in a "parts" space, and one photo with 60 vectors all
    close to the query, so that the first 4k vectors hold only a few distinct photos."""
    rng = np.random.default_rng(11)
    cat = Catalog(tmp_path / "db")
    cat.bind_space("image", "m", DIM)
    n = 31
    media = cat.add_media([MediaRecord(f"/p/{i}.jpg", 10 + i, 1.0 + i, sha256=f"{i:064x}") for i in range(n)],
                          _unit(rng.normal(size=(n, DIM))))
    query = _unit(rng.normal(size=DIM))
    owners, vecs = [], []
    for i, mid in enumerate(media[:30]):
        for _ in range(int(rng.integers(1, 7))):
            owners.append(mid)
            vecs.append(_unit(rng.normal(size=DIM) + 0.8 * query * (i % 3)))
    for _ in range(60):  # the crowding photo
        owners.append(media[30])
        vecs.append(_unit(query + 0.05 * rng.normal(size=DIM)))
    vecs = np.stack(vecs)
    cat.bind_space("parts", "m", DIM)
    cat.add_vectors("parts", vecs, owners)
    yield cat, query, np.array(owners), vecs, media
    cat.engine.dispose()


def _brute_force(query, owners, vecs, k, min_score=None):
    scores = vecs @ query
    best: dict[int, float] = {}
    for mid, s in zip(owners.tolist(), scores.tolist()):
        if (min_score is None or s >= min_score) and s > best.get(mid, -np.inf):
            best[mid] = s
    return sorted(best.items(), key=lambda kv: -kv[1])[:k]


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_top_media_distinct_matches_brute_force(parts_catalog, k):
    cat, query, owners, vecs, _ = parts_catalog
    hits = top_media(catalog_searcher(cat, "parts"), cat, query, k)
    expected = _brute_force(query, owners, vecs, k)
    assert [h.media_id for h in hits] == [mid for mid, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert len({h.media_id for h in hits}) == len(hits)


def test_top_media_min_score_and_exclude(parts_catalog):
    cat, query, owners, vecs, media = parts_catalog
    searcher = catalog_searcher(cat, "parts")
    expected = _brute_force(query, owners, vecs, 10, min_score=0.5)
    hits = top_media(searcher, cat, query, 10, min_score=0.5)
    assert [h.media_id for h in hits] == [mid for mid, _ in expected]
    hits = top_media(searcher, cat, query, 5, exclude_media=media[30])
    assert media[30] not in {h.media_id for h in hits}
    assert [h.media_id for h in hits] == [m for m, _ in _brute_force(query, owners, vecs, 6) if m != media[30]][:5]


def test_top_media_not_distinct_is_the_catalog_search(parts_catalog):
    cat, query, *_ = parts_catalog
    searcher = catalog_searcher(cat, "image")
    assert searcher.kind == "exact" and len(searcher) == 31
    got = top_media(searcher, cat, query, 7, distinct=False)
    assert got == cat.search(query, k=7)[0]
    shallow = top_media(catalog_searcher(cat, "parts"), cat, query, 5, distinct=False)
    assert len(shallow) == 5 and len({h.media_id for h in shallow}) < 5  # the crowding photo repeats


def test_searcher_reranks_an_ivfpq_index(tmp_path):
    rng = np.random.default_rng(3)
    cat = Catalog(tmp_path / "db", ann_threshold=1000)
    cat.bind_space("image", "m", DIM)
    n = 600
    vecs = _unit(rng.normal(size=(n, DIM)))
    ids = cat.add_media([MediaRecord(f"/q/{i}.jpg", i, 1.0, sha256=f"{i:064x}") for i in range(n)], vecs)
    cat.build_ivfpq("image", m=4, nlist=8, nbits=6)
    searcher = catalog_searcher(cat, "image")
    assert searcher.kind == "ivfpq+rerank" and isinstance(searcher, SpaceSearcher)
    query = vecs[42]
    hits = top_media(searcher, cat, query, 5, distinct=False)
    assert hits[0].media_id == ids[42] and hits[0].score == pytest.approx(1.0, abs=1e-5)  # exact scores
    # the catalog's own search makes the same choice: the same re-ranked answers, filtered or not
    queries, allowed = vecs[:20], ids[::3]
    for allowed_ids in (None, allowed):
        want, got = searcher.search(queries, 7, allowed_ids), cat.search_ids(queries, 7, allowed_ids=allowed_ids)
        np.testing.assert_array_equal(want[1], got[1])
        np.testing.assert_array_equal(want[0], got[0])
    assert set(got[1].ravel().tolist()) <= set(allowed) | {-1}
    cat.engine.dispose()
