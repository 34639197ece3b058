"""Which files an embedding run covers: a folder scan, a list file, or what a catalog still lacks.

A manifest is a sorted, duplicate-free list of :class:`FileEntry` (path, size, mtime). Sorting
makes the split into shards deterministic, which is what lets an interrupted run resume shard by
shard (see :mod:`indexer.shards`).
"""
from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from indexer.pipeline import is_transient
from indexer.scan import FileEntry, scan_paths
from vsearch.catalog import Catalog


@dataclass
class Manifest:
    entries: list[FileEntry] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not embeddable at all
    skipped: int = 0  # files left out because the catalog already holds them unchanged

    def __len__(self) -> int:
        return len(self.entries)

    def digest(self) -> str:
        return entries_digest(self.entries)


def entries_digest(entries: Iterable[FileEntry]) -> str:
    """sha256 over (path, size, mtime) of every entry, in order: names one exact list of inputs."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.path}\0{e.size}\0{e.mtime!r}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _finish(entries: Iterable[FileEntry], problems: list[tuple[str, str]]) -> Manifest:
    unique = {e.path: e for e in entries}
    return Manifest(sorted(unique.values(), key=lambda e: e.path), problems)


def from_paths(paths: Sequence[str]) -> Manifest:
    """Every image file under ``paths`` (folders are scanned recursively, as by ``vsearch index``)."""
    scan = scan_paths(paths)
    return _finish(scan.files, list(scan.problems))


def from_list_file(list_path: str | os.PathLike) -> Manifest:
    """One file path per line; blank lines and lines starting with ``#`` are ignored. Relative
    paths are relative to the list file's folder, so a list can travel with its files."""
    list_path = os.path.abspath(os.fspath(list_path))
    base = os.path.dirname(list_path)
    entries, problems = [], []
    with open(list_path, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            path = os.path.abspath(os.path.join(base, os.path.expanduser(line)))
            try:
                st = os.stat(path)
            except OSError as exc:
                problems.append((path, f"cannot stat: {exc.strerror or exc}"))
                continue
            if not stat.S_ISREG(st.st_mode):
                problems.append((path, "not a regular file"))
                continue
            entries.append(FileEntry(path, st.st_size, st.st_mtime))
    return _finish(entries, problems)


def pending(manifest: Manifest, catalog: Catalog) -> Manifest:
    """The part of ``manifest`` the catalog does not hold yet: new files and files whose size or
    mtime changed. Files the catalog knows unchanged (indexed, or failed before for a reason that
    does not pass, such as a corrupt file) are left out, the same rule ``vsearch index`` uses."""
    known = catalog.media_at([e.path for e in manifest.entries])
    todo = []
    for entry in manifest.entries:
        state = known.get(entry.path)
        if state is not None and state.size == entry.size and state.mtime == entry.mtime \
                and not (state.status == "failed" and is_transient(state.error)):
            continue
        todo.append(entry)
    return Manifest(todo, list(manifest.problems), manifest.skipped + len(manifest.entries) - len(todo))


def gather(paths: Sequence[str] = (), list_file: str | os.PathLike | None = None) -> Manifest:
    """The files under ``paths`` and those named in ``list_file`` (see :func:`from_list_file`),
    as one manifest: a file named both ways is embedded once."""
    found = from_paths(paths) if paths else Manifest()
    if not list_file:
        return found
    listed = from_list_file(list_file)
    return _finish(found.entries + listed.entries, found.problems + listed.problems)


def for_catalog(manifest: Manifest, catalog: Catalog, model: str = "auto") -> tuple[Manifest, str]:
    """What ``catalog`` still lacks of ``manifest`` (see :func:`pending`), and the model to embed
    it with: the catalog's own, so that the shards can be merged into it. ``model`` is checked
    against it (``auto`` fits any catalog; an empty catalog takes ``model``)."""
    from vsearch.catalog import IMAGE_SPACE
    from vsearch.encoders import canonical_spec
    from vsearch.errors import ModelMismatchError

    recorded = catalog.space_model(IMAGE_SPACE)
    if recorded and canonical_spec(model) not in ("auto", recorded[0]):
        raise ModelMismatchError(f"this catalog was built with {recorded[0]}; leave --model out or pass that model")
    return pending(manifest, catalog), (recorded[0] if recorded else model)
