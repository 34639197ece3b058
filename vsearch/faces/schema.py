"""Tables of the faces feature, on the catalog's own SQLAlchemy ``Base``.

Every face vector is a row of ``vectors`` (its id is its FAISS id, as for photos): faces found in
the collection live in space ``face`` (``media_id`` = the photo), enrolled templates in space
``face_enrolled`` (``media_id`` NULL: no photo is kept, only the embedding). The rows here hang off
those vector rows with ``ON DELETE CASCADE``, so removing a photo or a template removes its face
rows in the same statement, and SQL and the index never disagree about which faces exist.
"""
from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vsearch.schema import Base, VersionedTables

FACE_SPACE = "face"
ENROLLED_SPACE = "face_enrolled"


class Face(Base):
    """A face found in a photo of the collection."""

    __tablename__ = "faces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vector_id: Mapped[int] = mapped_column(ForeignKey("vectors.id", ondelete="CASCADE"), unique=True)
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), index=True)
    # box in original-image pixels (left, top, right, bottom)
    x0: Mapped[float] = mapped_column(Float)
    y0: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    landmarks: Mapped[str] = mapped_column(Text)  # JSON [[x, y] * 5], original pixels
    score: Mapped[float] = mapped_column(Float)  # detector confidence
    detector: Mapped[str] = mapped_column(String(32))
    cluster: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # last `faces cluster`
    # set by `faces name`: this face is known to be that person, and is no longer clustered
    person_id: Mapped[int | None] = mapped_column(ForeignKey("face_people.id", ondelete="SET NULL"),
                                                  nullable=True, index=True)


class FaceScan(Base):
    """Which photos the face extractor has processed (also those without any face), and which
    version of the file it saw: a changed file (other sha256) counts as not processed."""

    __tablename__ = "face_scans"
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id", ondelete="CASCADE"), primary_key=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    faces: Mapped[int] = mapped_column(Integer)
    embedder: Mapped[str] = mapped_column(String(4096))


class Person(Base):
    """An enrolled person. Only a name: the templates are embeddings, never photos."""

    __tablename__ = "face_people"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256), unique=True, index=True)
    created_at: Mapped[float] = mapped_column(Float)


class Template(Base):
    """One enrolled embedding of a person (a vector in space ``face_enrolled``)."""

    __tablename__ = "face_templates"
    vector_id: Mapped[int] = mapped_column(ForeignKey("vectors.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("face_people.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(32))  # "enroll" or "cluster:N"


FACE_TABLES = [Face.__table__, FaceScan.__table__, Person.__table__, Template.__table__]

# The face tables' version and migrations: the catalog creates or upgrades them on open (this
# module is listed in vsearch.catalog.migrate.FEATURE_SCHEMA_MODULES). A change to a table above
# appends a step here: SCHEMA.steps[k - 1] takes the tables from version k to k + 1.
SCHEMA = VersionedTables("faces", tuple(FACE_TABLES), steps=())

