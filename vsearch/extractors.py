"""Registry of region extractors that `vsearch index --faces / --regions SPEC` runs while indexing.

An extractor implements :class:`indexer.pipeline.RegionExtractor`. Modules that provide one call
:func:`register_extractor` at import; they are imported lazily, so `vsearch index` without those
flags never loads face or detector models.
"""
from __future__ import annotations

from typing import Callable

from vsearch.errors import VSearchError

# name -> factory(argument string or "", device, **options) -> RegionExtractor
_FACTORIES: dict[str, Callable[..., object]] = {}
# modules that register extractors when imported
_PLUGINS = {"faces": "vsearch.faces.extractor", "regions": "vsearch.regions.extractor"}


def register_extractor(name: str):
    def wrap(factory):
        _FACTORIES[name] = factory
        return factory

    return wrap


def build_extractor(name: str, argument: str = "", device: str = "cpu", **options):
    """``options`` are keyword settings of that extractor (e.g. ``max_regions`` for regions)."""
    if name not in _FACTORIES and name in _PLUGINS:
        try:
            __import__(_PLUGINS[name])
        except ImportError as exc:
            raise VSearchError(f"--{name} needs a module that failed to import: {exc}") from None
    factory = _FACTORIES.get(name)
    if factory is None:
        raise VSearchError(f"no extractor named {name!r} (known: {', '.join(sorted(_PLUGINS))})")
    return factory(argument, device, **options)
