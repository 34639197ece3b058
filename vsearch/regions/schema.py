"""Catalog tables for regions (same SQLAlchemy ``Base`` as the core schema).

A region is a row of ``vectors`` in the space ``region`` (so its id is its FAISS id and its
embedding is kept in SQL like every vector) plus a row here with its box. Both foreign keys
cascade: removing a photo (or re-indexing a changed one) removes its vectors, and with them its
regions; the catalog's own code takes the vectors out of the FAISS index.

``region_runs`` remembers which photos a region source has processed, with which settings and
for which file content, so that a photo where nothing was found is not processed again and a
changed photo or changed settings are.
"""
from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vsearch.schema import Base, VersionedTables

REGION_SPACE = "region"


class Region(Base):
    __tablename__ = "regions"
    vector_id: Mapped[int] = mapped_column(ForeignKey("vectors.id", ondelete="CASCADE"), primary_key=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(64), index=True)  # "proposals", "detector:ARCH"
    # box in pixels of the upright original photo (EXIF orientation applied), x2/y2 exclusive
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    label: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # 1-bit PNG of the mask inside the box, at the resolution regions were extracted at
    mask: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class RegionRun(Base):
    __tablename__ = "region_runs"
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    settings: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # content the regions came from
    regions: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)


# The region tables' version and migrations: the catalog creates or upgrades them on open (this
# module is listed in vsearch.catalog.migrate.FEATURE_SCHEMA_MODULES). A change to a table above
# appends a step here: SCHEMA.steps[k - 1] takes the tables from version k to k + 1.
SCHEMA = VersionedTables("regions", (Region.__table__, RegionRun.__table__), steps=())



__all__ = ["Region", "RegionRun", "REGION_SPACE", "SCHEMA"]
