"""Typed errors of the trainer; the CLI turns them into one-line messages (see ``handle_errors``)."""
from vsearch.datasets import DatasetError
from vsearch.errors import VSearchError


class TrainingDataError(DatasetError):
    """The training/evaluation data is missing, malformed, or too small to learn from."""


class TrainingConfigError(VSearchError):
    """An option value the trainer cannot use (unknown loss, backbone, batch shape, ...)."""


class CheckpointError(VSearchError):
    """A checkpoint or exported model file is missing, of another format, or does not match the run."""


class NoTextSideError(VSearchError):
    """A trained image-embedding model was asked to embed text."""


class CollapsedEmbeddingError(VSearchError):
    """Training produced an embedding that tells nothing apart; no model file is written (exit 1)."""
