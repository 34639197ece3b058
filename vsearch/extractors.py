"""Registry of region extractors that `vsearch index --faces / --regions SPEC` runs while indexing.

An extractor implements :class:`indexer.pipeline.RegionExtractor`. Modules that provide one call
:func:`register_extractor` at import; they are imported lazily, so `vsearch index` without those
flags never loads face or detector models.
"""
from __future__ import annotations

from typing import Callable

from vsearch.errors import VSearchError
from vsearch.registry import Registry

# name -> factory(argument string or "", device, **options) -> RegionExtractor; the plug-ins are
# the modules that register them when imported
EXTRACTORS: Registry[Callable[..., object]] = Registry(
    "extractor", plugins={"faces": "vsearch.faces.extractor", "regions": "vsearch.regions.extractor"})
register_extractor = EXTRACTORS.register


def build_extractor(name: str, argument: str = "", device: str = "cpu", **options):
    """``options`` are keyword settings of that extractor (e.g. ``max_regions`` for regions)."""
    return EXTRACTORS.get(name)(argument, device, **options)


def index_extractors(faces: bool = False, regions: str | None = None, max_regions: int | None = None,
                     device: str = "cpu") -> list:
    """The extractors an index run with ``--faces`` and ``--regions SPEC`` (``proposals`` or
    ``detector:WEIGHTS.pt``, at most ``max_regions`` per photo) runs, in that order."""
    check_index_options(regions, max_regions)
    return ([build_extractor("faces", "", device)] if faces else []) + \
        ([build_extractor("regions", regions, device, max_regions=max_regions)] if regions else [])


def check_index_options(regions: str | None = None, max_regions: int | None = None) -> None:
    """Refuse options that mean nothing, before a catalog is opened or a model loaded."""
    if max_regions is not None and not regions:
        raise VSearchError("--max-regions needs --regions")
