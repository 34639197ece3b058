"""Which catalog rows an indexing run may remove: only those whose file the scan *saw* gone.

A row the scan did not find is kept, and the reason reported, when its file lies

* under a root that is missing, unreadable, or without a single image file any more;
* under a folder the catalog holds photos in whose photos all vanished at once and that looks
  like an unmounted drive: the folder is empty now, or it (or the folder its photos were in) is
  now on another device than the one the photos were seen on (``media.device``). Such a folder
  is reported as unavailable, like a root, until ``prune_missing``;
* under a folder or file the scan could not list or stat;
* under something the scan left out on purpose (hidden, system folder, ``--exclude``), unless
  ``prune_missing``.

A folder from which only some photos were deleted loses exactly those.
"""
from __future__ import annotations

import bisect
import os
from typing import Protocol

from indexer.scan import ScanResult

EMPTY = "is empty (not mounted?)"
OTHER_DEVICE = "is now on another device than its photos were (not mounted?)"
GONE_FROM_DEVICE = "is gone, and its photos were on another device than the folder above it (not mounted?)"
PRUNE_HINT = "pass --prune-missing to remove them"


class Summary(Protocol):
    unavailable: list[tuple[str, str]]
    kept: list[tuple[str, int, str]]


def kept_rows(scan: ScanResult, known: dict, prune_missing: bool, summary: Summary) -> set[str]:
    """Paths of the catalog rows in ``known`` (path -> MediaState) that the scan did not see but
    that must not be removed; fills ``summary.unavailable`` and ``summary.kept``."""
    keep: set[str] = set()
    seen = {f.path for f in scan.files}
    ordered = sorted(known)

    def under(folder: str) -> list[str]:
        return _under(ordered, folder)

    roots_down = list(scan.unavailable)
    for root, entries in scan.root_entries.items():
        prefix = root.rstrip(os.sep) + os.sep
        # a readable root without a single image file, where the catalog has photos: more likely
        # an empty mount point than a collection deleted whole
        if under(root) and not any(f.path.startswith(prefix) for f in scan.files):
            roots_down.append((root, EMPTY if entries == 0 else "holds no image file any more"))
    _keep_whole(roots_down, under, seen, prune_missing, keep, summary)

    # Rows under a folder the scan could not read, or left out on purpose: found by walking each
    # unseen row's parents (a scan may skip thousands of hidden files; matching every skipped path
    # against every row would cost their product).
    missing = [p for p in ordered if p not in seen and p not in keep]
    for marks, reason, prunable in (
        (set(scan.unseen), "could not be read", False),
        (set(scan.skipped), f"left out of this scan (hidden, system folder or --exclude); {PRUNE_HINT}", True),
    ):
        if not marks or (prunable and prune_missing):
            continue
        counts: dict[str, int] = {}
        for path in missing:
            mark = _covering(path, marks) if path not in keep else None
            if mark is not None:
                keep.add(path)
                counts[mark] = counts.get(mark, 0) + 1
        summary.kept.extend((mark, n, reason) for mark, n in sorted(counts.items()))

    missing = [p for p in missing if p not in keep]
    folders_down = [(f, why) for f, why in _vanished_folders(scan, known, missing).items()
                    if not any(p in seen for p in under(f))]
    _keep_whole(_outermost(folders_down), under, seen, prune_missing, keep, summary)
    return keep


def _keep_whole(folders: list[tuple[str, str]], under, seen: set[str], prune_missing: bool, keep: set[str],
                summary: Summary) -> None:
    """Report each of ``folders`` as unavailable and, unless ``prune_missing``, keep the rows under it."""
    for folder, why in folders:
        summary.unavailable.append((folder, why))
        rows = [p for p in under(folder) if p not in seen and p not in keep]
        if rows and not prune_missing:
            keep.update(rows)
            summary.kept.append((folder, len(rows), f"{why}; {PRUNE_HINT}"))


def _vanished_folders(scan: ScanResult, known: dict, missing: list[str]) -> dict[str, str]:
    """Folders that look unmounted, for the rows in ``missing``: folder -> why.

    For each missing row, the nearest folder above it that the scan listed tells: empty, it is
    an empty mount point; on another device than the row's folder was when last seen, a drive
    is no longer mounted there (at that folder itself, or at the gone folder below it on the
    way to the row). Whether all of a folder's photos vanished is checked by the caller."""
    found: dict[str, str] = {}
    for path in missing:
        below, folder = None, os.path.dirname(path)
        while folder not in scan.folders:
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            below, folder = folder, parent
        else:
            entries, dev = scan.folders[folder]
            recorded = known[path].device
            if entries == 0:
                found.setdefault(folder, EMPTY)
            elif recorded is not None and recorded != dev:
                if below is None:
                    found.setdefault(folder, OTHER_DEVICE)
                else:
                    found.setdefault(below, GONE_FROM_DEVICE)
    return found


def _outermost(folders: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``folders`` without those inside another of them, sorted."""
    out: list[tuple[str, str]] = []
    for folder, why in sorted(folders):  # a parent sorts before its children
        if not any(_within(folder, o) for o, _ in out):
            out.append((folder, why))
    return out


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _under(ordered: list[str], folder: str) -> list[str]:
    """The paths of the sorted list ``ordered`` that are ``folder`` or lie below it."""
    prefix = folder.rstrip(os.sep) + os.sep
    i = bisect.bisect_left(ordered, folder)
    out = [folder] if i < len(ordered) and ordered[i] == folder else []
    start = bisect.bisect_left(ordered, prefix)
    end = bisect.bisect_left(ordered, prefix[:-1] + chr(ord(os.sep) + 1))
    return out + ordered[start:end]


def _covering(path: str, marks: set[str]) -> str | None:
    """The first of ``path`` and its parent folders that is in ``marks``, or None."""
    while path not in marks:
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path
