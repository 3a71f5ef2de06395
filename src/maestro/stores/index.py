"""The derived SQLite index of the file store.

``<root>/.flow/maestro/index.sqlite3`` (WAL mode) holds, for every session,
the fields queries filter and sort on, a compact copy of the record, the
signature of the ``metadata.json`` it was made from (inode, size, mtime) and
an FTS5 table over the feature requests.  It is derived data: deleting it
loses nothing, and it is rebuilt from the JSON files whenever it is missing,
its format version changes, or :meth:`FileSessionStore.rebuild_index` is
called.  This module is the SQL layer; :class:`FileSessionStore` decides when
to consult, repair or bypass it.

How it stays truthful (the JSON files are the source of truth):

* Every write marks the session *pending* in the index, writes the JSON file,
  then stores the new row and clears the mark, all under the session's lock.
  A writer killed in between leaves the mark; the next query takes the lock,
  re-reads the file and repairs the row.
* Commits use ``synchronous=NORMAL``: they survive a killed process, not a
  power cut.  The index remembers the boot it was written in; after a reboot
  every row is checked against its file's signature once.
* Sessions added or removed behind the library's back change the mtime of
  ``sessions/``; a query that sees a new mtime lists the directory (names
  only) and indexes what is new.  Coarse timestamps are handled as git does:
  an mtime too close to the moment it was recorded is not trusted.
* Query results are checked against their files' signatures; a row whose file
  changed is re-read from the file and the filter applied again, so a stale
  row can cost a re-read, never a wrong session.

The change feed lives here too: every row change appends an event to the
``events`` table in the same transaction as the row, so the feed holds a
change exactly when the index does, at no extra fsync.  ``seq`` numbers
events in commit order (SQLite serialises write transactions), without gaps.
A cursor is ``<epoch>:<seq>``; the epoch is drawn anew whenever the feed's
history is broken (the index recreated, found foreign, rebuilt, marked stale,
or possibly rolled back by a power cut), so a reader holding an old cursor
is told to start over (a ``reset`` event) instead of silently missing
changes.  The newest ``retention`` events are kept.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import functools
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maestro.codec import dumps
from maestro.errors import SessionValidationError
from maestro.models import Session, SessionStatus
from maestro.search import TOKENIZER, SearchTerms
from maestro.stores.kinds import ChangeKind, reported_kind
from maestro.stores.signatures import (
    DEFAULT_RETENTION,
    RACY_NS,
    CurrentSignature,
    IndexRow,
    IndexUnavailable,
    Item,
    Known,
    Signature,
)

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from maestro.stores.base import ChangeEvent, SessionQuery

__all__ = [
    "DEFAULT_RETENTION",
    "INDEX_FORMAT",
    "RACY_NS",
    "CurrentSignature",
    "IndexRow",
    "IndexUnavailable",
    "Item",
    "Known",
    "PlainRow",
    "SessionIndex",
    "Signature",
    "boot_id",
    "row_content",
    "to_micros",
]

#: Bump when the tables change: an index of another format is rebuilt.
INDEX_FORMAT = 6

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_BATCH = 500

#: The indexes of ``sessions``: made with the table, dropped while an empty
#: index is filled in bulk and made again at the end (one sort each is far
#: cheaper than keeping five B-trees in step row by row).  The first keeps
#: session ids unique (an index, not a column constraint, so that it can go).
_INDEXES = {
    "sessions_id": "session_id",
    "sessions_created": "created_us, session_id",
    "sessions_updated": "updated_us, session_id",
    "sessions_status": "status, created_us, session_id",
    "sessions_branch": "branch, created_us, session_id",
}
_ORDERS = "\n".join(
    f"CREATE {'UNIQUE ' if name == 'sessions_id' else ''}INDEX IF NOT EXISTS {name}"
    f" ON sessions ({columns});"
    for name, columns in _INDEXES.items()
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    status TEXT NOT NULL,
    phase TEXT,
    branch TEXT NOT NULL,
    worktree TEXT,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    active_us INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    feature_request TEXT NOT NULL,
    record BLOB NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    racy INTEGER NOT NULL,
    indexed_ns INTEGER NOT NULL
);
{_ORDERS}
CREATE TABLE IF NOT EXISTS pending (
    session_id TEXT PRIMARY KEY,
    kind TEXT,
    request_id TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    at_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    session_id TEXT,
    revision INTEGER,
    from_status TEXT,
    to_status TEXT,
    request_id TEXT
);
CREATE TABLE IF NOT EXISTS unreadable (
    session_id TEXT PRIMARY KEY,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    problem TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    feature_request,
    content = 'sessions',
    content_rowid = 'id',
    tokenize = '{TOKENIZER}'
);
"""
_LOAD = (
    "INSERT OR IGNORE INTO sessions (session_id, status, phase, branch, worktree, created_us,"
    " updated_us, active_us, revision, feature_request, record, ino, size, mtime_ns, racy,"
    " indexed_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: A candidate row as SQLite returns it: session id, inode, size, mtime (ns),
#: racy, the record's copy, the feature request.
PlainRow = tuple[str, int, int, int, int, bytes, str]
#: Results up to this size are fetched in two steps (ids, then wide rows).
_ONE_STEP = 1000
_WIDE_ROWS = (
    "SELECT id, session_id, ino, size, mtime_ns, racy, record, feature_request"
    " FROM sessions WHERE id IN ({})"
)
_TABLES = ("fts", "pending", "unreadable", "events", "sessions", "meta")


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding)."""
    return (moment - _EPOCH) // _MICRO


_boot: str | None = None


def boot_id() -> str:
    """An identifier of the running boot: it changes when the machine restarts."""
    global _boot
    if _boot is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
                _boot = handle.read().strip()
        except OSError:
            # Elsewhere: the boot time, to the minute.  A change (even a
            # spurious one after a sleep) only costs one extra verification.
            _boot = str(int(time.time() - time.monotonic()) // 60)
    return _boot


def row_content(session: Session, record: dict[str, Any] | None = None) -> tuple[object, ...]:
    """The columns of a session's row that derive from its record.

    ``record`` is ``session.to_dict()`` when the caller has it already (a
    write has just encoded it); it is not changed.
    """
    # The feature request is kept once, in its own column, for FTS5.
    record = session.to_dict() if record is None else dict(record)
    del record["feature_request"]
    return (
        session.session_id,
        session.status.value,
        session.current_phase.value if session.current_phase else None,
        session.git_context.branch,
        session.git_context.worktree_name,
        to_micros(session.created_at),
        to_micros(session.updated_at or session.created_at),
        to_micros(session.last_activity),
        session.revision,
        session.feature_request,
        dumps(record),
    )


def _row_values(
    session: Session, signature: Signature, now_ns: int, record: dict[str, Any] | None = None
) -> tuple[object, ...]:
    return (
        *row_content(session, record),
        signature.ino,
        signature.size,
        signature.mtime_ns,
        int(signature.racy(now_ns)),
        now_ns,
    )


class SessionIndex:
    """The SQL side of the index: one connection per thread (and per process).

    ``sessions_dir`` is the directory the index describes.  The index records
    its *owner*: the identity (device, inode) of that directory and of the
    index file itself.  A copy of the whole root (``cp -a``) shares every
    byte, a random root id included, but no inode; so an index that was made
    for another directory, or copied in from elsewhere (a diverged twin of
    this root, a backup of another history), shows a foreign owner and is
    emptied, to be rebuilt from the files by the next query.  Every process
    checks this when it opens the index (writers too: a twin's writers stamp
    it as theirs before writing a row), and each query checks it again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 10.0,
        sessions_dir: str | os.PathLike[str] | None = None,
        retention: int = DEFAULT_RETENTION,
    ) -> None:
        self.path = Path(path)
        self._path_text = str(self.path)  # for the stat of every connection() call
        self.timeout = timeout
        self.sessions_dir = None if sessions_dir is None else Path(sessions_dir)
        #: How many of the newest events the feed keeps; 0 writes none.
        self.retention = retention
        self._local = _thread._local()  # threading.local, without loading threading
        # See generation(): a connection that only watches for commits.
        self._watch: tuple[int, sqlite3.Connection, tuple[int, int]] | None = None
        self._watched: int | None = None
        self._generation = 0
        self._watch_lock = _thread.allocate_lock()

    def __repr__(self) -> str:
        return f"SessionIndex({str(self.path)!r})"

    # ------------------------------------------------------------ connection

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the schema checked) on first use.

        A connection whose file was deleted or replaced since it was opened
        is dropped: its rows would go to a file nobody else reads.
        """
        held: tuple[int, sqlite3.Connection, tuple[int, int]] | None = getattr(
            self._local, "held", None
        )
        if held is not None and held[0] == os.getpid():
            if _identity(self._path_text) == held[2]:
                return held[1]
            self.close()
        try:
            conn = self._open()
        except sqlite3.DatabaseError as error:
            if isinstance(error, sqlite3.OperationalError):
                raise IndexUnavailable.of(error) from error
            # Not a database any more (a torn copy, garbage): it is derived
            # data, so start afresh.
            self.discard()
            try:
                conn = self._open()
            except sqlite3.Error as again:
                raise IndexUnavailable.of(again) from again
        self._local.held = (os.getpid(), conn, _identity(self._path_text))
        return conn

    def _open(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise IndexUnavailable(f"{self.path.parent} does not exist", code=errno.ENOENT)
        # SQLite follows links: a linked database (a checkout can commit one)
        # would be created or written wherever it points.
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.islink(f"{self.path}{suffix}"):
                raise IndexUnavailable(
                    f"{self.path}{suffix} is a symlink; not followed", code=errno.ELOOP
                )
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=True
        )
        try:
            self._use_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._check_format(conn)
            self._check_owner(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Put the index in WAL mode (it stays so: only the file's first users change it).

        Changing the mode takes an exclusive lock from the shared one the
        statement holds; while another connection is making the file (its
        schema), SQLite refuses at once instead of waiting its busy timeout,
        which would avoid a deadlock between two such upgrades.  So the
        change is tried again, for up to the timeout.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                code = getattr(error, "sqlite_errorcode", 0)  # extended: BUSY_RECOVERY...
                if code & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)

    def _check_format(self, conn: sqlite3.Connection) -> None:
        if self._format(conn) == INDEX_FORMAT:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self._format(conn) != INDEX_FORMAT:
                self._recreate(conn)
            conn.execute("COMMIT")
        except BaseException:
            self._roll_back(conn)
            raise

    def _roll_back(self, conn: sqlite3.Connection) -> None:
        """Undo an open transaction after an error, leaving that error to propagate.

        SQLite rolls a transaction back by itself after some errors (a full
        disk, an I/O error), so a ROLLBACK then would fail with "no transaction
        is active" and hide the cause.  If the rollback itself fails the
        connection's state is unknown: it is dropped and the next use reopens.
        """
        if not conn.in_transaction:
            return
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            held: tuple[int, sqlite3.Connection, tuple[int, int]] | None = getattr(
                self._local, "held", None
            )
            if held is not None and held[1] is conn:
                self.close()

    def _recreate(self, conn: sqlite3.Connection) -> None:
        """Empty tables of the current format, owned by this root (in a transaction)."""
        for table in _TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO meta (key, value) VALUES ('format', ?)", (str(INDEX_FORMAT),))
        _new_epoch(conn)
        owner = self._owner()
        if owner is not None:
            conn.execute("INSERT INTO meta (key, value) VALUES ('owner', ?)", (owner,))

    def _owner(self, sessions: os.stat_result | None = None) -> str | None:
        """The identity of this root's ``sessions/`` and index file; ``None`` if unknown."""
        if self.sessions_dir is None:
            return None
        try:
            if sessions is None:
                sessions = os.stat(self.sessions_dir)
            index = os.stat(self.path)
        except OSError:
            return None  # no sessions yet: nothing to compare with
        return f"{sessions.st_dev}:{sessions.st_ino} {index.st_dev}:{index.st_ino}"

    def _check_owner(
        self, conn: sqlite3.Connection, sessions: os.stat_result | None = None
    ) -> bool:
        """Empty an index that belongs to another root or history; True if it was."""
        owner = self._owner(sessions)
        if owner is None or _meta(conn, "owner") == owner:
            return False
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = _meta(conn, "owner")
            foreign = found != owner
            if foreign:
                if (
                    found is None
                    and conn.execute("SELECT 1 FROM sessions LIMIT 1").fetchone() is None
                ):
                    conn.execute("INSERT INTO meta (key, value) VALUES ('owner', ?)", (owner,))
                    foreign = False  # made before ``sessions/`` existed: empty, ours
                else:
                    self._recreate(conn)
            conn.execute("COMMIT")
        except BaseException:
            self._roll_back(conn)
            raise
        return foreign

    def claim(self, sessions: os.stat_result) -> bool:
        """Before a query: empty the index if it is not this root's; True if it was."""
        try:
            return self._check_owner(self.connection(), sessions)
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error

    @staticmethod
    def _format(conn: sqlite3.Connection) -> int | None:
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return None
            raise
        return int(row[0]) if row else None

    def close(self) -> None:
        held: tuple[int, sqlite3.Connection, tuple[int, int]] | None = getattr(
            self._local, "held", None
        )
        if held is not None:
            if held[0] == os.getpid():
                held[1].close()
            self._local.held = None

    def discard(self) -> None:
        """Delete the index files (they hold nothing that the JSON files lack)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
            except OSError as error:
                raise IndexUnavailable(
                    f"cannot remove a broken index: {error.strerror or error}", code=error.errno
                ) from error

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any error.

        ``BEGIN IMMEDIATE`` takes SQLite's write lock at once (waiting up to
        the timeout), so a transaction never fails half-way for a lock.
        """
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                self._roll_back(conn)
                raise
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error

    def _write(self, statements: Iterable[tuple[str, tuple[object, ...]]]) -> None:
        with self._transaction() as conn:
            for sql, params in statements:
                conn.execute(sql, params)

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            return list(self.connection().execute(sql, params))
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error

    # ------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, **values: str) -> None:
        self._write(
            ("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
            for key, value in values.items()
        )

    # ------------------------------------------------------------ writes

    def mark_pending(
        self,
        session_id: str,
        *,
        kind: ChangeKind | None = None,
        request_id: str | None = None,
        previous: tuple[int, Signature] | None = None,
    ) -> bool:
        """Before a JSON write: the row may be about to go stale.

        The mark keeps the ``kind`` and ``request_id`` of the write, so that
        a repair after the writer died reports the change as it was meant.
        ``previous`` is the revision and signature of the record the writer
        read under its lock.  If the row is behind it (an earlier writer died
        after its record write, or the record was changed outside the
        library), nothing is marked and False is returned: the caller brings
        that record in first (:meth:`store`), so its change is reported
        before the one about to be made, then marks again.
        """
        if kind is None:
            self._write([("INSERT OR IGNORE INTO pending (session_id) VALUES (?)", (session_id,))])
            return True
        mark = (session_id, kind.value, request_id)
        if previous is None or self.retention <= 0:
            self._write([(_MARK, mark)])
            return True
        # One statement, so one implicit transaction: marked only if the row
        # is the record read under the lock (or, with no row, if no writer
        # died creating it).  Every write pays for this, so no BEGIN/COMMIT.
        revision, signature = previous
        try:
            cursor = self.connection().execute(
                _MARK_IF_CURRENT,
                (*mark, revision, *signature, session_id, session_id),
            )
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error
        return cursor.rowcount > 0

    def store(
        self,
        items: Iterable[Item],
        *,
        current: CurrentSignature | None = None,
        clear_pending: bool = True,
        kind: ChangeKind | None = None,
        request_id: str | None = None,
        new_rows_are_changes: bool = True,
        record: dict[str, Any] | None = None,
    ) -> int:
        """Insert or replace rows (in batches); returns how many were written.

        ``record`` is the ``to_dict()`` of the one session of ``items`` when
        the caller has it at hand (a write has just encoded it).

        Each row that changes appends an event to the feed: of ``kind`` and
        ``request_id`` when given (a library write), else of the session's
        pending mark (a repair), else ``replaced`` (a change made outside
        the library).  ``new_rows_are_changes=False`` adds no event for a
        session the index had no row for (filling a new index).

        The file is the truth whatever its revision: a directory restored
        from a backup holds a lower revision than its row, and its row must
        take it.  A reader that read a file without the session's lock passes
        ``current`` instead: inside the write transaction (which a writer's
        own row update must wait for) the file's signature is checked again,
        and a row whose file changed since it was read is not written, so a
        reader never undoes a concurrent writer's newer row.
        """
        written = 0
        batch: list[Item] = []
        event: _EventOf
        if kind is not None:
            fixed = (kind, request_id)

            def event(conn: sqlite3.Connection, sid: str) -> tuple[ChangeKind, str | None] | None:
                return fixed

        else:
            event = self._pending_event
        if not new_rows_are_changes:
            event = _only_known(event)
        for item in items:
            batch.append(item)
            if len(batch) >= _BATCH:
                written += self._store_batch(batch, current, clear_pending, event)
                batch = []
        if batch:
            written += self._store_batch(batch, current, clear_pending, event, record)
        return written

    def load_fresh(self, items: Iterable[Item]) -> int:
        """Fill an empty index fast: plain inserts in batches, the rest built at the end.

        A row a concurrent writer stored meanwhile is newer and is kept
        (``INSERT OR IGNORE``).  Returns how many rows were inserted.
        """
        return self.load_fresh_rows(
            (row_content(session), signature) for session, signature in items
        )

    def load_fresh_rows(self, rows: Iterable[tuple[tuple[object, ...], Signature]]) -> int:
        """:meth:`load_fresh` of rows made already: :func:`row_content` and the signature.

        The columns may come from other processes, which read and check the
        records in parallel (see :mod:`maestro.stores.files_fill`).

        If the table is empty when the first batch goes in, its indexes are
        dropped in that transaction and made again, by one sort each, at the
        end; a load that stops half-way leaves them to :meth:`finish_load`,
        which the next fill of the index calls first.  Meanwhile the rows are
        all there for any reader, only slower to find.  Each batch adds its
        rows' full-text entries in its own transaction, so that no committed
        row lacks them.  Rows go in the order given, which becomes the
        table's own: the store gives them in the order their directories
        were made, mostly that of their creation, which listings walk.
        """
        inserted = 0
        batch: list[tuple[object, ...]] = []
        first = True

        def flush() -> None:
            nonlocal inserted, first
            with self._transaction() as conn:
                if first and conn.execute("SELECT 1 FROM sessions LIMIT 1").fetchone() is None:
                    for name in _INDEXES:
                        conn.execute(f"DROP INDEX IF EXISTS {name}")
                first = False
                # This transaction holds the write lock: the rows numbered
                # after the last one now are the ones it inserts.
                last = conn.execute("SELECT coalesce(max(id), 0) FROM sessions").fetchone()[0]
                before = conn.total_changes
                conn.executemany(_LOAD, batch)
                inserted += conn.total_changes - before
                conn.execute(
                    "INSERT INTO fts (rowid, feature_request)"
                    " SELECT id, feature_request FROM sessions WHERE id > ?",
                    (last,),
                )
            batch.clear()

        now_ns = time.time_ns()
        try:
            for content, signature in rows:
                batch.append((*content, *signature, int(signature.racy(now_ns)), now_ns))
                if len(batch) >= 4 * _BATCH:
                    flush()
                    now_ns = time.time_ns()
            if batch:
                flush()
        except Exception:
            with contextlib.suppress(IndexUnavailable):
                self.finish_load()
            raise
        self.finish_load()
        return inserted

    def finish_load(self) -> None:
        """Make the indexes a bulk load dropped (a no-op when they exist).

        Without the unique index, a writer that stored a session during the
        load, before the load's own row of it, left two rows: the writer's,
        the first, is kept (both are checked against the file before use
        anyway), and the other leaves the full-text index with its row.
        """
        with self._transaction() as conn:
            for statement in _ORDERS.split(";"):
                if not statement.strip():
                    continue
                try:
                    conn.execute(statement)
                except sqlite3.IntegrityError:
                    later = (
                        " FROM sessions WHERE id NOT IN"
                        " (SELECT min(id) FROM sessions GROUP BY session_id)"
                    )
                    conn.execute(
                        "INSERT INTO fts (fts, rowid, feature_request)"
                        f" SELECT 'delete', id, feature_request {later}"
                    )
                    conn.execute(f"DELETE {later}")
                    conn.execute(statement)

    def _store_batch(
        self,
        batch: list[Item],
        current: CurrentSignature | None,
        clear_pending: bool,
        event: _EventOf,
        record: dict[str, Any] | None = None,
    ) -> int:
        if record is not None and len(batch) != 1:
            raise ValueError("a record is given with one session only")
        now_ns = time.time_ns()
        written = 0
        with self._transaction() as conn:
            for session, signature in batch:
                sid = session.session_id
                if current is not None and current(sid) != signature:
                    continue  # changed since it was read: its writer stores it
                if self._store_one(conn, session, signature, now_ns, event, record):
                    written += 1
                if clear_pending:
                    conn.execute("DELETE FROM pending WHERE session_id = ?", (sid,))
                conn.execute("DELETE FROM unreadable WHERE session_id = ?", (sid,))
        return written

    def _pending_event(
        self, conn: sqlite3.Connection, session_id: str
    ) -> tuple[ChangeKind, str | None] | None:
        """What a change noticed by the index is reported as: its pending mark's kind."""
        mark = conn.execute(
            "SELECT kind, request_id FROM pending WHERE session_id = ?", (session_id,)
        ).fetchone()
        if mark is None or mark[0] is None:
            return (ChangeKind.REPLACED, None)
        return (ChangeKind(mark[0]), mark[1])

    def _emit(
        self,
        conn: sqlite3.Connection,
        kind: ChangeKind,
        session_id: str,
        revision: int | None,
        from_status: str | None,
        to_status: str | None,
        request_id: str | None,
        now_ns: int,
    ) -> None:
        """Append one event to the feed (inside the caller's transaction)."""
        if self.retention <= 0:
            return
        cursor = conn.execute(
            "INSERT INTO events (at_us, kind, session_id, revision, from_status, to_status,"
            " request_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                now_ns // 1000,
                reported_kind(kind, from_status, to_status).value,
                session_id,
                revision,
                from_status,
                to_status,
                request_id,
            ),
        )
        seq = cursor.lastrowid or 0
        if seq > self.retention:
            # One row out per row in: the primary key makes this a short seek.
            conn.execute("DELETE FROM events WHERE seq <= ?", (seq - self.retention,))

    def _store_one(
        self,
        conn: sqlite3.Connection,
        session: Session,
        signature: Signature,
        now_ns: int,
        event: _EventOf,
        record: dict[str, Any] | None = None,
    ) -> bool:
        values = _row_values(session, signature, now_ns, record)
        old = conn.execute(
            "SELECT id, revision, feature_request, ino, size, mtime_ns, status, phase, branch,"
            " worktree, created_us, updated_us, active_us FROM sessions WHERE session_id = ?",
            (session.session_id,),
        ).fetchone()
        status = session.status.value
        if old is None:
            cursor = conn.execute(
                "INSERT INTO sessions (session_id, status, phase, branch, worktree, created_us,"
                " updated_us, active_us, revision, feature_request, record, ino, size, mtime_ns,"
                " racy, indexed_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            conn.execute(
                "INSERT INTO fts (rowid, feature_request) VALUES (?, ?)",
                (cursor.lastrowid, session.feature_request),
            )
            described = event(conn, session.session_id)
            if described is not None:
                kind, request_id = described
                self._emit(
                    conn,
                    kind,
                    session.session_id,
                    session.revision,
                    None,
                    status,
                    request_id,
                    now_ns,
                )
            return True
        rowid, revision, old_text, ino, size, mtime_ns, old_status = old[:7]
        old_signature = Signature(ino, size, mtime_ns)
        if old_signature == signature and revision > session.revision:
            # One file cannot hold two revisions: what was read is an older
            # file whose inode a later one reused, and the row is newer.
            return False
        changed = revision != session.revision or (
            old_signature != signature
            and conn.execute("SELECT record FROM sessions WHERE id = ?", (rowid,)).fetchone()[0]
            != values[10]
        )
        # Only the columns that changed among those that are indexed or
        # searched: SQLite rewrites the entries of every index whose columns
        # an UPDATE names, whether or not their values change.
        columns = [
            (name, value)
            for name, before, value in zip(_TRACKED, old[6:], values[1:8], strict=True)
            if before != value
        ]
        if old_text != session.feature_request:
            columns.append(("feature_request", session.feature_request))
        columns += zip(_ALWAYS, (values[8], *values[10:]), strict=True)
        conn.execute(
            _update_sql(tuple(name for name, _ in columns)),
            (*(value for _, value in columns), rowid),
        )
        if old_text != session.feature_request:
            conn.execute(
                "INSERT INTO fts (fts, rowid, feature_request) VALUES ('delete', ?, ?)",
                (rowid, old_text),
            )
            conn.execute(
                "INSERT INTO fts (rowid, feature_request) VALUES (?, ?)",
                (rowid, session.feature_request),
            )
        if changed:
            described = event(conn, session.session_id)
            if described is not None:
                kind, request_id = described
                self._emit(
                    conn,
                    kind,
                    session.session_id,
                    session.revision,
                    old_status,
                    status,
                    request_id,
                    now_ns,
                )
        return True

    def remove(
        self,
        session_ids: Iterable[str],
        *,
        kind: ChangeKind = ChangeKind.DELETED,
        request_id: str | None = None,
    ) -> None:
        """Drop the rows (and pending marks) of sessions that no longer exist.

        Each row dropped is a ``kind`` event (``deleted``, with the request id
        of the pending mark when none is given).
        """
        ids = list(session_ids)
        for start in range(0, len(ids), _BATCH):
            with self._transaction() as conn:
                for session_id in ids[start : start + _BATCH]:
                    self._remove_one(conn, session_id, kind, request_id)

    def _remove_one(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        kind: ChangeKind,
        request_id: str | None,
    ) -> None:
        old = conn.execute(
            "SELECT id, feature_request, revision, status FROM sessions WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        if old is not None:
            conn.execute(
                "INSERT INTO fts (fts, rowid, feature_request) VALUES ('delete', ?, ?)",
                (old[0], old[1]),
            )
            conn.execute("DELETE FROM sessions WHERE id = ?", (old[0],))
            if request_id is None and kind is ChangeKind.DELETED:
                mark = conn.execute(
                    "SELECT kind, request_id FROM pending WHERE session_id = ?", (session_id,)
                ).fetchone()
                if mark is not None and mark[0] == ChangeKind.DELETED.value:
                    request_id = mark[1]
            self._emit(conn, kind, session_id, old[2], old[3], None, request_id, time.time_ns())
        conn.execute("DELETE FROM pending WHERE session_id = ?", (session_id,))
        conn.execute("DELETE FROM unreadable WHERE session_id = ?", (session_id,))

    # ------------------------------------------------------------ reads

    def mark_unreadable(self, session_id: str, signature: Signature, problem: str) -> None:
        """A session a scan would skip: no row, but remembered so every query warns."""
        self.remove([session_id], kind=ChangeKind.REPLACED)
        self._write(
            [
                (
                    "INSERT OR REPLACE INTO unreadable (session_id, ino, size, mtime_ns, problem)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (session_id, *signature, problem),
                )
            ]
        )

    def unreadable(self) -> list[tuple[str, Signature, str]]:
        return [
            (str(sid), Signature(int(str(ino)), int(str(size)), int(str(mtime))), str(problem))
            for sid, ino, size, mtime, problem in self._read(
                "SELECT session_id, ino, size, mtime_ns, problem FROM unreadable"
            )
        ]

    def forget_unreadable(self, session_ids: Iterable[str]) -> None:
        self._write(("DELETE FROM unreadable WHERE session_id = ?", (sid,)) for sid in session_ids)

    def pending(self) -> list[str]:
        return [str(row[0]) for row in self._read("SELECT session_id FROM pending")]

    def known(self) -> dict[str, Known]:
        """Every indexed session: its file's signature, racy, indexed at."""
        try:
            rows = self.connection().execute(
                "SELECT session_id, ino, size, mtime_ns, racy, indexed_ns FROM sessions"
            )
            return {
                sid: Known(Signature(ino, size, mtime), bool(racy), at)
                for sid, ino, size, mtime, racy, at in rows
            }
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error

    def contents(self) -> Iterator[tuple[str, Signature, tuple[object, ...]]]:
        """Every row: its file's signature and the columns :func:`row_content` derives."""
        try:
            for sid, ino, size, mtime, *content in self.connection().execute(
                "SELECT session_id, ino, size, mtime_ns, session_id, status, phase, branch,"
                " worktree, created_us, updated_us, active_us, revision, feature_request, record"
                " FROM sessions"
            ):
                yield sid, Signature(ino, size, mtime), tuple(content)
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error

    def search_consistent(self) -> bool:
        """Whether the full-text index agrees with the rows (FTS5's own integrity check)."""
        try:
            self._write([("INSERT INTO fts (fts, rank) VALUES ('integrity-check', 1)", ())])
        except IndexUnavailable as error:
            if "malformed" in str(error) or "corrupt" in str(error):
                return False
            raise
        return True

    def rebuild_search(self) -> None:
        """Rebuild the full-text index from the rows."""
        self._write([("INSERT INTO fts (fts) VALUES ('rebuild')", ())])

    def select(self, query: SessionQuery, terms: SearchTerms | None) -> Iterator[IndexRow]:
        """Candidate rows in the query's order (its window is applied by the caller)."""
        for sid, ino, size, mtime, racy, record, text in self.select_plain(query, terms):
            yield IndexRow(sid, Signature(ino, size, mtime), bool(racy), record, text)

    def select_plain(self, query: SessionQuery, terms: SearchTerms | None) -> Iterator[PlainRow]:
        """:meth:`select` as plain tuples, as SQLite gives them (cheaper by the 100,000).

        Large results, and any query SQLite answers by walking an index in
        the wanted order (no sort: a caller that stops after ten rows has
        stepped through ten), come in one statement.  Small windows it must
        sort, and searches, take two steps: the ids in order, from the narrow
        columns and indexes alone, then the wide rows (the record copies) a
        chunk at a time, as the caller consumes them; sorting only ids keeps
        record copies out of SQLite's sorter, and a caller that stops after
        ten rows fetches ten.
        """
        wanted = None if query.limit is None else query.offset + query.limit
        if (
            terms is not None
            and query.order_by == "rank"
            and query.after is None
            and _only_text(query)
        ):
            # Nothing to filter on but the text: rank inside FTS5 alone, without
            # joining every match (ties: the most recently indexed first).
            sql = "SELECT rowid FROM fts WHERE fts MATCH ? ORDER BY bm25(fts), rowid DESC"
            params: tuple[object, ...] = (terms.fts_query(),)
        elif terms is None:
            body, params = _body(query, terms)
            order = _order(query, terms)
            sql = f"SELECT s.id {body} ORDER BY {order}"
            wide_sql = (
                "SELECT s.session_id, s.ino, s.size, s.mtime_ns, s.racy, s.record,"
                f" s.feature_request {body} ORDER BY {order}"
            )
            try:
                conn = self.connection()
                if wanted is None or wanted > _ONE_STEP or self._in_order(conn, wide_sql, params):
                    # A large result walks the time index anyway, and one
                    # walked in order stops where its caller does: one
                    # statement, wide rows straight from it, costs less.
                    yield from conn.execute(wide_sql, params)
                    return
            except sqlite3.Error as error:
                raise IndexUnavailable.of(error) from error
        else:
            body, params = _body(query, terms)
            sql = f"SELECT s.id {body} ORDER BY {_order(query, terms)}"
        try:
            conn = self.connection()
            ordered = conn.execute(sql, params)
            size = 64
            while chunk := [row[0] for row in ordered.fetchmany(size)]:
                # Only placeholders are pasted in; the ids travel as parameters.
                wide_sql = _WIDE_ROWS.format(", ".join("?" * len(chunk)))
                wide = {row[0]: row for row in conn.execute(wide_sql, chunk)}
                for rowid in chunk:
                    found = wide.get(rowid)
                    if found is not None:
                        yield found[1:]
                size = min(size * 4, 4096)
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error

    def _in_order(self, conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> bool:
        """Whether SQLite answers ``sql`` without sorting (it walks an index in order).

        Asked once per statement text and connection: only the text and the
        indexes decide the plan (the index is never analysed, so the values
        do not).  A wrong guess costs time, never a row: both ways of
        fetching give the same rows in the same order.
        """
        plans: dict[str, bool] | None = getattr(self._local, "plans", None)
        if plans is None or getattr(self._local, "plans_of", None) is not conn:
            plans = self._local.plans = {}
            self._local.plans_of = conn
        known = plans.get(sql)
        if known is None:
            steps = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            known = not any("TEMP B-TREE" in str(step[-1]) for step in steps)
            if len(plans) >= 256:
                plans.clear()
            plans[sql] = known
        return known

    def count(self, query: SessionQuery, terms: SearchTerms | None) -> int:
        body, params = _body(query, terms)
        rows = self._read(f"SELECT count(*) {body}", params)
        return int(str(rows[0][0]))

    # ------------------------------------------------------------ the change feed

    def rotate_epoch(self) -> None:
        """Start a new feed history: its readers get a ``reset``; old events are dropped."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM events")
            _new_epoch(conn)

    def feed_end(self) -> str:
        """The cursor of the newest event (or of the start of an empty history)."""
        try:
            conn = self.connection()
            return f"{_epoch(conn)}:{_last_seq(conn)}"
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error

    def changes_after(self, cursor: str | None, limit: int) -> list[ChangeEvent]:
        """Up to ``limit`` events after ``cursor``, a ``reset`` first if some are gone.

        All is read in one transaction, so the answer is one snapshot: the
        oldest kept event, the newest and the rows between agree.
        """
        from maestro.stores.events import ChangeEvent

        wanted = _parse_cursor(cursor)
        conn = self.connection()
        try:
            conn.execute("BEGIN")
            try:
                epoch = _epoch(conn)
                last = _last_seq(conn)
                row = conn.execute("SELECT min(seq) FROM events").fetchone()
                oldest: int | None = row[0] if row else None
                start = 0 if oldest is None else oldest - 1
                events: list[ChangeEvent] = []
                if wanted is None:
                    after = start
                else:
                    their_epoch, after = wanted
                    # Complete from ``after`` only in this history, and only if
                    # no event between ``after`` and the oldest kept is gone.
                    kept = after >= start if oldest is not None else after == last
                    if their_epoch != epoch or not kept or after > last:
                        after = start if oldest is not None else last
                        events.append(ChangeEvent.reset(f"{epoch}:{after}"))
                rows = conn.execute(
                    "SELECT seq, at_us, kind, session_id, revision, from_status, to_status,"
                    " request_id FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, max(0, limit - len(events))),
                ).fetchall()
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error
        for seq, at_us, kind, sid, revision, from_status, to_status, request_id in rows:
            events.append(
                ChangeEvent(
                    cursor=f"{epoch}:{seq}",
                    kind=ChangeKind(kind),
                    session_id=sid,
                    revision=revision,
                    from_status=from_status,
                    to_status=to_status,
                    at=_EPOCH + at_us * _MICRO,
                    request_id=request_id,
                )
            )
        return events

    def has_after(self, cursor: str) -> bool:
        """Whether reading from ``cursor`` would return something now (a reset included)."""
        wanted = _parse_cursor(cursor)
        assert wanted is not None
        try:
            conn = self.connection()
            return wanted[0] != _epoch(conn) or _last_seq(conn) != wanted[1]
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error

    def has_pending(self) -> bool:
        return bool(self._read("SELECT 1 FROM pending LIMIT 1"))

    def generation(self) -> int:
        """A number that stays the same only while nothing is committed to the index.

        Two calls, in any threads of this process, that return the same number
        saw no commit between them, by any connection of any process, this
        process's own included.  It is SQLite's ``PRAGMA data_version`` of a
        connection kept for this alone, which never writes: the value moves
        whenever another connection commits.  The number also moves when that
        connection is opened anew (the index file was replaced, or this is a
        forked process).  Costs a ``stat`` and one statement that reads shared
        memory, under a lock; once open, it never waits for a writer.
        """
        with self._watch_lock:
            try:
                identity = _identity(self._path_text)
                watch = self._watch
                if watch is None or watch[0] != os.getpid() or watch[2] != identity:
                    if watch is not None and watch[0] == os.getpid():
                        watch[1].close()
                    self._watch = None
                    self.connection()  # made if missing, its format and owner checked
                    identity = _identity(self._path_text)
                    watch = (os.getpid(), self._open_watch(), identity)
                    self._watch = watch
                    self._watched = None
                version = watch[1].execute("PRAGMA data_version").fetchone()[0]
            except sqlite3.Error as error:
                self._watch = None
                raise IndexUnavailable.of(error) from error
            if version != self._watched:
                self._watched = version
                self._generation += 1
            return self._generation

    def _open_watch(self) -> sqlite3.Connection:
        """The connection of :meth:`generation` (made after :meth:`connection`: not a link)."""
        for suffix in ("", "-wal", "-shm"):
            if os.path.islink(f"{self.path}{suffix}"):
                raise IndexUnavailable(
                    f"{self.path}{suffix} is a symlink; not followed", code=errno.ELOOP
                )
        return sqlite3.connect(
            self.path,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,  # used under the lock only
        )

    def window_rows(self, query: SessionQuery) -> list[tuple[str, Signature, bool]]:
        """The first ``offset + limit`` rows of a query, in order: id, file signature, racy.

        The narrow columns only, no record: what proves later that a result
        built from these rows is still the one a query would build.
        """
        assert query.limit is not None
        body, params = _body(query, query.text)
        sql = (
            f"SELECT s.session_id, s.ino, s.size, s.mtime_ns, s.racy {body}"
            f" ORDER BY {_order(query, query.text)} LIMIT ?"
        )
        try:
            rows = self.connection().execute(sql, (*params, query.offset + query.limit))
            return [
                (sid, Signature(ino, size, mtime_ns), bool(racy))
                for sid, ino, size, mtime_ns, racy in rows
            ]
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error

    def data_version(self) -> tuple[int, int]:
        """Changes whenever another connection commits to the index (or it is replaced).

        SQLite's ``PRAGMA data_version`` costs no I/O beyond the shared
        memory of WAL mode: cheap enough to poll every few tens of ms.
        """
        try:
            conn = self.connection()
            return (id(conn), int(conn.execute("PRAGMA data_version").fetchone()[0]))
        except sqlite3.Error as error:
            raise IndexUnavailable.of(error) from error


#: Says how a row change is reported: (kind, request id), or ``None`` for no event.
_EventOf = Callable[[sqlite3.Connection, str], tuple[ChangeKind, str | None] | None]


def _only_known(event: _EventOf) -> _EventOf:
    """``event`` for sessions that already have a row, nothing for new ones."""

    def only_known(conn: sqlite3.Connection, sid: str) -> tuple[ChangeKind, str | None] | None:
        if conn.execute("SELECT 1 FROM sessions WHERE session_id = ?", (sid,)).fetchone():
            return event(conn, sid)
        return None

    return only_known


def _new_epoch(conn: sqlite3.Connection) -> None:
    """A new feed history (its events, none yet, are numbered from 1)."""
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('epoch', ?)", (os.urandom(4).hex(),)
    )


def _epoch(conn: sqlite3.Connection) -> str:
    epoch = _meta(conn, "epoch")
    if epoch is None:
        raise sqlite3.OperationalError("the index has no feed epoch")
    return epoch


def _last_seq(conn: sqlite3.Connection) -> int:
    """The newest event's number.

    Events are numbered ``max + 1`` (a plain rowid: no AUTOINCREMENT, whose
    bookkeeping would cost every write another page).  Within an epoch the
    newest event is never removed (retention drops the oldest, and only a
    new epoch empties the table), so a number is never given twice.
    """
    row = conn.execute("SELECT max(seq) FROM events").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


_MARK = "INSERT OR REPLACE INTO pending (session_id, kind, request_id) VALUES (?, ?, ?)"

#: The pending mark of a write, only if the index row is the record the
#: writer read under its lock; with no row, only if no earlier writer left a
#: mark (it died creating the session).  A row behind the record (an earlier
#: writer died after its record write, or the file was changed outside the
#: library) is brought in first, so that its change is reported first.
_MARK_IF_CURRENT = (
    "INSERT OR REPLACE INTO pending (session_id, kind, request_id) SELECT ?, ?, ?"
    " WHERE coalesce("
    "(SELECT revision = ? AND ino = ? AND size = ? AND mtime_ns = ? FROM sessions"
    " WHERE session_id = ?),"
    " NOT EXISTS (SELECT 1 FROM pending WHERE session_id = ?))"
)


#: The row's columns an update may leave alone, in :func:`row_content` order
#: (after ``session_id``), and those it always writes (revision onwards,
#: less ``feature_request``, compared on its own).
_TRACKED = ("status", "phase", "branch", "worktree", "created_us", "updated_us", "active_us")
_ALWAYS = ("revision", "record", "ino", "size", "mtime_ns", "racy", "indexed_ns")


@functools.lru_cache(maxsize=64)
def _update_sql(columns: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{name} = ?" for name in columns)
    return f"UPDATE sessions SET {assignments} WHERE id = ?"  # noqa: S608 - fixed names


def _parse_cursor(cursor: str | None) -> tuple[str, int] | None:
    if cursor is None:
        return None
    epoch, _, number = cursor.partition(":") if isinstance(cursor, str) else ("", "", "")
    if not epoch or not number.isdigit() or len(number) > 18:
        raise SessionValidationError("not a change-feed cursor (use one the feed gave)")
    return epoch, int(number)


def _identity(path: str | Path) -> tuple[int, int]:
    """(device, inode) of ``path``; (0, 0) when it does not exist."""
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0)
    return (info.st_dev, info.st_ino)


def _meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _only_text(query: SessionQuery) -> bool:
    """True when the query filters on nothing but its text."""
    return all(
        value is None
        for value in (
            query.statuses,
            query.phases,
            query.branch,
            query.worktree,
            query.created_after,
            query.created_before,
            query.updated_after,
            query.updated_before,
            query.active_before,
        )
    )


def _body(query: SessionQuery, terms: SearchTerms | None) -> tuple[str, tuple[object, ...]]:
    """``FROM ... WHERE ...`` of a query.  Only fixed SQL fragments are pasted
    together; every value travels as a parameter."""
    where, params = _where(query)
    source = "FROM sessions s"
    if terms is not None:
        source = "FROM fts JOIN sessions s ON s.id = fts.rowid"
        where.insert(0, "fts MATCH ?")
        params.insert(0, terms.fts_query())
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    return source + clause, tuple(params)


def _where(query: SessionQuery) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    for column, values in (("s.status", query.statuses), ("s.phase", query.phases)):
        if values is not None:
            if not values:
                clauses.append("0")
                continue
            if column == "s.status" and len(values) > len(SessionStatus) // 2:
                # Most sessions pass: walking the time index in order beats
                # gathering them by status and sorting them all afterwards.
                column = "+s.status"
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(sorted(values))
    for column, value in (("s.branch", query.branch), ("s.worktree", query.worktree)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    bounds = (
        ("s.created_us >= ?", query.created_after),
        ("s.created_us <= ?", query.created_before),
        ("s.updated_us >= ?", query.updated_after),
        ("s.updated_us <= ?", query.updated_before),
        ("s.active_us <= ?", query.active_before),
    )
    for clause, moment in bounds:
        if moment is not None:
            clauses.append(clause)
            params.append(to_micros(moment))
    if query.after is not None:
        # The keyset bound: strictly beyond the last row of the previous page,
        # in the same (time, id) order _order sorts by.
        moment, session_id = query.after
        column = "s.updated_us" if query.order_by == "updated" else "s.created_us"
        beyond = "<" if query.descending else ">"
        clauses.append(f"({column}, s.session_id) {beyond} (?, ?)")
        params.extend((to_micros(moment), session_id))
    return clauses, params


def _order(query: SessionQuery, terms: SearchTerms | None) -> str:
    direction = "DESC" if query.descending else "ASC"
    column = "s.updated_us" if query.order_by == "updated" else "s.created_us"
    by_time = f"{column} {direction}, s.session_id {direction}"
    if query.order_by == "rank" and terms is not None:
        return f"bm25(fts), {by_time}"
    return by_time
