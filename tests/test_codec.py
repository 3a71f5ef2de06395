"""A stored record is read as orjson reads it, whichever parser reads it.

:func:`maestro.codec.loads` lets the standard library's json read what it
reads to the same value and leaves the rest to orjson; these tests hold it
to orjson on the cases where the two differ and on generated documents.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maestro import SessionStatus
from maestro.codec import decode_record, dumps, expect_many, loads, loads_for
from maestro.errors import CorruptSessionError


def _orjson(data: bytes) -> tuple[str, object]:
    try:
        return "value", orjson.loads(data)
    except orjson.JSONDecodeError as error:
        return "error", (error.msg, error.lineno, error.colno)


def _as_if_not_loaded(call: Callable[[], object]) -> object:
    """``call()`` as a process that has not loaded orjson makes it (the codec then
    uses the standard library where it can); orjson is put back after."""
    saved = sys.modules.pop("orjson")
    try:
        return call()
    finally:
        sys.modules["orjson"] = saved


def _ours(data: bytes) -> tuple[str, object]:
    try:
        return "value", _as_if_not_loaded(lambda: loads(data))
    except json.JSONDecodeError as error:
        return "error", (error.msg, error.lineno, error.colno)


def _typed(value: object) -> list[object]:
    """``value`` flattened with the type of every part: ``==`` alone takes 1 for 1.0
    and True, and -0.0 for 0.0."""
    out: list[object] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            out.append(("list", len(item)))
            stack.extend(item)
        elif isinstance(item, dict):
            out.append(("dict", list(item)))
            stack.extend(item.values())
        elif isinstance(item, float):
            out.append(("float", item.hex()))
        else:
            out.append((type(item).__name__, item))
    return out


def _same(data: bytes) -> None:
    kind, theirs = _orjson(data)
    mine_kind, mine = _ours(data)
    assert mine_kind == kind, data
    if kind == "value":
        assert _typed(mine) == _typed(theirs), data
    else:
        assert mine == theirs, data


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1}',
        b"18446744073709551615",  # the largest integer orjson keeps
        b"18446744073709551616",  # orjson reads it as a float, json as an int
        b"-9223372036854775808",
        b"-9223372036854775809",
        b"1e400",  # refused by orjson, infinity for json
        b"-1e400",
        b"1e-400",
        b"NaN",
        b"[Infinity]",
        b'{"x": -Infinity}',
        b'"\\ud800"',  # a lone surrogate: json takes it, orjson refuses it
        b'"\\ud83d\\ude00"',
        b'"\\u00e9"',
        b'"\xed\xa0\x80"',  # a surrogate encoded in UTF-8
        b'"\xff"',
        b"\xef\xbb\xbf{}",
        b'{"a": 1, "a": 2}',
        b"[" * 2000 + b"]" * 2000,
        b"[" * 900 + b"]" * 900,
        b'{"a": 1,}',
        b"",
        b" \t\r\n{} \n",
        b'"tab\there"',
        b"0.1",
        b"-0",
        b"-0.0",
        b"1.7976931348623157e308",
        b"4.9e-324",
        b"123456789012345678901234567890.5",
        b'{"text": "\x7f \xc2\x85 \xe2\x80\xae"}',
        b"01",
        b"[1, 2",
    ],
)
def test_read_as_orjson_reads_it(data: bytes) -> None:
    _same(data)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(JSON_VALUES, st.booleans())
def test_generated_documents_read_as_orjson_reads_them(value: object, ascii_only: bool) -> None:
    # The standard library writes what orjson would not (big integers) and,
    # with ensure_ascii, \u escapes: both paths are exercised.
    _same(json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_any_bytes_read_as_orjson_reads_them(data: bytes) -> None:
    _same(data)


def test_a_broken_record_names_orjsons_error() -> None:
    with pytest.raises(CorruptSessionError) as caught:
        decode_record("3f01b541-5cc9-47a7-9f8b-d884159c705f", b'{"session_id": NaN}')
    assert "invalid JSON" in str(caught.value)
    assert (caught.value.lineno, caught.value.colno) == (1, 16)  # where orjson says


def _dumped(write: Callable[[object], bytes], value: object) -> tuple[str, object]:
    try:
        return "bytes", _as_if_not_loaded(lambda: write(value))
    except TypeError as error:  # orjson.JSONEncodeError is a TypeError
        return "error", str(error)


ENCODABLE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**66), max_value=2**66)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([SessionStatus.PLANNING, "\ud800", "a\udfffb"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400)
@given(ENCODABLE)
def test_written_as_orjson_writes_it(value: object) -> None:
    """Floats, enums and lone surrogates go to orjson; the rest must be its bytes."""
    assert _dumped(dumps, value) == _dumped(orjson.dumps, value)


def test_a_page_cursor_is_written_with_orjsons_bytes() -> None:
    shape = [["failed", "paused"], None, "feature/x\u202e", None, "2026-01-07T00:00:00.000000Z"]
    for value in (shape, {"v": 1, "t": 2**63 - 1, "i": "x", "q": "AbC"}, [2**64], {1: 2}):
        assert _dumped(dumps, value) == _dumped(orjson.dumps, value)


def test_few_records_are_read_without_loading_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "orjson")  # as in a command that has not loaded it
    assert loads_for(30) is loads
    assert loads(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    assert dumps({"a": [1, 2.5, "x"]}) == b'{"a":[1,2.5,"x"]}'
    assert "orjson" not in sys.modules
    assert loads_for(None) is sys.modules["orjson"].loads  # many records: orjson is faster
    assert loads_for(30) is sys.modules["orjson"].loads  # and once loaded, for a few too


def test_many_records_are_read_and_written_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    """After expect_many (a fill, a refresh of many files, a scan) orjson does the work."""
    monkeypatch.delitem(sys.modules, "orjson")
    expect_many()
    loaded = sys.modules["orjson"]
    calls: list[str] = []
    monkeypatch.setattr(loaded, "loads", lambda data: calls.append("loads") or {})
    monkeypatch.setattr(loaded, "dumps", lambda value: calls.append("dumps") or b"{}")
    assert loads(b"{}") == {} and dumps({}) == b"{}"
    assert calls == ["loads", "dumps"]
