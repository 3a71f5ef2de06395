"""What every PostgreSQL store of a process shares on one database.

The connection pool, the ``LISTEN`` doorbell that wakes waiting readers, the
ringing of that doorbell after writes, and the records this process wrote
last (:class:`_Written`), which let a write skip reading a row it already
knows.  One :class:`_Database` per database and set of pool options, made on
first use, forgotten in a forked child, closed at exit.  Also what every part
of the store writes rows with: the columns of a row, a session's creation
key, its write lock.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import dataclasses
import operator
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from maestro.errors import StoreUnavailableError
from maestro.models import Session, StateChange, session_from_trusted_record
from maestro.schema import validate_record
from maestro.stores import postgres_schema

if TYPE_CHECKING:
    from maestro.stores.base import ChangeKind

T = TypeVar("T")
_CHANNEL = "maestro_changes"
_NOTIFY = b"SELECT pg_notify('maestro_changes', '')"


#: The columns of a session's row, in the order an ``INSERT`` gives them.
_COLUMNS = (
    "project, session_id, status, phase, branch, worktree, created_at, updated_at, "
    "active_at, words, create_request, revision, record"
)


def _create_key(session: Session) -> str | None:
    """The request id a session was created under, if it remembers one."""
    for entry in session.requests:
        if entry.operation == "create":
            return entry.request_id
    return None


def _lock(conn: Any, session_id: str) -> None:
    """Take the session's write lock for this transaction, before anything else.

    An advisory lock, taken before the row lock: waiting for it assigns the
    waiter no transaction id, so each writer of a session gets its id only
    once the previous writer has committed.  The change feed orders events
    by transaction id; this makes that order the order of the writes of
    each session.  (A transaction waiting on ``FOR UPDATE`` takes its id
    before it waits, and waiters may then be granted the row out of id order.)
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (session_id,))


class StoreParts(Protocol):
    """What the parts of the PostgreSQL store mixed into ``PostgresStore``
    (:mod:`~maestro.stores.postgres_feed`, :mod:`~maestro.stores.postgres_files`)
    use of it: for the type checker only."""

    local_root: Path | None
    project: str
    _store_id: str
    _doorbell: _Doorbell

    @staticmethod
    def _row(session: Session, raw: bytes | str) -> dict[str, object]: ...
    def _one(self) -> str: ...
    def _one_args(self, session_id: str) -> tuple[str, ...]: ...
    def _where_project(self) -> tuple[str, list[object]]: ...
    def _run(
        self,
        session_id: str | None,
        action: str,
        body: Callable[[Any], T],
        *,
        write: bool = False,
    ) -> T: ...
    def _trim(self, project: str) -> None: ...
    def _event(
        self,
        conn: Any,
        project: str,
        kind: ChangeKind,
        session: Session,
        from_status: str | None,
        to_status: str | None,
        at: datetime,
        request_id: str | None,
    ) -> None: ...


def unavailable(error: BaseException) -> StoreUnavailableError:
    """The typed error for a connection that could not be made (first line only)."""
    text = str(error).strip()
    lowered = text.lower()
    sqlstate = getattr(error, "sqlstate", None)
    if (
        sqlstate in ("28P01", "28000")
        or "authentication failed" in lowered
        or ("role" in lowered and "does not exist" in lowered)
        or "no password supplied" in lowered
    ):
        reason, what = "authentication", "the PostgreSQL server refused the login"
    elif sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered):
        reason, what = "missing_database", "the PostgreSQL database does not exist"
    elif any(
        word in lowered
        for word in ("connection refused", "could not connect", "timeout", "timed out", "resolve")
    ):
        reason, what = "unreachable", "the PostgreSQL server cannot be reached"
    else:
        reason, what = "error", "the PostgreSQL server cannot be used"
    detail = next((line for line in text.splitlines() if line.strip()), type(error).__name__)
    # libpq prefixes the host and port; that is useful, and holds no password.
    return StoreUnavailableError(f"{what} ({detail.strip()[:200]})", reason=reason)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


#: The values of a history entry, as its attributes hold them (never changed).
Mark = dict[str, Any]


def _mark(entry: StateChange) -> Mark:
    return {
        "from_status": entry.from_status,
        "to_status": entry.to_status,
        "at": entry.at,
        "reason": entry.reason,
    }


class _Doorbell:
    """One ``LISTEN`` connection per store, in a thread: counts notifications.

    Waiting readers watch the count; the count is only a hint to look again.
    """

    def __init__(self, conninfo: str, connect_timeout: float) -> None:
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        self.rung = threading.Condition()
        self.count = 0
        self._thread: threading.Thread | None = None
        self._closed = False
        self._conn: psycopg.Connection[Any] | None = None

    def start(self) -> None:
        with self.rung:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="maestro-postgres-doorbell", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=int(self._connect_timeout)
                ) as conn:
                    self._conn = conn
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(_CHANNEL)))
                    self._ring()  # events may have come while nobody listened
                    while not self._closed:
                        for _ in conn.notifies(timeout=1.0):
                            self._ring()
            except Exception:  # noqa: BLE001 - a lost doorbell only slows readers down
                self._conn = None
                time.sleep(0.5)

    def _ring(self) -> None:
        with self.rung:
            self.count += 1
            self.rung.notify_all()

    def close(self) -> None:
        self._closed = True


class _Ringer:
    """Rings the doorbell after writes, at most once per ``interval`` seconds.

    Every ``NOTIFY`` is a transaction PostgreSQL commits to its WAL, and a
    write's own commit waits for it when both go together.  A busy writer
    therefore rings for several writes at once: a write ``interval`` or
    more after the last ring rings at once, on its own connection
    (:meth:`now`); a write within it leaves the ring to the next write, or
    to a thread if none comes by a quarter of an interval after the ring was
    due (:meth:`later`).  A watcher learns of every write at most 1.25
    ``interval`` after its commit, and still polls besides (a ring is only a
    hint).  ``interval`` 0 rings after every write.
    """

    def __init__(self, pool: ConnectionPool[Any], interval: float) -> None:
        self._pool = pool
        self.interval = interval
        self._lock = threading.Condition()
        self._last = -float("inf")
        self._pending = False
        self._thread: threading.Thread | None = None
        self._closed = False

    def now(self) -> bool:
        """After a commit: whether the caller rings now; if not, a ring is scheduled."""
        with self._lock:
            moment = time.monotonic()
            if moment - self._last >= self.interval:
                self._last = moment
                self._pending = False  # this ring, after this commit, covers them
                return True
            self._schedule()
            return False

    def later(self) -> None:
        """A ring for a commit, by the thread (a ring the caller could not make)."""
        with self._lock:
            self._schedule()

    def _schedule(self) -> None:
        if self._pending:
            return  # the thread knows already
        self._pending = True
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, name="maestro-postgres-ringer", daemon=True
            )
            self._thread.start()
        self._lock.notify_all()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                # A busy writer rings first, on the connection it has: the
                # thread only rings for the last writes of a burst.
                due = self._last + self.interval * 1.25 - time.monotonic()
                if due > 0:
                    self._lock.wait(due)
                    continue  # rung meanwhile, or closed: look again
                self._pending = False
                self._last = time.monotonic()
            self._ring()

    def _ring(self) -> None:
        # A lost ring only delays the watchers until they next poll; a ring
        # never waits long for a connection (the last one is made at exit).
        with contextlib.suppress(Exception), self._pool.connection(timeout=1.0) as conn:
            conn.execute(_NOTIFY)

    def close(self) -> None:
        """Stop the thread; a ring still due is made now (a process exits after its writes)."""
        with self._lock:
            pending, self._pending = self._pending, False
            self._closed = True
            self._lock.notify_all()
        if pending:
            self._ring()


class _Database:
    """What every store of one process on one database shares: the pool, the doorbell.

    Opening a store is then cheap, and a process holds at most ``pool_max``
    connections to a database however many managers it opens.
    """

    def __init__(self, key: tuple[Any, ...], migrate: bool) -> None:
        (
            self.conninfo,
            pool_min,
            self.pool_max,
            self.pool_timeout,
            self.max_waiting,
            prepare_threshold,
            self.statement_timeout,
            self.lock_timeout,
            self.connect_timeout,
            ring_interval,
        ) = key
        self.store_id = "0"
        self.schema_found = 0
        #: The record this process last wrote of each session (see :class:`_Written`).
        self.written: collections.OrderedDict[str, _Written] = collections.OrderedDict()
        self.written_lock = threading.Lock()
        self.schema_version = self._prepare(migrate)
        self.doorbell = _Doorbell(self.conninfo, self.connect_timeout)
        self.pool: ConnectionPool[Any] = ConnectionPool(
            self.conninfo,
            min_size=pool_min,
            max_size=self.pool_max,
            timeout=self.pool_timeout,
            max_waiting=self.max_waiting,
            kwargs={
                "autocommit": True,
                "prepare_threshold": prepare_threshold,
                "connect_timeout": int(self.connect_timeout),
            },
            configure=self._configure,
            reconnect_timeout=max(self.pool_timeout, 1.0),
            name="maestro",
            open=False,
        )
        self.pool.open(wait=False)
        self.ringer = _Ringer(self.pool, ring_interval)

    def _prepare(self, migrate: bool) -> int:
        """Connect once, directly (a refused login is reported as such), and migrate."""
        try:
            with psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=int(self.connect_timeout)
            ) as conn:
                conn.execute("SELECT set_config('lock_timeout', '60s', false)")
                self.schema_found = postgres_schema.current_version(conn)
                if migrate:
                    postgres_schema.upgrade(conn)
                version = postgres_schema.current_version(conn)
                postgres_schema.refuse_newer(version)
                if version != postgres_schema.LATEST:
                    raise StoreUnavailableError(
                        f"the database schema is version {version} of "
                        f"{postgres_schema.LATEST}; run `maestro db upgrade`",
                        reason="schema_too_old",
                    )
                row = conn.execute(
                    "SELECT value FROM maestro_meta WHERE key = 'store_id'"
                ).fetchone()
                self.store_id = str(row[0]) if row else "0"
                return version
        except StoreUnavailableError:
            raise
        except psycopg.OperationalError as error:
            raise unavailable(error) from None
        except psycopg.Error as error:
            raise StoreUnavailableError(
                f"the PostgreSQL schema could not be prepared ({_first_line(error)})"
            ) from None

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "SELECT set_config('lock_timeout', %s, false), "
            "set_config('statement_timeout', %s, false), "
            "set_config('idle_in_transaction_session_timeout', %s, false)",
            (
                f"{int(self.lock_timeout * 1000)}ms",
                f"{int(self.statement_timeout * 1000)}ms",
                f"{int(max(self.statement_timeout, self.lock_timeout) * 2000)}ms",
            ),
        )
        conn.commit()

    def recall(self, session_id: str) -> _Written | None:
        with self.written_lock:
            return self.written.get(session_id)

    def remember(self, session_id: str, written: _Written | None) -> None:
        with self.written_lock:
            if written is None:
                self.written.pop(session_id, None)
                return
            self.written[session_id] = written
            self.written.move_to_end(session_id)
            while len(self.written) > _WRITTEN_KEPT:
                self.written.popitem(last=False)


@dataclasses.dataclass(frozen=True)
class _Written:
    """A record this process wrote, and the version of the row that holds it.

    A write of the session is made to this record, in one statement that
    stores it only while the row is still the one written here
    (``PostgresStore._swap``); failing that, it reads the row ``FOR UPDATE``
    and asks for its record only if the row is no longer the one written
    here: same project, same revision and the same ``xmin`` (the id of the
    transaction that wrote that row version; any later write, import or
    re-creation of the session makes a new row version with another;
    ``xmin`` is the id's low 32 bits, so a false match would take a rewrite
    of the row at the same revision 2**32 transactions later).  Otherwise
    the record is this one, which the codec validated before it was
    written: the session is rebuilt from it without a second check, and the
    history entries the write leaves as they were are neither encoded nor
    validated again.
    """

    project: str
    xmin: str
    revision: int
    #: JSON-ready and validated; never changed (later versions share its history entries).
    record: dict[str, Any]
    #: The values of each history entry (never changed), in the order of the record's.
    marks: tuple[Mark, ...]

    def session(self) -> tuple[Session, list[StateChange]]:
        """A session of this record, with objects of its own, and its history entries."""
        current = session_from_trusted_record({**self.record, "history": ()})
        new = object.__new__
        read: list[StateChange] = []
        add = read.append
        for mark in self.marks:
            entry = new(StateChange)
            entry.__dict__ = mark.copy()
            add(entry)
        current.history = list(read)
        return current, read

    def encode(
        self, updated: Session, read: list[StateChange]
    ) -> tuple[dict[str, Any], tuple[Mark, ...]]:
        """The validated record of ``updated``, made from :meth:`session`'s ``read``.

        An entry of ``updated`` that is still the one read at its place, with
        the values it was read with, keeps its encoded form (validated when
        this record was written); every other part of the record is encoded
        and validated: the result is what ``encode_record_and_dict`` gives
        (the schema puts no constraint between history entries).  Also the
        values of its history entries, for the next :class:`_Written`.
        """
        rest = object.__new__(Session)
        rest.__dict__ = {**updated.__dict__, "history": []}
        record = rest.to_dict()
        entries = self.record["history"]
        marks = self.marks
        history = updated.history
        kept = len(read)
        fresh: list[dict[str, Any]] = []
        if (
            len(history) >= kept
            and all(map(operator.is_, history[:kept], read))
            and tuple(map(vars, read)) == marks
        ):
            # The usual change: the entries read, all in place and as they were,
            # and perhaps new ones after them.
            fresh = [entry.to_dict() for entry in history[kept:]]
            merged = entries + fresh
            values = marks + tuple(_mark(entry) for entry in history[kept:])
        else:
            merged, collected = [], []
            for place, entry in enumerate(history):
                if place < kept and entry is read[place] and vars(entry) == marks[place]:
                    merged.append(entries[place])
                    collected.append(marks[place])
                    continue
                encoded = entry.to_dict()
                fresh.append(encoded)
                merged.append(encoded)
                collected.append(_mark(entry))
            values = tuple(collected)
        record["history"] = fresh
        validate_record(record, session_id=updated.session_id)
        record["history"] = merged
        return record, tuple(values)


#: Sessions whose last written record a process keeps (writers mostly write their own few).
_WRITTEN_KEPT = 256

_databases_lock = threading.Lock()
_databases: dict[tuple[Any, ...], _Database] = {}


def _database(key: tuple[Any, ...], migrate: bool) -> _Database:
    with _databases_lock:
        database = _databases.get(key)
        if database is None:
            database = _databases[key] = _Database(key, migrate)
        return database


#: Databases a forked child inherited: never used, never closed (closing would
#: end the parent's connections, whose sockets the child shares).
_inherited: list[_Database] = []


def _forget_after_fork() -> None:
    global _databases_lock
    _databases_lock = threading.Lock()
    _inherited.extend(_databases.values())
    _databases.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


@atexit.register
def _close_all() -> None:
    with _databases_lock:
        for database in _databases.values():
            database.doorbell.close()
            database.ringer.close()
            with contextlib.suppress(Exception):
                database.pool.close(timeout=1.0)
        _databases.clear()
