"""Faces: detection, alignment, embedding, enrollment, verification, identification, clustering
and calibration.

The face tables (``schema.py``) are created and versioned by the catalog when it opens, whether
or not this package was imported; models load only when a :class:`FacePipeline` is built.
"""
from vsearch.faces.errors import FaceError, MultipleFacesError, NoFaceError, UnknownPersonError
from vsearch.faces.schema import ENROLLED_SPACE, FACE_SPACE

__all__ = ["FACE_SPACE", "ENROLLED_SPACE", "FaceError", "NoFaceError", "MultipleFacesError",
           "UnknownPersonError"]
