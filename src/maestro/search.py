"""Full-text search terms, shared by the SQLite index (FTS5) and the file scan.

A search is a list of words, all of which must occur in the feature request
(``oauth login`` finds "Add OAuth to the login page"); a word ending in ``*``
matches as a prefix (``auth*`` finds "authentication").  Matching ignores case
and diacritics.  Words are runs of letters and digits, the way FTS5's
``unicode61`` tokenizer cuts them, so the scan answers as the index does; any
other character of the search, FTS5 operators included, only separates words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from maestro.errors import SessionValidationError

__all__ = ["SearchTerms", "fold", "parse_search", "words"]

_WORD = re.compile(r"[^\W_]+(\*)?")
_PLAIN_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower case without diacritics: what FTS5's unicode61 compares."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def words(text: str) -> list[str]:
    """The folded words of ``text``."""
    return _PLAIN_WORD.findall(fold(text))


@dataclass(frozen=True)
class SearchTerms:
    """Parsed search: (word, is_prefix) pairs, all required."""

    terms: tuple[tuple[str, bool], ...]

    def fts_query(self) -> str:
        """The FTS5 MATCH expression: every word quoted, joined by AND."""
        return " AND ".join(f'"{word}"' + ("*" if prefix else "") for word, prefix in self.terms)

    def matches(self, document: str) -> bool:
        """Whether every term occurs in ``document`` (the scan's answer)."""
        present = set(words(document))
        for word, prefix in self.terms:
            if prefix:
                if not any(candidate.startswith(word) for candidate in present):
                    return False
            elif word not in present:
                return False
        return True


def parse_search(text: object) -> SearchTerms:
    """Read a user's search; ``SessionValidationError`` when it holds no word."""
    if not isinstance(text, str):
        raise SessionValidationError("text must be a string")
    terms: list[tuple[str, bool]] = []
    for match in _WORD.finditer(fold(text)):
        word = match.group(0).rstrip("*")
        terms.append((word, match.group(1) is not None))
    if not terms:
        raise SessionValidationError("text must contain at least one word to search for")
    return SearchTerms(tuple(dict.fromkeys(terms)))
