"""Keep a catalog current while files change: ``vsearch index PATH --watch``.

File-system events (watchdog: inotify, FSEvents, ReadDirectoryChangesW) are collected into
batches; a batch is handed to the ordinary indexing run once the folder has been quiet for
``debounce`` seconds (a camera import or a copy of 500 photos becomes one run, not 500), or after
``max_wait`` seconds of continuous activity. Every batch goes through :meth:`Collection.index`,
so watch mode follows exactly the rules of a normal run: unchanged files are skipped, moved and
copied files keep their vectors (sha256), and what counts as a deletion is decided by the
indexer, never here. For that reason a deleted or moved-away file is not removed directly: its
nearest existing folder is re-indexed, and the indexer's sweep removes what is really gone. A
watched root that disappears (an unmounted disk) yields no work at all.

File-system watches die silently with the file system they were on: after a drive is unmounted
and mounted again, inotify reports nothing more from it. :class:`RootWatches` therefore checks
each root (and every file system mounted below it) once a second; when what is there changed, it
says so once, arms the root's watch again (or, when no watch can be set, polls it) and has the
root re-indexed, so the catalog catches up with what happened meanwhile.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from vsearch.images import is_image_path

log = logging.getLogger(__name__)

DEFAULT_DEBOUNCE = 2.0
DEFAULT_MAX_WAIT = 30.0


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass
class ChangeBatcher:
    """Collects events and turns them into the paths one indexing run should look at.

    Thread-safe: watchdog calls :meth:`add` from its observer thread, the loop calls
    :meth:`ready` and :meth:`take`. ``clock`` is injectable for tests.
    """

    roots: Sequence[str]
    debounce: float = DEFAULT_DEBOUNCE
    max_wait: float = DEFAULT_MAX_WAIT
    clock: Callable[[], float] = time.monotonic
    _files: set[str] = field(default_factory=set)
    _folders: set[str] = field(default_factory=set)
    _first: float | None = None
    _last: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.roots = [os.path.abspath(r) for r in self.roots]

    def _root_of(self, path: str) -> str | None:
        return next((r for r in self.roots if _within(path, r)), None)

    def _existing_folder(self, path: str) -> str | None:
        """The nearest folder above ``path`` that still exists, inside its watched root; None when
        the root itself is gone (not a deletion: nothing to do)."""
        root = self._root_of(path)
        if root is None:
            return None
        folder = os.path.dirname(path)
        while _within(folder, root):
            if os.path.isdir(folder):
                return folder
            if folder == root:
                break
            folder = os.path.dirname(folder)
        return None

    def add(self, kind: str, src: str, dest: str | None = None, is_directory: bool = False) -> None:
        """``kind``: created | modified | deleted | moved (``dest`` set) | closed."""
        src = os.path.abspath(src)
        files: list[str] = []
        folders: list[str] = []
        if kind in ("created", "modified", "closed"):
            if is_directory:
                if kind == "created":
                    folders.append(src)
            elif is_image_path(src):
                files.append(src)
        if kind in ("deleted", "moved"):
            if is_directory or is_image_path(src):
                gone_from = self._existing_folder(src)
                if gone_from is not None:
                    folders.append(gone_from)
        if kind == "moved" and dest is not None:
            dest = os.path.abspath(dest)
            if self._root_of(dest) is not None:
                if is_directory:
                    folders.append(dest)
                elif is_image_path(dest):
                    files.append(dest)
        if not files and not folders:
            return
        with self._lock:
            now = self.clock()
            self._files.update(f for f in files if self._root_of(f) is not None)
            self._folders.update(folders)
            self._first = now if self._first is None else self._first
            self._last = now

    def ready(self) -> bool:
        with self._lock:
            if self._last is None:
                return False
            now = self.clock()
            return now - self._last >= self.debounce or now - self._first >= self.max_wait

    def rescan(self, folder: str) -> None:
        """Have ``folder`` re-indexed whole with the next batch (a root whose watch was re-armed)."""
        with self._lock:
            now = self.clock()
            self._folders.add(os.path.abspath(folder))
            self._first = now if self._first is None else self._first
            self._last = now

    def take(self) -> list[str]:
        """The batch's paths (folders first), with anything inside a listed folder left out."""
        with self._lock:
            folders, files = sorted(self._folders), sorted(self._files)
            self._files, self._folders, self._first, self._last = set(), set(), None, None
        outer: list[str] = []
        for folder in folders:  # sorted: a parent comes before its children
            if not any(_within(folder, o) for o in outer):
                outer.append(folder)
        return outer + [f for f in files if not any(_within(f, o) for o in outer)]


def _mount_points() -> list[str]:
    """The mount points of this system (Linux's ``/proc/self/mountinfo``), or [] where unknown."""
    try:
        with open("/proc/self/mountinfo", "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    unescape = re.compile(rb"\\([0-7]{3})")  # spaces and the like are written as \040
    return [os.fsdecode(unescape.sub(lambda m: bytes([int(m.group(1), 8)]), line.split()[4]))
            for line in lines if len(line.split()) > 4]


def folder_identity(folder: str) -> tuple | None:
    """What a watch of ``folder`` depends on: the (path, device, inode) of the folder and of every
    file system mounted below it; None when ``folder`` is not a folder now. It changes when a
    drive is mounted or unmounted there (or below), or the folder is replaced."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    real = os.path.realpath(folder)
    marks = [(folder, st.st_dev, st.st_ino)]
    for point in _mount_points():
        if point != real and _within(point, real):
            try:
                sub = os.stat(point)
                marks.append((point, sub.st_dev, sub.st_ino))
            except OSError:
                marks.append((point, None, None))
    return tuple(sorted(marks, key=lambda m: m[0]))


class RootWatches:
    """The observer's watch of each root, armed again whenever the root's :func:`folder_identity`
    changes (a drive unmounted or mounted again, the folder replaced), which inotify does not
    report; a root whose watch cannot be set (no inotify watches left) is polled instead.
    ``notice`` is told once per change."""

    def __init__(self, observer, handler, roots: Sequence[str], notice: Callable[[str], None]):
        self.observer, self.handler, self.notice = observer, handler, notice
        self._poller = None  # a watchdog PollingObserver, started when a root needs one
        # a root that is a file is watched through its folder, without sub-folders
        self._files = {root for root in roots if os.path.isfile(root)}
        self._armed: dict[str, tuple[tuple | None, object | None, object | None]] = {}
        for root in roots:
            identity = folder_identity(self._folder(root))
            self._armed[root] = (identity, *self._schedule(root, identity))
            if identity is None:
                notice(f"{root}: no such folder; watched once it is there")

    def _folder(self, root: str) -> str:
        return os.path.dirname(root) if root in self._files else root

    def _schedule(self, root: str, identity) -> tuple[object | None, object | None]:
        """(observer, watch) now watching ``root``, or (None, None) when it is not there."""
        if identity is None:
            return None, None
        folder, recursive = self._folder(root), root not in self._files
        try:
            return self.observer, self.observer.schedule(self.handler, folder, recursive=recursive)
        except OSError as exc:
            from watchdog.observers.polling import PollingObserver

            self.notice(f"{root}: cannot be watched for changes ({exc.strerror or exc}); polling it instead")
            if self._poller is None:
                self._poller = PollingObserver(timeout=5)
                self._poller.start()
            return self._poller, self._poller.schedule(self.handler, folder, recursive=recursive)

    def check(self) -> list[str]:
        """Re-arm the watch of every root whose identity changed; returns the roots that are
        back or changed (to be re-indexed: what happened meanwhile went unseen)."""
        again = []
        for root, (known, observer, watch) in list(self._armed.items()):
            identity = folder_identity(self._folder(root))
            if identity == known:
                continue
            if watch is not None:
                try:
                    observer.unschedule(watch)
                except (KeyError, OSError):
                    pass  # its file system is gone, and the watch with it
            self._armed[root] = (identity, *self._schedule(root, identity))
            if identity is None:
                self.notice(f"{root}: gone (unmounted?); watched again once it is back")
            else:
                self.notice(f"{root}: {'back' if known is None else 'changed (a drive unmounted or mounted again?)'}; "
                            "watching it again and catching up")
                again.append(root)
        return again

    def stop(self) -> None:
        for observer in (self.observer, self._poller):
            if observer is not None and observer.is_alive():
                observer.stop()
                observer.join(timeout=5)


@dataclass(frozen=True)
class WatchBatch:
    paths: tuple[str, ...]
    summary: object | None  # indexer.IndexSummary, or None when the run failed
    error: str | None
    seconds: float


def watch(collection, paths: Sequence[str], on_batch: Callable[[WatchBatch], None] | None = None,
          stop: threading.Event | None = None, debounce: float = DEFAULT_DEBOUNCE,
          max_wait: float = DEFAULT_MAX_WAIT, poll: float = 0.2, catch_up: bool = True,
          on_notice: Callable[[str], None] | None = None, check_every: float = 1.0, **index_kwargs) -> None:
    """Index ``paths`` once (``catch_up``), then re-index what changes until ``stop`` is set.

    ``index_kwargs`` go to :meth:`Collection.index` (batch_size, extractors, ...); batches run
    in this process (``workers=0``) because they are small and worker start-up would dominate.
    Every ``check_every`` seconds the roots are checked (:class:`RootWatches`); ``on_notice``
    (default: a logged warning) hears when a root's watch had to be armed again.
    """
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    from vsearch.errors import VSearchError

    from indexer.scan import ScanOptions

    roots = [os.path.abspath(os.path.expanduser(p)) for p in paths]
    # what the scan of a root leaves out (hidden, system folders, --exclude) stays out when it
    # changes: a changed path is handed to the indexer as a root of its own, which it would scan
    options = ScanOptions(include_hidden=bool(index_kwargs.get("include_hidden", False)),
                          exclude=tuple(index_kwargs.get("exclude", ())))
    batcher = ChangeBatcher(roots, debounce=debounce, max_wait=max_wait)
    stop = stop or threading.Event()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event):
            kind = event.event_type
            if kind in ("opened", "closed_no_write"):
                return
            kind = "closed" if kind == "closed" else kind
            src = os.fsdecode(event.src_path)
            dest = os.fsdecode(event.dest_path) if getattr(event, "dest_path", "") else None
            batcher.add(kind, src, dest, event.is_directory)

    observer = Observer()
    watches = RootWatches(observer, Handler(), roots, on_notice or log.warning)
    observer.start()

    def run(batch_paths: list[str], **kwargs) -> None:
        started = time.perf_counter()
        try:
            summary, error = collection.index(batch_paths, **{**index_kwargs, **kwargs}), None
        except (VSearchError, OSError) as exc:
            summary, error = None, str(exc)
        if on_batch is not None:
            on_batch(WatchBatch(tuple(batch_paths), summary, error, time.perf_counter() - started))

    try:
        if catch_up:
            run(roots)
        next_check = time.monotonic() + check_every
        while not stop.is_set():
            stop.wait(poll)
            if time.monotonic() >= next_check:
                for root in watches.check():
                    batcher.rescan(root)
                next_check = time.monotonic() + check_every
            if batcher.ready():
                batch = [p for p in batcher.take() if not _left_out(p, roots, options)]
                if batch:
                    run(batch, workers=0)
    finally:
        watches.stop()


def _left_out(path: str, roots: Sequence[str], options) -> bool:
    """Whether a scan of the watched root holding ``path`` would leave it out."""
    for root in roots:
        if path == root or not path.startswith(root.rstrip(os.sep) + os.sep):
            continue
        parts = os.path.relpath(path, root).split(os.sep)
        here = root
        for i, name in enumerate(parts):
            here = os.path.join(here, name)
            last = i == len(parts) - 1
            is_dir = not last or os.path.isdir(here)
            if (options.skips_folder(name) if is_dir else options.skips_file(name)) or options.excludes(here, root):
                return True
        return False
    return False
