"""Query images given as a file path or an ``http(s)://`` URL.

A URL is downloaded (size limit, timeout) into a temporary file that lives as long as the query;
a path is checked first so that a typo reads "not found: PATH" rather than a decoder's complaint.
Only queries are fetched: indexing reads local files.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from vsearch.errors import QueryError

MAX_DOWNLOAD_BYTES = 32 << 20  # larger than any photo worth querying with; bounds memory and disk
TIMEOUT_S = 20.0  # per connection attempt and per read, not for the whole transfer
_CHUNK = 1 << 16


class FetchError(QueryError):
    """A query image URL could not be downloaded (offline, refused, too large, not found)."""


def is_url(ref: str) -> bool:
    return ref.lower().startswith(("http://", "https://"))


def check_local_image(ref: str) -> str:
    """``ref`` with ``~`` expanded, or a clear error when it is missing or a folder."""
    from vsearch.images import not_a_file

    path = os.path.expanduser(ref)
    missing = not_a_file(path, shown=ref)
    if missing:
        raise QueryError(missing)
    return path


def download(url: str, max_bytes: int = MAX_DOWNLOAD_BYTES, timeout: float = TIMEOUT_S) -> bytes:
    """The body of ``url``; :class:`FetchError` with the reason otherwise."""
    # imported here: a query image given as a path (the usual case) needs no HTTP client
    import socket
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "vsearch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked by is_url
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"{url}: {int(declared) / 1e6:.1f} MB is more than the {max_bytes / 1e6:.0f} MB limit")
            chunks, size = [], 0
            while True:
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(f"{url}: larger than the {max_bytes / 1e6:.0f} MB limit")
                chunks.append(chunk)
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise FetchError(f"{url}: no answer within {timeout:g}s") from None
        raise FetchError(f"{url}: cannot connect ({reason}); is this machine offline?") from None
    except (socket.timeout, TimeoutError):
        raise FetchError(f"{url}: no answer within {timeout:g}s") from None
    except (OSError, ValueError) as exc:  # connection reset mid-transfer, malformed URL
        raise FetchError(f"{url}: download failed ({exc})") from None
    if size == 0:
        raise FetchError(f"{url}: the server sent an empty body")
    return b"".join(chunks)


@contextlib.contextmanager
def local_image(ref: str, max_bytes: int = MAX_DOWNLOAD_BYTES, timeout: float = TIMEOUT_S) -> Iterator[str]:
    """A local file for a query image given as a path or an http(s) URL.

    A path is only checked; a URL is downloaded to a temporary file, removed on exit. The file
    keeps the URL's extension, for decoders that look at it.
    """
    if not is_url(ref):
        yield check_local_image(ref)
        return
    import tempfile
    import urllib.parse

    data = download(ref, max_bytes, timeout)
    suffix = os.path.splitext(urllib.parse.urlsplit(ref).path)[1][:10]
    fd, path = tempfile.mkstemp(prefix="vsearch-query-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
