"""The SQLite index: same answers as a scan, kept in step, repaired, bypassed."""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from maestro import (
    FileSessionStore,
    GitContext,
    Session,
    SessionManager,
    SessionStatus,
    UnsupportedOperationError,
)
from maestro.stores import index as index_module
from maestro.stores.index import INDEX_FORMAT, SessionIndex

from .conftest import PROTOTYPE_SESSIONS, Clock

S = SessionStatus


def scan_of(manager: SessionManager) -> SessionManager:
    """A manager over the same root that reads every file for every query."""
    return SessionManager(manager.repo_root, index=False, clock=manager._clock)


def ids(sessions: list[Session]) -> list[str]:
    return [s.session_id for s in sessions]


def index_path(manager: SessionManager) -> Path:
    return manager.sessions_dir.parent / "index.sqlite3"


def store_of(manager: SessionManager) -> FileSessionStore:
    assert isinstance(manager.store, FileSessionStore)
    return manager.store


REQUESTS = [
    "Add OAuth login with Google and GitHub",
    "Fix the flaky login test on CI",
    "Build a REST API for user management",
    "Café menu: résumé upload and naïve search",
    "Migrate authentication to OAuth 2.1",
    "Refactor the payment service",
]


@pytest.fixture
def filled(manager: SessionManager, clock: Clock) -> list[Session]:
    made = []
    paths = [[], [S.PLANNING], [S.FAILED], [S.PLANNING, S.GENERATING_TASKS], [S.PAUSED], []]
    for number, (request, path) in enumerate(zip(REQUESTS, paths, strict=True)):
        git = GitContext(
            "main" if number % 2 else "feat/x",
            f"{number:040x}",
            "/r",
            number == 3,
            "wt" if number == 3 else None,
        )
        sid = manager.create_session(request, git_context=git).session_id
        for state in path:
            clock.advance(1)
            manager.transition_state(sid, state)
        made.append(manager.get_session(sid))
        clock.advance(60)
    return made


def test_text_search_is_ranked(manager: SessionManager, filled: list[Session]) -> None:
    manager.create_session("login login login: the login page")
    ranked = manager.query_sessions(text="login")
    assert ranked[0].feature_request.startswith("login login login")
    assert {s.session_id for s in ranked} == {
        s.session_id for s in scan_of(manager).query_sessions(text="login")
    }


def test_index_uses_wal_and_holds_every_session(
    manager: SessionManager, filled: list[Session], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="maestro"):
        manager.list_active_sessions()
    assert caplog.records == []  # no fallback to scanning
    with sqlite3.connect(index_path(manager)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT session_id, status, revision FROM sessions").fetchall()
    assert sorted(rows) == sorted((s.session_id, s.status.value, s.revision) for s in filled)


def test_a_finished_write_is_visible_to_the_next_query(
    manager: SessionManager, filled: list[Session]
) -> None:
    sid = filled[0].session_id
    assert sid not in ids(manager.query_sessions(status="planning"))
    manager.transition_state(sid, S.PLANNING)
    assert sid in ids(manager.query_sessions(status="planning"))
    manager.update_session(sid, {"feature_request": "Now about kubernetes"})
    assert ids(manager.query_sessions(text="kubernetes")) == [sid]
    assert sid not in ids(manager.query_sessions(text="google"))
    manager.delete_session(sid)
    assert sid not in ids(manager.query_sessions())
    assert manager.count_sessions() == len(filled) - 1


def test_the_index_is_derived_data(manager: SessionManager, filled: list[Session]) -> None:
    expected = manager.query_sessions()
    store_of(manager).index.close()  # type: ignore[union-attr]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index_path(manager)}{suffix}").unlink(missing_ok=True)
    fresh = SessionManager(manager.repo_root)
    assert fresh.query_sessions() == expected
    assert index_path(manager).exists()


def test_an_index_of_another_format_is_rebuilt(
    manager: SessionManager, filled: list[Session]
) -> None:
    manager.query_sessions()
    with sqlite3.connect(index_path(manager)) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'format'", (str(INDEX_FORMAT + 1),))
        conn.execute("DELETE FROM sessions")
    fresh = SessionManager(manager.repo_root)
    assert ids(fresh.query_sessions()) == ids(scan_of(manager).query_sessions())


@pytest.mark.parametrize("older", [4, 5])
def test_an_index_of_an_older_format_is_rebuilt_with_its_unique_index(
    manager: SessionManager, filled: list[Session], older: int
) -> None:
    manager.query_sessions()
    store_of(manager).index.close()  # type: ignore[union-attr]
    with sqlite3.connect(index_path(manager)) as conn:
        # Formats 4 and 5 kept the ids unique by a column constraint, not an index.
        conn.execute("UPDATE meta SET value = ? WHERE key = 'format'", (str(older),))
        conn.execute("DROP INDEX sessions_id")
        conn.execute("DELETE FROM sessions")
    fresh = SessionManager(manager.repo_root)
    assert ids(fresh.query_sessions()) == ids(scan_of(manager).query_sessions())
    with sqlite3.connect(index_path(manager)) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == ("6",)
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "sessions_id" in names
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(
                "INSERT INTO sessions SELECT NULL, session_id, status, phase, branch, worktree,"
                " created_us, updated_us, active_us, revision, feature_request, record, ino,"
                " size, mtime_ns, racy, indexed_ns FROM sessions LIMIT 1"
            )


def test_a_garbage_index_file_is_replaced(manager: SessionManager, filled: list[Session]) -> None:
    store_of(manager).index.close()  # type: ignore[union-attr]
    for suffix in ("-wal", "-shm"):
        Path(f"{index_path(manager)}{suffix}").unlink(missing_ok=True)
    index_path(manager).write_bytes(b"this is not a database" * 100)
    fresh = SessionManager(manager.repo_root)
    assert ids(fresh.query_sessions()) == ids(scan_of(manager).query_sessions())


def test_a_crash_between_json_and_index_is_repaired(
    manager: SessionManager, filled: list[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = filled[0].session_id
    manager.query_sessions()
    # The writer dies after the JSON is in place and before the index row is.
    monkeypatch.setattr(FileSessionStore, "_index_commit", lambda self, s, sig, **_: None)
    manager.transition_state(sid, S.FAILED)
    monkeypatch.undo()
    with sqlite3.connect(index_path(manager)) as conn:
        assert conn.execute("SELECT session_id FROM pending").fetchall() == [(sid,)]
        assert conn.execute(
            "SELECT status FROM sessions WHERE session_id = ?", (sid,)
        ).fetchone() == ("initializing",)
    other = SessionManager(manager.repo_root)
    assert sid in ids(other.query_sessions(status="failed"))
    assert sid not in ids(other.query_sessions(status="initializing"))
    assert other.count_sessions(status="failed") == 2
    with sqlite3.connect(index_path(manager)) as conn:
        assert conn.execute("SELECT session_id FROM pending").fetchall() == []


def test_a_crashed_delete_is_repaired(
    manager: SessionManager, filled: list[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = filled[1].session_id
    manager.query_sessions()
    monkeypatch.setattr(FileSessionStore, "_index_forget", lambda self, s, **_: None)
    manager.delete_session(sid)
    monkeypatch.undo()
    assert manager.count_sessions() == len(filled) - 1
    assert sid not in ids(manager.query_sessions())


def test_sessions_copied_in_and_removed_from_outside_are_noticed(
    manager: SessionManager, filled: list[Session]
) -> None:
    assert manager.count_sessions() == len(filled)
    for source in PROTOTYPE_SESSIONS.iterdir():
        shutil.copytree(source, manager.sessions_dir / source.name)
    assert manager.count_sessions() == len(filled) + 8
    assert ids(manager.query_sessions()) == ids(scan_of(manager).query_sessions())
    shutil.rmtree(manager.sessions_dir / filled[2].session_id)
    assert filled[2].session_id not in ids(manager.query_sessions())
    assert manager.count_sessions() == len(filled) + 7


def test_a_stable_directory_is_not_listed_again(
    manager: SessionManager, filled: list[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.query_sessions()
    with sqlite3.connect(index_path(manager)) as conn:  # pretend the listing is old
        key = manager.sessions_dir.stat()
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'directory'",
            (f"{key.st_dev}:{key.st_ino}:{key.st_mtime_ns}",),
        )
    listings: list[object] = []
    real = FileSessionStore._reconcile

    def counting(self: FileSessionStore, *args: Any, **kwargs: Any) -> int:
        listings.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FileSessionStore, "_reconcile", counting)
    manager.query_sessions()
    manager.count_sessions(status="planning")
    assert listings == []
    (manager.sessions_dir / str(uuid.uuid4())).mkdir()
    manager.query_sessions()
    assert len(listings) == 1


def test_edits_in_place_never_give_a_wrong_session(
    manager: SessionManager, filled: list[Session]
) -> None:
    manager.query_sessions()
    sid = filled[1].session_id  # planning
    path = manager.sessions_dir / sid / "metadata.json"
    record = json.loads(path.read_text())
    record["status"] = "failed"
    path.write_text(json.dumps(record))
    # the stale row says planning; the file says failed: it is not returned as planning
    assert sid not in ids(manager.query_sessions(status="planning"))
    manager.rebuild_index()
    assert sid in ids(manager.query_sessions(status="failed"))
    assert manager.count_sessions(status="failed") == 2


def test_rebuild_counts_sessions(manager: SessionManager, filled: list[Session]) -> None:
    assert manager.rebuild_index() == len(filled)


def test_corrupt_sessions_are_skipped_by_indexed_queries(
    manager: SessionManager, filled: list[Session], caplog: pytest.LogCaptureFixture
) -> None:
    manager.query_sessions()
    bad = filled[0].session_id
    (manager.sessions_dir / bad / "metadata.json").write_text("{broken")
    with caplog.at_level(logging.WARNING, logger="maestro"):
        found = manager.query_sessions()
    assert bad not in ids(found) and len(found) == len(filled) - 1
    assert any(bad in r.getMessage() for r in caplog.records)


def test_queries_fall_back_to_scanning_when_sqlite_cannot_open(
    manager: SessionManager, filled: list[Session], caplog: pytest.LogCaptureFixture
) -> None:
    store_of(manager).index.close()  # type: ignore[union-attr]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index_path(manager)}{suffix}").unlink(missing_ok=True)
    index_path(manager).mkdir()  # nothing can open a directory as a database
    fresh = SessionManager(manager.repo_root)
    with caplog.at_level(logging.WARNING, logger="maestro"):
        assert ids(fresh.query_sessions(status="planning")) == ids(
            scan_of(manager).query_sessions(status="planning")
        )
        assert fresh.count_sessions() == len(filled)
    assert any("scanning" in r.getMessage() for r in caplog.records)
    # writes still work, and leave a marker so that a future index is verified
    fresh.transition_state(filled[0].session_id, S.PLANNING)
    assert (manager.sessions_dir.parent / "index.stale").exists()


def test_queries_fall_back_when_the_index_stays_locked(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    manager = SessionManager(tmp_path, clock=clock, lock_timeout=0.2)
    sid = manager.create_session("x").session_id
    manager.query_sessions()
    blocker = sqlite3.connect(index_path(manager), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        other = SessionManager(tmp_path, clock=clock, lock_timeout=0.2)
        other.transition_state(sid, S.PLANNING)  # the write goes through
        with caplog.at_level(logging.WARNING, logger="maestro"):
            assert ids(other.query_sessions(status="planning")) == [sid]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert any("scanning" in r.getMessage() for r in caplog.records)
    # once the lock is gone the index catches up through the stale marker
    assert ids(SessionManager(tmp_path).query_sessions(status="planning")) == [sid]
    assert not (tmp_path / ".flow" / "maestro" / "index.stale").exists()


def test_a_reboot_verifies_every_row(
    manager: SessionManager, filled: list[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.query_sessions()
    sid = filled[3].session_id
    path = manager.sessions_dir / sid / "metadata.json"
    record = json.loads(path.read_text())
    record["status"] = "failed"
    path.write_text(json.dumps(record))  # as if the index lost its last commits
    monkeypatch.setattr(index_module, "_boot", "another-boot")
    fresh = SessionManager(manager.repo_root)
    assert sid in ids(fresh.query_sessions(status="failed"))


def test_trusted_copies_are_used_only_while_the_file_is_unchanged(
    manager: SessionManager, filled: list[Session], clock: Clock
) -> None:
    manager.rebuild_index()
    with sqlite3.connect(index_path(manager)) as conn:
        conn.execute("UPDATE sessions SET racy = 0")
    assert manager.query_sessions() == scan_of(manager).query_sessions()
    sid = filled[0].session_id
    # rewrite the file in place with the same size: mtime changes, copy not trusted
    path = manager.sessions_dir / sid / "metadata.json"
    record = json.loads(path.read_text())
    record["feature_request"] = record["feature_request"].upper()
    path.write_text(json.dumps(record, indent=2) + "\n")
    [found] = [s for s in manager.query_sessions() if s.session_id == sid]
    assert found.feature_request == record["feature_request"]


def test_index_module_round_trips_micros() -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
    assert (
        index_module.to_micros(moment) - index_module.to_micros(moment - timedelta(microseconds=1))
        == 1
    )


def test_the_index_can_be_turned_off(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path, index=False)
    manager.create_session("x")
    assert len(manager.query_sessions()) == 1
    assert not (tmp_path / ".flow" / "maestro" / "index.sqlite3").exists()
    with pytest.raises(UnsupportedOperationError, match="reindex capability") as caught:
        manager.rebuild_index()
    assert isinstance(caught.value, ValueError)


def test_session_index_close_is_idempotent(tmp_path: Path) -> None:
    index = SessionIndex(tmp_path / "i.sqlite3")
    index.connection()
    index.close()
    index.close()


def test_an_unreadable_session_warns_on_every_query_and_returns_when_fixed(
    manager: SessionManager, filled: list[Session], caplog: pytest.LogCaptureFixture
) -> None:
    manager.query_sessions()
    bad = filled[1]
    path = manager.sessions_dir / bad.session_id / "metadata.json"
    good_bytes = path.read_bytes()
    path.write_text("{broken")
    for _ in range(3):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="maestro"):
            assert bad.session_id not in ids(manager.query_sessions())
            assert manager.count_sessions() == len(filled) - 1
        assert any(bad.session_id in r.getMessage() for r in caplog.records)
    path.write_bytes(good_bytes)  # repaired in place, no directory change
    assert bad.session_id in ids(manager.query_sessions(status=bad.status))
    assert manager.count_sessions() == len(filled)


def test_queries_fall_back_to_scanning_on_a_read_only_index(
    manager: SessionManager,
    filled: list[Session],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a read-only directory does to SQLite, simulated (root ignores modes)."""
    manager.query_sessions()
    store_of(manager).index.close()  # type: ignore[union-attr]
    real_connect = sqlite3.connect

    def read_only(path: Any, **kwargs: Any) -> sqlite3.Connection:
        return real_connect(f"file:{path}?mode=ro", uri=True, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", read_only)
    fresh = SessionManager(manager.repo_root)
    sid = filled[0].session_id
    fresh.transition_state(sid, S.FAILED)  # the write goes through, the index cannot follow
    with caplog.at_level(logging.WARNING, logger="maestro"):
        assert ids(fresh.query_sessions(status="failed")) == ids(
            scan_of(manager).query_sessions(status="failed")
        )
        assert fresh.count_sessions(status="failed") == 2
    assert any("scanning" in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    # writable again: the stale marker makes the next query catch up
    assert SessionManager(manager.repo_root).count_sessions(status="failed") == 2


def test_a_window_walked_in_order_comes_in_one_statement(
    manager: SessionManager, filled: list[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    index = store_of(manager).index
    assert index is not None
    statements: list[str] = []
    scan = scan_of(manager)
    queries: list[tuple[dict[str, Any], bool]] = [
        ({"limit": 2}, True),
        ({"status": "planning", "limit": 2}, True),
        ({"branch": "main", "limit": 2}, True),
        ({"order_by": "updated", "descending": False, "limit": 3}, True),
        ({"status": ["planning", "failed", "paused"], "limit": 2}, False),  # sorted by SQLite
        ({"branch": "main", "order_by": "updated", "limit": 2}, False),
    ]
    for query, streamed in queries:
        manager.query_sessions(limit=1)  # the index up to date
        conn = index.connection()
        conn.set_trace_callback(statements.append)
        try:
            found = manager.query_sessions(**query)
        finally:
            conn.set_trace_callback(None)
        assert found == scan.query_sessions(**query), query
        selects = [s for s in statements if s.startswith("SELECT s.")]
        assert selects, query
        assert selects[-1].startswith("SELECT s.session_id") is streamed, query
        statements.clear()


class _BusyAtFirst(sqlite3.Connection):
    """A connection whose first ``BUSY`` switches to WAL are refused at once, as
    SQLite refuses them while another connection is making the file."""

    refusals = 0

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if sql == "PRAGMA journal_mode=WAL" and type(self).refusals > 0:
            type(self).refusals -= 1
            error = sqlite3.OperationalError("database is locked")
            error.sqlite_errorcode = sqlite3.SQLITE_BUSY  # type: ignore[attr-defined]
            raise error
        return super().execute(sql, *args)


def _refusing(monkeypatch: pytest.MonkeyPatch, refusals: int) -> None:
    connect = sqlite3.connect
    monkeypatch.setattr(_BusyAtFirst, "refusals", refusals)
    monkeypatch.setattr(
        sqlite3, "connect", lambda *args, **kwargs: connect(*args, factory=_BusyAtFirst, **kwargs)
    )


def test_a_switch_to_wal_refused_while_another_makes_the_file_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refusing(monkeypatch, 3)
    index = SessionIndex(tmp_path / "index.sqlite3", timeout=5)
    conn = index.connection()
    assert _BusyAtFirst.refusals == 0  # refused three times, then made
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    index.close()


def test_a_switch_to_wal_refused_past_the_timeout_leaves_the_index_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refusing(monkeypatch, 10**9)
    index = SessionIndex(tmp_path / "index.sqlite3", timeout=0.05)
    with pytest.raises(index_module.IndexUnavailable, match="locked"):
        index.connection()
