"""Full-text search terms, shared by the SQLite index (FTS5) and the file scan.

A search is a list of words, all of which must occur in the feature request
(``oauth login`` finds "Add OAuth to the login page"); a word ending in ``*``
matches as a prefix (``auth*`` finds "authentication").  Matching ignores case
and diacritics the way FTS5's ``unicode61 remove_diacritics 2`` tokenizer
does; any other character of the search, FTS5 operators included, only
separates words.

The scan must cut and fold text exactly as the index does, in every script
(FTS5 keeps Greek tonos, kana with dakuten and Hangul syllables whole, where
Unicode decomposition would split them), so the folding is not reimplemented:
each character is looked up once, by asking SQLite's own tokenizer in a
private in-memory database, and remembered.  Only when SQLite has no FTS5 (and
then there is no index to agree with) is a Unicode approximation used.
"""

from __future__ import annotations

import _thread
import re
from collections.abc import Iterable

from maestro.errors import SessionValidationError
from maestro.records import record

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3

__all__ = ["TOKENIZER", "SearchTerms", "fold", "parse_search", "words"]

#: The tokenizer of the index's FTS5 table; the scan folds text as it does.
TOKENIZER = "unicode61 remove_diacritics 2"

#: What a character that separates words becomes in the folded text.
_SEPARATOR = " "
_TERM = re.compile(r"([^ *]+)(\*)?")


class _Folding:
    """Per character: its folded form when it belongs to a word, else a space.

    Learned from FTS5 itself: each unknown character ``c`` is indexed as
    ``a{c}a``; one token means ``c`` is part of words (folded to the token
    minus its two ``a``), two tokens mean it separates them.  FTS5 folds code
    point by code point, so the answer does not depend on the neighbours.
    """

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()  # threading.Lock, without loading threading
        self._table: dict[int, str] = {}
        self._conn: sqlite3.Connection | None = None
        self._fts = True

    def table(self, text: str) -> dict[int, str]:
        """The translation table, complete for every character of ``text``."""
        table = self._table
        unknown = [c for c in set(text) if ord(c) not in table]
        if unknown:
            self._learn(unknown)
        return table

    def _learn(self, chars: Iterable[str]) -> None:
        with self._lock:
            todo = [c for c in chars if ord(c) not in self._table]
            if not todo:
                return
            if self._fts:
                import sqlite3  # only once a search is folded: a lookup never needs it

                try:
                    learned = self._ask_sqlite(todo)
                except sqlite3.Error:
                    self._fts = False  # no FTS5 in this SQLite: no index either
                else:
                    self._table.update(learned)
                    return
            self._table.update((ord(c), _approximate(c)) for c in todo)

    def _ask_sqlite(self, chars: list[str]) -> dict[int, str]:
        if self._conn is None:
            import sqlite3

            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize = '{TOKENIZER}')")
            conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
            self._conn = conn
        conn = self._conn
        learned: dict[int, str] = {}
        probes: list[tuple[int, str]] = []
        for number, char in enumerate(chars):
            try:
                char.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: no UTF-8 text holds it
                learned[ord(char)] = _SEPARATOR
                continue
            probes.append((number, f"a{char}a"))
        conn.execute("DELETE FROM t")
        conn.executemany("INSERT INTO t (rowid, x) VALUES (?, ?)", probes)
        tokens: dict[int, list[str]] = {}
        for doc, term in conn.execute("SELECT doc, term FROM v ORDER BY doc, offset"):
            tokens.setdefault(doc, []).append(term)
        conn.execute("DELETE FROM t")
        for number, _ in probes:
            found = tokens.get(number, [])
            char = chars[number]
            if len(found) == 1 and len(found[0]) >= 2:
                learned[ord(char)] = found[0][1:-1]
            else:
                learned[ord(char)] = _SEPARATOR
        return learned


def _approximate(char: str) -> str:
    """Without FTS5: letters, digits and marks form words; case and marks fold away."""
    import unicodedata  # only without FTS5, a rare SQLite

    category = unicodedata.category(char)
    if category[0] == "M":
        return ""
    if category[0] not in "LN" and category != "Co":
        return _SEPARATOR
    decomposed = unicodedata.normalize("NFD", char.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)) or _SEPARATOR


_folding = _Folding()


def fold(text: str) -> str:
    """``text`` with every word folded as FTS5 folds it; separators unchanged."""
    table = _folding.table(text)
    return "".join(ch if table[ord(ch)] == _SEPARATOR else table[ord(ch)] for ch in text)


def words(text: str) -> list[str]:
    """The folded words of ``text``, as the index's tokenizer cuts them."""
    return [word for word in text.translate(_folding.table(text)).split(_SEPARATOR) if word]


@record(frozen=True)
class SearchTerms:
    """Parsed search: (word, is_prefix) pairs, all required."""

    terms: tuple[tuple[str, bool], ...]

    def fts_query(self) -> str:
        """The FTS5 MATCH expression: every word quoted, joined by AND."""
        return " AND ".join(
            '"' + word.replace('"', '""') + '"' + ("*" if prefix else "")
            for word, prefix in self.terms
        )

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
    table = _folding.table(text)
    # Separators become spaces, except the ``*`` that marks a prefix.
    folded = "".join("*" if ch == "*" else table[ord(ch)] for ch in text)
    terms = [(m.group(1), m.group(2) is not None) for m in _TERM.finditer(folded)]
    if not terms:
        raise SessionValidationError("text must contain at least one word to search for")
    return SearchTerms(tuple(dict.fromkeys(terms)))
