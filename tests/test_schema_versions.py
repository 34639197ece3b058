"""Versions and migrations of the feature tables (faces, regions), on SQLite and on PostgreSQL
(set VSEARCH_TEST_PG_URL, as for tests/test_postgres.py; those cases are skipped otherwise)."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import threading
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tests.conftest import empty_postgres
from vsearch.catalog import DB_FILENAME, Catalog
from vsearch.catalog.migrate import FEATURE_SCHEMA_MODULES, feature_schemas
from vsearch.errors import CatalogError
from vsearch.faces import schema as faces_schema
from vsearch.regions import schema as regions_schema  # noqa: F401  (its tables on Base, as the old code had them)
from vsearch.schema import CORE, SCHEMA_VERSION, Base, Meta

PG_URL = os.environ.get("VSEARCH_TEST_PG_URL")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request):
    """None for a SQLite catalog in its folder, or an emptied PostgreSQL database."""
    if request.param == "sqlite":
        return None
    if not PG_URL:
        pytest.skip("no PostgreSQL: set VSEARCH_TEST_PG_URL")
    return empty_postgres()


def _open(directory, url) -> Catalog:
    cat = Catalog(directory, url=url)
    cat.engine.dispose()  # nothing is held open between the steps of a test
    return cat


def _engine(directory, url):
    return create_engine(url or f"sqlite:///{os.path.join(directory, DB_FILENAME)}")


def _versions(directory, url) -> dict[str, str]:
    engine = _engine(directory, url)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT key, value FROM meta WHERE key LIKE 'schema_version%'")).all())
    engine.dispose()
    return rows


def _columns(directory, url, table) -> set[str]:
    engine = _engine(directory, url)
    names = {c["name"] for c in inspect(engine).get_columns(table)}
    engine.dispose()
    return names


def _catalog_made_before_feature_versions(directory, url) -> None:
    """A catalog as the code before feature versions left it: every table on ``Base`` (the
    feature modules were imported) created in one go, only the core ``schema_version`` in
    ``meta``, and a row in a face table."""
    os.makedirs(directory, exist_ok=True)
    engine = _engine(directory, url)
    with engine.begin() as conn:
        Base.metadata.create_all(conn)
        conn.execute(Meta.__table__.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        conn.execute(text("INSERT INTO face_people (name, created_at) VALUES ('ada', 1.0)"))
    engine.dispose()


def _with_faces_steps(monkeypatch, *steps) -> None:
    monkeypatch.setattr(faces_schema, "SCHEMA", dataclasses.replace(faces_schema.SCHEMA, steps=steps))


def test_a_new_catalog_records_every_feature_version(tmp_path, url):
    _open(tmp_path / "idx", url)
    expected = {"schema_version": str(SCHEMA_VERSION)}
    expected.update({s.meta_key: str(s.version) for s in feature_schemas()})
    assert _versions(tmp_path / "idx", url) == expected
    assert {"schema_version:faces", "schema_version:regions"} <= set(expected)
    engine = _engine(tmp_path / "idx", url)
    assert {t.name for s in feature_schemas() for t in s.tables} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_the_tables_do_not_depend_on_what_was_imported(tmp_path):
    # a fresh interpreter that imports only the catalog: the feature tables are there all the same
    code = ("import sys; from sqlalchemy import inspect; from vsearch.catalog import Catalog; "
            "assert 'vsearch.faces.service' not in sys.modules; "
            "print(sorted(inspect(Catalog(sys.argv[1]).engine).get_table_names()))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "idx")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("faces", "face_people", "face_scans", "face_templates", "regions", "region_runs"):
        assert f"'{name}'" in done.stdout


def test_every_table_belongs_to_the_core_or_one_listed_feature():
    # a feature that declares tables must list its schema module, or the catalog never creates them
    declares = re.compile(r"^\s+__tablename__\s*=", re.MULTILINE)
    declaring = sorted(str(p.relative_to(ROOT).with_suffix("")).replace(os.sep, ".")
                       for p in (ROOT / "vsearch").rglob("*.py") if declares.search(p.read_text("utf-8")))
    assert declaring == sorted(["vsearch.schema", *FEATURE_SCHEMA_MODULES])
    owners = [t.name for s in [CORE, *feature_schemas()] for t in s.tables]
    assert len(owners) == len(set(owners)) and set(owners) == set(Base.metadata.tables)
    assert len({s.name for s in feature_schemas()}) == len(FEATURE_SCHEMA_MODULES)


def test_newer_feature_tables_are_refused_naming_the_feature(tmp_path, url):
    _catalog_made_before_feature_versions(tmp_path / "idx", url)
    engine = _engine(tmp_path / "idx", url)
    with engine.begin() as conn:
        conn.execute(Meta.__table__.insert().values(key="schema_version:faces", value="7"))
    engine.dispose()
    with pytest.raises(CatalogError) as refused:
        Catalog(tmp_path / "idx", url=url)
    message = str(refused.value)
    assert "\n" not in message
    assert message == ("catalog faces tables version 7 is newer than this vsearch understands "
                       f"({faces_schema.SCHEMA.version}); upgrade vsearch")
    # refused before anything was written: the regions tables were not stamped either
    assert _versions(tmp_path / "idx", url) == {"schema_version": str(SCHEMA_VERSION), "schema_version:faces": "7"}


def test_a_migration_step_runs_once_and_bumps_the_version(tmp_path, url, monkeypatch):
    _open(tmp_path / "idx", url)
    assert _versions(tmp_path / "idx", url)["schema_version:faces"] == "1"
    runs = []

    def add_note(conn):
        runs.append(conn.dialect.name)
        conn.execute(text("ALTER TABLE face_people ADD COLUMN note VARCHAR(64)"))

    _with_faces_steps(monkeypatch, add_note)
    _open(tmp_path / "idx", url)
    assert len(runs) == 1
    assert _versions(tmp_path / "idx", url)["schema_version:faces"] == "2"
    assert "note" in _columns(tmp_path / "idx", url, "face_people")
    _open(tmp_path / "idx", url)
    assert len(runs) == 1  # already at version 2
    # a new catalog is created as declared and stamped 2 without running the step
    _open(tmp_path / "fresh", None)
    assert len(runs) == 1 and _versions(tmp_path / "fresh", None)["schema_version:faces"] == "2"


def test_a_failed_step_changes_nothing(tmp_path, url, monkeypatch):
    _open(tmp_path / "idx", url)

    def half_done(conn):
        conn.execute(text("ALTER TABLE face_people ADD COLUMN note VARCHAR(64)"))
        conn.execute(text("UPDATE face_people SET no_such_column = 1"))

    _with_faces_steps(monkeypatch, half_done)
    with pytest.raises(CatalogError, match="upgrading the catalog faces tables from version 1 to 2 failed"):
        Catalog(tmp_path / "idx", url=url)
    # the step's DDL was rolled back with the rest (SQLite too), and the version is unchanged
    assert "note" not in _columns(tmp_path / "idx", url, "face_people")
    assert _versions(tmp_path / "idx", url)["schema_version:faces"] == "1"


def test_a_catalog_from_before_feature_versions_opens_and_is_stamped(tmp_path, url):
    _catalog_made_before_feature_versions(tmp_path / "idx", url)
    assert _versions(tmp_path / "idx", url) == {"schema_version": str(SCHEMA_VERSION)}
    cat = Catalog(tmp_path / "idx", url=url)
    with cat.engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM face_people")).scalars().all() == ["ada"]
    cat.engine.dispose()
    assert _versions(tmp_path / "idx", url) == {"schema_version": str(SCHEMA_VERSION), "schema_version:faces": "1",
                                                "schema_version:regions": "1", "schema_version:ocr": "1"}


def test_a_catalog_from_before_feature_versions_is_migrated_from_version_1(tmp_path, url, monkeypatch):
    _catalog_made_before_feature_versions(tmp_path / "idx", url)
    runs = []

    def add_note(conn):
        runs.append(1)
        conn.execute(text("ALTER TABLE face_people ADD COLUMN note VARCHAR(64)"))

    _with_faces_steps(monkeypatch, add_note)
    _open(tmp_path / "idx", url)
    assert runs == [1] and "note" in _columns(tmp_path / "idx", url, "face_people")
    assert _versions(tmp_path / "idx", url)["schema_version:faces"] == "2"


def test_connections_opening_a_new_catalog_at_once_take_turns(tmp_path, url):
    # all threads see no tables; without the schema lock all but one fail (duplicate CREATE TABLE
    # on PostgreSQL, "database is locked" on SQLite)
    opened, failed = [], []
    start = threading.Barrier(4)

    def open_it(i):
        start.wait()
        try:
            _open(tmp_path / "idx" if url is None else tmp_path / f"idx{i}", url)
            opened.append(i)
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            failed.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=open_it, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failed, failed[0]
    assert len(opened) == 4 and _versions(tmp_path / "idx" if url is None else tmp_path / "idx0", url) == {
        "schema_version": str(SCHEMA_VERSION), "schema_version:faces": "1", "schema_version:regions": "1",
        "schema_version:ocr": "1"}
