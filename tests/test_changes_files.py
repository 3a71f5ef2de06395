"""The file store's change feed: crashes, restarts, retention, resets, outside changes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from maestro import (
    Capability,
    ChangeEvent,
    ChangeKind,
    SessionManager,
    SessionStatus,
    SessionValidationError,
    UnsupportedOperationError,
)
from maestro.stores.files import FileSessionStore
from tests.conftest import GIT

K = ChangeKind
S = SessionStatus
REPO = Path(__file__).resolve().parents[1]

#: A writer that dies (SIGKILL, nothing cleaned up) after its record is on
#: disk and before its index row and event are: argv = root, operation, id.
KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from maestro import SessionManager
    from maestro.stores.index import SessionIndex

    real_store, real_remove = SessionIndex.store, SessionIndex.remove

    def store(self, items, **kwargs):
        if kwargs.get("kind") is not None:  # the writer's own commit
            os.kill(os.getpid(), signal.SIGKILL)
        return real_store(self, items, **kwargs)

    def remove(self, ids, **kwargs):
        if "request_id" in kwargs:  # the deleter's own commit
            os.kill(os.getpid(), signal.SIGKILL)
        return real_remove(self, ids, **kwargs)

    SessionIndex.store, SessionIndex.remove = store, remove
    manager = SessionManager(sys.argv[1])
    if sys.argv[2] == "transition":
        manager.transition_state(sys.argv[3], "planning")
    elif sys.argv[2] == "delete":
        manager.delete_session(sys.argv[3])
    """
)

#: Reads the feed after a cursor in a process of its own: argv = root, cursor.
READER = textwrap.dedent(
    """
    import json, sys
    from maestro import SessionManager
    for event in SessionManager(sys.argv[1]).changes(sys.argv[2] or None):
        print(json.dumps(event.to_dict()))
    """
)


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _events(manager: SessionManager, since: str | None = None) -> list[ChangeEvent]:
    return list(manager.changes(since))


def test_a_writer_killed_before_its_index_write_is_repaired_into_the_feed(
    tmp_path: Path,
) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    done = _run(KILLED_WRITER, str(tmp_path), "transition", sid)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert manager.get_session(sid).status is S.PLANNING  # the record was written

    # No query ran since: the feed reader itself repairs the mark.
    events = _events(manager)
    assert [(e.kind, e.revision, e.from_status, e.to_status) for e in events] == [
        (K.CREATED, 1, None, "initializing"),
        (K.TRANSITIONED, 2, "initializing", "planning"),
    ]
    manager.heartbeat(sid)
    assert [e.revision for e in _events(manager)] == [1, 2, 3]


def test_a_write_after_a_killed_writer_reports_both_changes_in_order(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    assert _run(KILLED_WRITER, str(tmp_path), "transition", sid).returncode == -signal.SIGKILL
    # The next writer comes before any reader or query.
    manager.transition_state(sid, S.GENERATING_TASKS)
    assert [(e.kind, e.revision, e.to_status) for e in _events(manager)] == [
        (K.CREATED, 1, "initializing"),
        (K.TRANSITIONED, 2, "planning"),
        (K.TRANSITIONED, 3, "generating_tasks"),
    ]


def test_a_delete_killed_before_its_index_write_is_repaired_into_the_feed(
    tmp_path: Path,
) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    done = _run(KILLED_WRITER, str(tmp_path), "delete", sid)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert [(e.kind, e.session_id) for e in _events(manager)] == [
        (K.CREATED, sid),
        (K.DELETED, sid),
    ]
    assert manager.query_sessions() == []


def test_a_reader_in_a_new_process_resumes_after_its_saved_cursor(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    a = manager.create_session("a", git_context=GIT).session_id
    saved = _events(manager)[-1].cursor
    manager.transition_state(a, S.PLANNING)
    b = manager.create_session("b", git_context=GIT).session_id

    done = _run(READER, str(tmp_path), saved)
    assert done.returncode == 0, done.stderr
    read = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(e["session_id"], e["kind"], e["revision"]) for e in read] == [
        (a, "transitioned", 2),
        (b, "created", 1),
    ]
    again = _run(READER, str(tmp_path), read[-1]["cursor"])
    assert again.returncode == 0 and again.stdout == ""


def test_retention_keeps_the_newest_events_and_resets_a_reader_left_behind(
    tmp_path: Path,
) -> None:
    def opened() -> SessionManager:
        root = tmp_path / ".flow" / "maestro" / "sessions"
        store = FileSessionStore(root, base=tmp_path, feed_retention=3)
        return SessionManager(tmp_path, store=store)

    manager = opened()
    sid = manager.create_session("x", git_context=GIT).session_id
    first = _events(manager)[0].cursor
    for _ in range(4):
        manager.heartbeat(sid)
    kept = _events(manager)
    assert [e.revision for e in kept] == [3, 4, 5]  # no reset without a cursor

    behind = _events(opened(), first)
    assert behind[0].kind is K.RESET
    assert [e.revision for e in behind[1:]] == [3, 4, 5]
    # A reader that kept up is not reset.
    assert _events(manager, kept[0].cursor)[0].revision == 4


def test_retention_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAESTRO_FEED_RETENTION", "2")
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    for _ in range(3):
        manager.heartbeat(sid)
    assert [e.revision for e in _events(manager)] == [3, 4]
    monkeypatch.setenv("MAESTRO_FEED_RETENTION", "many")
    with pytest.raises(SessionValidationError):
        SessionManager(tmp_path)


def test_a_deleted_index_resets_readers_and_the_feed_goes_on(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    cursor = _events(manager)[-1].cursor
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / ".flow" / "maestro" / f"index.sqlite3{suffix}").unlink(missing_ok=True)
    manager.heartbeat(sid)
    events = _events(SessionManager(tmp_path), cursor)
    assert events[0].kind is K.RESET
    assert [e.kind for e in _events(manager, events[0].cursor)] == [e.kind for e in events[1:]]


def test_a_restored_directory_is_a_replaced_event_whose_revision_goes_down(
    tmp_path: Path,
) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    directory = manager.sessions_dir / sid
    backup = tmp_path / "backup"
    shutil.copytree(directory, backup)
    manager.transition_state(sid, S.PLANNING)
    cursor = _events(manager)[-1].cursor

    shutil.rmtree(directory)
    shutil.copytree(backup, directory)
    assert manager.get_session(sid).revision == 1
    manager.query_sessions()  # the index notices the change
    events = _events(manager, cursor)
    assert [(e.kind, e.revision, e.from_status, e.to_status) for e in events] == [
        (K.REPLACED, 1, "planning", "initializing")
    ]


def test_a_session_copied_in_from_outside_is_a_replaced_event(tmp_path: Path) -> None:
    source = SessionManager(tmp_path / "elsewhere")
    sid = source.create_session("x", git_context=GIT).session_id
    manager = SessionManager(tmp_path)
    manager.create_session("here", git_context=GIT)
    manager.query_sessions()
    cursor = _events(manager)[-1].cursor
    shutil.copytree(source.sessions_dir / sid, manager.sessions_dir / sid)
    manager.query_sessions()
    assert [(e.kind, e.session_id, e.from_status) for e in _events(manager, cursor)] == [
        (K.REPLACED, sid, None)
    ]


def test_without_the_index_there_is_no_feed(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path, index=False)
    assert Capability.CHANGES not in manager.store.capabilities
    with pytest.raises(UnsupportedOperationError):
        manager.changes()
    store = manager.store
    assert isinstance(store, FileSessionStore)
    with pytest.raises(UnsupportedOperationError):
        store.changes_after(None)
    off = FileSessionStore(tmp_path / "s", feed_retention=0)
    assert Capability.CHANGES not in off.capabilities
    assert Capability.CHANGES in FileSessionStore(tmp_path / "s").capabilities


def test_a_cursor_of_another_root_is_a_reset_not_a_gap(tmp_path: Path) -> None:
    one = SessionManager(tmp_path / "one")
    two = SessionManager(tmp_path / "two")
    one.create_session("a", git_context=GIT)
    sid = two.create_session("b", git_context=GIT).session_id
    foreign = _events(one)[-1].cursor
    events = _events(two, foreign)
    assert events[0].kind is K.RESET
    assert [(e.kind, e.session_id) for e in events[1:]] == [(K.CREATED, sid)]


#: Increments counters of the sessions given: argv = root, rounds, ids...
INCREMENTER = textwrap.dedent(
    """
    import sys
    from maestro import SessionManager
    manager = SessionManager(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        for sid in sys.argv[3:]:
            manager.increment_statistics(sid, completed_tasks=1)
    """
)


def test_writers_in_several_processes_every_change_once_in_revision_order(
    tmp_path: Path,
) -> None:
    manager = SessionManager(tmp_path)
    ids = [manager.create_session(f"s{i}", git_context=GIT).session_id for i in range(2)]
    rounds = 15
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", INCREMENTER, str(tmp_path), str(rounds), *ids], env=env
        )
        for _ in range(3)
    ]
    # Read while they write: what is read in pieces must add up to the whole.
    seen: list[ChangeEvent] = []
    cursor = None
    while any(writer.poll() is None for writer in writers):
        seen += _events(manager, cursor)
        cursor = seen[-1].cursor if seen else cursor
    assert all(writer.wait(timeout=60) == 0 for writer in writers)
    seen += _events(manager, cursor)
    for sid in ids:
        revisions = [e.revision for e in seen if e.session_id == sid]
        assert revisions == list(range(1, 3 * rounds + 2))
    assert [e.cursor for e in seen] == [e.cursor for e in _events(manager)]
