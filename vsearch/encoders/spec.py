"""``--model`` strings: the one parser of encoder specs, for the registry, the runtimes and the
CLIP loader.

Forms: ``auto``; ``packaged`` (or ``default``), spelt out as :data:`PACKAGED`; ``clip:ARCH/TAG``
(an open_clip pretrained tag); ``clip:ARCH@FILE`` (ARCH may be a JSON config file);
``trained:FILE``; ``PREFIX:REST`` for any other prefix an encoder registers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

PACKAGED = "packaged:effnet-lite0+minilm"


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


@dataclass(frozen=True)
class EncoderSpec:
    """A model spec in its canonical spelling (``str()`` gives it back): equivalent spellings
    (``packaged`` and its full name, relative and absolute paths) parse to equal specs, which is
    what the catalog records and what one loaded model is shared under."""

    text: str

    @classmethod
    def parse(cls, text: str) -> "EncoderSpec":
        text = text.strip()
        if text in ("packaged", "default"):
            return cls(PACKAGED)
        family, sep, rest = text.partition(":")
        if family == "clip" and "@" in rest:
            arch, path = rest.split("@", 1)
            return cls(f"clip:{_absolute(arch) if arch.endswith('.json') else arch}@{_absolute(path)}")
        if family == "trained" and sep:
            return cls("trained:" + _absolute(rest))
        return cls(text)

    def __str__(self) -> str:
        return self.text

    @property
    def family(self) -> str:
        """The registry prefix (``packaged``, ``clip``, ``trained``, ...); a word without a colon
        (``auto``) is its own family."""
        return self.text.partition(":")[0]

    @property
    def rest(self) -> str:
        """What follows ``family:``: handed to the family's factory."""
        return self.text.partition(":")[2]

    def clip_parts(self) -> tuple[str, str | None, str | None]:
        """(arch, pretrained tag, weights file) of a ``clip:`` spec: ``ARCH/TAG`` gives a tag,
        ``ARCH@FILE`` a file, a bare ``ARCH`` neither."""
        return clip_parts(self.rest)

    def weights_files(self) -> list[str] | None:
        """The local files a ``clip:ARCH@FILE`` spec names (its weights, and ARCH when that is a
        JSON config), else None: other specs' weights are found by their loaders."""
        if self.family != "clip":
            return None
        arch, _, path = self.clip_parts()
        if path is None:
            return None
        return [path] + ([arch] if arch.endswith(".json") else [])


def clip_parts(rest: str) -> tuple[str, str | None, str | None]:
    """'ViT-B-32/tag' -> (arch, tag, None); 'ViT-B-32@/w.pt' -> (arch, None, absolute path)."""
    if "@" in rest:
        arch, path = rest.split("@", 1)
        return arch, None, _absolute(path)
    if "/" in rest:
        arch, tag = rest.split("/", 1)
        return arch, tag, None
    return rest, None, None
