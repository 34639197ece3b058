"""One rule that makes read text and searched words comparable: :func:`fold`.

OCR drops spaces ("BAKERYLUMIERE") and people type without accents or capitals, so both sides
are reduced to the same compact form: compatibility-decomposed (NFKD), accents (combining marks)
removed, case-folded, and everything that is not a letter or a digit removed. A word is then
found inside run-together text (``croissants`` in ``2croissants``, ``sunflower`` in
``password:sunflower42``) and a phrase matches with or without its spaces (``bakery lumiere``
in ``BAKERY LUMIÈRE`` and in ``BAKERYLUMIERE``). Chinese characters are letters and are kept.
"""
from __future__ import annotations

import re
import unicodedata


def fold(text: str) -> str:
    """``text`` as it is stored and searched: no accents, case-folded, letters and digits only."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return "".join(c for c in plain if c.isalnum())


def query_words(text: str) -> list[str]:
    """The folded words of a free-text query, in order, without repeats (``"Wi-Fi password"`` ->
    ``["wi", "fi", "password"]``)."""
    words = [fold(w) for w in re.split(r"[^\w]+", text)]
    return list(dict.fromkeys(w for w in words if w))


__all__ = ["fold", "query_words"]
