"""Text in photos: read offline (:mod:`vsearch.ocr.engine`), stored line by line with its box and
confidence beside a folded copy under a full-text index (:mod:`vsearch.ocr.schema`,
:mod:`vsearch.ocr.store`), read for a whole catalog as a resumable pass after indexing
(:mod:`vsearch.ocr.reading`), and searched by its words (:mod:`vsearch.ocr.search`).

Importing this package loads no model: the engine is built on first use.
"""
