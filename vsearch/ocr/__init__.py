"""Text in photos: read offline (:mod:`vsearch.ocr.engine`), stored line by line with its box and
confidence beside a folded copy under a full-text index (:mod:`vsearch.ocr.schema`,
:mod:`vsearch.ocr.store`), read for a whole catalog as a resumable pass after indexing
(:mod:`vsearch.ocr.reading`), and searched by its words (:mod:`vsearch.ocr.search`).

Importing this package loads no model: the engine is built on first use.
"""

# set in the catalog's meta once it holds read text: a plain text search checks it through the
# read-only view and opens the full catalog for the words only then
HAS_TEXT_KEY = "ocr:has_text"
