"""A store that keeps sessions in PostgreSQL, shared by workers on several hosts.

One row per session: a column for every field a query filters or orders by,
the folded words of the feature request (``words``, a ``text[]`` with a GIN
index), and the whole record as ``jsonb``.  Searching compares those words
with the search's, cut and folded by :mod:`maestro.search` in Python exactly
as the file store cuts and folds them, so both stores match the same set of
sessions (a prefix term ``auth*`` compares word beginnings byte by byte).

Writes are one transaction each.  A process remembers the record it last
wrote of a session (:class:`_Written`); while the row is still that version,
a write is one statement, one round trip: the session's advisory lock, then
the row and its change event only if the row is still the version written
here (a compare-and-swap on revision and ``xmin``; the ``UPDATE`` takes the
row lock).  Otherwise ``modify`` takes the advisory lock and reads the row
``FOR UPDATE`` (bounded by ``lock_timeout``), runs the manager's transform
on the record, and writes the row and its event, in two round trips
(pipeline mode).  After a commit the ``NOTIFY`` doorbell rings, at most
once per ``notify_interval`` per process (:class:`_Ringer`).  Every statement
is bounded by ``statement_timeout``.  A connection lost before the commit
is retried once on a fresh connection; a one-statement write lost in flight
is sent again, which settles it (only one of the two can find the row as it
was remembered); otherwise the outcome is unknown and :class:`StorageError`
says so: retry with a ``request_id`` to make the retry safe.

The change feed is read by :mod:`maestro.stores.postgres_feed`.

Sessions belong to a project (see :mod:`maestro.project`); a store serves
one project's sessions, or every project's with ``all_projects``.  Other
files of a session (checkpoints, reports) stay in a directory on the local
disk of the host that works on it, under ``local_root``: ``create`` makes it,
``delete`` removes it (:mod:`maestro.stores.postgres_files`, with export,
import and adoption).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
import psycopg.errors
from psycopg_pool import PoolTimeout, TooManyRequests

from maestro.codec import decode_record, encode_record, encode_record_and_dict
from maestro.errors import (
    ConflictError,
    LockTimeoutError,
    SessionExistsError,
    SessionNotFoundError,
    SessionValidationError,
    StorageError,
    StoreUnavailableError,
)
from maestro.ids import check_session_id
from maestro.models import (
    SCHEMA_VERSION,
    Session,
    StateChange,
    session_from_trusted_record,
    utcnow,
)
from maestro.records import replace
from maestro.reports import DoctorReport, Progress
from maestro.search import words
from maestro.stores import postgres_schema
from maestro.stores.base import (
    Capability,
    ChangeKind,
    ScanEntry,
    SessionQuery,
    Transform,
    apply_change,
    check_request_id_type,
    reported_kind,
)
from maestro.stores.postgres_feed import _HORIZON, FeedReader
from maestro.stores.postgres_files import LocalFiles
from maestro.stores.postgres_shared import (
    _COLUMNS,
    _NOTIFY,
    Mark,
    _database,
    _first_line,
    _lock,
    _mark,
    _Written,
    unavailable,
)
from maestro.stores.postgres_shared import (
    _close_all as _close_all,
)

__all__ = ["PostgresStore", "split_url"]

T = TypeVar("T")

#: Our parameters of a ``postgresql://`` URL; every other one goes to libpq.
OPTIONS = (
    "project",
    "all_projects",
    "pool_min",
    "pool_max",
    "pool_timeout",
    "max_waiting",
    "prepare_threshold",
    "statement_timeout",
    "connect_timeout",
    "feed_retention",
    "notify_interval",
)
#: How many of a project's newest change events to keep when the URL does not
#: say (``feed_retention``): the file store's variable, and its default.
FEED_RETENTION = "MAESTRO_FEED_RETENTION"
DEFAULT_RETENTION = 100_000
#: Seconds between two rings of the doorbell by one process (``notify_interval``);
#: see :class:`~maestro.stores.postgres_shared._Ringer`.
NOTIFY_INTERVAL = 0.01
_ROW = (
    "UPDATE maestro_sessions SET status = %(status)s, phase = %(phase)s, "
    "branch = %(branch)s, worktree = %(worktree)s, created_at = %(created_at)s, "
    "updated_at = %(updated_at)s, active_at = %(active_at)s, words = %(words)s::text[], "
    "revision = %(revision)s, record = %(record)s::jsonb "
    "WHERE project = %(project)s AND session_id = %(session_id)s "
    "RETURNING xmin::text AS version"
)
#: A changed session's row and its event, in one statement.
_SAVE = (
    f"WITH written AS ({_ROW}), "
    "event AS (INSERT INTO maestro_events (project, kind, session_id, revision, "
    "from_status, to_status, at, request_id) SELECT %(project)s, %(kind)s, "
    "%(session_id)s, %(revision)s, %(from_status)s, %(status)s, %(updated_at)s, "
    "%(request_id)s FROM written) "
    "SELECT version FROM written"
)
#: The same with the change feed off.
_SAVE_ONLY_ROW = _ROW
#: A write of the version this process wrote last, in one statement (see
#: ``PostgresStore._swap``): the session's advisory lock, then the row and its
#: event only if the row is still at that revision and row version.  Whichever
#: of the lock and the row is reached first, an ``UPDATE`` that finds the row
#: changed by a writer that committed meanwhile checks its condition again on
#: the new version, and writes nothing.
_SWAP_ROW = (
    "WITH locked AS MATERIALIZED "
    "(SELECT pg_advisory_xact_lock(hashtextextended(%(session_id)s, 0))), "
    "written AS (UPDATE maestro_sessions SET status = %(status)s, phase = %(phase)s, "
    "branch = %(branch)s, worktree = %(worktree)s, created_at = %(created_at)s, "
    "updated_at = %(updated_at)s, active_at = %(active_at)s, words = %(words)s::text[], "
    "revision = %(revision)s, record = %(record)s::jsonb FROM locked "
    "WHERE project = %(project)s AND session_id = %(session_id)s "
    "AND revision = %(was_revision)s AND xmin::text = %(was_version)s "
    "RETURNING xmin::text AS version)"
)
_SWAP = (
    f"{_SWAP_ROW}, "
    "event AS (INSERT INTO maestro_events (project, kind, session_id, revision, "
    "from_status, to_status, at, request_id) SELECT %(project)s, %(kind)s, "
    "%(session_id)s, %(revision)s, %(from_status)s, %(status)s, %(updated_at)s, "
    "%(request_id)s FROM written) "
    "SELECT version FROM written"
)
_SWAP_ONLY_ROW = f"{_SWAP_ROW} SELECT version FROM written"
#: Drop a project's events but the newest ``keep`` that readers can see (below
#: the writers' horizon, ``_HORIZON``, read in an earlier statement), and move
#: the project's horizon to the newest dropped.
_TRIM = (
    "WITH edge AS (SELECT xid, seq FROM maestro_events WHERE project = %(project)s "
    "AND xid < %(readable)s ORDER BY xid DESC, seq DESC OFFSET %(keep)s LIMIT 1), "
    "gone AS (DELETE FROM maestro_events AS e USING edge WHERE e.project = %(project)s "
    "AND (e.xid, e.seq) <= (edge.xid, edge.seq)) "
    "INSERT INTO maestro_feed_horizon AS h (project, xid, seq) "
    "SELECT %(project)s, xid, seq FROM edge "
    "ON CONFLICT (project) DO UPDATE SET xid = excluded.xid, seq = excluded.seq "
    "WHERE (h.xid, h.seq) < (excluded.xid, excluded.seq)"
)
_SWITCHES = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The libpq URL without our parameters, and our parameters."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        (ours.__setitem__(key, value) if key in OPTIONS else theirs.append((key, value)))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


def _number(options: dict[str, str], name: str, default: float, *, whole: bool = False) -> float:
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = -1
    if value < 0 or (name in ("pool_max", "pool_timeout", "connect_timeout") and value == 0):
        kind = "a whole number" if whole else "a number"
        raise SessionValidationError(f"the {name} parameter of a postgresql: URL is {kind}")
    return value


def _retention(given: str | None) -> int:
    """The URL's ``feed_retention``, else ``$MAESTRO_FEED_RETENTION``, else the default."""
    where = "the feed_retention parameter of a postgresql: URL"
    if given is None:
        given = os.environ.get(FEED_RETENTION, "").strip() or None
        where = FEED_RETENTION
    if given is None:
        return DEFAULT_RETENTION
    if not given.isdigit():
        raise SessionValidationError(f"{where} must be a non-negative integer")
    return int(given)


class PostgresStore(FeedReader, LocalFiles):
    """Sessions in a PostgreSQL database (see the module docstring).

    ``url`` is a libpq URL (``postgresql://user@host:5432/db``); these
    parameters of it are maestro's: ``project``, ``all_projects`` (on/off),
    ``pool_min``/``pool_max`` (connections, 0/10), ``pool_timeout``
    (seconds a caller waits for a connection, 10), ``max_waiting`` (callers
    allowed to wait at once, 64; more fail at once), ``prepare_threshold``
    (``none`` turns server-side prepared statements off, for a
    transaction-pooling proxy), ``statement_timeout`` (seconds, 30),
    ``connect_timeout`` (seconds, 5), ``feed_retention`` (change events kept
    per project) and ``notify_interval`` (seconds between two rings of the
    doorbell by one process, 0.01; 0 rings after every write).  The schema
    is brought up to date on first use.
    """

    display_name = "PostgreSQL store"
    capabilities: frozenset[Capability] = frozenset(
        {
            Capability.PREFIX_LOOKUP,
            Capability.CHANGES,
            Capability.MULTI_PROCESS,
            Capability.DOCTOR,
            Capability.MIGRATIONS,
            Capability.DIRECTORY_EXPORT,
        }
    )

    def __init__(
        self,
        url: str,
        *,
        lock_timeout: float = 10.0,
        local_root: Path | None = None,
        project: str | None = None,
        all_projects: bool | None = None,
        migrate: bool = True,
    ) -> None:
        if isinstance(lock_timeout, bool) or not isinstance(lock_timeout, int | float):
            raise SessionValidationError("lock_timeout must be a number of seconds")
        self.lock_timeout = float(lock_timeout)
        conninfo, options = split_url(url)
        self._conninfo = conninfo
        self.local_root = local_root
        self.pool_min = int(_number(options, "pool_min", 0, whole=True))
        self.pool_max = int(_number(options, "pool_max", 10, whole=True))
        if self.pool_min > self.pool_max:
            raise SessionValidationError("pool_min must not exceed pool_max")
        self.pool_timeout = _number(options, "pool_timeout", 10.0)
        self.max_waiting = int(_number(options, "max_waiting", 64, whole=True))
        self.statement_timeout = _number(options, "statement_timeout", 30.0)
        self.connect_timeout = _number(options, "connect_timeout", 5.0)
        self.notify_interval = _number(options, "notify_interval", NOTIFY_INTERVAL)
        self.feed_retention = _retention(options.get("feed_retention"))
        if self.feed_retention == 0:
            self.capabilities = self.capabilities - {Capability.CHANGES}
        threshold = options.get("prepare_threshold", "5")
        if threshold.lower() == "none":
            self.prepare_threshold: int | None = None
        else:
            self.prepare_threshold = int(_number(options, "prepare_threshold", 5, whole=True))
        if all_projects is None:
            switch = options.get("all_projects", "off").lower()
            if switch not in _SWITCHES:
                raise SessionValidationError("the all_projects parameter is on or off")
            all_projects = _SWITCHES[switch]
        self.all_projects = bool(all_projects)
        if project is None:
            project = options.get("project") or None
        if project is None:
            from maestro.project import project_identity

            project = project_identity(local_root)
        if not project or not project.isprintable() or len(project) > 200:
            raise SessionValidationError("a project is printable text of 1 to 200 characters")
        self.project = project
        self._database = _database(
            (
                conninfo,
                self.pool_min,
                self.pool_max,
                self.pool_timeout,
                self.max_waiting,
                self.prepare_threshold,
                self.statement_timeout,
                self.lock_timeout,
                self.connect_timeout,
                self.notify_interval,
            ),
            migrate,
        )
        self._pool = self._database.pool
        self._doorbell = self._database.doorbell
        self._store_id = self._database.store_id
        #: The schema version this process found in the database before migrating.
        self.schema_found = self._database.schema_found

    def __repr__(self) -> str:
        return f"PostgresStore(project={self.project!r})"

    # ------------------------------------------------------------ connections

    def close(self) -> None:
        """Let go of the database; its pool stays for other stores of this process."""

    def pool_stats(self) -> dict[str, int]:
        """The pool's state: size, idle connections, waiting callers and totals."""
        return dict(self._pool.get_stats())

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of the pool, given back after use.

        Without the connection's own context, which would commit or roll
        back: every statement here runs in autocommit mode or in a
        transaction its caller ends (and the pool rolls back a connection
        given back in a transaction, and replaces a broken one).
        """
        try:
            conn = self._pool.getconn()
        except TooManyRequests:
            raise StoreUnavailableError(
                f"the PostgreSQL connection pool is exhausted: {self.max_waiting} callers "
                "are already waiting (raise max_waiting or pool_max)",
                reason="pool_exhausted",
            ) from None
        except PoolTimeout as error:
            raise StoreUnavailableError(
                f"no PostgreSQL connection within {self.pool_timeout:g} s "
                f"(pool of {self.pool_max}; {_first_line(error)})",
                reason="pool_exhausted",
            ) from None
        try:
            yield conn
        finally:
            self._pool.putconn(conn)

    def _run(
        self,
        session_id: str | None,
        action: str,
        body: Callable[[Any], T],
        *,
        write: bool = False,
    ) -> T:
        """Run ``body(conn)``; retried once if the connection was lost before the
        commit (the server then rolled it back).

        A read runs as it is: connections are in autocommit mode, so a body
        of one statement is that statement alone, one round trip.  A
        ``write`` runs in one transaction, and then rings the doorbell (see
        :meth:`_write`).
        """
        for attempt in (1, 2):
            committing = False
            try:
                with self._connection() as conn:
                    try:
                        if not write:
                            return body(conn)
                        with conn.transaction():
                            result = body(conn)
                            committing = True
                    except psycopg.errors.LockNotAvailable:
                        raise LockTimeoutError(session_id or "", self.lock_timeout) from None
                    if self._database.ringer.now():
                        self._ring(conn)
                    return result
            except psycopg.Error as error:
                self._failed(error, session_id, action, committing=committing, last=attempt == 2)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write(
        self,
        session_id: str,
        action: str,
        body: Callable[[Any], tuple[T, Callable[[], None] | None]],
    ) -> T:
        """Run ``body(conn)`` in one transaction in pipeline mode: two round trips.

        ``body`` queues its statements after ``BEGIN``; fetching the one
        result it needs (the row read ``FOR UPDATE``) sends everything queued
        so far and waits, once.  It returns its result and, if it wrote, what
        to do once the commit is confirmed.  Its writes then go with
        ``COMMIT`` and, when the doorbell is due (:class:`_Ringer`), its
        ``NOTIFY`` in a second round trip.  The ``NOTIFY`` is a transaction
        of its own after the commit: PostgreSQL holds its notification queue
        lock through the commit of a transaction that notifies, WAL flush
        included, so notifying inside the write would make every writer's
        commit wait for the previous one's flush.

        Retried once if the connection was lost before the ``COMMIT`` was
        sent; lost after, the outcome is unknown and the error says so.
        """
        ringer = self._database.ringer
        for attempt in (1, 2):
            committing = ringing = False
            commit: Any = None
            try:
                with self._connection() as conn:
                    try:
                        with conn.pipeline():
                            conn.execute(b"BEGIN")
                            result, committed = body(conn)
                            committing = True
                            commit = conn.execute(b"COMMIT")
                            if committed is not None and ringer.now():
                                ringing = True
                                conn.execute(_NOTIFY)
                    except psycopg.Error as error:
                        if ringing:
                            ringer.later()  # the ring this write claimed was not made
                        if commit is not None and commit.statusmessage == "COMMIT":
                            # Only the ring failed: watchers poll anyway.
                            if committed is not None:
                                committed()
                            return result
                        _roll_back(conn)
                        if isinstance(error, psycopg.errors.LockNotAvailable):
                            raise LockTimeoutError(session_id, self.lock_timeout) from None
                        if committing and not conn.broken:
                            committing = False  # the server refused: nothing was committed
                        raise
                    except BaseException:
                        if ringing:
                            ringer.later()
                        _roll_back(conn)
                        raise
                    if committed is not None:
                        committed()
                    return result
            except psycopg.Error as error:
                self._failed(error, session_id, action, committing=committing, last=attempt == 2)
        raise AssertionError("unreachable")  # pragma: no cover

    def _failed(
        self,
        error: psycopg.Error,
        session_id: str | None,
        action: str,
        *,
        committing: bool,
        last: bool,
    ) -> None:
        """Raise the maestro error for ``error``; return only when the call is to be retried.

        A connection lost before the commit is retried once (the server
        rolled the transaction back); lost while committing, the outcome is
        unknown and the error says so.
        """
        if isinstance(error, psycopg.OperationalError):
            if committing:
                raise _unknown_outcome(session_id, action, error) from error
            if last or not _connection_lost(error):
                raise StorageError(session_id, action, error) from error
            self._drop_lost()
            return
        if isinstance(error, psycopg.DataError):
            raise SessionValidationError(
                f"PostgreSQL cannot store this record ({_first_line(error)})",
                session_id=session_id,
            ) from None
        raise StorageError(session_id, action, error) from error

    def _drop_lost(self) -> None:
        """Before a retry: test the idle connections, replacing the lost ones.

        Connections are not tested each time they are taken (a round trip
        per call); when one turns out lost (a restarted server, a terminated
        backend), its idle siblings likely are too.
        """
        with contextlib.suppress(Exception):
            self._pool.check()

    def _trim(self, project: str) -> None:
        """After a write: now and then, the project's change feed down to its newest
        ``feed_retention`` events.

        One write in ``feed_retention // 100`` does it (at random, so that
        short-lived processes take their turn; every write below 200, at
        most one in 1,000): the feed holds a little more than it keeps, and
        finding the oldest event kept costs an index walk of about a
        hundred entries per write.  A trim that fails is left for a later
        write; the write itself is done.
        """
        keep = self.feed_retention
        # Not for secrets: spreads the trims over the writers.
        every = min(max(keep // 100, 1), 1000)
        if not keep or random.random() * every >= 1:  # noqa: S311
            return

        def body(conn: Any) -> None:
            readable = int(conn.execute(_HORIZON).fetchone()[0])
            conn.execute(_TRIM, {"project": project, "keep": keep, "readable": readable})

        with contextlib.suppress(StorageError, LockTimeoutError):
            self._run(None, "trimming the change feed", body)

    @staticmethod
    def _ring(conn: Any) -> None:
        """Wake the watchers; a lost ring only delays them until their next poll."""
        with contextlib.suppress(psycopg.Error):
            conn.execute(_NOTIFY)

    # ------------------------------------------------------------ records

    def _decode(self, session_id: str, text: str) -> Session:
        return decode_record(session_id, text.encode(), where="the PostgreSQL record")

    def _where_project(self) -> tuple[str, list[object]]:
        return ("TRUE", []) if self.all_projects else ("project = %s", [self.project])

    def _one(self) -> str:
        """The condition naming one session: in this project, or in any with ``all_projects``."""
        return "session_id = %s" if self.all_projects else "project = %s AND session_id = %s"

    def _one_args(self, session_id: str) -> tuple[str, ...]:
        return (session_id,) if self.all_projects else (self.project, session_id)

    def load(self, session_id: str) -> Session:
        check_session_id(session_id)

        def body(conn: Any) -> Session:
            row = conn.execute(
                "SELECT record::text FROM maestro_sessions WHERE " + self._one() + " LIMIT 1",
                self._one_args(session_id),
            ).fetchone()
            if row is None:
                raise SessionNotFoundError(session_id)
            return self._decode(session_id, row[0])

        return self._run(session_id, "reading", body)

    @staticmethod
    def _row(session: Session, raw: bytes | str) -> dict[str, object]:
        git = session.git_context
        return {
            "session_id": session.session_id,
            "status": session.status.value,
            "phase": None if session.current_phase is None else session.current_phase.value,
            "branch": git.branch,
            "worktree": git.worktree_name,
            "created_at": session.created_at,
            "updated_at": session.updated_at or session.created_at,
            "active_at": session.last_activity,
            "words": _folded(session.feature_request),
            "revision": session.revision,
            "record": raw if isinstance(raw, str) else raw.decode(),
        }

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
    ) -> None:
        if not self.feed_retention:
            return  # the change feed is off
        conn.execute(
            "INSERT INTO maestro_events (project, kind, session_id, revision, from_status, "
            "to_status, at, request_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                project,
                kind.value,
                session.session_id,
                session.revision,
                from_status,
                to_status,
                at,
                request_id,
            ),
        )

    def _save(
        self,
        conn: Any,
        project: str,
        session: Session,
        record: str,
        kind: ChangeKind,
        from_status: str,
        request_id: str | None,
    ) -> Any:
        """Write a changed session's row and its event, in one statement.

        The cursor returned gives, once the pipeline has run, the ``xmin`` of
        the row version written: this transaction's id.
        """
        return conn.execute(
            _SAVE if self.feed_retention else _SAVE_ONLY_ROW,
            {
                **self._row(session, record),
                "project": project,
                "kind": kind.value,
                "from_status": from_status,
                "request_id": request_id,
            },
        )

    def create(self, session: Session, *, request_id: str | None = None) -> Session:
        session_id = check_session_id(session.session_id)
        check_request_id_type(request_id)
        stored = replace(session, revision=1, schema_version=SCHEMA_VERSION)
        raw = encode_record(stored)
        row = self._row(stored, raw)

        def body(conn: Any) -> Session:
            if request_id is not None:
                found = self._created_by(conn, request_id)
                if found is not None:
                    return found
            taken = conn.execute(
                "SELECT 1 FROM maestro_sessions WHERE project = %s AND session_id = %s",
                (self.project, session_id),
            ).fetchone()
            if taken is not None:
                raise SessionExistsError(session_id)
            inserted = conn.execute(
                f"INSERT INTO maestro_sessions ({_COLUMNS}) VALUES (%(project)s, "
                "%(session_id)s, %(status)s, %(phase)s, %(branch)s, %(worktree)s, "
                "%(created_at)s, %(updated_at)s, %(active_at)s, %(words)s::text[], "
                "%(create_request)s, 1, %(record)s::jsonb) ON CONFLICT DO NOTHING "
                "RETURNING 1",
                {**row, "project": self.project, "create_request": request_id},
            ).fetchone()
            if inserted is None:
                if request_id is not None:
                    found = self._created_by(conn, request_id)
                    if found is not None:
                        return found
                raise SessionExistsError(session_id)
            self._event(
                conn,
                self.project,
                ChangeKind.CREATED,
                stored,
                None,
                stored.status.value,
                stored.updated_at or stored.created_at,
                request_id,
            )
            return session_from_trusted_record(orjson.loads(raw))

        created = self._run(session_id, "creating the session", body, write=True)
        self._trim(self.project)
        if created.session_id == session_id:
            self._make_directory(session_id)
        return created

    def _created_by(self, conn: Any, request_id: str) -> Session | None:
        row = conn.execute(
            "SELECT session_id, record::text FROM maestro_sessions "
            "WHERE project = %s AND create_request = %s",
            (self.project, request_id),
        ).fetchone()
        return None if row is None else self._decode(row[0], row[1])

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

        database = self._database
        known = database.recall(session_id)
        if known is not None and (self.all_projects or known.project == self.project):
            swapped = self._swap(session_id, known, change, expected_revision, kind, request_id)
            if swapped is not None:
                self._trim(known.project)
                return swapped
        wrote: list[str] = []

        def body(conn: Any) -> tuple[Session, Callable[[], None] | None]:
            _lock(conn, session_id)
            known = database.recall(session_id)
            found = conn.execute(
                "SELECT project, xmin::text, CASE WHEN project = %s AND revision = %s "
                "AND xmin::text = %s THEN NULL ELSE record::text END FROM maestro_sessions "
                "WHERE " + self._one() + " LIMIT 1 FOR UPDATE",
                (
                    *((None, None, None) if known is None else _token(known)),
                    *self._one_args(session_id),
                ),
            ).fetchone()
            if found is None:
                raise SessionNotFoundError(session_id)
            project, _, text = found
            read: list[StateChange] = []
            if text is None:
                assert known is not None
                current, read = known.session()
            else:
                known = None
                current = self._decode(session_id, text)
            before = current.status.value
            updated = apply_change(session_id, current, change, expected_revision)
            if updated is None:
                if known is not None:
                    return known.session()[0], None
                return self._decode(session_id, text), None
            if known is None:
                raw, record = encode_record_and_dict(updated)
                stored = raw.decode()
                marks = tuple(_mark(entry) for entry in updated.history)
            else:
                record, marks = known.encode(updated, read)
                stored = _dumps(record, session_id)
            written = self._save(
                conn,
                project,
                updated,
                stored,
                reported_kind(kind, before, updated.status.value),
                before,
                request_id,
            )

            def committed() -> None:
                row = written.fetchone()
                database.remember(
                    session_id,
                    # A record with fields of another version (``extra``) may share
                    # values with the session returned: it is not kept.
                    None
                    if row is None or updated.extra
                    else _Written(project, str(row[0]), updated.revision, record, marks),
                )

            wrote.append(project)
            # ``current`` was read for this call alone, so what ``change`` made
            # of it is the caller's (as the file store returns it).
            return updated, committed

        written = self._write(session_id, "saving the session", body)
        if wrote:
            self._trim(wrote[0])
        return written

    def _swap(
        self,
        session_id: str,
        known: _Written,
        change: Transform,
        expected_revision: int | None,
        kind: ChangeKind,
        request_id: str | None,
    ) -> Session | None:
        """``modify`` in one statement, when this process wrote the row's current version.

        ``change`` is made to that version (``known``) here, and one
        statement stores the result, with its event, only if the row still
        is that version (the same project, revision and ``xmin``), under the
        session's advisory lock: a compare-and-swap in one round trip.  The
        row lock is the ``UPDATE``'s own.

        ``None`` when the swap does not apply: the change raised, or made no
        change, on the remembered version (both are judged again on the row
        as it is), or the row has moved on.  ``modify`` then reads the row
        under its lock, as for any other write.
        """
        current, read = known.session()
        before = current.status.value
        try:
            updated = apply_change(session_id, current, change, expected_revision)
            if updated is None:
                return None
            record, marks = known.encode(updated, read)
            stored = _dumps(record, session_id)
        except Exception:  # noqa: BLE001 - judged again on the row as it is
            return None
        arguments = {
            **self._row(updated, stored),
            "project": known.project,
            "kind": reported_kind(kind, before, updated.status.value).value,
            "from_status": before,
            "request_id": request_id,
            "was_revision": known.revision,
            "was_version": known.xmin,
        }
        statement = _SWAP if self.feed_retention else _SWAP_ONLY_ROW
        database = self._database
        row: Any = None
        lost: psycopg.OperationalError | None = None
        for attempt in (1, 2):
            try:
                with self._connection() as conn:
                    row = conn.execute(statement, arguments).fetchone()
                    if row is not None and database.ringer.now():
                        self._ring(conn)
                break
            except psycopg.errors.LockNotAvailable:
                raise LockTimeoutError(session_id, self.lock_timeout) from None
            except psycopg.OperationalError as error:
                action = "saving the session"
                if not _connection_lost(error):
                    self._failed(error, session_id, action, committing=False, last=True)
                if attempt == 2:
                    self._failed(error, session_id, action, committing=True, last=True)
                # Lost with the statement sent: it may have committed, or may still
                # run.  The same swap again settles it; only one of the two can
                # find the row as it was remembered.
                lost = error
                self._drop_lost()
            except psycopg.Error as error:
                self._failed(error, session_id, "saving the session", committing=False, last=True)
        if row is None and lost is not None:
            return self._after_lost(session_id, known, updated, stored, record, marks, lost)
        if row is None:
            database.remember(session_id, None)
            return None
        database.remember(
            session_id,
            None
            if updated.extra
            else _Written(known.project, str(row[0]), updated.revision, record, marks),
        )
        return updated

    def _after_lost(
        self,
        session_id: str,
        known: _Written,
        updated: Session,
        stored: str,
        record: dict[str, Any],
        marks: tuple[Mark, ...],
        lost: psycopg.OperationalError,
    ) -> Session | None:
        """A swap whose connection was lost, and whose second try found the row moved on.

        The row holding this write's record at its revision is the first try,
        committed: the write is done.  Another record at that revision is
        another writer's, and a row still at the remembered revision (in
        another version) has none of this write: the first try cannot have
        committed (nor can it later: its condition no longer holds), and
        ``modify`` goes on from the row as it is.  A later revision may sit on
        top of the first try or not: the outcome is unknown, and the error
        says so.
        """
        unknown = _unknown_outcome(session_id, "saving the session", lost)
        try:
            with self._connection() as conn:
                row = conn.execute(
                    "SELECT revision, xmin::text, record = %s::jsonb FROM maestro_sessions "
                    "WHERE project = %s AND session_id = %s",
                    (stored, known.project, session_id),
                ).fetchone()
        except psycopg.Error:
            raise unknown from lost
        self._database.remember(session_id, None)
        if row is None:
            return None  # deleted since: ``modify`` says so
        revision, version, same = row
        if revision == known.revision or (revision == updated.revision and not same):
            return None  # not this write's: it was not made, and cannot be now
        if revision != updated.revision:
            raise unknown from lost
        if not updated.extra:
            self._database.remember(
                session_id, _Written(known.project, str(version), revision, record, marks)
            )
        self._database.ringer.later()
        return updated

    def delete(
        self,
        session_id: str,
        *,
        expected_revision: int | None = None,
        request_id: str | None = None,
    ) -> None:
        check_session_id(session_id)
        check_request_id_type(request_id)

        def body(conn: Any) -> str:
            _lock(conn, session_id)
            found = conn.execute(
                "SELECT project, record::text, revision FROM maestro_sessions "
                "WHERE " + self._one() + " LIMIT 1 FOR UPDATE",
                self._one_args(session_id),
            ).fetchone()
            if found is None:
                raise SessionNotFoundError(session_id)
            project, text, revision = found
            if expected_revision is not None and expected_revision != revision:
                raise ConflictError(session_id, expected_revision, revision)
            try:
                current = self._decode(session_id, text)
                status: str | None = current.status.value
            except ValueError:
                current, status = None, None
            conn.execute(
                "DELETE FROM maestro_sessions WHERE project = %s AND session_id = %s",
                (project, session_id),
            )
            if self.feed_retention:
                conn.execute(
                    "INSERT INTO maestro_events (project, kind, session_id, revision, "
                    "from_status, to_status, at, request_id) "
                    "VALUES (%s, 'deleted', %s, %s, %s, NULL, %s, %s)",
                    (project, session_id, revision, status, utcnow(), request_id),
                )
            return str(project)

        project = self._run(session_id, "deleting the session", body, write=True)
        self._database.remember(session_id, None)
        self._trim(project)
        self._remove_directory(session_id)

    # ------------------------------------------------------------ reading many

    def _filters(self, query: SessionQuery) -> tuple[list[str], list[object]]:
        where, args = self._where_project()
        clauses = [where]
        if query.statuses is not None:
            clauses.append("status = ANY(%s)")
            args.append(sorted(query.statuses))
        if query.phases is not None:
            clauses.append("phase = ANY(%s)")
            args.append(sorted(query.phases))
        for column, value in (("branch", query.branch), ("worktree", query.worktree)):
            if value is not None:
                clauses.append(f"{column} = %s")
                args.append(value)
        bounds = (
            ("created_at >= %s", query.created_after),
            ("created_at <= %s", query.created_before),
            ("updated_at >= %s", query.updated_after),
            ("updated_at <= %s", query.updated_before),
            ("active_at <= %s", query.active_before),
        )
        for clause, moment in bounds:
            if moment is not None:
                clauses.append(clause)
                args.append(moment)
        if query.after is not None:
            column = "updated_at" if query.order_by == "updated" else "created_at"
            clauses.append(f"({column}, session_id) {'<' if query.descending else '>'} (%s, %s)")
            args.extend(query.after)
        if query.text is not None:
            exact = [word for word, prefix in query.text.terms if not prefix]
            if exact:
                clauses.append("words @> %s::text[]")
                args.append(exact)
            for word, prefix in query.text.terms:
                if prefix:
                    clauses.append(
                        "EXISTS (SELECT 1 FROM unnest(words) w WHERE starts_with(w, %s))"
                    )
                    args.append(word)
        return clauses, args

    def _ordered(self, query: SessionQuery) -> tuple[str, list[object]]:
        clauses, args = self._filters(query)
        column = "updated_at" if query.order_by == "updated" else "created_at"
        direction = "DESC" if query.descending else "ASC"
        text = (
            f"SELECT session_id, record::text FROM maestro_sessions WHERE {' AND '.join(clauses)} "
            f"ORDER BY {column} {direction}, session_id {direction}"
        )
        # The window is written into the statement (whole numbers, checked by
        # SessionQuery): a prepared statement's generic plan cannot see a
        # parameter's LIMIT 10 and may sort the whole project instead of
        # reading ten index entries.
        if query.limit is not None:
            text += f" LIMIT {int(query.limit)}"
        if query.offset:
            text += f" OFFSET {int(query.offset)}"
        return text, args

    def query(self, query: SessionQuery) -> list[Session]:
        text, args = self._ordered(query)

        def body(conn: Any) -> list[tuple[str, str]]:
            return list(conn.execute(text, args).fetchall())

        found: list[Session] = []
        for session_id, record in self._run(None, "querying sessions", body):
            try:
                found.append(self._decode(session_id, record))
            except ValueError:
                continue  # an unreadable record is skipped, as every store does
        return found

    def count(self, query: SessionQuery) -> int:
        clauses, args = self._filters(query)

        def body(conn: Any) -> int:
            row = conn.execute(
                f"SELECT count(*) FROM maestro_sessions WHERE {' AND '.join(clauses)}", args
            ).fetchone()
            return int(row[0])

        return self._run(None, "counting sessions", body)

    def scan(self) -> Iterator[ScanEntry]:
        where, args = self._where_project()

        def body(conn: Any) -> list[tuple[str, str]]:
            return list(
                conn.execute(
                    f"SELECT session_id, record::text FROM maestro_sessions WHERE {where}", args
                ).fetchall()
            )

        for session_id, record in self._run(None, "reading sessions", body):
            try:
                yield ScanEntry(session_id, self._decode(session_id, record), None)
            except ValueError as error:
                yield ScanEntry(session_id, None, error)

    def session_ids(self, prefix: str = "") -> list[str]:
        """The ids starting with ``prefix``, sorted (``PREFIX_LOOKUP``)."""
        where, args = self._where_project()

        def body(conn: Any) -> list[str]:
            rows = conn.execute(
                f"SELECT session_id FROM maestro_sessions WHERE {where} "
                "AND starts_with(session_id, %s) ORDER BY session_id",
                [*args, prefix],
            ).fetchall()
            return [str(row[0]) for row in rows]

        return self._run(None, "listing session ids", body)

    # ------------------------------------------------------------ doctor

    def doctor(
        self, *, fix: bool = False, reindex: bool = False, progress: Progress | None = None
    ) -> DoctorReport:
        """Read every record of the project; report the unreadable ones and the engine.

        There is no derived index to rebuild (``reindex`` is refused) and
        nothing to repair in place: ``fix`` is accepted and changes nothing.
        """
        if reindex:
            from maestro.errors import UnsupportedOperationError

            raise UnsupportedOperationError(
                "rebuilding the index", self.display_name, needs="a derived index"
            )
        report = DoctorReport()
        for entry in self.scan():
            report.sessions += 1
            if entry.error is not None:
                report.corrupt[entry.session_id] = _first_line(entry.error)
        report.index = "off"  # no derived index: the rows are the records
        return report

    def upgrade_schema(self) -> tuple[int, int]:
        """Apply missing schema steps (``MIGRATIONS``): (version found on opening, now)."""
        try:
            with psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=int(self.connect_timeout)
            ) as conn:
                conn.execute("SELECT set_config('lock_timeout', '60s', false)")
                postgres_schema.upgrade(conn)
                return self.schema_found, postgres_schema.current_version(conn)
        except psycopg.OperationalError as error:
            raise unavailable(error) from None

    def health(self) -> dict[str, str]:
        """Schema version, pool state and change feed lag, as short strings."""

        def body(conn: Any) -> tuple[int, float, int]:
            version = postgres_schema.current_version(conn)
            # The maestro writers in flight: those the feed's horizon waits for.
            row = conn.execute(
                "SELECT coalesce(extract(epoch FROM now() - min(a.xact_start)), 0), "
                "count(DISTINCT a.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'relation' AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.relation IN ('maestro_sessions'::regclass, 'maestro_events'::regclass) "
                "AND a.backend_xid IS NOT NULL AND a.pid <> pg_backend_pid()"
            ).fetchone()
            return version, float(row[0]), int(row[1])

        version, oldest, writing = self._run(None, "checking the database", body)
        stats = self.pool_stats()
        return {
            "schema": f"version {version} of {postgres_schema.LATEST}",
            "pool": (
                f"{stats.get('pool_size', 0)} of {self.pool_max} connections open, "
                f"{stats.get('pool_available', 0)} idle, "
                f"{stats.get('requests_waiting', 0)} waiting"
            ),
            "feed": (
                f"{writing} transaction(s) writing; events wait at most for the oldest, "
                f"{oldest:.1f} s old"
            ),
        }


def _unknown_outcome(session_id: str | None, action: str, error: psycopg.Error) -> StorageError:
    """The error of a write whose connection was lost while it may have committed."""
    return StorageError(
        session_id,
        f"{action} (the outcome is unknown: the connection was lost while committing)",
        error,
    )


@functools.lru_cache(maxsize=512)
def _folded(request: str) -> str:
    """The ``words`` column of a feature request: its folded words as a ``text[]`` literal
    (sent as text and cast by the statement: cheaper to send than a list)."""
    return _text_array(sorted(set(words(request))))


def _text_array(items: Iterable[str]) -> str:
    """A ``text[]`` literal of ``items``: each one quoted, so any text is one element."""
    quoted = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in items)
    return "{" + ",".join(quoted) + "}"


def _token(known: _Written) -> tuple[str, int, str]:
    return (known.project, known.revision, known.xmin)


def _dumps(record: dict[str, Any], session_id: str) -> str:
    try:
        return orjson.dumps(record).decode()
    except TypeError as error:  # only reachable through ``extra``
        raise SessionValidationError(
            f"the record holds a value JSON cannot store ({error})", session_id=session_id
        ) from None


def _roll_back(conn: Any) -> None:
    """End a failed write's transaction (a lost connection has none left to end)."""
    with contextlib.suppress(psycopg.Error):
        if not conn.broken:
            conn.rollback()


def _connection_lost(error: psycopg.OperationalError) -> bool:
    state = getattr(error, "sqlstate", None)
    if state is not None and state.startswith(("57P", "08")):
        return True
    text = str(error).lower()
    return any(
        part in text
        for part in ("server closed", "connection", "terminat", "consuming input failed")
    )
