"""The PostgreSQL store's write path: one statement for a version the process wrote
last, what happens when that version is stale or the connection is lost, and
the doorbell rung at most once per ``notify_interval``.

These tests need the server of tests/postgres_server.py: they skip without
one, and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from maestro import SessionManager, SessionStatus
from maestro.errors import SessionValidationError, StorageError
from maestro.stores.postgres_shared import _NOTIFY, _Ringer
from tests.conftest import GIT
from tests.postgres_server import database_url, store_url

psycopg = pytest.importorskip("psycopg")

LOST = "server closed the connection unexpectedly"


def _manager(tmp_path: Path, **parameters: str) -> SessionManager:
    return SessionManager(tmp_path, store=store_url(tmp_path, **parameters))


def _elsewhere(tmp_path: Path) -> SessionManager:
    """Another process's manager on the same project: a pool and memory of its own."""
    return _manager(tmp_path, pool_max="3")


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every statement sent through a psycopg connection, in order."""
    sent: list[str] = []
    execute = psycopg.Connection.execute

    def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(query.decode() if isinstance(query, bytes) else str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", counted)
    return sent


def test_a_write_of_the_version_written_last_is_one_statement(
    tmp_path: Path, statements: list[str]
) -> None:
    manager = _manager(tmp_path, notify_interval="3600")
    sid = manager.create_session("one statement", git_context=GIT).session_id
    manager.transition_state(sid, SessionStatus.PLANNING)  # read, written, remembered
    statements.clear()
    manager.update_session(sid, {"statistics": {"total_tasks": 3}})
    moved = manager.transition_state(sid, SessionStatus.GENERATING_TASKS)
    assert len(statements) == 2, statements
    assert all("pg_advisory_xact_lock" in sql and "xmin::text = " in sql for sql in statements)
    stored = _elsewhere(tmp_path).get_session(sid)
    assert stored == moved
    assert (stored.revision, stored.statistics.total_tasks) == (4, 3)


def test_a_change_refused_on_the_remembered_version_is_judged_on_the_row(
    tmp_path: Path,
) -> None:
    """The remembered version says planning, where implementing is not allowed; the
    row moved on to generating_tasks elsewhere, where it is."""
    here = _manager(tmp_path)
    there = _elsewhere(tmp_path)
    sid = here.create_session("stale memory", git_context=GIT).session_id
    here.transition_state(sid, SessionStatus.PLANNING)
    there.transition_state(sid, SessionStatus.GENERATING_TASKS)
    moved = here.transition_state(sid, SessionStatus.IMPLEMENTING)
    assert [entry.to_status for entry in moved.history] == [
        SessionStatus.PLANNING,
        SessionStatus.GENERATING_TASKS,
        SessionStatus.IMPLEMENTING,
    ]
    assert there.get_session(sid) == moved


def test_a_change_allowed_on_the_remembered_version_is_refused_on_the_row(
    tmp_path: Path,
) -> None:
    from maestro.errors import InvalidTransitionError

    here = _manager(tmp_path)
    there = _elsewhere(tmp_path)
    sid = here.create_session("stale memory", git_context=GIT).session_id
    here.transition_state(sid, SessionStatus.PLANNING)
    there.transition_state(sid, SessionStatus.FAILED, reason="stopped elsewhere")
    with pytest.raises(InvalidTransitionError):
        here.transition_state(sid, SessionStatus.GENERATING_TASKS)
    assert there.get_session(sid).status is SessionStatus.FAILED


def test_a_write_remembered_in_one_project_is_not_made_from_another(tmp_path: Path) -> None:
    """Stores of one process share what it wrote; a store of another project
    must still not find the session, and one of every project may write it."""
    base = database_url()
    tag = secrets.token_hex(4)
    mine = SessionManager(tmp_path, store=f"{base}?project=a-{tag}")
    other = SessionManager(tmp_path, store=f"{base}?project=b-{tag}")
    every = SessionManager(tmp_path, store=f"{base}?project=b-{tag}", all_projects=True)
    sid = mine.create_session("mine", git_context=GIT).session_id
    mine.transition_state(sid, SessionStatus.PLANNING)  # remembered
    with pytest.raises(FileNotFoundError):
        other.heartbeat(sid)
    moved = every.transition_state(sid, SessionStatus.GENERATING_TASKS)
    assert mine.get_session(sid) == moved
    assert mine.transition_state(sid, SessionStatus.IMPLEMENTING).revision == 4


def test_a_one_statement_write_gives_up_after_the_lock_timeout(tmp_path: Path) -> None:
    from maestro.errors import LockTimeoutError

    manager = SessionManager(tmp_path, store=store_url(tmp_path), lock_timeout=0.3)
    sid = manager.create_session("held", git_context=GIT).session_id
    manager.transition_state(sid, SessionStatus.PLANNING)  # remembered
    with psycopg.connect(database_url()) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (sid,))
        with pytest.raises(LockTimeoutError):
            manager.increment_statistics(sid, completed_tasks=1)
        holder.rollback()
    counted = manager.increment_statistics(sid, completed_tasks=1)
    assert (counted.statistics.completed_tasks, counted.revision) == (1, 3)


def _losing(
    monkeypatch: pytest.MonkeyPatch,
    manager: SessionManager,
    *,
    before: bool,
    meanwhile: Callable[[], object] = lambda: None,
) -> None:
    """The next statement of ``manager``'s store fails as a lost connection does:
    before it reaches the server, or after it committed; ``meanwhile`` runs
    before the error is raised."""
    store: Any = manager.store
    real = store._connection
    armed = [True]

    class Lost:
        def __init__(self, conn: Any) -> None:
            self._conn = conn

        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            if not before:
                self._conn.execute(query, *args, **kwargs).fetchone()
            meanwhile()
            raise psycopg.OperationalError(LOST)

    @contextlib.contextmanager
    def connection() -> Iterator[Any]:
        with real() as conn:
            if armed[0]:
                armed[0] = False
                yield Lost(conn)
            else:
                yield conn

    monkeypatch.setattr(store, "_connection", connection)


@pytest.mark.parametrize("before", [True, False], ids=["before-the-server", "after-the-commit"])
def test_a_write_whose_connection_is_lost_is_made_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: bool
) -> None:
    manager = _manager(tmp_path)
    sid = manager.create_session("lost", git_context=GIT).session_id
    manager.transition_state(sid, SessionStatus.PLANNING)
    _losing(monkeypatch, manager, before=before)
    counted = manager.increment_statistics(sid, completed_tasks=1)
    stored = _elsewhere(tmp_path).get_session(sid)
    assert stored == counted
    assert (stored.statistics.completed_tasks, stored.revision) == (1, 3)
    # What it remembers is the row as it is: the next write is right too.
    assert manager.increment_statistics(sid, completed_tasks=1).statistics.completed_tasks == 2


def test_a_write_lost_before_the_server_builds_on_an_edit_made_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit by hand keeps the revision but makes a new row version: the second
    try writes nothing, and the write is made on the row as edited."""
    manager = _manager(tmp_path)
    sid = manager.create_session("lost", git_context=GIT).session_id
    manager.transition_state(sid, SessionStatus.PLANNING)

    def edit() -> None:
        with psycopg.connect(database_url(), autocommit=True) as conn:
            conn.execute(
                "UPDATE maestro_sessions SET record = jsonb_set(record, '{feature_request}', "
                "'\"edited by hand\"') WHERE session_id = %s",
                (sid,),
            )

    _losing(monkeypatch, manager, before=True, meanwhile=edit)
    counted = manager.increment_statistics(sid, completed_tasks=1)
    stored = _elsewhere(tmp_path).get_session(sid)
    assert stored == counted
    assert (stored.feature_request, stored.statistics.completed_tasks, stored.revision) == (
        "edited by hand",
        1,
        3,
    )


def test_a_lost_write_under_a_later_one_is_an_unknown_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = _manager(tmp_path)
    there = _elsewhere(tmp_path)
    sid = manager.create_session("lost", git_context=GIT).session_id
    manager.transition_state(sid, SessionStatus.PLANNING)
    _losing(
        monkeypatch,
        manager,
        before=False,
        meanwhile=lambda: there.increment_statistics(sid, failed_tasks=1),
    )
    with pytest.raises(StorageError, match="outcome is unknown"):
        manager.increment_statistics(sid, completed_tasks=1)
    stored = there.get_session(sid)
    assert (stored.statistics.completed_tasks, stored.statistics.failed_tasks) == (1, 1)
    # Nothing stale is remembered: the next write builds on the row.
    assert manager.increment_statistics(sid, completed_tasks=1).statistics.failed_tasks == 1


def test_a_bad_notify_interval_is_refused(tmp_path: Path) -> None:
    database_url()
    for bad in ("-1", "soon"):
        with pytest.raises(SessionValidationError, match="notify_interval"):
            _manager(tmp_path, notify_interval=bad)


def test_a_burst_of_writes_rings_twice_and_reaches_a_watcher(tmp_path: Path) -> None:
    """The first write rings at once; the writes within the interval after it are
    rung for once, by the ringer, and a watcher sees every event."""
    writer = _manager(tmp_path, notify_interval="0.3")
    watcher = _elsewhere(tmp_path)
    sid = writer.create_session("burst", git_context=GIT).session_id
    cursor = watcher.changes_cursor()
    time.sleep(0.4)  # the creation's ring is over: the burst starts a new interval
    with psycopg.connect(database_url(), autocommit=True) as listener:
        listener.execute("LISTEN maestro_changes")
        for state in (SessionStatus.PLANNING, SessionStatus.GENERATING_TASKS):
            writer.transition_state(sid, state)
        writer.heartbeat(sid)
        rings = list(listener.notifies(timeout=2.0))
    assert len(rings) == 2
    seen = []
    for event in watcher.changes(cursor, follow=True, timeout=30):
        seen.append(event.to_status)
        if len(seen) == 3:
            break
    assert seen == ["planning", "generating_tasks", "generating_tasks"]


# ---------------------------------------------------------------- the ringer


class _Pool:
    """A pool whose connections record the statements sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.rung = threading.Event()

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[_Pool]:
        yield self

    def execute(self, statement: bytes) -> None:
        self.sent.append(statement)
        self.rung.set()


def test_the_ringer_rings_at_once_then_once_for_a_burst() -> None:
    pool = _Pool()
    ringer = _Ringer(pool, 0.3)  # type: ignore[arg-type]
    try:
        assert ringer.now() is True  # the caller rings
        assert [ringer.now() for _ in range(5)] == [False] * 5
        assert pool.rung.wait(10)
        assert pool.sent == [_NOTIFY]  # one ring for the five
        time.sleep(0.4)
        assert pool.sent == [_NOTIFY]
        assert ringer.now() is True  # quiet since: the caller rings again
    finally:
        ringer.close()


def test_the_ringer_without_an_interval_leaves_every_ring_to_the_caller() -> None:
    pool = _Pool()
    ringer = _Ringer(pool, 0.0)  # type: ignore[arg-type]
    assert [ringer.now() for _ in range(5)] == [True] * 5
    ringer.close()
    assert pool.sent == []


def test_a_ring_still_due_is_made_when_the_ringer_closes() -> None:
    pool = _Pool()
    ringer = _Ringer(pool, 3600)  # type: ignore[arg-type]
    assert ringer.now() is True
    assert ringer.now() is False
    ringer.close()
    assert pool.sent == [_NOTIFY]
    ringer.close()
    assert pool.sent == [_NOTIFY]


def test_a_ring_a_writer_could_not_make_is_made_by_the_ringer() -> None:
    pool = _Pool()
    ringer = _Ringer(pool, 0.05)  # type: ignore[arg-type]
    try:
        ringer.later()
        assert pool.rung.wait(10)
        assert pool.sent == [_NOTIFY]
    finally:
        ringer.close()
