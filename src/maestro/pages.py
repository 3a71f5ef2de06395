"""Keyset pages: a page of sessions and the opaque cursor of the next one.

A cursor holds the sort key of the last session of its page (its time in
microseconds and its id), the order it was taken in, and a fingerprint of
the query's filters, all under a checksum.  The next page asks the store for
the sessions strictly beyond that key (``SessionQuery.after``), so sessions
created meanwhile never shift a page: nothing repeats, nothing older is
skipped.  A cursor that does not decode, whose checksum fails, or that was
taken with other filters or another order is a ``SessionValidationError``.

Cursors carry no secret and grant nothing: a forged one only starts a page
elsewhere in results its holder may read anyway.  The checksum is there to
catch damage and mix-ups, not attackers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from maestro.codec import dumps, loads
from maestro.errors import SessionValidationError
from maestro.ids import is_session_id
from maestro.models import Session, format_timestamp
from maestro.records import field, record

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from maestro.stores.base import SessionQuery

__all__ = ["SessionPage", "decode_cursor", "encode_cursor"]

_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_CHECK_BYTES = 8


@record(frozen=True)
class SessionPage:
    """One page of a query: its sessions, and the cursor of the next page.

    ``next_cursor`` is ``None`` on the last page.  ``total`` is how many
    sessions match the filters in all, when it was asked for.  ``stamp`` is
    the store's proof of what the page was made from, when it keeps one
    (see :meth:`SessionManager.page_is_current`).
    """

    sessions: list[Session]
    next_cursor: str | None
    total: int | None = None
    stamp: object | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "sessions": [s.to_dict() for s in self.sessions],
            "next_cursor": self.next_cursor,
        }
        if self.total is not None:
            found["total"] = self.total
        return found


def _fingerprint(query: SessionQuery) -> str:
    """The filters and order of ``query`` (not its window), stable across processes."""

    def moment(value: datetime | None) -> str | None:
        return None if value is None else format_timestamp(value)

    shape = [
        sorted(query.statuses) if query.statuses is not None else None,
        sorted(query.phases) if query.phases is not None else None,
        query.branch,
        query.worktree,
        moment(query.created_after),
        moment(query.created_before),
        moment(query.updated_after),
        moment(query.updated_before),
        moment(query.active_before),
        None if query.text is None else [list(term) for term in query.text.terms],
        query.order_by,
        query.descending,
    ]
    import base64
    import hashlib  # OpenSSL's loader only when a page is asked for

    digest = hashlib.blake2b(dumps(shape), digest_size=_CHECK_BYTES).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _check(payload: bytes) -> bytes:
    import hashlib

    return hashlib.blake2b(payload, digest_size=_CHECK_BYTES, person=b"maestro-page").digest()


def encode_cursor(query: SessionQuery, last: Session) -> str:
    """The cursor of the page after the one ``last`` ended, for ``query``."""
    moment, session_id = query.sort_key(last)
    payload = dumps(
        {
            "v": _VERSION,
            "t": (moment - _EPOCH) // _MICRO,
            "i": session_id,
            "q": _fingerprint(query),
        }
    )
    import base64  # only when a page has a next one

    return base64.urlsafe_b64encode(payload + _check(payload)).decode("ascii").rstrip("=")


def _refuse(why: str) -> SessionValidationError:
    return SessionValidationError(f"invalid page cursor: {why}")


def decode_cursor(cursor: object, query: SessionQuery) -> tuple[datetime, str]:
    """The keyset bound a cursor of ``query`` holds; ``SessionValidationError`` if not one."""
    if not isinstance(cursor, str) or not cursor or len(cursor) > 512:
        raise _refuse("not a cursor string")
    import base64
    import binascii

    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise _refuse("not a cursor string") from None
    payload, check = raw[:-_CHECK_BYTES], raw[-_CHECK_BYTES:]
    if len(raw) <= _CHECK_BYTES or _check(payload) != check:
        raise _refuse("damaged or altered")
    try:
        data = loads(payload)
    except json.JSONDecodeError:  # orjson's, a subclass
        raise _refuse("damaged or altered") from None
    if not isinstance(data, dict) or data.get("v") != _VERSION:
        raise _refuse("made by another version")
    micros, session_id = data.get("t"), data.get("i")
    if isinstance(micros, bool) or not isinstance(micros, int) or not is_session_id(session_id):
        raise _refuse("damaged or altered")
    if data.get("q") != _fingerprint(query):
        raise _refuse("it belongs to a query with other filters or another order")
    try:
        moment = _EPOCH + micros * _MICRO
    except OverflowError:
        raise _refuse("damaged or altered") from None
    return (moment, str(session_id))
