"""Writing files so that readers (and a crash) only ever see the old file or the complete new one."""
from __future__ import annotations

import os
import tempfile
from typing import Callable


def atomic_write(path: str, fill: Callable[[str], None]) -> None:
    """``fill(tmp_path)`` writes a temporary file beside ``path``; it is fsynced and renamed over
    ``path`` (atomic on POSIX), or removed if anything fails."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    os.close(fd)
    try:
        fill(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# -- file names that are not valid UTF-8 ----------------------------------------------------------
# Python hands such names over with each undecodable byte as a lone surrogate (U+DC80..U+DCFF,
# "surrogateescape"), which no database encoding accepts. In the catalog each of those is stored
# as a character of the last private-use plane (U+10FF80..U+10FFFF) instead: valid text, one
# character per byte, so prefixes (and the indexer's folder range scans) stay prefixes, and the
# exact bytes come back when the path is read. Names that really contain those private-use
# characters are not supported (no normal text uses them).
_SURROGATE_LO, _SURROGATE_HI = 0xDC80, 0xDCFF
_STORED_BASE = 0x10FF80 - _SURROGATE_LO
_TO_STORED = {c: c + _STORED_BASE for c in range(_SURROGATE_LO, _SURROGATE_HI + 1)}
_FROM_STORED = {v: k for k, v in _TO_STORED.items()}


def path_to_text(path: str) -> str:
    """A filesystem path (str, possibly with surrogate escapes) as text any database stores."""
    return path.translate(_TO_STORED) if not path.isascii() else path


def text_to_path(text: str) -> str:
    """The inverse of :func:`path_to_text`: the path as the filesystem knows it."""
    return text.translate(_FROM_STORED) if not text.isascii() else text


def display_path(path: str) -> str:
    """A path (or any text holding one) safe to print or put in JSON: undecodable bytes shown as
    ``\\xNN``, so the result is valid UTF-8."""
    if path.isascii():
        return path
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a lone surrogate that is no escaped byte (not from the file system)
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def undecodable_name(path: str) -> bytes | None:
    """The bytes of a file name that is not UTF-8 text (so :func:`display_path` shows some of
    them as ``\\xNN``, which a name holding a real backslash can show too); None for any name
    that is UTF-8 text, which JSON carries exactly."""
    if path.isascii():
        return None
    try:
        raw = os.fsencode(path)
    except UnicodeError:  # a lone surrogate that is no escaped byte (not from the file system)
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    return None


# -- one writer at a time ---------------------------------------------------------------------------
class FolderLock:
    """An exclusive ``flock`` on a file in a folder, held until :meth:`release` (or process exit).

    The file records who holds it (pid, command, since when) so a second writer can say whom it
    is waiting for. The kernel drops the lock when the holder dies, so a crash never leaves a
    stale lock behind."""

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        import fcntl
        import sys
        import time

        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # OSError: the caller says why
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        holder = f"pid {os.getpid()}, `{' '.join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))}`" \
                 f" since {time.strftime('%H:%M:%S')}"
        os.write(fd, holder.encode("utf-8", "backslashreplace"))
        self._fd = fd
        return True

    def holder(self) -> str | None:
        """Who holds the lock (as they wrote it), or None when it is free. Only reads: a reader
        without write access to the folder can ask too."""
        import fcntl

        if self._fd is not None:
            return f"pid {os.getpid()} (this process)"
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None  # no lock file: nobody has ever written here
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                text = os.read(fd, 4096).decode("utf-8", "replace").strip()
                return text or "another process"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:
            pass


# -- folders that hold no one's photos --------------------------------------------------------------
# Folders that hold a system's or an application's files, not a person's photos: thumbnail caches
# (Synology's @eaDir, freedesktop's .thumbnails), recycle bins, version control. Hidden names
# (a leading dot) are left out as well: the indexer's scan and the labelled-dataset loader agree.
SYSTEM_FOLDERS = frozenset({
    "@eadir", "#recycle", "#snapshot", "$recycle.bin", "system volume information", "lost+found",
    ".thumbnails", ".thumbs", ".cache", ".git", ".svn", ".hg", ".trash", ".trashes", ".spotlight-v100",
    ".fseventsd", ".picasaoriginals", "__macosx", "node_modules",
})


def is_hidden_or_system_folder(name: str) -> bool:
    """A folder name that is hidden (leading dot), a system folder, or a desktop trash."""
    folded = name.casefold()
    return name.startswith(".") or folded in SYSTEM_FOLDERS or folded.startswith(".trash-")


def is_hidden_file(name: str) -> bool:
    """A hidden file name (leading dot), e.g. macOS's ``._photo.jpg`` resource forks."""
    return name.startswith(".")
