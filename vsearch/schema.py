"""SQL schema of the catalog (SQLAlchemy 2.0) and its step-by-step migrations.

``vectors.id`` is the FAISS id: a vector space's index holds exactly the rows of ``vectors`` with
that ``space``. Embeddings are also kept in SQL so that an index file can always be rebuilt or
repaired from the database, which is the source of truth.

Tables come in versioned sets (:class:`VersionedTables`): the core tables here, and each
feature's own (``vsearch/faces/schema.py``, ``vsearch/regions/schema.py``), whose versions are
recorded in ``meta`` under ``schema_version`` and ``schema_version:NAME``. The catalog brings
every set up to date when it opens (``vsearch.catalog.migrate``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Connection,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    Table,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MigrationStep = Callable[[Connection], None]


@dataclass(frozen=True)
class VersionedTables:
    """A set of tables with one version number, recorded in the catalog's ``meta`` table, and the
    steps that bring an older catalog's copy of them up to date.

    ``steps[k - 1]`` upgrades the tables from version ``k`` to ``k + 1``, so the version is always
    ``1 + len(steps)`` and a step can never be missing. A step receives the connection of the
    open transaction and does the whole change itself (``ALTER TABLE``, or ``CREATE TABLE`` for a
    table that version ``k + 1`` adds); tables still missing afterwards are created as declared.
    Tables found without a recorded version were made before versions were recorded: they are
    version 1."""

    name: str  # "core", or the feature's name ("faces")
    tables: tuple[Table, ...]
    steps: tuple[MigrationStep, ...] = ()

    @property
    def version(self) -> int:
        return 1 + len(self.steps)

    @property
    def meta_key(self) -> str:
        return "schema_version" if self.name == "core" else f"schema_version:{self.name}"


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Media(Base):
    """One file of the collection, indexed or failed."""

    __tablename__ = "media"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(String(4096), unique=True, index=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime: Mapped[float] = mapped_column(Float)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    taken_at: Mapped[str | None] = mapped_column(String(32), nullable=True)
    orientation: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="indexed")  # indexed | failed
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    indexed_at: Mapped[float] = mapped_column(Float)
    # st_dev of the folder the file was last seen in (as a signed 64-bit number): a folder whose
    # photos all vanished and that now lies on another device is an unmounted drive, not a deletion
    device: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Vector(Base):
    __tablename__ = "vectors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    space: Mapped[str] = mapped_column(String(32), index=True)
    media_id: Mapped[int | None] = mapped_column(
        ForeignKey("media.id", ondelete="CASCADE"), index=True, nullable=True
    )
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class Tag(Base):
    """A zero-shot label stored for a photo's image vector (``vsearch tag``); it goes with the
    vector, so a changed file loses its old tags and is tagged again."""

    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vector_id: Mapped[int] = mapped_column(ForeignKey("vectors.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(512), index=True)
    score: Mapped[float] = mapped_column(Float)


class TagRun(Base):
    """Marks an image vector as tagged with the current tagging config (even if no label passed)."""

    __tablename__ = "tag_runs"
    vector_id: Mapped[int] = mapped_column(ForeignKey("vectors.id", ondelete="CASCADE"), primary_key=True)


class Caption(Base):
    """A caption of a caption set, embedded with the catalog's text encoder (space "caption")."""

    __tablename__ = "captions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    caption_set: Mapped[str] = mapped_column(String(256), index=True)
    ext_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    image_ref: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    vector_id: Mapped[int] = mapped_column(ForeignKey("vectors.id", ondelete="CASCADE"), unique=True)


def _add_media_device(conn: Connection) -> None:
    """Version 2: ``media.device``, the device each file was last seen on (NULL until the next
    index run sees the file)."""
    conn.execute(text("ALTER TABLE media ADD COLUMN device BIGINT"))


# MIGRATIONS[k - 1] upgrades the core tables from version k to k+1; run in order inside one
# transaction.
MIGRATIONS: tuple[MigrationStep, ...] = (_add_media_device,)

CORE = VersionedTables("core", (Meta.__table__, Media.__table__, Vector.__table__, Tag.__table__,
                                TagRun.__table__, Caption.__table__), MIGRATIONS)
SCHEMA_VERSION = CORE.version


__all__ = ["Base", "Meta", "Media", "Vector", "Tag", "TagRun", "Caption", "CORE", "SCHEMA_VERSION", "MIGRATIONS",
           "MigrationStep", "VersionedTables", "text"]
