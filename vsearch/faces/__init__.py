"""Faces: detection, alignment, embedding, enrollment, verification, identification, clustering
and calibration.

Importing this package registers the face tables on the catalog's schema, so a
:class:`~vsearch.catalog.Catalog` constructed afterwards creates them; models load only when a
:class:`FacePipeline` is built.
"""
from vsearch.faces import schema as _schema  # noqa: F401  (registers the tables)
from vsearch.faces.errors import FaceError, MultipleFacesError, NoFaceError, UnknownPersonError
from vsearch.faces.schema import ENROLLED_SPACE, FACE_SPACE

__all__ = ["FACE_SPACE", "ENROLLED_SPACE", "FaceError", "NoFaceError", "MultipleFacesError",
           "UnknownPersonError"]
