"""Named factories: the one small registry behind the encoders (``--model`` prefixes), the
indexing extractors (``--faces``, ``--regions``) and the face detectors.

A module registers its factory with the :meth:`Registry.register` decorator when it is
imported. A name may also point at the module that registers it (a *plug-in*), imported only
when that name is first asked for, so that nothing heavy (torch, detector models, the trainer) is
loaded for a run that does not use it.
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, Mapping, TypeVar

from vsearch.errors import VSearchError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """``what`` names the kind of thing in messages; ``error`` is the exception an unknown name
    raises; ``plugins`` maps names to the modules that register them."""

    def __init__(self, what: str, error: type[Exception] = VSearchError, plugins: Mapping[str, str] | None = None):
        self.what = what
        self.error = error
        self._factories: dict[str, F] = {}
        self._plugins = dict(plugins or {})

    def register(self, name: str) -> Callable[[F], F]:
        def wrap(factory: F) -> F:
            self._factories[name] = factory
            return factory

        return wrap

    def names(self) -> list[str]:
        """Every name that can be asked for: registered, or provided by a plug-in."""
        return list(dict.fromkeys([*self._factories, *self._plugins]))

    def __contains__(self, name: str) -> bool:
        return name in self._factories or name in self._plugins

    def get(self, name: str) -> F:
        """The factory registered as ``name``, importing its plug-in first if need be."""
        if name not in self._factories and name in self._plugins:
            try:
                importlib.import_module(self._plugins[name])
            except ImportError as exc:
                raise self.error(f"{self.what} {name!r} needs a module that failed to import: {exc}") from None
        try:
            return self._factories[name]
        except KeyError:
            raise self.error(f"unknown {self.what} {name!r} (known: {', '.join(self.names())})") from None
