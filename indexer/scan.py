"""Finding image files under the paths a user gives, without looping on symlinks."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Iterable

from vsearch.images import is_image_path


@dataclass(frozen=True)
class FileEntry:
    path: str  # absolute, as reached (a symlinked folder keeps its link name)
    size: int
    mtime: float


@dataclass
class ScanResult:
    files: list[FileEntry] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    roots: list[str] = field(default_factory=list)


def scan_paths(paths: Iterable[str]) -> ScanResult:
    """Every image file (by extension) under ``paths``, each real file once, sorted by path.

    Symlinked folders are followed, but a folder already visited (same device and inode) is not
    entered again, which is what stops ``a/link -> a`` loops.
    """
    result = ScanResult()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()

    def add_file(path: str) -> None:
        try:
            st = os.stat(path)
        except OSError as exc:
            result.problems.append((path, f"cannot stat: {exc.strerror or exc}"))
            return
        if not stat.S_ISREG(st.st_mode):
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_files:
            return
        seen_files.add(key)
        result.files.append(FileEntry(path, st.st_size, st.st_mtime))

    for raw in paths:
        root = os.path.abspath(os.path.expanduser(raw))
        result.roots.append(root)
        if os.path.isfile(root):
            add_file(root)
            continue
        if not os.path.isdir(root):
            result.problems.append((root, "no such file or folder"))
            continue

        def onerror(exc: OSError) -> None:
            result.problems.append((exc.filename or root, f"cannot read folder: {exc.strerror or exc}"))

        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
            try:
                st = os.stat(dirpath)
            except OSError:
                dirnames[:] = []
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                dirnames[:] = []
                continue
            seen_dirs.add(key)
            dirnames.sort()
            for name in sorted(filenames):
                if is_image_path(name):
                    add_file(os.path.join(dirpath, name))
    result.files.sort(key=lambda f: f.path)
    return result
