"""Reading the change feed of the PostgreSQL store.

Events carry the id of the transaction that wrote them.
Readers take only the events of transactions older than the oldest maestro
writer still in flight (``_HORIZON``), in (transaction id, sequence) order:
a writer that commits later always has a higher id than everything already
read, so a cursor never passes an event that is yet to commit, and no
counter serialises the writers.  Transactions of other programs, in this
database or another one of the server, do not hold the feed back: a
long-running or idle one elsewhere would otherwise stop every reader.
``LISTEN``/``NOTIFY`` only wakes waiting readers early; without it they
would still see every event at their next poll.

:class:`FeedReader` is mixed into :class:`~maestro.stores.postgres.PostgresStore`.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import TYPE_CHECKING, Any

from maestro.errors import SessionValidationError
from maestro.stores.base import ChangeEvent, ChangeKind

if TYPE_CHECKING:
    from maestro.stores.postgres_shared import StoreParts as _Parts
else:
    _Parts = object

_MAX_SEQ = 2**63 - 1
_CURSOR = re.compile(r"pg:([0-9a-f]+):([0-9]+):([0-9]+)")


@dataclasses.dataclass(frozen=True, order=True)
class _Position:
    xid: int
    seq: int


class FeedReader(_Parts):
    """The change feed's readers (a mixin)."""

    def _cursor(self, position: _Position) -> str:
        return f"pg:{self._store_id}:{position.xid}:{position.seq}"

    def _position(self, cursor: str) -> _Position | None:
        """The position of one of this database's cursors, else ``None``."""
        match = _CURSOR.fullmatch(cursor)
        if match is None or match.group(1) != self._store_id:
            return None
        return _Position(int(match.group(2)), int(match.group(3)))

    def _visible(
        self, conn: Any, start: _Position, limit: int
    ) -> tuple[_Position | None, list[ChangeEvent]]:
        """The retention's horizon (events at or before it may be gone) and up to
        ``limit`` readable events after both it and ``start``.

        The writers' horizon (``_HORIZON``) first, then the retention's horizon
        and the events in one later statement (one later snapshot).
        """
        where, args = self._where_project()
        readable = int(conn.execute(_HORIZON).fetchone()[0])
        rows = conn.execute(
            '(SELECT true, xid, seq, NULL, NULL COLLATE "C", NULL::integer, NULL, NULL, '
            f"NULL::timestamptz, NULL FROM maestro_feed_horizon WHERE {where} "
            "ORDER BY xid DESC, seq DESC LIMIT 1) UNION ALL "
            "(SELECT false, xid, seq, kind, session_id, revision, from_status, to_status, at, "
            f"request_id FROM maestro_events WHERE {where} AND (xid, seq) > (%s, %s) "
            f"AND (xid, seq) > ALL (SELECT xid, seq FROM maestro_feed_horizon WHERE {where}) "
            "AND xid < %s ORDER BY xid, seq LIMIT %s)",
            [*args, *args, start.xid, start.seq, *args, readable, limit],
        ).fetchall()
        horizon = None
        events = []
        for edge, xid, seq, kind, session_id, revision, before, after, at, request in rows:
            if edge:
                horizon = _Position(int(xid), int(seq))
                continue
            events.append(
                ChangeEvent(
                    cursor=self._cursor(_Position(int(xid), int(seq))),
                    kind=ChangeKind(kind),
                    session_id=session_id,
                    revision=revision,
                    from_status=before,
                    to_status=after,
                    at=at,
                    request_id=request,
                )
            )
        return horizon, events

    def changes_after(self, cursor: str | None, *, limit: int = 1000) -> list[ChangeEvent]:
        """Up to ``limit`` events after ``cursor``, oldest first (``CHANGES``).

        A ``reset`` comes first when ``cursor`` is another database's, or
        older than the project's horizon (events after it were dropped by
        the retention); reading goes on from its cursor.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise SessionValidationError("limit must be a positive integer")
        start, foreign = _Position(0, 0), False
        if cursor is not None:
            _check_cursor(cursor)
            position = self._position(cursor)
            foreign = position is None
            start = position or start
        horizon, events = self._run(
            None, "reading the change feed", lambda conn: self._visible(conn, start, limit)
        )
        behind = cursor is not None and horizon is not None and start < horizon
        if not (foreign or behind):
            return events
        reset = ChangeEvent.reset(
            self._cursor(max(start, horizon) if horizon is not None else start)
        )
        return [reset, *events[: limit - 1]]

    def feed_end(self) -> str:
        """A cursor after every event committed so far; later ones follow it."""

        def body(conn: Any) -> _Position:
            row = conn.execute(_HORIZON).fetchone()
            return _Position(int(row[0]) - 1, _MAX_SEQ)

        return self._cursor(self._run(None, "reading the change feed", body))

    def wait_for_change(self, cursor: str, timeout: float) -> bool:
        """Block until an event after ``cursor`` is readable, or ``timeout`` seconds pass.

        Woken by ``NOTIFY``; polls twice a second besides, so a lost
        notification (a reconnecting listener) only delays the answer.
        """
        _check_cursor(cursor)
        position = self._position(cursor)
        if position is None:
            return True  # the next read answers with a reset
        self._doorbell.start()
        deadline = time.monotonic() + max(timeout, 0)
        doorbell = self._doorbell
        while True:
            with doorbell.rung:
                seen = doorbell.count
            horizon, events = self._run(
                None, "reading the change feed", lambda conn: self._visible(conn, position, 1)
            )
            if events or (horizon is not None and position < horizon):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with doorbell.rung:
                doorbell.rung.wait_for(
                    lambda seen=seen: doorbell.count != seen,  # type: ignore[misc]
                    min(remaining, 0.5),
                )


_CHECK = re.compile(r"pg:[0-9a-f]+:[0-9]+:[0-9]+")


#: The feed's horizon: the id of the oldest transaction still in flight that
#: holds a lock on maestro's sessions or events table (every maestro write
#: takes one before it has a transaction id, and keeps it until it ends), or,
#: with none, the id the next transaction will get.  Events of ids below it
#: that will ever be committed are committed: a transaction in flight at the
#: snapshot with a lower id either holds no such lock (it writes no event) or
#: counts here.  ``pg_locks`` gives 32-bit ids; the snapshot's in-flight list
#: gives them whole, and is matched on the low 32 bits.
_HORIZON = """
WITH now AS (SELECT pg_current_snapshot() AS snap),
writers AS (
    SELECT held.transactionid::text::bigint AS xid32
    FROM pg_locks rel
    JOIN pg_locks held
      ON held.virtualtransaction = rel.virtualtransaction
     AND held.locktype = 'transactionid' AND held.granted
    WHERE rel.locktype = 'relation'
      AND rel.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND rel.relation IN ('maestro_sessions'::regclass, 'maestro_events'::regclass)
)
SELECT coalesce(
    (SELECT min(x::text::bigint) FROM now, pg_snapshot_xip(now.snap) AS x
     WHERE (x::text::bigint & 4294967295) IN (SELECT xid32 FROM writers)),
    (SELECT pg_snapshot_xmax(snap)::text::bigint FROM now))
"""


def _check_cursor(cursor: object) -> None:
    if not isinstance(cursor, str) or not _CHECK.fullmatch(cursor):
        raise SessionValidationError("invalid change feed cursor; pass one this store returned")
