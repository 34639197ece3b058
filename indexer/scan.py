"""Finding image files under the paths a user gives, without looping on symlinks.

A scan also says what it could *not* see: a root that is missing, unreadable or empty, a folder
it could not list, a file it could not stat. The indexer removes a catalog row only when the scan
saw its file as gone, so nothing behind an unmounted drive or a ``chmod 000`` folder is lost.
"""
from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from typing import Iterable

from vsearch.fsutil import is_hidden_file, is_hidden_or_system_folder
from vsearch.images import is_image_path


@dataclass(frozen=True)
class FileEntry:
    path: str  # absolute, as reached (a symlinked folder keeps its link name)
    size: int
    mtime: float
    # st_dev of the folder the file was found in (a folder's, not the file's: on some file
    # systems, overlayfs for one, a file may report the device under the one its folder shows)
    folder_dev: int | None = None


@dataclass(frozen=True)
class ScanOptions:
    """What a scan leaves out. ``exclude``: glob patterns matched against a file's or folder's
    name and against its path (absolute, and relative to the root given), e.g. ``*.tmp``,
    ``*/private/*``, ``raw``."""

    include_hidden: bool = False
    exclude: tuple[str, ...] = ()

    def skips_folder(self, name: str) -> bool:
        return not self.include_hidden and is_hidden_or_system_folder(name)

    def skips_file(self, name: str) -> bool:
        return not self.include_hidden and is_hidden_file(name)

    def excludes(self, path: str, root: str) -> bool:
        if not self.exclude:
            return False
        rel = os.path.relpath(path, root) if root != path else os.path.basename(path)
        name = os.path.basename(path)
        return any(fnmatch.fnmatch(name, g) or fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(path, g)
                   for g in self.exclude)


def read_exclude_file(path: str) -> tuple[str, ...]:
    """Glob patterns from a file, one a line; blank lines and lines starting with # are ignored."""
    with open(os.path.expanduser(path), encoding="utf-8") as fh:
        return tuple(line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#"))


@dataclass
class ScanResult:
    files: list[FileEntry] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    roots: list[str] = field(default_factory=list)
    # roots the scan could not look into at all: (root, reason); see ``root_state``
    unavailable: list[tuple[str, str]] = field(default_factory=list)
    # folders and files the scan reached but could not list or stat: what is under them is unknown
    unseen: list[str] = field(default_factory=list)
    # how many entries (of any kind) each readable root folder holds at its top level
    root_entries: dict[str, int] = field(default_factory=dict)
    # left out on purpose (hidden, system folder, --exclude): what the catalog has there is kept
    skipped: list[str] = field(default_factory=list)
    skipped_by_extension: int = 0  # files that are not images by their extension (.txt, .mov, ...)
    # every folder the scan listed: path -> (entries of any kind it holds, st_dev)
    folders: dict[str, tuple[int, int]] = field(default_factory=dict)

    def is_unseen(self, path: str) -> bool:
        """Whether ``path`` is (or lies under) something the scan could not look into."""
        for u in self.unseen:
            if path == u or path.startswith(u.rstrip(os.sep) + os.sep):
                return True
        return False


def root_state(root: str) -> str | None:
    """None when ``root`` can be scanned, else why not (missing, unreadable)."""
    if os.path.isfile(root):
        return None
    if not os.path.lexists(root):
        return "no such file or folder (not mounted?)"
    if not os.path.isdir(root):
        return "no such file or folder (broken link)" if os.path.islink(root) else "not a folder or image file"
    if not os.access(root, os.R_OK | os.X_OK):
        return "cannot be read (permission denied)"
    return None


def scan_paths(paths: Iterable[str], options: ScanOptions | None = None) -> ScanResult:
    """Every image file (by extension) under ``paths``, each real file once, sorted by path.

    Symlinked folders are followed, but a folder already visited (same device and inode) is not
    entered again, which is what stops ``a/link -> a`` loops. Hidden files and folders and system
    folders are left out unless ``options.include_hidden``; so is what ``options.exclude`` matches.
    A path given explicitly is always scanned, even if hidden.
    """
    options = options or ScanOptions()
    result = ScanResult()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()

    def add_file(path: str, folder_dev: int | None) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                result.problems.append((path, "broken symbolic link"))
            return  # deleted between listing and stat: gone, as far as this scan knows
        except OSError as exc:
            result.problems.append((path, f"cannot stat: {exc.strerror or exc}"))
            result.unseen.append(path)
            return
        if not stat.S_ISREG(st.st_mode):
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_files:
            return
        seen_files.add(key)
        result.files.append(FileEntry(path, st.st_size, st.st_mtime, folder_dev))

    for raw in paths:
        root = os.path.abspath(os.path.expanduser(raw))
        result.roots.append(root)
        why = root_state(root)
        if why is not None:
            result.unavailable.append((root, why))
            result.problems.append((root, why))
            continue
        if os.path.isfile(root):
            try:
                folder_dev = os.stat(os.path.dirname(root)).st_dev
            except OSError:
                folder_dev = None
            add_file(root, folder_dev)
            continue
        try:
            result.root_entries[root] = len(os.listdir(root))
        except OSError as exc:
            why = f"cannot be read: {exc.strerror or exc}"
            result.unavailable.append((root, why))
            result.problems.append((root, why))
            continue

        def onerror(exc: OSError) -> None:
            folder = exc.filename or root
            result.problems.append((folder, f"cannot read folder: {exc.strerror or exc}"))
            result.unseen.append(os.path.abspath(folder))

        for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
            try:
                st = os.stat(dirpath)
            except OSError as exc:
                result.problems.append((dirpath, f"cannot read folder: {exc.strerror or exc}"))
                result.unseen.append(dirpath)
                dirnames[:] = []
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                dirnames[:] = []
                continue
            seen_dirs.add(key)
            result.folders[dirpath] = (len(dirnames) + len(filenames), st.st_dev)
            kept_dirs = []
            for name in sorted(dirnames):
                sub = os.path.join(dirpath, name)
                if options.skips_folder(name) or options.excludes(sub, root):
                    result.skipped.append(sub)
                else:
                    kept_dirs.append(name)
            dirnames[:] = kept_dirs
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                if not is_image_path(name):
                    result.skipped_by_extension += 1
                elif options.skips_file(name) or options.excludes(path, root):
                    result.skipped.append(path)
                else:
                    add_file(path, st.st_dev)
    result.files.sort(key=lambda f: f.path)
    return result
