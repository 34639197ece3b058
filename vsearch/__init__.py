"""vsearch: embedding-based visual search and verification."""
from vsearch.api import Collection, QueryTerm, default_db_dir, open  # noqa: A004
from vsearch.catalog import Catalog, SearchHit
from vsearch.errors import VSearchError

__version__ = "0.1.0"
__all__ = ["Catalog", "Collection", "QueryTerm", "SearchHit", "VSearchError", "default_db_dir", "open"]
