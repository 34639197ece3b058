"""Typed errors of the faces package (the CLI maps every :class:`VSearchError` to exit code 2)."""
from vsearch.errors import VSearchError


class FaceError(VSearchError):
    """Base class of face errors."""


class NoFaceError(FaceError):
    """No usable face in an image (none found, or only ones too small to compare)."""


class MultipleFacesError(FaceError):
    """An enrollment image shows more than one face, so it is unclear whose face to keep."""


class UnknownPersonError(FaceError):
    """A name that is not enrolled."""


class FaceModelError(FaceError):
    """Face model files are missing or cannot be loaded."""


class AlreadyEnrolledError(FaceError):
    """An enrollment photo is already a template of another person."""


class LooksLikeError(FaceError):
    """A group of faces being named as a new person verifies against an enrolled one: adding them
    to that person is offered instead of silently creating a second person."""

    def __init__(self, message: str, cluster: int, person: str, score: float):
        super().__init__(message)
        self.cluster, self.person, self.score = cluster, person, score
