"""The first query on a large store without an index: read on every core, same answers."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from maestro import SessionManager
from maestro.progress import reporting
from maestro.stores import files, files_fill, files_freshness
from maestro.stores import index as index_module

STATUSES = ["initializing", "planning", "implementing", "completed", "failed", "paused"]


def _prototype_store(root: Path, count: int) -> list[str]:
    """``count`` records in the prototype's format, one corrupt, one directory without a record."""
    sessions = root / ".flow" / "maestro" / "sessions"
    sessions.mkdir(parents=True)
    made = []
    for number in range(count):
        sid = str(uuid.UUID(int=number + 1, version=4))
        record: dict[str, Any] = {
            "session_id": sid,
            "feature_request": f"Add OAuth login {number}"
            if number % 3
            else f"Fix billing {number}",
            "status": STATUSES[number % len(STATUSES)],
            "created_at": f"2025-01-01T00:{number // 60:02d}:{number % 60:02d}Z",
            "updated_at": f"2025-01-02T00:{number // 60:02d}:{number % 60:02d}Z",
            "git_context": {
                "branch": "main" if number % 2 else "feat/x",
                "commit": "0" * 40,
                "repo_root": "/repo",
                "is_worktree": False,
            },
        }
        (sessions / sid).mkdir()
        (sessions / sid / "metadata.json").write_text(json.dumps(record, indent=2))
        made.append(sid)
    (sessions / made[5] / "metadata.json").write_text('{"session_id": "torn')
    (sessions / made[6] / "metadata.json").unlink()
    return made


def _answers(manager: SessionManager) -> dict[str, Any]:
    return {
        "all": manager.query_sessions(),
        "active": manager.list_active_sessions(),
        # A scan has no rank (it orders matches by creation), and the index
        # breaks ties in rank by the order rows were filled in, which follows
        # the directories' inode numbers: the matches are compared as a set.
        "search": sorted(s.session_id for s in manager.query_sessions(text="oauth login")),
        "ranked": [s.session_id for s in manager.query_sessions(text="fix billing 12")][:1],
        "count": manager.count_sessions(status="planning"),
    }


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fill in parallel from 20 sessions on, in chunks of 7; counts the parallel fills."""
    monkeypatch.setattr(files_freshness, "PARALLEL_FROM", 20)
    monkeypatch.setattr(files_fill, "CHUNK", 7)
    monkeypatch.setattr(files_fill, "workers", lambda: 2)
    calls: list[int] = []
    original = files_fill.fill_rows

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(args[2]))
        return original(*args, **kwargs)

    monkeypatch.setattr(files_fill, "fill_rows", counted)
    return calls


def test_a_parallel_fill_answers_as_a_scan(
    tmp_path: Path, small_threshold: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    _prototype_store(tmp_path, 61)
    with caplog.at_level(logging.WARNING, logger="maestro"):
        indexed = _answers(SessionManager(tmp_path))
    assert small_threshold == [61]  # the parallel fill ran, over every name
    assert any("torn" in r.getMessage() or "invalid JSON" in r.getMessage() for r in caplog.records)
    scanned = _answers(SessionManager(tmp_path, index=False))
    assert indexed == scanned
    assert len(indexed["all"]) == 59  # not the torn record, not the empty directory
    # The index holds what was read: a second manager answers from it alone.
    assert _answers(SessionManager(tmp_path)) == scanned


def test_a_parallel_fill_reports_its_progress(tmp_path: Path, small_threshold: list[int]) -> None:
    _prototype_store(tmp_path, 40)
    heard: list[tuple[int, int]] = []
    with reporting(lambda done, total: heard.append((done, total))):
        SessionManager(tmp_path).query_sessions(limit=1)
    assert heard and heard[-1] == (40, 40)
    assert [done for done, _ in heard] == sorted(done for done, _ in heard)
    # Without a listener nothing is reported, and a small store reports nothing.
    assert small_threshold == [40]


def test_a_one_process_fill_reports_its_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files_freshness, "PARALLEL_FROM", 20)
    monkeypatch.setattr(files_fill, "workers", lambda: 1)
    _prototype_store(tmp_path, 1200)
    heard: list[tuple[int, int]] = []
    with reporting(lambda done, total: heard.append((done, total))):
        SessionManager(tmp_path).query_sessions(limit=1)
    assert heard == [(500, 1200), (1000, 1200), (1200, 1200)]


def test_with_other_threads_running_the_readers_are_spawned(
    tmp_path: Path, small_threshold: list[int]
) -> None:
    _prototype_store(tmp_path, 30)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert files_fill._context().get_start_method() == "spawn"
        indexed = _answers(SessionManager(tmp_path))
    finally:
        stop.set()
        other.join()
    assert small_threshold == [30]
    assert indexed == _answers(SessionManager(tmp_path, index=False))


def _refuse(job: Any) -> Any:
    """A worker's answer when the disk refused a read (a module-level function: picklable)."""
    return ("reading metadata.json: Input/output error", 5, [])


def test_a_failed_reader_makes_the_query_fall_back_to_the_files(
    tmp_path: Path, small_threshold: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _prototype_store(tmp_path, 30)
    reader = files_fill._read_chunk
    monkeypatch.setattr(files_fill, "_read_chunk", _refuse)
    manager = SessionManager(tmp_path)
    # Answered by scanning this time; the index is left to the next query.
    assert manager.query_sessions() == SessionManager(tmp_path, index=False).query_sessions()
    monkeypatch.setattr(files_fill, "_read_chunk", reader)
    assert len(SessionManager(tmp_path).query_sessions()) == 28
    assert small_threshold == [30, 30]


def test_the_command_draws_a_bar_on_a_terminal_only(
    tmp_path: Path, small_threshold: list[int]
) -> None:
    from .test_cli import TTY, ok, run

    _prototype_store(tmp_path / "a", 40)
    on_terminal = run(tmp_path / "a", "list", "--limit", "3", **TTY)
    assert len(ok(on_terminal).splitlines()) > 3  # the table
    assert "indexing sessions" in on_terminal.stderr
    assert "40/40" in on_terminal.stderr

    _prototype_store(tmp_path / "b", 40)
    piped = run(tmp_path / "b", "list", "--limit", "3")
    assert len(ok(piped).splitlines()) == 3  # plain rows
    assert "indexing" not in piped.stderr
    assert small_threshold == [40, 40]


def _secondary_indexes(root: Path) -> set[str]:
    with sqlite3.connect(root / ".flow" / "maestro" / "index.sqlite3") as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {name for (name,) in rows if not name.startswith("sqlite_autoindex")}


def _check_search(root: Path) -> None:
    """Raises unless the full-text index holds exactly the rows' texts."""
    with sqlite3.connect(root / ".flow" / "maestro" / "index.sqlite3") as conn:
        conn.execute("INSERT INTO fts (fts, rank) VALUES ('integrity-check', 1)")


class _Killed(BaseException):
    """Stands for the process dying in the middle of a fill (nothing catches it)."""


def test_a_bulk_load_makes_its_indexes_at_the_end(tmp_path: Path) -> None:
    _prototype_store(tmp_path, 30)
    indexed = _answers(SessionManager(tmp_path))
    assert _secondary_indexes(tmp_path) == set(index_module._INDEXES)
    assert indexed == _answers(SessionManager(tmp_path, index=False))


@pytest.mark.parametrize("parallel", [False, True])
def test_a_fill_killed_half_way_is_finished_by_the_next_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_threshold: list[int], parallel: bool
) -> None:
    if not parallel:
        monkeypatch.setattr(files_freshness, "PARALLEL_FROM", 10_000)
    monkeypatch.setattr(index_module, "_BATCH", 2)  # inserts of 8 rows
    _prototype_store(tmp_path, 40)
    original = index_module.SessionIndex.load_fresh_rows

    def killed_after_16(self: index_module.SessionIndex, rows: Any) -> int:
        def some() -> Any:
            for number, row in enumerate(rows):
                if number == 16:
                    raise _Killed
                yield row

        return original(self, some())

    monkeypatch.setattr(index_module.SessionIndex, "load_fresh_rows", killed_after_16)
    with pytest.raises(_Killed):
        SessionManager(tmp_path).query_sessions(limit=1)
    # Two batches went in, with their full-text entries but without the indexes.
    assert _secondary_indexes(tmp_path) == set()
    _check_search(tmp_path)
    monkeypatch.setattr(index_module.SessionIndex, "load_fresh_rows", original)
    indexed = _answers(SessionManager(tmp_path))
    assert _secondary_indexes(tmp_path) == set(index_module._INDEXES)
    scanned = _answers(SessionManager(tmp_path, index=False))
    assert indexed == scanned


def test_a_fill_that_fails_half_way_leaves_its_indexes_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "_BATCH", 2)
    _prototype_store(tmp_path, 30)
    manager = SessionManager(tmp_path)
    store = manager.store
    assert isinstance(store, files.FileSessionStore) and store.index is not None

    def failing() -> Any:
        for number in range(20):
            if number == 12:
                raise index_module.IndexUnavailable("a reader process failed")
            yield (
                ("x" * 8 + str(number), "planning", None, "main", None, 1, 1, 1, 0, "t", b"{}"),
                index_module.Signature(1, 1, 1),
            )

    with pytest.raises(index_module.IndexUnavailable):
        store.index.load_fresh_rows(failing())
    assert _secondary_indexes(tmp_path) == set(index_module._INDEXES)


def test_a_session_a_writer_stored_during_the_load_keeps_the_writers_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "_BATCH", 2)  # inserts of 8 rows
    made = _prototype_store(tmp_path, 30)
    manager = SessionManager(tmp_path)
    store = manager.store
    assert isinstance(store, files.FileSessionStore) and store.index is not None
    index = store.index
    root_fd = store._open_root(create=False)
    assert root_fd is not None
    try:
        read = [store._read_for_index(root_fd, sid) for sid in made if sid not in made[5:7]]
    finally:
        os.close(root_fd)
    items = [item for item in read if isinstance(item, tuple)]
    target, signature = items[20]
    newer = dataclasses.replace(target, feature_request="changed by a writer", revision=1)

    def rows() -> Any:
        for number, (session, sig) in enumerate(items):
            if number == 10:  # the indexes are gone: a writer stores its newer row
                index.store([(newer, signature)])
            yield index_module.row_content(session), sig

    index.load_fresh_rows(rows())
    with sqlite3.connect(tmp_path / ".flow" / "maestro" / "index.sqlite3") as conn:
        kept = conn.execute(
            "SELECT feature_request, revision FROM sessions WHERE session_id = ?",
            (target.session_id,),
        ).fetchall()
        total = conn.execute("SELECT count(*), count(DISTINCT session_id) FROM sessions").fetchone()
    assert kept == [("changed by a writer", 1)]
    assert total == (len(items), len(items))
    assert _secondary_indexes(tmp_path) == set(index_module._INDEXES)
    _check_search(tmp_path)  # the dropped row's entry left with it


def test_two_loads_at_once_leave_one_row_per_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "_BATCH", 2)  # inserts of 8 rows
    made = _prototype_store(tmp_path, 30)
    manager = SessionManager(tmp_path)
    store = manager.store
    assert isinstance(store, files.FileSessionStore) and store.index is not None
    first = store.index
    first.connection()  # the index file made
    second = index_module.SessionIndex(first.path, sessions_dir=store.sessions_dir)
    root_fd = store._open_root(create=False)
    assert root_fd is not None
    try:
        read = [store._read_for_index(root_fd, sid) for sid in made]
    finally:
        os.close(root_fd)
    rows = [
        (index_module.row_content(item[0]), item[1]) for item in read if isinstance(item, tuple)
    ]

    def interleaved() -> Any:
        for number, row in enumerate(rows):
            if number == 10:  # another process loads all of them meanwhile
                second.load_fresh_rows(iter(rows))
            yield row

    first.load_fresh_rows(interleaved())
    second.close()
    with sqlite3.connect(first.path) as conn:
        total = conn.execute("SELECT count(*), count(DISTINCT session_id) FROM sessions").fetchone()
    assert total == (len(rows), len(rows))
    assert _secondary_indexes(tmp_path) == set(index_module._INDEXES)
    _check_search(tmp_path)
    assert _answers(manager) == _answers(SessionManager(tmp_path, index=False))
