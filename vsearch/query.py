"""The query language of a search box: free text plus ``key:value`` filters.

``beach person:anna -person:bob year:2023 place:"new york" text:"open daily"`` is the free text
``beach`` and five terms. The rules:

* A word is a term when it is ``KEY:VALUE`` (or ``-KEY:VALUE``, which means NOT) and ``KEY`` is
  made of letters only and ``VALUE`` does not begin with ``//``; keys are case-insensitive. Any
  other word holding a colon (``12:30``, ``http://x``, ``a1:b``, ``:x``) is free text.
* A term whose key is not one of :data:`KEYS` is an error naming it and listing the keys.
* Double quotes hold spaces: ``place:"new york"``, ``text:"open daily"`` (apostrophes are text). A term with no value (``year:``)
  is an error.
* Values are checked here: ``year:2019``, ``month:2019-07``, ``date``/``after``/``before`` take
  ``2019-07-14`` (``after`` and ``before`` are inclusive), ``near:LAT,LON[,KM]``, ``type:`` one
  of :data:`TYPE_FAMILIES`.

:func:`parse_query` is pure (no catalog, no I/O); what a term selects is decided by the search.
"""
from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass

from vsearch.errors import QueryError

KEYS = ("person", "year", "month", "date", "after", "before", "place", "near", "camera", "lens", "tag",
        "folder", "type", "text")

# type:NAME -> the file extensions it stands for (lower case, with the dot)
TYPE_FAMILIES: dict[str, tuple[str, ...]] = {
    "jpeg": (".jpg", ".jpeg", ".jpe"),
    "png": (".png",),
    "heic": (".heic", ".heif", ".hif"),
    "raw": (".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf", ".pef",
            ".srw", ".raw", ".rwl", ".3fr", ".erf", ".kdc", ".mrw", ".x3f"),
    "webp": (".webp",),
    "tiff": (".tif", ".tiff"),
    "gif": (".gif",),
    "bmp": (".bmp",),
}
TYPE_ALIASES = {"jpg": "jpeg", "heif": "heic", "tif": "tiff"}

_WORD = re.compile(r'(?:[^\s"]+|"[^"]*")+')  # a word; double quotes hold spaces (single quotes are text)
_TERM = re.compile(r"^(-?)([A-Za-z]+):(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Term:
    """One ``key:value`` filter; ``negated`` for ``-key:value``. ``value`` is as typed (unquoted),
    except ``type:``, which is the family name (``jpg`` -> ``jpeg``)."""

    key: str
    value: str
    negated: bool = False

    def __str__(self) -> str:
        value = f'"{self.value}"' if any(c.isspace() for c in self.value) else self.value
        return f"{'-' if self.negated else ''}{self.key}:{value}"

    def day_range(self) -> tuple[_dt.date, _dt.date]:
        """The first and last day (inclusive) a date term covers; ``after``/``before`` are open-ended."""
        if self.key == "year":
            return _dt.date(int(self.value), 1, 1), _dt.date(int(self.value), 12, 31)
        if self.key == "month":
            first = _month(self.value)
            if first.month == 12:
                return first, _dt.date(first.year, 12, 31)
            return first, _dt.date(first.year, first.month + 1, 1) - _dt.timedelta(days=1)
        if self.key == "date":
            day = _dt.date.fromisoformat(self.value)
            return day, day
        if self.key == "after":
            return _dt.date.fromisoformat(self.value), _dt.date.max
        if self.key == "before":
            return _dt.date.min, _dt.date.fromisoformat(self.value)
        raise ValueError(f"{self.key}: is not a date term")

    def near(self) -> tuple[float, float, float]:
        """(latitude, longitude, radius in km) of a ``near:`` term."""
        parts = [float(p) for p in self.value.split(",")]
        return parts[0], parts[1], parts[2] if len(parts) == 3 else NEAR_DEFAULT_KM


NEAR_DEFAULT_KM = 5.0
DATE_KEYS = ("year", "month", "date", "after", "before")


@dataclass(frozen=True)
class ParsedQuery:
    """The free text (words joined by one space, "" when none) and the terms, in the order typed."""

    text: str
    terms: tuple[Term, ...] = ()

    def of(self, key: str, negated: bool | None = None) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.key == key and (negated is None or t.negated == negated))

    @property
    def only_filters(self) -> bool:
        return not self.text and bool(self.terms)


def parse_query(text: str) -> ParsedQuery:
    """Split a query into free text and terms (see the module's rules); a :class:`QueryError` for
    an unknown key, an empty or malformed value, or an unbalanced quote."""
    if text.count('"') % 2:
        raise QueryError(f"{text!r}: a double quote is not closed")
    words = [w.replace('"', "") for w in _WORD.findall(text)]
    free: list[str] = []
    terms: list[Term] = []
    for word in words:
        m = _TERM.match(word)
        if m is None or m.group(3).startswith("//"):
            free.append(word)
            continue
        negated, key, value = m.group(1) == "-", m.group(2).lower(), m.group(3)
        if key not in KEYS:
            raise QueryError(f"unknown search key {m.group(2)!r} in {word!r}; the keys are: "
                             + ", ".join(f"{k}:" for k in KEYS))
        terms.append(Term(key, _checked(key, value.strip(), word), negated))
    return ParsedQuery(" ".join(free), tuple(terms))


def _checked(key: str, value: str, word: str) -> str:
    if not value:
        raise QueryError(f"{word!r}: {key}: needs a value")
    try:
        if key == "year":
            if not re.fullmatch(r"\d{4}", value) or int(value) < 1:
                raise ValueError("a year such as 2019")
        elif key == "month":
            _month(value)
        elif key in ("date", "after", "before"):
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                raise ValueError("a day such as 2019-07-14")
            _dt.date.fromisoformat(value)
        elif key == "near":
            _near(value)
        elif key == "type":
            family = TYPE_ALIASES.get(value.lower(), value.lower())
            if family not in TYPE_FAMILIES:
                raise ValueError("one of " + ", ".join(sorted(TYPE_FAMILIES)))
            return family
    except ValueError as exc:
        hint = str(exc) if str(exc).startswith(("a ", "one of")) else _HINTS[key]
        raise QueryError(f"{word!r}: {key}: takes {hint}") from None
    return value


_HINTS = {"month": "a month such as 2019-07", "date": "a day such as 2019-07-14", "after": "a day such as 2019-07-14",
          "before": "a day such as 2019-07-14", "near": "LAT,LON or LAT,LON,KM such as 38.72,-9.14,5"}


def _month(value: str) -> _dt.date:
    if not re.fullmatch(r"\d{4}-\d{2}", value):
        raise ValueError("a month such as 2019-07")
    year, month = int(value[:4]), int(value[5:])
    if year < 1 or not 1 <= month <= 12:
        raise ValueError("a month such as 2019-07")
    return _dt.date(year, month, 1)


def _near(value: str) -> None:
    parts = value.split(",")
    if len(parts) not in (2, 3):
        raise ValueError
    nums = [float(p) for p in parts]
    if any(n != n or n in (float("inf"), float("-inf")) for n in nums):
        raise ValueError
    if not (-90 <= nums[0] <= 90 and -180 <= nums[1] <= 180) or (len(nums) == 3 and nums[2] <= 0):
        raise ValueError


__all__ = ["KEYS", "TYPE_FAMILIES", "DATE_KEYS", "Term", "ParsedQuery", "parse_query"]
