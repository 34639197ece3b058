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

from vsearch.errors import CatalogError
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
    found = inspect(conn)
    recorded: dict[str, str] = {}
    if found.has_table(Meta.__tablename__):
        recorded = dict(conn.execute(select(Meta.key, Meta.value)
                                     .where(Meta.key.in_([s.meta_key for s in sets]))).all())
    versions = {}
    for tables in sets:
        if tables.meta_key in recorded:
            versions[tables.name] = int(recorded[tables.meta_key])
        elif any(found.has_table(t.name) for t in tables.tables):
            versions[tables.name] = 1  # made before versions were recorded, by version 1's code
        else:
            versions[tables.name] = tables.version  # none of them yet: created as declared
        if versions[tables.name] > tables.version:
            what = "schema" if tables is CORE else f"{tables.name} tables"
            raise CatalogError(f"catalog {what} version {versions[tables.name]} is newer than this "
                               f"vsearch understands ({tables.version}); upgrade vsearch")
    for tables in sets:
        for step in tables.steps[versions[tables.name] - 1:]:
            step(conn)
        Base.metadata.create_all(conn, tables=list(tables.tables))  # only those missing
        if tables.meta_key not in recorded:
            conn.execute(Meta.__table__.insert().values(key=tables.meta_key, value=str(tables.version)))
        elif versions[tables.name] != tables.version:
            conn.execute(update(Meta).where(Meta.key == tables.meta_key).values(value=str(tables.version)))
