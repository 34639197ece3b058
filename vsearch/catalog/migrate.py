"""Bringing a catalog's tables to this vsearch's versions when it is opened: first the core
tables, then every feature's, each checked against the version recorded in ``meta`` and
upgraded step by step, all in one transaction.

Which features have tables is one list, :data:`FEATURE_SCHEMA_MODULES`, not whatever happens
to be imported: each named module declares its tables as a :class:`~vsearch.schema.VersionedTables`
called ``SCHEMA``. The catalog is core and may not import the features (the layers contract in
``pyproject.toml``), so the modules are named here and loaded by name, a plug-in list like the
encoder registry's ``trained:`` models; the dependency still points from the feature's tables
down to ``vsearch.schema``, and nothing registers itself as a side effect of being imported.

Every listed feature's tables are created (or migrated) on open rather than on first use, so a
catalog holds the same tables whichever commands made it, and a catalog too new for this
vsearch is refused before anything is written.
"""
from __future__ import annotations

import importlib

from sqlalchemy import Connection, Engine, inspect, select, text, update

from vsearch.errors import CatalogError, VSearchError
from vsearch.schema import CORE, Base, Meta, VersionedTables

SCHEMA_LOCK_KEY = 0x76736561726369  # PostgreSQL advisory lock held while the tables are upgraded

# Each module defines SCHEMA = VersionedTables("NAME", (tables...), (steps...)).
FEATURE_SCHEMA_MODULES = ("vsearch.faces.schema", "vsearch.regions.schema", "vsearch.ocr.schema")


def feature_schemas() -> list[VersionedTables]:
    """The versioned tables of every feature, in the order of :data:`FEATURE_SCHEMA_MODULES`."""
    return [importlib.import_module(name).SCHEMA for name in FEATURE_SCHEMA_MODULES]


def upgrade_schema(engine: Engine) -> None:
    """Bring the core and feature tables of the catalog at ``engine`` to this vsearch's versions;
    raise :class:`CatalogError`, changing nothing, if some are newer than it understands.

    First a plain read: a catalog already up to date (every open but the first after an
    upgrade) opens without a lock or a write, so readers never wait here. Otherwise one
    transaction, holding the database's write lock from its start so that processes opening the
    same catalog at once take turns (the later ones find the work done), reads the versions again
    and upgrades: the steps of each set in order, then any table still missing, then the
    recorded versions."""
    sets = [CORE, *feature_schemas()]
    with engine.connect() as conn:
        recorded, found, tables_there = _found_versions(conn, sets)
        if all(recorded.get(s.meta_key) == str(s.version) for s in sets) and \
                all(t.name in tables_there for s in sets for t in s.tables):
            return
    with engine.begin() as conn:
        _lock_schema(conn)
        recorded, found, _ = _found_versions(conn, sets)
        for tables in sets:
            for version in range(found[tables.name], tables.version):
                _run_step(conn, tables, version)
            Base.metadata.create_all(conn, tables=list(tables.tables))  # only those missing
            if tables.meta_key not in recorded:
                conn.execute(Meta.__table__.insert().values(key=tables.meta_key, value=str(tables.version)))
            elif found[tables.name] != tables.version:
                conn.execute(update(Meta).where(Meta.key == tables.meta_key).values(value=str(tables.version)))


def _lock_schema(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        # pysqlite opens a transaction only before INSERT/UPDATE/DELETE and runs CREATE/ALTER
        # outside it: an explicit BEGIN makes the DDL of a failed step roll back too; IMMEDIATE
        # takes the write lock now (waiting for the busy timeout), not after the versions were read
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})  # until commit


def _found_versions(conn: Connection, sets: list[VersionedTables]) -> tuple[dict[str, str], dict[str, int], set[str]]:
    """The versions recorded in ``meta`` (key -> value); the version each set is at (the recorded
    one; 1 for tables made before versions were recorded; this vsearch's for tables not there
    at all, which are created as declared); and the tables there. Raises :class:`CatalogError`
    for a set newer than this vsearch."""
    tables_there = set(inspect(conn).get_table_names())
    recorded: dict[str, str] = {}
    if Meta.__tablename__ in tables_there:
        keys = [tables.meta_key for tables in sets]
        recorded = dict(conn.execute(select(Meta.key, Meta.value).where(Meta.key.in_(keys))).all())
    found = {}
    for tables in sets:
        if tables.meta_key in recorded:
            found[tables.name] = int(recorded[tables.meta_key])
        elif any(table.name in tables_there for table in tables.tables):
            found[tables.name] = 1
        else:
            found[tables.name] = tables.version
        if found[tables.name] > tables.version:
            raise CatalogError(f"catalog {_named(tables)} version {found[tables.name]} is newer than this "
                               f"vsearch understands ({tables.version}); upgrade vsearch")
    return recorded, found, tables_there


def _run_step(conn: Connection, tables: VersionedTables, version: int) -> None:
    try:
        tables.steps[version - 1](conn)
    except VSearchError:
        raise
    except Exception as exc:  # a failed step: one line naming it; the transaction rolls back
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CatalogError(f"upgrading the catalog {_named(tables)} from version {version} to {version + 1} "
                           f"failed ({reason}); nothing was changed") from exc


def _named(tables: VersionedTables) -> str:
    return "schema" if tables is CORE else f"{tables.name} tables"
