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
vsearch is refused before anything is read or written.
"""
from __future__ import annotations

import importlib

from sqlalchemy import Connection, inspect, select, update

from vsearch.errors import CatalogError, VSearchError
from vsearch.schema import CORE, Base, Meta, VersionedTables

# Each module defines SCHEMA = VersionedTables("NAME", (tables...), (steps...)).
FEATURE_SCHEMA_MODULES = ("vsearch.faces.schema", "vsearch.regions.schema")


def feature_schemas() -> list[VersionedTables]:
    """The versioned tables of every feature, in the order of :data:`FEATURE_SCHEMA_MODULES`."""
    return [importlib.import_module(name).SCHEMA for name in FEATURE_SCHEMA_MODULES]


def upgrade_schema(conn: Connection) -> None:
    """Create or upgrade the core and feature tables inside the connection's transaction; raise
    :class:`CatalogError` before changing anything if some tables are newer than this vsearch."""
    if conn.dialect.name == "sqlite":
        # pysqlite opens a transaction only before INSERT/UPDATE/DELETE and runs CREATE/ALTER
        # outside it; an explicit BEGIN makes the DDL of a failed migration roll back too
        conn.exec_driver_sql("BEGIN")
    sets = [CORE, *feature_schemas()]
    recorded, found = _found_versions(conn, sets)
    for tables in sets:
        if found[tables.name] > tables.version:
            raise CatalogError(f"catalog {_named(tables)} version {found[tables.name]} is newer than this "
                               f"vsearch understands ({tables.version}); upgrade vsearch")
    for tables in sets:
        for version in range(found[tables.name], tables.version):
            _run_step(conn, tables, version)
        Base.metadata.create_all(conn, tables=list(tables.tables))  # only those missing
        if tables.meta_key not in recorded:
            conn.execute(Meta.__table__.insert().values(key=tables.meta_key, value=str(tables.version)))
        elif found[tables.name] != tables.version:
            conn.execute(update(Meta).where(Meta.key == tables.meta_key).values(value=str(tables.version)))


def _found_versions(conn: Connection, sets: list[VersionedTables]) -> tuple[dict[str, str], dict[str, int]]:
    """The versions recorded in ``meta`` (key -> value), and the version each set is at: the
    recorded one; 1 for tables made before versions were recorded; or, for tables not there at
    all, this vsearch's (they are created as declared)."""
    inspector = inspect(conn)
    recorded: dict[str, str] = {}
    if inspector.has_table(Meta.__tablename__):
        keys = [tables.meta_key for tables in sets]
        recorded = dict(conn.execute(select(Meta.key, Meta.value).where(Meta.key.in_(keys))).all())
    found = {}
    for tables in sets:
        if tables.meta_key in recorded:
            found[tables.name] = int(recorded[tables.meta_key])
        elif any(inspector.has_table(table.name) for table in tables.tables):
            found[tables.name] = 1
        else:
            found[tables.name] = tables.version
    return recorded, found


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
