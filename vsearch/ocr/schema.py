"""Catalog tables for the text read in photos (same SQLAlchemy ``Base`` as the core schema).

``ocr_lines`` holds each line of text read in a photo: the text as read, its box in pixels of the
upright photo (EXIF orientation applied; the axis-aligned box around the detector's quadrangle),
the recognizer's confidence, and ``norm``, the same text folded by :func:`vsearch.ocr.fold.fold`
(no accents, case-folded, letters and digits only), which is what searches match. ``ocr_runs``
remembers which photos were read, by which engine and settings and from which file content, so
that a photo without text is not read again and a changed photo or changed settings are. Both
hang off ``media`` with ``ON DELETE CASCADE``.

The full-text index on ``norm`` is made with the table, in the database's own terms:

* SQLite: an FTS5 table ``ocr_fts`` with the ``trigram`` tokenizer, an external-content index of
  ``ocr_lines`` kept current by triggers (cascaded deletes fire them too), so any substring of
  three or more characters is found through the index.
* PostgreSQL: a GIN index with ``gin_trgm_ops`` (``pg_trgm``) on ``norm``, which serves
  ``LIKE '%...%'``. Where the extension cannot be created (no rights), there is no index and the
  same query scans the table.
"""
from __future__ import annotations

from sqlalchemy import DDL, Float, ForeignKey, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column

from vsearch.schema import Base, VersionedTables


class TextLine(Base):
    __tablename__ = "ocr_lines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    line: Mapped[int] = mapped_column(Integer)  # reading order in the photo, from 0
    text: Mapped[str] = mapped_column(Text)  # as read
    norm: Mapped[str] = mapped_column(Text)  # folded: what searches match
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)  # recognizer confidence, 0..1


class TextRun(Base):
    __tablename__ = "ocr_runs"
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # content the text was read from
    engine: Mapped[str] = mapped_column(String(256))  # engine and settings (TextReader.settings)
    lines: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)


FTS_TABLE = "ocr_fts"
PG_TRGM_INDEX = "ix_ocr_lines_norm_trgm"

_SQLITE_FTS = [
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(norm, content='ocr_lines', content_rowid='id', "
    "tokenize='trigram')",
    f"CREATE TRIGGER IF NOT EXISTS ocr_lines_ai AFTER INSERT ON ocr_lines BEGIN "
    f"INSERT INTO {FTS_TABLE}(rowid, norm) VALUES (new.id, new.norm); END",
    f"CREATE TRIGGER IF NOT EXISTS ocr_lines_ad AFTER DELETE ON ocr_lines BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, norm) VALUES ('delete', old.id, old.norm); END",
    f"CREATE TRIGGER IF NOT EXISTS ocr_lines_au AFTER UPDATE ON ocr_lines BEGIN "
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, norm) VALUES ('delete', old.id, old.norm); "
    f"INSERT INTO {FTS_TABLE}(rowid, norm) VALUES (new.id, new.norm); END",
]


def _create_text_index(target, connection, **_) -> None:
    """The full-text index of ``ocr_lines.norm``, made right after the table."""
    if connection.dialect.name == "sqlite":
        for statement in _SQLITE_FTS:
            connection.exec_driver_sql(statement)
    elif connection.dialect.name == "postgresql":
        # a savepoint: without the rights to create the extension, the catalog still opens
        savepoint = connection.begin_nested()
        try:
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {PG_TRGM_INDEX} ON ocr_lines "
                                       "USING gin (norm gin_trgm_ops)")
        except Exception:  # noqa: BLE001 - no pg_trgm here: LIKE on norm works, unindexed
            savepoint.rollback()
        else:
            savepoint.commit()


event.listen(TextLine.__table__, "after_create", _create_text_index)
event.listen(TextLine.__table__, "before_drop", DDL(f"DROP TABLE IF EXISTS {FTS_TABLE}").execute_if(dialect="sqlite"))

# The text tables' version and migrations: the catalog creates or upgrades them on open (this
# module is listed in vsearch.catalog.migrate.FEATURE_SCHEMA_MODULES). A change to a table above
# appends a step here: SCHEMA.steps[k - 1] takes the tables from version k to k + 1.
SCHEMA = VersionedTables("ocr", (TextLine.__table__, TextRun.__table__), steps=())


__all__ = ["TextLine", "TextRun", "FTS_TABLE", "PG_TRGM_INDEX", "SCHEMA"]
