"""Zero-shot tags stored in the catalog (``vsearch tag``) and used as search filters.

The tagging config (labels, templates, threshold) is kept in the catalog's meta table, so photos
indexed later, or re-embedded because they changed, are tagged the same way after each index run.
Tags hang off the image vector (foreign key, cascade): a changed file drops its old tags with its
old vector; an unchanged file keeps them. Their SQL is in :mod:`vsearch.tags.store`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np

from vsearch.catalog import IMAGE_SPACE, writes_catalog
from vsearch.tags import store
from vsearch.zeroshot import ClassifierCache, calibration_for, label_presence, label_thresholds

TAGGING_META = "tagging.config"


@dataclass(frozen=True)
class TaggingConfig:
    """``threshold`` is a probability (a label is stored when its presence probability reaches it;
    0.5 means "its cosine reaches the label's threshold"); ``label_thresholds`` are per-label
    cosines (empty: the model's calibrated default for every label); ``scale`` the calibrated
    inverse temperature (None: the model's)."""

    labels: tuple[str, ...]
    templates: tuple[str, ...]
    threshold: float = 0.5
    max_tags: int = 5
    label_thresholds: tuple[tuple[str, float], ...] = ()
    scale: float | None = None

    def to_json(self) -> str:
        return json.dumps({"labels": self.labels, "templates": self.templates, "threshold": self.threshold,
                           "max_tags": self.max_tags, "label_thresholds": dict(self.label_thresholds),
                           "scale": self.scale}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "TaggingConfig":
        d = json.loads(text)
        return cls(tuple(d["labels"]), tuple(d["templates"]), float(d["threshold"]), int(d.get("max_tags", 5)),
                   tuple((k, float(v)) for k, v in (d.get("label_thresholds") or {}).items()), d.get("scale"))

    def thresholds_and_scale(self, encoder) -> tuple[np.ndarray, float]:
        calibration = calibration_for(encoder)
        return (label_thresholds(self.labels, calibration, dict(self.label_thresholds)),
                float(self.scale if self.scale is not None else calibration.scale))


@dataclass(frozen=True)
class TagSummary:
    tagged: int
    labels_stored: int
    counts: dict[str, int]

    def most_common(self) -> list[tuple[str, int]]:
        """(label, photos tagged with it), most used first (ties keep the order labels were first met)."""
        return sorted(self.counts.items(), key=lambda kv: -kv[1])

    def to_json(self) -> dict:
        """What `vsearch tag --json` prints."""
        return {"tagged": self.tagged, "tags_stored": self.labels_stored, "counts": dict(self.most_common())}


class TagCount(NamedTuple):
    """A label and the number of photos carrying it (unpacks as ``label, photos``)."""

    label: str
    photos: int

    def to_json(self) -> dict:
        """One entry as `vsearch tags --json` prints it."""
        return {"label": self.label, "photos": self.photos}


@writes_catalog(lambda collection, *a, **k: collection.catalog)
def tag_collection(collection, config: TaggingConfig, batch_size: int = 4096,
                   on_batch: Callable[[int], None] | None = None) -> TagSummary:
    """Store ``config`` and (re)tag every photo of the collection with it; ``on_batch(n)`` after
    each batch of ``n`` photos (a progress bar)."""
    catalog = collection.catalog
    catalog.set_meta(TAGGING_META, config.to_json())
    with catalog.transaction() as tx:  # a new label set replaces the old tags
        store.clear(tx)
    return tag_pending(collection, batch_size, on_batch)


def tag_pending(collection, batch_size: int = 4096, on_batch: Callable[[int], None] | None = None) -> TagSummary:
    """Tag image vectors not yet tagged under the stored config (no-op without one)."""
    catalog = collection.catalog
    raw = catalog.get_meta(TAGGING_META)
    if raw is None or catalog.space_model(IMAGE_SPACE) is None:
        return TagSummary(0, 0, {})
    config = TaggingConfig.from_json(raw)
    encoder = collection.encoder
    classifier = ClassifierCache().get(encoder, config.labels, config.templates)
    thresholds, scale = config.thresholds_and_scale(encoder)
    tagged = stored = 0
    counts: dict[str, int] = {}
    while True:
        with catalog.reading() as r:
            ids, vectors = store.untagged(r, batch_size)
        if not ids:
            break
        probs = label_presence(vectors, classifier, thresholds, scale)
        tags = []
        for vid, p in zip(ids, probs):
            for j in np.argsort(-p)[: config.max_tags]:
                if p[j] >= config.threshold:
                    tags.append((vid, config.labels[j], float(p[j])))
                    counts[config.labels[j]] = counts.get(config.labels[j], 0) + 1
        with catalog.transaction() as tx:
            store.add_tags(tx, ids, tags)
        stored += len(tags)
        tagged += len(ids)
        if on_batch is not None:
            on_batch(len(ids))
    return TagSummary(tagged, stored, counts)


def vector_ids_with_tags(catalog, tags: Sequence[str]) -> np.ndarray:
    """Image vector ids carrying every one of ``tags`` (case-insensitive)."""
    with catalog.reading() as r:
        ids = store.vector_ids_with_tags(r, tags)
    return np.asarray(sorted(ids), dtype=np.int64)


def tags_of(catalog, vector_ids: Sequence[int]) -> dict[int, list[tuple[str, float]]]:
    """Vector id -> its (label, score) tags, best first."""
    with catalog.reading() as r:
        return store.tags_of(r, vector_ids)


def photo_tags(catalog, media_id: int) -> list[tuple[str, float]]:
    """(label, score) of a photo's tags, best first."""
    with catalog.reading() as r:
        return store.photo_tags(r, media_id)


def stored_tag_counts(catalog) -> list[TagCount]:
    """Every stored tag with the number of photos carrying it, most common first."""
    with catalog.reading() as r:
        return [TagCount(label, n) for label, n in store.label_counts(r)]


def tag_counts(catalog) -> list[TagCount]:
    """Every label of the stored tagging config (and any other stored tag) with its photo count,
    most used first; labels no photo reached are listed with 0."""
    counts = dict(stored_tag_counts(catalog))
    raw = catalog.get_meta(TAGGING_META)
    if raw is not None:
        for label in TaggingConfig.from_json(raw).labels:
            counts.setdefault(label, 0)
    return sorted((TagCount(label, int(n)) for label, n in counts.items()), key=lambda t: (-t.photos, t.label.casefold()))


def check_known_tags(catalog, tags: Sequence[str]) -> None:
    """:class:`QueryError` for the first of ``tags`` (case-insensitive) that no photo carries and
    no ``vsearch tag`` run named, listing the tags there are: a typo is not "no results"."""
    from vsearch.errors import QueryError

    known = tag_counts(catalog)
    names = {t.label.casefold() for t in known}
    unknown = [t for t in tags if t.casefold() not in names]
    if unknown:
        there = (f"the tags are {', '.join(t.label for t in known)}" if known
                 else 'no photo is tagged yet (vsearch tag --labels "cat,dog,beach")')
        raise QueryError(f"no tag \"{unknown[0]}\" in this catalog: {there}")


def tagging_config(catalog) -> TaggingConfig | None:
    raw = catalog.get_meta(TAGGING_META)
    return None if raw is None else TaggingConfig.from_json(raw)
