"""Labelled image folders: ``root/<class>/**/<image>``, one sub-folder per class (or identity).

The one loader of that layout, for training, evaluation and face calibration. It lists, it does
not decode: each user decodes the files its own way and reports what it could not read. The
listing leaves out what the indexer's scan leaves out (hidden and system folders, hidden files,
files that are not images by their extension) and reports what it could not look into (an
unreadable sub-folder, a broken link, an image lying directly under the root) instead of failing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from vsearch.errors import VSearchError
from vsearch.fsutil import is_hidden_file, is_hidden_or_system_folder


class DatasetError(VSearchError):
    """A labelled dataset is missing, empty or malformed."""


@dataclass(frozen=True)
class LabelledPaths:
    """Image files and their class names, in a stable (sorted) order."""

    paths: tuple[str, ...]
    labels: tuple[str, ...]
    problems: tuple[tuple[str, str], ...] = ()  # (path, reason) found while listing
    # every class folder found, holding images or not (a folder layout only): a zero-shot
    # evaluation still offers an empty class as an answer
    folders: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def classes(self) -> list[str]:
        """The classes that have at least one image."""
        return sorted(set(self.labels))

    def subset(self, keep: Sequence[int]) -> "LabelledPaths":
        return LabelledPaths(tuple(self.paths[i] for i in keep), tuple(self.labels[i] for i in keep), self.problems)


def folder_per_class(root: str, member: str = "class") -> LabelledPaths:
    """Every image under ``root/<class>/`` (sub-folders included), labelled with the class
    folder's name: classes in name order, and within a class each folder's files by name before
    its sub-folders. ``member`` names what a sub-folder stands for in the error message
    (``class``, ``identity``). Raises :class:`DatasetError` when ``root`` is not a folder; an
    empty one gives an empty listing (what is too little depends on the use)."""
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise DatasetError(f"{root} is not a folder (expected one sub-folder per {member})")
    paths: list[str] = []
    labels: list[str] = []
    problems: list[tuple[str, str]] = []
    folders: list[str] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"{root}: cannot read folder: {exc.strerror or exc}") from None
    from vsearch.images import is_image_path  # here: `vsearch --help` imports this module (DatasetError), not numpy

    for entry in entries:
        try:
            is_dir = entry.is_dir()  # follows a symlinked class folder
        except OSError:
            is_dir = False
        if not is_dir:
            if is_image_path(entry.name) and not is_hidden_file(entry.name):
                problems.append((entry.path, "image directly under the root: not in a class folder, ignored"))
            continue
        if is_hidden_or_system_folder(entry.name):
            continue
        folders.append(entry.name)
        for path in _images_under(entry.path, problems):
            paths.append(path)
            labels.append(entry.name)
    return LabelledPaths(tuple(paths), tuple(labels), tuple(problems), tuple(folders))


def _images_under(folder: str, problems: list[tuple[str, str]]) -> list[str]:
    """Image files under ``folder``, top-down; symlinked folders are followed, each real folder
    once (a link back up does not loop)."""
    from vsearch.images import is_image_path

    found: list[str] = []
    seen: set[tuple[int, int]] = set()

    def onerror(exc: OSError) -> None:
        problems.append((exc.filename or folder, f"cannot read folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=onerror):
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            problems.append((dirpath, f"cannot read folder: {exc.strerror or exc}"))
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not is_hidden_or_system_folder(d))
        for name in sorted(filenames):
            if not is_image_path(name) or is_hidden_file(name):
                continue
            path = os.path.join(dirpath, name)
            if os.path.isfile(path):
                found.append(path)
            elif os.path.islink(path):
                problems.append((path, "broken symbolic link"))
    return found
