"""Response bodies, declared for the OpenAPI schema at ``/docs``."""
from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="A short machine-readable code, e.g. bad_image, unauthorized, overloaded.")
    detail: str = Field(description="What went wrong, in a sentence for people.")


class Hit(BaseModel):
    media_id: int = Field(description="The photo's catalog id: fetch it with /v1/media/{media_id}/thumbnail.")
    path: str
    name: str = Field(description="The file name, for display.")
    score: float = Field(description="Cosine similarity to the query (higher is closer).")
    rank: int
    thumbnail: str = Field(description="URL of a JPEG thumbnail.")


class SearchResult(BaseModel):
    results: list[Hit]
    k: int
    took_ms: float
    photos_in_index: int = Field(description="Photos in the index as last saved by `vsearch index`.")


class LabelScore(BaseModel):
    label: str
    p: float = Field(description="Probability among the given labels (they sum to 1).")


class ClassifyResult(BaseModel):
    model: str
    labels: list[LabelScore]
    ignored_duplicates: list[str]
    took_ms: float


class QueueState(BaseModel):
    running: int
    waiting: int
    workers: int
    capacity: int
    rejected: int


class Health(BaseModel):
    status: str
    model: str
    dim: int
    photos_in_index: int
    index_loaded_at: float
    index_reloads: int
    faces: bool = Field(description="Whether the face endpoints are available.")
    queue: QueueState


def error_responses(*statuses: int) -> dict:
    """``responses=`` for a route: the JSON error shape under each status it may answer."""
    text = {400: "Bad request", 401: "Missing or wrong bearer token", 404: "Unknown id",
            409: "Conflict", 413: "Upload too large (bytes or pixels)", 422: "Invalid parameters or not an image",
            503: "Server busy: the work queue is full; retry after the Retry-After seconds"}
    return {s: {"model": ErrorBody, "description": text.get(s, "Error")} for s in statuses}
