"""A store that keeps sessions in the memory of one process.

Meant for tests, of maestro and of the programs that use it: it implements
the whole contract of :mod:`maestro.stores.base` (revisions, compare-and-swap,
every query, create keys, the change feed) and nothing survives the process.
Records go through the same codec as the file store's, so a record the file
store would refuse is refused here too, and every read builds a fresh
:class:`Session`: a caller changing what it got back never changes the store.

Concurrency: safe between the threads of one process.  A global lock guards
the tables for a moment at a time; each session has its own lock, held for
the whole read-modify-write of ``modify`` and ``delete`` and taken with the
store's ``lock_timeout``, so a slow transform on one session never holds up
another.  Nothing is shared between processes (no ``MULTI_PROCESS``).

Searches match exactly as the file store's scan does (:mod:`maestro.search`);
there is no search rank, so ``order_by="rank"`` orders by creation, as a
scan does.

The change feed keeps the newest ``retention`` events (100,000 by default).
Cursors are the event's number in this store, rendered as an opaque string
that also names the store, so a cursor of another store (or of an earlier
process) is recognised as unknown and answered with a ``RESET``.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime

import orjson

from maestro.codec import encode_record
from maestro.errors import (
    ConflictError,
    LockTimeoutError,
    SessionExistsError,
    SessionNotFoundError,
    SessionValidationError,
)
from maestro.ids import check_session_id
from maestro.models import SCHEMA_VERSION, Session, session_from_trusted_record, utcnow
from maestro.records import replace
from maestro.stores.base import (
    Capability,
    ChangeEvent,
    ChangeKind,
    ScanEntry,
    SessionQuery,
    Transform,
    apply_change,
    check_request_id_type,
    reported_kind,
)

__all__ = ["DEFAULT_RETENTION", "MemoryStore"]

#: How many change events a memory store keeps by default.
DEFAULT_RETENTION = 100_000


class MemoryStore:
    """Sessions in a dictionary (see the module docstring).

    ``lock_timeout`` bounds the wait for a session another thread is
    writing (``LockTimeoutError``); ``retention`` is how many change events
    are kept.
    """

    display_name = "memory store"
    capabilities: frozenset[Capability] = frozenset({Capability.PREFIX_LOOKUP, Capability.CHANGES})

    def __init__(self, *, lock_timeout: float = 10.0, retention: int = DEFAULT_RETENTION) -> None:
        if isinstance(retention, bool) or not isinstance(retention, int) or retention < 1:
            raise SessionValidationError("retention must be a positive integer")
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float):
            raise SessionValidationError("lock_timeout must be a number of seconds")
        self.lock_timeout = float(lock_timeout)
        self.retention = retention
        # Guards every table below; held only for short, non-blocking steps.
        self._changed = threading.Condition(threading.Lock())
        self._records: dict[str, bytes] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._created_by: dict[str, str] = {}  # create key -> session id
        self._events: deque[tuple[int, ChangeEvent]] = deque(maxlen=retention)
        self._last = 0  # number of the newest event; the first is 1
        # Names this store in its cursors: another store's cursor is unknown here.
        self._epoch = secrets.token_hex(4)

    def __repr__(self) -> str:
        return f"MemoryStore(sessions={len(self._records)})"

    # ------------------------------------------------------------ records

    @staticmethod
    def _decode(raw: bytes) -> Session:
        # Every stored record was encoded (and schema-validated) by this store.
        return session_from_trusted_record(orjson.loads(raw))

    def _raw(self, session_id: str) -> bytes:
        with self._changed:
            raw = self._records.get(session_id)
        if raw is None:
            raise SessionNotFoundError(session_id)
        return raw

    def load(self, session_id: str) -> Session:
        return self._decode(self._raw(check_session_id(session_id)))

    def create(self, session: Session, *, request_id: str | None = None) -> Session:
        session_id = check_session_id(session.session_id)
        check_request_id_type(request_id)
        stored = replace(session, revision=1, schema_version=SCHEMA_VERSION)
        raw = encode_record(stored)  # refuses an invalid record before anything is kept
        with self._changed:
            if request_id is not None and request_id in self._created_by:
                return self._decode(self._records[self._created_by[request_id]])
            if session_id in self._records:
                raise SessionExistsError(session_id)
            self._records[session_id] = raw
            self._locks[session_id] = threading.Lock()
            if request_id is not None:
                self._created_by[request_id] = session_id
            self._record_event(
                ChangeKind.CREATED,
                stored,
                None,
                stored.status.value,
                stored.updated_at or stored.created_at,
                request_id,
            )
        return self._decode(raw)

    def _lock(self, session_id: str) -> threading.Lock:
        """Take the session's lock; the lock, known to still be the session's."""
        deadline = time.monotonic() + self.lock_timeout
        while True:
            with self._changed:
                lock = self._locks.get(session_id)
            if lock is None:
                raise SessionNotFoundError(session_id)
            if not lock.acquire(timeout=max(deadline - time.monotonic(), 0)):
                raise LockTimeoutError(session_id, self.lock_timeout)
            with self._changed:
                if self._locks.get(session_id) is lock:
                    return lock
            # Deleted (and perhaps created again) while this writer waited.
            lock.release()

    def modify(
        self,
        session_id: str,
        change: Transform,
        *,
        expected_revision: int | None = None,
        kind: ChangeKind = ChangeKind.UPDATED,
        request_id: str | None = None,
    ) -> Session:
        check_session_id(session_id)
        check_request_id_type(request_id)
        lock = self._lock(session_id)
        try:
            current = self._decode(self._raw(session_id))
            before = current.status.value
            updated = apply_change(session_id, current, change, expected_revision)
            if updated is None:
                return self.load(session_id)
            raw = encode_record(updated)
            with self._changed:
                self._records[session_id] = raw
                self._record_event(
                    reported_kind(kind, before, updated.status.value),
                    updated,
                    before,
                    updated.status.value,
                    updated.updated_at or updated.created_at,
                    request_id,
                )
            return self._decode(raw)
        finally:
            lock.release()

    def delete(
        self,
        session_id: str,
        *,
        expected_revision: int | None = None,
        request_id: str | None = None,
    ) -> None:
        check_session_id(session_id)
        check_request_id_type(request_id)
        lock = self._lock(session_id)
        try:
            current = self._decode(self._raw(session_id))
            if expected_revision is not None and expected_revision != current.revision:
                raise ConflictError(session_id, expected_revision, current.revision)
            with self._changed:
                del self._records[session_id]
                del self._locks[session_id]
                # A create key lives as long as its session.
                for key in [k for k, v in self._created_by.items() if v == session_id]:
                    del self._created_by[key]
                self._record_event(
                    ChangeKind.DELETED, current, current.status.value, None, utcnow(), request_id
                )
        finally:
            lock.release()

    # ------------------------------------------------------------ reading many

    def _all(self) -> list[Session]:
        with self._changed:
            raws = list(self._records.values())
        return [self._decode(raw) for raw in raws]

    def query(self, query: SessionQuery) -> list[Session]:
        return query.apply(self._all())

    def count(self, query: SessionQuery) -> int:
        return sum(1 for session in self._all() if query.matches(session))

    def scan(self) -> Iterator[ScanEntry]:
        for session in self._all():
            yield ScanEntry(session.session_id, session, None)

    def session_ids(self, prefix: str = "") -> list[str]:
        """The ids starting with ``prefix``, sorted (``PREFIX_LOOKUP``)."""
        with self._changed:
            return sorted(sid for sid in self._records if sid.startswith(prefix))

    # ------------------------------------------------------------ the change feed

    def _cursor(self, number: int) -> str:
        return f"{self._epoch}.{number}"

    def _number(self, cursor: str) -> int | None:
        """The event number of one of this store's cursors, else ``None``."""
        if not isinstance(cursor, str):
            return None
        epoch, _, number = cursor.partition(".")
        if epoch != self._epoch or not number.isdigit():
            return None
        value = int(number)
        return value if value <= self._last else None

    def _record_event(
        self,
        kind: ChangeKind,
        session: Session,
        from_status: str | None,
        to_status: str | None,
        at: datetime | None,
        request_id: str | None,
    ) -> None:
        """Append an event; called with ``_changed`` held, in the write's critical section."""
        self._last += 1
        event = ChangeEvent(
            cursor=self._cursor(self._last),
            kind=kind,
            session_id=session.session_id,
            revision=session.revision,
            from_status=from_status,
            to_status=to_status,
            at=at or utcnow(),
            request_id=request_id,
        )
        self._events.append((self._last, event))  # the deque drops the oldest past retention
        self._changed.notify_all()

    def changes_after(self, cursor: str | None, *, limit: int = 1000) -> list[ChangeEvent]:
        """Up to ``limit`` events after ``cursor``, oldest first (``CHANGES``)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise SessionValidationError("limit must be a positive integer")
        with self._changed:
            oldest = self._events[0][0] if self._events else self._last + 1
            start = oldest - 1
            reset: list[ChangeEvent] = []
            if cursor is not None:
                _check_cursor(cursor)
                number = self._number(cursor)
                if number is None or number < oldest - 1:
                    # Unknown, or the events after it were dropped: say so, and
                    # go on from just before the oldest event kept.
                    reset = [ChangeEvent.reset(self._cursor(oldest - 1))]
                else:
                    start = number
            wanted = limit - len(reset)
            skip = start - (oldest - 1)
            kept = [event for _, event in itertools.islice(self._events, skip, skip + wanted)]
        return reset + kept

    def feed_end(self) -> str:
        """The cursor of the newest event."""
        with self._changed:
            return self._cursor(self._last)

    def wait_for_change(self, cursor: str, timeout: float) -> bool:
        """Block until an event after ``cursor`` exists, or ``timeout`` seconds pass."""
        _check_cursor(cursor)
        with self._changed:
            number = self._number(cursor)
            if number is None:
                return True  # the next read answers with a reset
            return self._changed.wait_for(lambda: self._last > number, timeout=max(timeout, 0))


_CURSOR = re.compile(r"[0-9a-f]+\.[0-9]+")


def _check_cursor(cursor: object) -> None:
    """A cursor that no memory store could have made is a caller's mistake, not a reset."""
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor):
        raise SessionValidationError("invalid change feed cursor; pass one this store returned")
