"""The store of text read in photos: versioned tables, the full-text index (SQLite FTS5 trigram;
PostgreSQL pg_trgm when VSEARCH_TEST_PG_URL is set), folded matching, runs and cascades."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sqlalchemy import delete, text

from tests.conftest import PG_URL, empty_postgres, media_records, unit
from vsearch.catalog import Catalog
from vsearch.catalog.migrate import FEATURE_SCHEMA_MODULES
from vsearch.ocr import store
from vsearch.ocr.fold import fold, query_words
from vsearch.schema import Media

URLS = [None] + ([PG_URL] if PG_URL else [])


def test_fold_drops_accents_case_spaces_and_punctuation():
    assert fold("BAKERY LUMIÈRE") == "bakerylumiere"
    assert fold("password:sunflower42") == "passwordsunflower42"
    assert fold("Straße") == "strasse"
    assert fold("ﬁ ２") == "fi2"  # compatibility forms
    assert fold("面包店") == "面包店"  # Chinese is kept
    assert query_words("Wi-Fi  password, wifi") == ["wi", "fi", "password", "wifi"]


def test_the_text_tables_are_a_listed_feature():
    assert "vsearch.ocr.schema" in FEATURE_SCHEMA_MODULES


def _catalog(tmp_path, url):
    if url:
        empty_postgres(url)
    cat = Catalog(tmp_path / "db", url=url, create=True)
    cat.bind_space("image", "m", 8)
    return cat


def _lines(*texts):
    return [(t, fold(t), (1.0, 2.0, 30.0, 12.0), 0.95) for t in texts]


@pytest.mark.parametrize("url", URLS)
def test_words_are_found_inside_lines_whatever_their_case_accents_and_spaces(tmp_path, url):
    cat = _catalog(tmp_path, url)
    try:
        recs = media_records(3)
        with cat.transaction() as tx:
            ids = tx.add_media(recs, unit(np.eye(3, 8)))
            store.store_text(tx, ids[0], recs[0].sha256, "e", _lines("BAKERY LUMIÈRE", "2croissants 3.50"))
            store.store_text(tx, ids[1], recs[1].sha256, "e", _lines("WiFi password:sunflower42"))
            store.store_text(tx, ids[2], recs[2].sha256, "e", [])
        with cat.reading() as r:
            def found(term):
                return sorted({line.media_id for line in store.lines_containing(r, fold(term))})

            assert found("lumiere") == found("LUMIÈRE") == found("Bakery Lumiere") == [ids[0]]
            assert found("croissants") == [ids[0]] and found("sunflower") == [ids[1]]
            assert found("password sunflower") == [ids[1]]  # a phrase matches across a dropped space
            assert found("wi") == [ids[1]]  # two letters: no trigram, still found
            assert found("giraffe") == [] and found("lumieres") == []
            hit = store.lines_containing(r, "croissants")[0]
            assert hit.text == "2croissants 3.50" and hit.box == (1.0, 2.0, 30.0, 12.0)
            assert store.pending_photos(r, "e") == [] and store.read_count(r, "e") == 3
            assert [p.media_id for p in store.pending_photos(r, "other settings")] == ids
            if r.session.get_bind().dialect.name == "sqlite":  # the substring is found through FTS5
                assert "ocr_fts" in str(r.session.execute(text("EXPLAIN QUERY PLAN SELECT rowid FROM ocr_fts "
                                                               "WHERE ocr_fts MATCH '\"lumiere\"'")).all())
            else:  # the trigram index that serves LIKE '%...%'
                assert r.session.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = "
                                              "'ix_ocr_lines_norm_trgm'")).scalar_one().endswith("(norm gin_trgm_ops)")
    finally:
        cat.close()


@pytest.mark.parametrize("url", URLS)
def test_a_changed_or_removed_photo_loses_its_text(tmp_path, url):
    cat = _catalog(tmp_path, url)
    try:
        recs = media_records(2)
        with cat.transaction() as tx:
            ids = tx.add_media(recs, unit(np.eye(2, 8)))
            for mid, rec in zip(ids, recs):
                store.store_text(tx, mid, rec.sha256, "e", _lines(f"ticket {mid}"))
        changed = dataclasses.replace(recs[0], sha256="f" * 64)
        with cat.transaction() as tx:
            tx.add_media([changed], unit(np.eye(1, 8)))  # re-indexed with other content: read again
        with cat.reading() as r:
            assert [p.media_id for p in store.pending_photos(r, "e")] == [ids[0]]
        with cat.transaction() as tx:
            store.store_text(tx, ids[0], changed.sha256, "e", _lines("new words"))  # replaces, never adds
            tx.drop_media_vectors([ids[1]])
            tx.session.execute(delete(Media).where(Media.id == ids[1]))
        with cat.reading() as r:
            assert [line.text for line in store.photo_lines(r, ids)[ids[0]]] == ["new words"]
            assert store.lines_containing(r, "ticket") == []  # cascaded out of the full-text index too
            if r.session.get_bind().dialect.name == "sqlite":
                fts = r.session.execute(text("SELECT rowid FROM ocr_fts WHERE ocr_fts MATCH '\"ticket\"'")).all()
                assert fts == []
    finally:
        cat.close()


class _Reader:
    """A reader that knows the text of each path (the pass's bookkeeping, without the models);
    ``fail_at`` makes it stop as a killed process would."""

    settings = "fake reader"

    def __init__(self, texts, fail_at=None, unreadable=()):
        self.texts, self.fail_at, self.unreadable, self.calls = texts, fail_at, set(unreadable), []

    def read_file(self, path):
        from vsearch.errors import ImageDecodeError
        from vsearch.ocr.engine import PhotoText, ReadLine

        if path == self.fail_at:
            raise KeyboardInterrupt
        self.calls.append(path)
        if path in self.unreadable:
            raise ImageDecodeError(f"{path}: not a recognised image format")
        lines = tuple(ReadLine(t, (0.0, 0.0, 10.0, 5.0), 0.97) for t in self.texts.get(path, []))
        return PhotoText(lines, gated=not lines)


def test_the_reading_pass_resumes_where_it_stopped_and_retries_unreadable_files(tmp_path):
    from vsearch.ocr.reading import read_pending

    cat = _catalog(tmp_path, None)
    try:
        recs = media_records(4)
        with cat.transaction() as tx:
            tx.add_media(recs, unit(np.eye(4, 8)))
        paths = [r.path for r in recs]
        texts = {paths[0]: ["EXIT"], paths[2]: ["TOTAL 6.70", "MERCI"]}
        with pytest.raises(KeyboardInterrupt):
            read_pending(cat, _Reader(texts, fail_at=paths[2]))
        reader = _Reader(texts, unreadable=[paths[3]])
        summary = read_pending(cat, reader)
        assert reader.calls == paths[2:]  # the first two were committed before the interruption
        assert (summary.read, summary.already, summary.with_text, summary.lines) == (1, 2, 1, 2)
        assert summary.failed == [(paths[3], f"{paths[3]}: not a recognised image format")]
        again = _Reader(texts)
        assert read_pending(cat, again).read == 1 and again.calls == [paths[3]]  # only the unreadable one
        with cat.reading() as r:
            assert {line.media_id for line in store.lines_containing(r, "merci")} == {3}
            assert r.catalog.get_meta("ocr:has_text") == "1"
    finally:
        cat.close()
