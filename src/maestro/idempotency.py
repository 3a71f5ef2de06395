"""Idempotent requests: a write retried with the same ``request_id`` happens once.

A caller that cannot tell whether a write went through (a timeout, a crash,
a lost answer) retries it with the same request id.  The session record
itself remembers the ids it was written under, so the answer holds across
processes, restarts and rebuilt indexes, and also when other writes came in
between (a check of the preceding state alone would miss those):

* the id of the request that created the session, for the life of the
  session;
* the ids of the :data:`REQUESTS_KEPT` most recent other writes.

Each entry keeps a fingerprint of the operation and its arguments: the same
id with the same arguments is a retry (nothing is written, the session is
returned as stored now), the same id with other arguments is a mistake
(:class:`~maestro.errors.ConflictError` with ``request_id`` set).

The check runs inside the store's read-modify-write, on the record read
under the session's lock, so two retries racing each other still write once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any

import orjson

from maestro.errors import ConflictError, SessionValidationError
from maestro.models import RequestRecord, Session, format_timestamp
from maestro.records import replace
from maestro.stores.base import NoChange, Transform

__all__ = [
    "MAX_REQUEST_ID",
    "REQUESTS_KEPT",
    "check_request_id",
    "fingerprint",
    "guarded",
    "recorded",
]

#: How many requests other than the create a session remembers.
REQUESTS_KEPT = 32
#: The longest request id accepted, in characters.
MAX_REQUEST_ID = 200


def check_request_id(value: object) -> str:
    """``value`` if it is a usable request id, else ``SessionValidationError``.

    Any printable text of 1 to 200 characters with no surrounding
    whitespace: a UUID, ``worker-3/task-17``, a hash of the caller's intent.
    """
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_REQUEST_ID
        or not value.isprintable()
        or value != value.strip()
    ):
        raise SessionValidationError(
            f"request_id must be printable text of 1 to {MAX_REQUEST_ID} characters "
            "without surrounding whitespace"
        )
    return value


def _plain(value: object) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return format_timestamp(value)
    to_dict = getattr(value, "to_dict", None)
    if dataclasses.is_dataclass(value) and callable(to_dict):
        return to_dict()
    raise TypeError


def fingerprint(operation: str, arguments: Mapping[str, object]) -> str:
    """A stable hash of an operation and its arguments (32 hex digits).

    Equal arguments give equal fingerprints in any process: keys are sorted,
    enums count as their values, objects as their ``to_dict()``.
    """
    try:
        data = orjson.dumps(
            [operation, arguments],
            default=_plain,
            option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
        )
    except TypeError:
        raise SessionValidationError(
            f"the arguments of this {operation} are not plain data; "
            "a request id needs arguments that can be compared"
        ) from None
    import hashlib  # only for a request id

    return hashlib.sha256(data).hexdigest()[:32]


def recorded(session: Session, request_id: str) -> RequestRecord | None:
    """The entry ``session`` keeps for ``request_id``, if any."""
    for entry in session.requests:
        if entry.request_id == request_id:
            return entry
    return None


def _remember(kept: list[RequestRecord], entry: RequestRecord) -> list[RequestRecord]:
    """``kept`` plus ``entry``: the create entry stays, other entries up to the window."""
    creates = [e for e in kept if e.operation == "create"]
    others = [e for e in kept if e.operation != "create"]
    if entry.operation == "create":
        creates.append(entry)
    else:
        others.append(entry)
    return creates + others[-REQUESTS_KEPT:]


def with_create_key(session: Session, request_id: str, digest: str) -> Session:
    """``session`` (about to be created, revision 1) remembering its create key."""
    entry = RequestRecord(request_id, "create", digest, 1)
    return replace(session, requests=_remember(session.requests, entry))


def check_created(session: Session, request_id: str, digest: str) -> Session:
    """A session the store returned for a create key: the retry's answer, or a conflict."""
    entry = recorded(session, request_id)
    if entry is None or entry.operation != "create" or entry.fingerprint != digest:
        raise ConflictError(session.session_id, request_id=request_id)
    return session


def guarded(
    change: Transform,
    *,
    request_id: str,
    operation: str,
    digest: str,
    expected_revision: int | None,
) -> Transform:
    """``change`` made idempotent under ``request_id``.

    On the record read under the lock: a known id with the same fingerprint
    writes nothing (:class:`NoChange`), with another one raises
    ``ConflictError``.  ``expected_revision`` is checked here, after that,
    instead of by the store: a retry of a compare-and-swap that went through
    must find its own write, not a revision conflict with it.
    """

    def apply(session: Session) -> Session:
        entry = recorded(session, request_id)
        if entry is not None:
            if entry.operation != operation or entry.fingerprint != digest:
                raise ConflictError(session.session_id, request_id=request_id)
            raise NoChange
        if expected_revision is not None and expected_revision != session.revision:
            raise ConflictError(session.session_id, expected_revision, session.revision)
        kept = session.requests  # ``change`` may return ``session`` itself, changed
        updated = change(session)
        entry = RequestRecord(request_id, operation, digest, session.revision + 1)
        updated.requests = _remember(kept, entry)
        return updated

    return apply
