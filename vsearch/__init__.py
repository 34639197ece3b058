"""vsearch: embedding-based visual search and verification."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from vsearch.errors import VSearchError

__version__ = "0.1.0"
__all__ = ["Catalog", "Collection", "QueryTerm", "SearchHit", "VSearchError", "default_db_dir", "open"]

# The public names are imported on first use: `vsearch --help` and `import vsearch.errors` must not
# pay for torch, FAISS and SQLAlchemy (several seconds) before anything needs them.
_LAZY = {
    "Collection": "vsearch.api", "QueryTerm": "vsearch.api", "default_db_dir": "vsearch.api", "open": "vsearch.api",
    "Catalog": "vsearch.catalog", "SearchHit": "vsearch.catalog",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from vsearch.api import Collection, QueryTerm, default_db_dir, open  # noqa: A004, F401
    from vsearch.catalog import Catalog, SearchHit  # noqa: F401


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value
