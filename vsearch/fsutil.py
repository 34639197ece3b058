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
