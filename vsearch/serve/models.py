"""Response bodies, declared for the OpenAPI schema at ``/docs``."""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="A short machine-readable code, e.g. bad_image, unauthorized, overloaded.")
    detail: str = Field(description="What went wrong, in a sentence for people.")


class FieldError(BaseModel):
    field: str = Field(description="The parameter or form field, e.g. k, plus, image.")
    message: str


class ValidationErrorBody(ErrorBody):
    """The 422 answer: a parameter out of its bounds, or an upload that is not a usable image."""
    fields: Optional[list[FieldError]] = Field(None, description="Each invalid parameter, when parameters "
                                               "were invalid (absent for an unusable image).")


class Hit(BaseModel):
    media_id: int = Field(description="The photo's catalog id: fetch it with /v1/media/{media_id}/thumbnail.")
    path: str = Field(description="The file's path as UTF-8 text; a byte that is not UTF-8 shows as \\xNN "
                                  "(then path_bytes has the exact bytes).")
    path_bytes: Optional[str] = Field(None, description="Base64 of the path's bytes, only when they are not "
                                      "UTF-8 text; absent: path is exact.")
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
    p: float = Field(description="Probability of this label. Open set (the default): the labels and "
                                 "`none` sum to 1; closed_set: the labels alone sum to 1.")


class ClassifyResult(BaseModel):
    model: str
    top: Optional[str] = Field(description="The label chosen, or null when none of the labels fits the image "
                                           "(open set: no label reached its calibrated threshold).")
    none: Optional[float] = Field(description="Probability of \"none of these\"; null with closed_set.")
    labels: list[LabelScore]
    ignored_duplicates: list[str]
    took_ms: float


class QueueState(BaseModel):
    running: int
    waiting: int
    workers: int
    capacity: int
    rejected: int = Field(description="Requests answered 503 since start.")
    abandoned: int = Field(description="Queued requests dropped because their client had gone.")


class Health(BaseModel):
    status: str
    model: str
    dim: int
    photos_in_index: int
    index_loaded_at: float
    index_reloads: int
    faces: bool = Field(description="Whether the face endpoints are available.")
    face_workers: str | None = Field(None, description="The face worker processes: \"not started\" (they "
                                     "start with the first face request), \"running\" or \"stopped\"; "
                                     "\"none\" when face calls run in the server process; null without faces.")
    queue: QueueState


def error_responses(*statuses: int) -> dict:
    """``responses=`` for a route: the JSON error shape under each status it may answer."""
    text = {400: "Bad request", 401: "Missing or wrong bearer token", 404: "Unknown id",
            409: "Conflict", 413: "Upload too large (bytes or pixels)", 422: "Invalid parameters or not an image",
            503: "Server busy: the work queue is full; retry after the Retry-After seconds"}
    return {s: {"model": ValidationErrorBody if s == 422 else ErrorBody, "description": text.get(s, "Error")}
            for s in statuses}


# -- faces -------------------------------------------------------------------------------------------
class VerifyBody(BaseModel):
    """The same keys as `vsearch faces verify --json`."""

    match: bool
    score: float = Field(description="Best cosine similarity between the probe's face and the person's templates.")
    threshold: float = Field(description="Calibrated threshold (or the embedder's default): match = score >= threshold.")
    far_estimate: float | None = Field(description="Estimated false-accept rate at this score; null until calibrated.")
    face_box: list[float] = Field(description="left, top, right, bottom of the face used, in the probe's pixels.")
    latency_ms: float
    faces_in_probe: int = Field(description="Faces found; the largest one is verified.")


class Candidate(BaseModel):
    name: str
    score: float


class IdentifiedFace(BaseModel):
    face_box: list[float]
    name: str = Field(description='The best enrolled person at or above the threshold, else "unknown".')
    score: float | None
    candidates: list[Candidate]


class IdentifyBody(BaseModel):
    faces: list[IdentifiedFace] = Field(description="Every face of the probe, largest first.")
    threshold: float
    latency_ms: float


class EnrollBody(BaseModel):
    name: str
    added: int = Field(description="Templates added by this call (one per image).")
    templates: int = Field(description="Templates the person has now.")
    created: bool = Field(description="Whether the person was new.")
    already_enrolled: list[str] = Field(default_factory=list, description="Photos skipped: already enrolled "
                                        "as this person.")


class RemoveBody(BaseModel):
    name: str
    removed_templates: int


class Person(BaseModel):
    name: str
    templates: int
    faces_in_collection: int = Field(description="Faces in indexed photos that verify against this person "
                                     "(or were named as them).")
    photos: int = Field(0, description="Indexed photos showing this person.")
    created_at: float


class FaceCounts(BaseModel):
    total: int = Field(description="Faces found in indexed photos.")
    grouped: int = Field(description="Of them, in a group of the last grouping.")
    named: int = Field(description="Of them, named as an enrolled person.")


class GroupPerson(BaseModel):
    cluster: int
    person: str = Field(description="The enrolled person most of the group's faces verify against.")
    score: float = Field(description="The median score of those faces against them.")


class PeopleBody(BaseModel):
    people: list[Person]
    threshold: float
    calibrated: bool
    faces: FaceCounts | None = None
    groups: list[GroupPerson] = Field(default_factory=list, description="Unnamed groups that look like an "
                                      "enrolled person.")


class GroupingJob(BaseModel):
    """The clustering the faces tab's "find groups" runs in a server worker."""
    state: str = Field(description="idle | running | done | failed")
    done: int = Field(description="Faces through the neighbour search so far.")
    total: int = Field(description="Faces being grouped (0 until known).")
    groups: int | None = Field(None, description="Groups found (when done).")
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


# -- the web page's views ----------------------------------------------------------------------------
class TagScore(BaseModel):
    label: str
    score: float = Field(description="The zero-shot probability stored by `vsearch tag`.")


class PhotoTextLine(BaseModel):
    text: str = Field(description="A line of text as read in the photo (`vsearch index --ocr`).")
    box: list[float] = Field(description="[x1, y1, x2, y2] in pixels of the upright photo.")
    score: float = Field(description="The recognizer's confidence, 0 to 1.")


class PhotoDetails(BaseModel):
    media_id: int
    path: str
    name: str
    folder: str
    bytes: int = Field(description="File size.")
    width: int | None
    height: int | None
    taken_at: str | None = Field(description="EXIF date taken, when the photo has one.")
    modified_at: float = Field(description="File modification time (Unix seconds) when indexed.")
    tags: list[TagScore]
    text: list[PhotoTextLine] = Field(default_factory=list, description="Text read in the photo, line by line "
                                      "(empty when none was read: `vsearch index --ocr`).")
    thumbnail: str
    original: str = Field(description="URL of the original file.")


class TagCount(BaseModel):
    label: str
    photos: int


class TagsBody(BaseModel):
    tags: list[TagCount] = Field(description="Stored tags (`vsearch tag`), most common first.")


class PhotoFace(BaseModel):
    face_id: int
    face_box: list[float] = Field(description="left, top, right, bottom in the upright photo's pixels.")
    cluster: int | None = Field(description="Its group in the last `vsearch faces cluster`, if any.")
    name: str | None = Field(description="The person it was labelled as, if any.")


class PhotoFacesBody(BaseModel):
    media_id: int
    width: int | None
    height: int | None
    faces: list[PhotoFace]


class ClusterFace(BaseModel):
    face_id: int
    media_id: int


class FaceCluster(BaseModel):
    cluster: int
    size: int = Field(description="Faces in the group.")
    faces: list[ClusterFace] = Field(description="A few of them: crops at /v1/faces/crops/{face_id}.")


class ClustersBody(BaseModel):
    clusters: list[FaceCluster] = Field(description="Unnamed groups of the last `vsearch faces cluster`, largest first.")


class DuplicateCopy(BaseModel):
    """One file of a group, as `vsearch duplicates --json` gives it, with a name and a thumbnail."""
    media_id: int
    path: str
    name: str
    thumbnail: str = Field(description="URL of a JPEG thumbnail.")
    width: int | None
    height: int | None
    size: int = Field(description="File size in bytes.")
    sha256: str | None
    sharpness: float | None = Field(description="Variance of the Laplacian over the grey variance: higher is sharper.")
    similarity: float = Field(description="Cosine of its vector to the best copy's.")
    same_bytes_as_best: bool
    same_bytes_as: str | None = Field(description="Another file of the group with identical bytes, if any.")


class DuplicateGroupBody(BaseModel):
    kind: str = Field(description="exact: every copy has the best copy's bytes; near: some are re-encoded or edited "
                                  "(each shows no more than the best copy); similar: shots that look alike, each "
                                  "showing something the others lack (none redundant).")
    best: DuplicateCopy = Field(description="The copy to keep: most pixels, then sharpest, then largest file.")
    others: list[DuplicateCopy] = Field(description="The other copies, most similar first; each matches the best "
                                                    "copy itself.")
    redundant_bytes: int


class DuplicatesBody(BaseModel):
    """The same keys as `vsearch duplicates --json`, plus ``cached``."""
    threshold: float = Field(description="Cosine from which two photos were candidates (the model's default "
                                         "when none was given).")
    geometric_check: bool = Field(description="Whether candidates were confirmed by matching keypoints.")
    photos: int
    candidate_pairs: int = Field(description="Pairs of photos at or above the threshold.")
    checked_pairs: int = Field(description="Pairs whose keypoints were matched (each photo's nearest candidates).")
    confirmed_pairs: int = Field(description="Files found redundant: the same picture as their group's best copy.")
    exact_groups: int
    near_groups: int
    similar_groups: int
    redundant_files: int
    exact_copies: int
    redundant_bytes: int
    seconds: dict[str, float]
    groups: list[DuplicateGroupBody] = Field(description="Largest groups first.")
    similar: list[DuplicateGroupBody] = Field(description="Groups of similar shots (kind similar), largest first: "
                                                          "not redundant, listed apart from the groups.")
    cached: bool = Field(description="Whether this is the last answer again (same threshold, same catalog).")
