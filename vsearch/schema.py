"""SQL schema of the catalog (SQLAlchemy 2.0) and its step-by-step migrations.

``vectors.id`` is the FAISS id: a vector space's index holds exactly the rows of ``vectors`` with
that ``space``. Embeddings are also kept in SQL so that an index file can always be rebuilt or
repaired from the database, which is the source of truth.
"""
from __future__ import annotations

from sqlalchemy import (
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 1


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


# Each entry upgrades the schema from version k to k+1; run in order inside one transaction.
# Example for the future: MIGRATIONS[1] = lambda conn: conn.execute(text("ALTER TABLE ..."))
MIGRATIONS: dict[int, callable] = {}


def migrate(conn, from_version: int) -> int:
    version = from_version
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise RuntimeError(f"no migration from schema version {version}")
        step(conn)
        version += 1
    return version


__all__ = ["Base", "Meta", "Media", "Vector", "Tag", "TagRun", "Caption", "SCHEMA_VERSION", "MIGRATIONS", "migrate", "text"]
