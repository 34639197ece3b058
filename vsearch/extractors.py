"""Registry of region extractors that `vsearch index --faces / --regions SPEC` runs while indexing.

An extractor implements :class:`indexer.pipeline.RegionExtractor`. Modules that provide one call
:func:`register_extractor` at import; they are imported lazily, so `vsearch index` without those
flags never loads face or detector models.
"""
from __future__ import annotations

from typing import Callable

from vsearch.registry import Registry

# name -> factory(argument string or "", device, **options) -> RegionExtractor; the plug-ins are
# the modules that register them when imported
EXTRACTORS: Registry[Callable[..., object]] = Registry(
    "extractor", plugins={"faces": "vsearch.faces.extractor", "regions": "vsearch.regions.extractor"})
register_extractor = EXTRACTORS.register


def build_extractor(name: str, argument: str = "", device: str = "cpu", **options):
    """``options`` are keyword settings of that extractor (e.g. ``max_regions`` for regions)."""
    return EXTRACTORS.get(name)(argument, device, **options)
