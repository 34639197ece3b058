"""The query language's parser (vsearch.query): table-driven cases and properties (hypothesis)."""
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vsearch.errors import QueryError
from vsearch.query import KEYS, ParsedQuery, Term, parse_query


@pytest.mark.parametrize("text, free, terms", [
    ("a cat", "a cat", ()),
    ("", "", ()),
    ("beach person:anna", "beach", (Term("person", "anna"),)),
    ("-person:bob beach", "beach", (Term("person", "bob", True),)),
    ("PERSON:Anna Year:2023", "", (Term("person", "Anna"), Term("year", "2023"))),
    ('place:"new york" dogs', "dogs", (Term("place", "new york"),)),
    ('text:"open daily"', "", (Term("text", "open daily"),)),
    ('"a phrase" here', "a phrase here", ()),
    ("meet at 12:30", "meet at 12:30", ()),
    ("see http://x.org/a:b", "see http://x.org/a:b", ()),
    ("a1:b :x", "a1:b :x", ()),
    ("don't stop", "don't stop", ()),
    ("type:JPG -type:raw", "", (Term("type", "jpeg"), Term("type", "raw", True))),
    ("type:heif type:tif", "", (Term("type", "heic"), Term("type", "tiff"))),
    ("month:2019-07 date:2019-07-14 after:2019-07-01 before:2019-07-31", "",
     (Term("month", "2019-07"), Term("date", "2019-07-14"), Term("after", "2019-07-01"), Term("before", "2019-07-31"))),
    ("near:38.72,-9.14 near:1,2,0.5", "", (Term("near", "38.72,-9.14"), Term("near", "1,2,0.5"))),
    ("folder:/photos/2019 tag:beach camera:pixel lens:50mm", "",
     (Term("folder", "/photos/2019"), Term("tag", "beach"), Term("camera", "pixel"), Term("lens", "50mm"))),
    ("tag:a:b", "", (Term("tag", "a:b"),)),
])
def test_parses(text, free, terms):
    assert parse_query(text) == ParsedQuery(free, terms)


@pytest.mark.parametrize("text, says", [
    ("year:20x9", "year"), ("year:19", "year"), ("after:yesterday", "after"), ("before:2019-02-30", "before"),
    ("date:2019-7-1", "date"), ("month:2019-13", "month"), ("month:2019", "month"), ("near:abc", "near"),
    ("near:91,0", "near"), ("near:1,2,0", "near"), ("near:nan,1", "near"), ("type:doc", "type"),
    ("year:", "needs a value"), ('place:"', "quote"), ('tag:"a', "quote"),
])
def test_bad_values_are_errors_naming_the_term(text, says):
    with pytest.raises(QueryError, match=says):
        parse_query(text)


def test_unknown_key_is_named_and_the_keys_listed():
    with pytest.raises(QueryError) as err:
        parse_query("cat Colour:red")
    msg = str(err.value)
    assert "'Colour'" in msg and all(f"{k}:" in msg for k in KEYS) and "\n" not in msg


@pytest.mark.parametrize("term, first, last", [
    ("year:2019", dt.date(2019, 1, 1), dt.date(2019, 12, 31)),
    ("month:2019-02", dt.date(2019, 2, 1), dt.date(2019, 2, 28)),
    ("month:2020-02", dt.date(2020, 2, 1), dt.date(2020, 2, 29)),
    ("month:2019-12", dt.date(2019, 12, 1), dt.date(2019, 12, 31)),
    ("month:9999-12", dt.date(9999, 12, 1), dt.date(9999, 12, 31)),
    ("date:2019-07-14", dt.date(2019, 7, 14), dt.date(2019, 7, 14)),
    ("after:2019-07-01", dt.date(2019, 7, 1), dt.date.max),
    ("before:2019-07-31", dt.date.min, dt.date(2019, 7, 31)),
])
def test_day_ranges_are_inclusive(term, first, last):
    assert parse_query(term).terms[0].day_range() == (first, last)


def test_near_defaults_its_radius():
    assert parse_query("near:38.7,-9.1").terms[0].near() == (38.7, -9.1, 5.0)


# -- properties ------------------------------------------------------------------------------------
plain_words = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="'.-_"), min_size=1, max_size=8) \
    .filter(lambda w: not w.startswith("-"))
values = st.text(st.characters(whitelist_categories=("L", "N", "Zs"), whitelist_characters="._/"), min_size=1, max_size=12) \
    .filter(lambda v: v.strip() == v and v.strip() and not v.startswith("//"))
text_keys = st.sampled_from(["person", "place", "camera", "lens", "tag", "folder", "text"])


@given(st.lists(plain_words, max_size=6))
def test_words_without_colons_are_all_free_text(words):
    assert parse_query(" ".join(words)) == ParsedQuery(" ".join(words), ())


@given(st.lists(st.tuples(text_keys, values, st.booleans()), max_size=5), st.lists(plain_words, max_size=4))
def test_printed_terms_parse_back(terms, words):
    typed = [Term(k, v, n) for k, v, n in terms]
    query = " ".join(words + [str(t) for t in typed])
    parsed = parse_query(query)
    assert parsed.terms == tuple(typed) and parsed.text == " ".join(words)


@given(st.sampled_from(KEYS), st.booleans())
def test_keys_are_case_insensitive(key, upper):
    value = {"year": "2019", "month": "2019-07", "date": "2019-07-14", "after": "2019-07-14", "before": "2019-07-14",
             "near": "1,2", "type": "png"}.get(key, "x")
    written = key.upper() if upper else key.title()
    assert parse_query(f"{written}:{value}").terms[0].key == key


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_query_error(text):
    try:
        parsed = parse_query(text)
    except QueryError as exc:
        assert "\n" not in str(exc) or "\n" in text
    else:
        assert all(t.key in KEYS and t.value for t in parsed.terms)


@given(st.integers(1000, 9999), st.integers(1, 12))
def test_month_range_covers_the_month(year, month):
    first, last = parse_query(f"month:{year}-{month:02d}").terms[0].day_range()
    assert (first.year, first.month, first.day) == (year, month, 1)
    assert last.month == month and (last == dt.date.max or (last + dt.timedelta(days=1)).day == 1)


def test_tags_alone_select_from_the_tag_table_without_reading_every_photo():
    """`--tag` in a ranked search: the ids come from the tags, with no read of every photo's facts
    (a million photos would cost seconds); the same ids either way."""
    from unittest import mock

    from vsearch import filters
    from vsearch.query import parse_query

    tagged = {"beach": {1, 2, 3}, "dog": {2, 3, 4}, "night": {3}}

    class Reads:
        def photo_facts(self, space):
            return [(v, v + 100, f"/p/{v}.jpg", "2020-01-01T00:00:00", 0.0) for v in range(1, 6)]

    terms = parse_query("tag:beach tag:dog -tag:night").terms
    with mock.patch.object(filters, "_tagged", lambda catalog, tag: set(tagged[tag])):
        full = filters.select(Reads(), lambda: None, terms)
        with mock.patch.object(Reads, "photo_facts", side_effect=AssertionError("read every photo")):
            fast = filters.select(Reads(), lambda: None, terms, listing=False)
    assert fast.vector_ids.tolist() == full.vector_ids.tolist() == [2]
