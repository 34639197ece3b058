"""``vsearch index --regions SPEC``: regions of each photo become vectors in the space ``region``.

SPEC is ``proposals`` (no weights needed) or ``detector:FILE`` / ``detector:ARCH@FILE`` (see
:mod:`vsearch.regions.detectors`). Each region is cropped from the photo and embedded with the
catalog's own image encoder, so a text query finds regions the way it finds photos.

This module implements :class:`indexer.pipeline.RegionExtractor` and registers it as ``regions``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image

from vsearch.catalog import IMAGE_SPACE, Catalog, Transaction
from vsearch.errors import CatalogError
from vsearch.extractors import register_extractor
from vsearch.regions.base import RegionError, RegionSource, Regions
from vsearch.regions.crops import embed_regions, encode_mask
from vsearch.regions.proposals import DEFAULT_MAX_REGIONS, ProposalConfig, ProposalSource
from vsearch.regions.schema import REGION_SPACE
from vsearch.regions import store

log = logging.getLogger(__name__)

# Regions are found and cropped on the photo shrunk to this long side: enough pixels for a crop
# covering a tenth of the photo to fill most of a 224-pixel encoder input.
EXTRACT_SIDE = 640


@dataclass(frozen=True)
class RegionPayload:
    """What :meth:`RegionIndexer.extract` hands to :meth:`RegionIndexer.write` for one photo."""

    boxes: np.ndarray  # (N, 4) in original-photo pixels
    scores: np.ndarray  # (N,)
    labels: tuple[str, ...] | None
    masks: tuple[bytes, ...] | None  # PNG per region, see crops.encode_mask
    vectors: np.ndarray  # (N, D)


def build_source(spec: str, device: str = "cpu", max_regions: int | None = None) -> RegionSource:
    """``proposals`` | ``detector:FILE`` | ``detector:ARCH@FILE`` -> a region source."""
    spec = (spec or "").strip()
    if spec == "proposals":
        return ProposalSource(ProposalConfig(max_regions=max_regions or DEFAULT_MAX_REGIONS))
    if spec.startswith("detector:"):
        from vsearch.regions.detectors import load_detector

        return load_detector(spec[len("detector:"):], device)
    raise RegionError(f"unknown --regions {spec!r}: use proposals, detector:WEIGHTS.pt or detector:ARCH@WEIGHTS.pt")


class RegionIndexer:
    """Finds regions with ``source``, embeds the best ``max_regions`` of each photo with the
    catalog's image encoder and stores them (see :class:`indexer.pipeline.RegionExtractor`)."""

    name = "regions"
    max_side = EXTRACT_SIDE

    def __init__(self, source: RegionSource, max_regions: int = DEFAULT_MAX_REGIONS, device: str = "cpu",
                 encoder=None):
        if max_regions < 1:
            raise RegionError("--max-regions must be at least 1")
        self.source = source
        self.max_regions = max_regions
        self.device = device
        self.encoder = encoder  # None: the catalog's image encoder, loaded in prepare()
        self.settings = f"{source.settings} keep={max_regions}"

    # -- RegionExtractor -------------------------------------------------------------------------
    def prepare(self, catalog: Catalog) -> None:
        recorded = catalog.space_model(IMAGE_SPACE)
        if recorded is None:
            raise CatalogError("regions are embedded with the catalog's image model, and none is recorded yet")
        if self.encoder is None:
            from vsearch.encoders import load_encoder

            self.encoder = load_encoder(recorded[0], self.device)  # cached: the indexer's own instance
        if self.encoder.info.name != recorded[0]:
            raise CatalogError(f"region encoder {self.encoder.info.name} is not the catalog's {recorded[0]}")
        catalog.bind_space(REGION_SPACE, self.encoder.info.name, self.encoder.info.dim)
        # Load the region index now, as the indexer does for photos: if it were first loaded after a
        # batch commits, that load would sync the whole batch from SQL and the catalog would then
        # add the batch's vectors a second time (FAISS keeps duplicate ids).
        catalog.index(REGION_SPACE)

    def pending(self, catalog: Catalog, media_ids: Sequence[int]) -> set[int]:
        """Photos with no regions from this source yet, or with regions made from other file
        content or other settings. The stale regions are removed here, before re-extraction, so
        a photo never holds two generations of regions from one source."""
        with catalog.transaction() as tx:
            todo, dropped = store.take_stale(tx, media_ids, self.source.name, self.settings)
        if dropped:
            log.info("dropped %d regions made from other content or with other settings", dropped)
        return todo

    def extract(self, item) -> RegionPayload:
        """Model work for one photo (``item`` is an :class:`indexer.pipeline.ExtractInput`)."""
        image: Image.Image = item.image
        found: Regions = self.source(image)
        # a box under a pixel a side (every proposal of a photo of a few pixels) holds nothing to
        # crop: such a photo simply has no regions
        sides = np.minimum(found.boxes[:, 2] - found.boxes[:, 0], found.boxes[:, 3] - found.boxes[:, 1])
        regions = found.select(np.flatnonzero(sides >= 1.0)).top(self.max_regions)
        vectors = embed_regions(self.encoder, image, regions)
        width, height = item.original_size
        factor = np.array([width / image.width, height / image.height] * 2, np.float32)
        boxes = regions.boxes * factor
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        masks = None
        if regions.masks is not None:
            masks = tuple(encode_mask(m, b) for m, b in zip(regions.masks, regions.boxes))
        return RegionPayload(boxes, regions.scores, regions.labels, masks, vectors)

    def write(self, tx: Transaction, media_id: int, payload: RegionPayload) -> None:
        """Store one photo's regions inside the indexer's transaction ``tx``."""
        store.add_regions(tx, media_id, self.source.name, self.settings, payload.boxes, payload.scores,
                          payload.labels, payload.masks, payload.vectors)


@register_extractor("regions")
def _factory(spec: str, device: str = "cpu", max_regions: int | None = None) -> RegionIndexer:
    source = build_source(spec, device, max_regions)
    return RegionIndexer(source, max_regions or DEFAULT_MAX_REGIONS, device)


__all__ = ["RegionIndexer", "RegionPayload", "build_source", "EXTRACT_SIDE"]
