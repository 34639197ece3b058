"""The bearer token that guards face enrollment, removal, verification and identification.

Generated on first start (256 random bits) and written with mode 0600 to a file only its owner
can read; the server refuses to start from a token file that others can read, as ssh does for
private keys. Comparison is constant-time.
"""
from __future__ import annotations

import hmac
import os
import secrets
import stat

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vsearch.errors import VSearchError
from vsearch.serve.errors import ApiError

TOKEN_FILENAME = "serve.token"


class TokenFileError(VSearchError):
    """The token file cannot be created or read, or is readable by others."""


def load_or_create_token(path: str) -> tuple[str, bool]:
    """(token, created): read the token at ``path``, or write a new one there with mode 0600."""
    path = os.path.abspath(os.path.expanduser(path))
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # O_EXCL: two servers starting at once cannot both write (and one overwrite the other's)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_token(path), False
    except OSError as exc:
        raise TokenFileError(f"cannot create the token file {path}: {exc.strerror or exc}") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(token + "\n")
    return token, True


def _read_token(path: str) -> str:
    try:
        st = os.stat(path)
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise TokenFileError(
                f"the token file {path} can be read by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run `chmod 600 {path}` or delete it to get a new token"
            )
        with open(path, encoding="ascii") as fh:
            token = fh.read().strip()
    except TokenFileError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read the token file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if len(token) < 16:
        raise TokenFileError(f"the token in {path} is shorter than 16 characters; delete the file to get a new one")
    return token


# Declared through FastAPI's security scheme so that /docs shows an "Authorize" button.
bearer_scheme = _scheme = HTTPBearer(auto_error=False, description="The token in the server's token file (`serve.token`).")


class BearerToken:
    """A FastAPI dependency: 401 unless ``Authorization: Bearer <token>`` carries the token."""

    def __init__(self, token: str):
        self._token = token.encode()

    def __call__(self, credentials: HTTPAuthorizationCredentials | None = Depends(_scheme)) -> None:
        if credentials is None or not credentials.credentials.strip():
            raise ApiError(401, "unauthorized",
                           "this endpoint needs the header 'Authorization: Bearer <token>'; the token is in the "
                           "token file `vsearch serve` printed at start", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.strip().encode(), self._token):
            raise ApiError(401, "unauthorized", "the bearer token is wrong",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
