"""The faces store on its own (no models): templates and people written in one catalog
transaction each, long id lists, and a person's removal leaving SQL and the index level."""
import numpy as np
import pytest

from tests.faces.conftest import unit_rows
from vsearch.catalog import Catalog
from vsearch.faces import store
from vsearch.faces.schema import ENROLLED_SPACE


@pytest.fixture
def catalog(tmp_path):
    cat = Catalog(tmp_path / "db")
    cat.bind_space(ENROLLED_SPACE, "e", 8)
    yield cat
    cat.engine.dispose()


def test_templates_of_many_people_and_their_owners(catalog):
    vectors = unit_rows(1000, 8, 0)  # more ids than SQLite takes in one statement
    with catalog.transaction() as tx:
        assert store.add_templates(tx, "ada", vectors[:990], "enroll") == (True, 990)
    with catalog.transaction() as tx:
        assert store.add_templates(tx, "bob", vectors[990:], "enroll") == (True, 10)
        assert store.add_templates(tx, "bob", vectors[:1], "enroll") == (False, 11)
    assert len(catalog.index(ENROLLED_SPACE)) == 1001
    with catalog.reading() as r:
        assert np.array_equal(store.templates(r, "bob")[:10], vectors[990:])
        assert store.templates(r, "carol") is None
        owners = store.template_owners(r, catalog.vector_ids(ENROLLED_SPACE).tolist())
        assert [(name, n) for name, n, _, _ in store.people(r)] == [("ada", 990), ("bob", 11)]
    assert sorted(owners.values()).count("ada") == 990 and len(owners) == 1001


def test_removing_a_person_takes_rows_and_vectors_in_one_transaction(catalog):
    with catalog.transaction() as tx:
        store.add_templates(tx, "ada", unit_rows(3, 8, 1), "enroll")
        store.add_templates(tx, "bob", unit_rows(2, 8, 2), "enroll")
    catalog.save()
    catalog.forget_index(ENROLLED_SPACE)  # not loaded: the removal must still reach the file
    with catalog.transaction() as tx:
        assert store.remove_person(tx, "ada") == 3
        assert store.remove_person(tx, "nobody") is None
    catalog.save()
    with catalog.reading() as r:
        assert [p[0] for p in store.people(r)] == ["bob"]
    assert all(report.ok for report in catalog.verify())
    assert catalog.vector_count(ENROLLED_SPACE) == 2
