"""The stored form of a session record: encode, decode, validate, migrate.

Every store keeps the same record: the JSON of :meth:`Session.to_dict`,
validated against the shipped JSON Schema before it is written
(:mod:`maestro.schema`), and migrated from older schema versions when it is
read.  This module holds that codec and nothing else: no file, lock or
database, so any store can use it.
"""

from __future__ import annotations

import json
import math
import sys

from maestro.errors import CorruptSessionError, SessionValidationError
from maestro.models import Session
from maestro.schema import migrate, validate_record

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "FEW_RECORDS",
    "decode_record",
    "dumps",
    "encode_record",
    "encode_record_and_dict",
    "expect_many",
    "loads",
    "loads_for",
]

_UTF8_BOM = b"\xef\xbb\xbf"


def encode_record(session: Session) -> bytes:
    """The stored bytes of ``session`` (``metadata.json`` in the file store), validated.

    Pretty JSON (two-space indent, UTF-8, trailing newline), the layout of the
    prototype's ``json.dump(..., indent=2)``.  orjson writes it some forty
    times faster than the standard library's pure-Python indenting encoder,
    which dominated the CPU cost of a write with a long history.
    """
    return encode_record_and_dict(session)[0]


def encode_record_and_dict(session: Session) -> tuple[bytes, dict[str, Any]]:
    """:func:`encode_record`, and the validated record it encoded (for an index row)."""
    import orjson

    record = session.to_dict()
    validate_record(record, session_id=session.session_id)
    try:
        data = orjson.dumps(record, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError as error:  # only reachable through ``extra``
        raise SessionValidationError(
            f"the record holds a value JSON cannot store ({error})", session_id=session.session_id
        ) from None
    return data, record


#: The integers orjson reads as integers; it reads larger ones as floats.
_INT_RANGE = range(-(2**63), 2**64)


class _NotTheSame(ValueError):
    """What the standard library's json would read otherwise than orjson does."""


def _int(text: str) -> int:
    number = int(text)
    if number not in _INT_RANGE:
        raise _NotTheSame(text)
    return number


def _float(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # orjson refuses a number too large for a double
        raise _NotTheSame(text)
    return number


def _constant(text: str) -> object:
    raise _NotTheSame(text)  # NaN and Infinity are no JSON: orjson refuses them


def loads(data: bytes) -> Any:
    """The value of the JSON ``data``, exactly as ``orjson.loads`` reads it, or its error.

    Reading one record, loading orjson (and the :mod:`dataclasses`,
    :mod:`uuid` and :mod:`platform` it loads) costs more than parsing it with
    the standard library's :mod:`json`, which :mod:`maestro.errors` has
    loaded anyway.  So until orjson is loaded (:func:`expect_many`), json
    reads what it reads to the same value as orjson: strict UTF-8
    without ``\\u`` escapes (which could hold a lone surrogate orjson
    refuses), integers orjson keeps as integers, finite floats, no NaN or
    Infinity, within json's nesting depth (orjson's is deeper).  Anything
    else, and anything json refuses, is read by orjson, so what is refused,
    and the error saying why (:class:`orjson.JSONDecodeError`, a
    :class:`json.JSONDecodeError`), are orjson's.
    """
    if b"\\u" not in data and "orjson" not in sys.modules:
        try:
            text = data.decode("utf-8")
            return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            pass
    import orjson

    return orjson.loads(data)


#: Up to how many records are read and written with the standard library
#: while orjson is not loaded: loading it (and the dataclasses, inspect and
#: uuid it imports) costs about as much as reading and writing a few hundred
#: records with json, and json takes over ten times longer for each.
FEW_RECORDS = 200


def expect_many() -> None:
    """Many records are to be read or written: orjson does it from now on.

    :func:`loads` and :func:`dumps` use orjson once it is loaded; the
    operations that read or write more than :data:`FEW_RECORDS` records
    (filling or refreshing the index, scans) call this first.
    """
    import orjson  # noqa: F401 - loaded for loads() and dumps() to use


def loads_for(count: int | None) -> Callable[[bytes], Any]:
    """The fastest parser of ``count`` records (``None``: as many as there are)
    that reads each exactly as ``orjson.loads``: :func:`loads` for a few,
    unless orjson is loaded already."""
    if count is not None and count <= FEW_RECORDS and "orjson" not in sys.modules:
        return loads
    import orjson

    return orjson.loads


def _plain(value: object) -> bool:
    """Whether ``value`` is made only of what the standard library's json writes as
    orjson does: text, integers orjson takes, floats written without an
    exponent, booleans, null, arrays, objects."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return value in _INT_RANGE
    if kind is float:
        # Both write the shortest text that reads back the same float; they
        # differ only in the form of an exponent (1e+16 against 1e16), and
        # orjson refuses NaN and the infinities.
        return "e" not in (text := repr(value)) and "n" not in text
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)  # type: ignore[attr-defined]
    if kind is dict:
        return all(
            type(key) is str and _plain(item)
            for key, item in value.items()  # type: ignore[attr-defined]
        )
    return False


def dumps(value: object) -> bytes:
    """``orjson.dumps(value)`` (compact, no options), byte for byte, or its error.

    Until orjson is loaded (:func:`expect_many`), the standard library's json
    writes it where it writes the same bytes (see :func:`_plain`; text
    holding a lone surrogate, which orjson refuses, is left to orjson too),
    so a page's cursor, or the index's row of a session changed meanwhile,
    loads no orjson.
    """
    if "orjson" not in sys.modules and _plain(value):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            pass
    import orjson

    return orjson.dumps(value)


def decode_record(session_id: str, raw: bytes, *, where: str = "the stored record") -> Session:
    """Parse and check stored bytes; any problem is a ``CorruptSessionError``.

    ``where`` names the place the record was read from in error messages.
    """
    try:
        # Strictly UTF-8 (no guessing of UTF-16/32 from the first bytes); a
        # UTF-8 byte order mark, which some editors add, is tolerated.
        record = loads(raw[3:] if raw.startswith(_UTF8_BOM) else raw)
    except json.JSONDecodeError as error:  # orjson's, a subclass
        raise CorruptSessionError(
            session_id,
            where=where,
            detail=f"invalid JSON ({error.msg} at line {error.lineno}, column {error.colno})",
            lineno=error.lineno,
            colno=error.colno,
        ) from None
    if not isinstance(record, dict):
        raise CorruptSessionError(
            session_id, where=where, detail="the top level is not a JSON object"
        )
    # The models check every field as strictly as the schema does (types,
    # ranges, enum values, unknown nested keys), and anything they accept
    # serialises to a schema-valid record, so reads skip the schema pass; the
    # writer validates against it before every write.
    try:
        session = Session.from_dict(migrate(record, session_id=session_id))
    except SessionValidationError as error:
        detail = str(error).removeprefix(f"session {session_id}: ")
        raise CorruptSessionError(session_id, where=where, detail=detail) from None
    if session.session_id != session_id:
        raise CorruptSessionError(
            session_id, where=where, detail="the record names a different session id"
        )
    return session
