"""The file store on real files: layout, atomic writes, locks, corruption, other files."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from maestro import (
    CorruptSessionError,
    FileSessionStore,
    LockTimeoutError,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
    StorageError,
)

from .conftest import GIT


def metadata(manager: SessionManager, sid: str) -> Path:
    return manager.sessions_dir / sid / "metadata.json"


def test_layout_and_pretty_json(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    path = metadata(manager, sid)
    assert path.parent.parent == manager.sessions_dir
    text = path.read_text()
    assert text.startswith("{\n  ") and text.endswith("}\n")
    assert json.loads(text)["session_id"] == sid
    # create holds the lock too, so its file exists from the start
    assert sorted(p.name for p in path.parent.iterdir()) == [".lock", "metadata.json"]
    manager.update_session(sid, {"statistics": {"total_tasks": 1}})
    assert sorted(p.name for p in path.parent.iterdir()) == [".lock", "metadata.json"]


def test_other_files_survive_updates(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    folder = manager.sessions_dir / sid
    extra = {
        "checkpoints.json": '{"checkpoints": []}',
        "decisions.json": "[1, 2]",
        "final-report.md": "# Report\n",
    }
    for name, content in extra.items():
        (folder / name).write_text(content)
    manager.transition_state(sid, SessionStatus.PLANNING)
    manager.update_session(sid, {"statistics": {"total_tasks": 3}})
    manager.increment_statistics(sid, completed_tasks=1)
    for name, content in extra.items():
        assert (folder / name).read_text() == content


def test_writes_fsync_the_file_and_the_directory(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = manager.create_session("x").session_id
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        kind = "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"
        synced.append(kind)
        real_fsync(fd)

    replaced: list[int] = []
    real_replace = os.replace

    def replace_spy(*args: Any, **kwargs: Any) -> None:
        replaced.append(len(synced))
        real_replace(*args, **kwargs)

    monkeypatch.setattr(os, "fsync", spy)
    monkeypatch.setattr(os, "replace", replace_spy)
    manager.update_session(sid, {"statistics": {"total_tasks": 1}})
    # file fsync before the rename, directory fsync after it
    assert synced == ["file", "dir"]
    assert replaced == [1]


def test_create_fsyncs_the_sessions_directory(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.create_session("first")  # the sessions/ directory exists from here on
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    sid = manager.create_session("second").session_id
    assert synced[0] == str(manager.sessions_dir)
    assert synced[-1] == str(manager.sessions_dir / sid)


@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_failed_write_leaves_the_old_record_and_no_temp_file(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    session = manager.create_session("x")
    before = metadata(manager, session.session_id).read_bytes()
    real = getattr(os, failing)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(StorageError) as caught:
        manager.update_session(session.session_id, {"statistics": {"total_tasks": 1}})
    monkeypatch.setattr(os, failing, real)
    assert caught.value.errno == 28 and isinstance(caught.value, OSError)
    assert metadata(manager, session.session_id).read_bytes() == before
    names = [p.name for p in (manager.sessions_dir / session.session_id).iterdir()]
    assert sorted(names) == [".lock", "metadata.json"]
    assert manager.update_session(session.session_id, {"statistics": {"total_tasks": 2}})


def test_failed_create_leaves_nothing(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.create_session("x")
    before = sorted(p.name for p in manager.sessions_dir.iterdir())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(StorageError):
        manager.create_session("y")
    monkeypatch.undo()
    assert sorted(p.name for p in manager.sessions_dir.iterdir()) == before


def test_stale_temp_files_are_invisible_and_swept(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    folder = manager.sessions_dir / sid
    # A writer killed before its rename leaves the write's temp file; an
    # older release named it at random.
    stale = folder / ".metadata.json.write.tmp"
    stale.write_text('{"half": ')
    older = folder / ".metadata.json.deadbeef0000.tmp"
    older.write_text('{"half": ')
    (manager.sessions_dir / ".metadata.json.0000.tmp").write_text("junk")
    assert [s.session_id for s in manager.query_sessions()] == [sid]
    assert manager.get_session(sid).statistics.total_tasks == 0
    manager.update_session(sid, {"statistics": {"total_tasks": 1}})
    assert not stale.exists() and not older.exists()  # the next writer sweeps both
    assert manager.get_session(sid).statistics.total_tasks == 1
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "metadata.json"]


# ---------------------------------------------------------------- corruption


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"session_id": ', "invalid JSON"),
        (b"", "invalid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"\xef\xbb\xbf[]", "not a JSON object"),
        (b'{"schema_version": 1}', "missing 'session_id'"),
        (b'{"schema_version": "1"}', "schema_version must be"),
        (b'{"schema_version": 99}', "newer than this maestro"),
    ],
)
def test_corrupt_records_raise_json_decode_error(
    manager: SessionManager, content: bytes, fragment: str
) -> None:
    sid = manager.create_session("Top secret request").session_id
    metadata(manager, sid).write_bytes(content)
    with pytest.raises(json.JSONDecodeError) as caught:
        manager.get_session(sid)
    assert isinstance(caught.value, CorruptSessionError)
    assert sid in str(caught.value) and fragment in str(caught.value)
    assert "secret" not in str(caught.value).lower()
    assert caught.value.doc == ""


def test_wrong_types_in_a_stored_record_are_corruption(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    path = metadata(manager, sid)
    record = json.loads(path.read_text())
    record["statistics"]["total_tasks"] = "many"
    path.write_text(json.dumps(record))
    with pytest.raises(CorruptSessionError, match=r"statistics\.total_tasks"):
        manager.get_session(sid)


def test_a_record_naming_another_session_is_corruption(manager: SessionManager) -> None:
    first = manager.create_session("a").session_id
    second = manager.create_session("b").session_id
    metadata(manager, second).write_bytes(metadata(manager, first).read_bytes())
    with pytest.raises(CorruptSessionError, match="different session id"):
        manager.get_session(second)


def test_a_write_checks_a_record_changed_since_this_store_wrote_it(
    manager: SessionManager,
) -> None:
    # The store trusts a record it reads back only while it holds the very
    # bytes it wrote; an edit, a copy or another writer's bytes are checked.
    sid = manager.create_session("x").session_id
    other = manager.create_session("y").session_id
    manager.update_session(sid, {"statistics": {"total_tasks": 1}})
    path = metadata(manager, sid)
    record = json.loads(path.read_text())
    record["statistics"]["total_tasks"] = "many"
    path.write_text(json.dumps(record, indent=2) + "\n")
    with pytest.raises(CorruptSessionError, match=r"statistics\.total_tasks"):
        manager.update_session(sid, {"statistics": {"total_tasks": 2}})
    manager.update_session(other, {"statistics": {"total_tasks": 3}})
    metadata(manager, other).write_bytes(metadata(manager, other).read_bytes() + b" ")
    assert manager.update_session(other, {"statistics": {"completed_tasks": 1}}).revision == 3
    metadata(manager, sid).write_bytes(metadata(manager, other).read_bytes())
    with pytest.raises(CorruptSessionError, match="different session id"):
        manager.update_session(sid, {"statistics": {"total_tasks": 2}})


def test_a_write_keeps_what_another_writer_stored_since(tmp_path: Path) -> None:
    first, second = SessionManager(tmp_path), SessionManager(tmp_path)
    sid = first.create_session("x").session_id
    first.update_session(sid, {"statistics": {"total_tasks": 5}})
    second.update_session(sid, {"statistics": {"completed_tasks": 4}})
    after = first.update_session(sid, {"statistics": {"failed_tasks": 1}})
    assert (after.statistics.total_tasks, after.statistics.completed_tasks) == (5, 4)
    assert after.statistics.failed_tasks == 1 and after.revision == 4
    assert first.get_session(sid) == after == second.get_session(sid)


def test_directory_without_metadata_is_normal(
    manager: SessionManager, caplog: pytest.LogCaptureFixture
) -> None:
    sid = manager.create_session("x").session_id
    orphan = manager.sessions_dir / str(uuid.uuid4())
    orphan.mkdir()
    (orphan / "checkpoints.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="maestro"):
        assert [s.session_id for s in manager.query_sessions()] == [sid]
    assert caplog.records == []
    with pytest.raises(SessionNotFoundError, match=r"no metadata\.json"):
        manager.get_session(orphan.name)
    with pytest.raises(SessionNotFoundError):
        manager.update_session(orphan.name, {"statistics": {"total_tasks": 1}})
    with pytest.raises(SessionNotFoundError):
        manager.delete_session(orphan.name)
    assert (orphan / "checkpoints.json").read_text() == "{}"


def test_unrelated_entries_in_sessions_dir_are_ignored(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    (manager.sessions_dir / "README.txt").write_text("notes")
    (manager.sessions_dir / "not-a-uuid").mkdir()
    (manager.sessions_dir / str(uuid.uuid4())).write_text("a file, not a directory")
    assert [s.session_id for s in manager.query_sessions()] == [sid]


# ---------------------------------------------------------------- locking


def test_lock_timeout_when_another_holder_keeps_the_lock(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path, lock_timeout=0.2)
    sid = manager.create_session("x", git_context=GIT).session_id
    store = manager.store
    assert isinstance(store, FileSessionStore)
    with store._locked(sid):
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as caught:
            manager.update_session(sid, {"statistics": {"total_tasks": 1}})
        assert time.monotonic() - started >= 0.2
    assert isinstance(caught.value, TimeoutError) and sid in str(caught.value)
    manager.update_session(sid, {"statistics": {"total_tasks": 1}})


def test_a_writer_waiting_on_a_deleted_session_gets_not_found(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    store = manager.store
    assert isinstance(store, FileSessionStore)
    outcome: list[BaseException | None] = []

    def writer() -> None:
        try:
            manager.update_session(sid, {"statistics": {"total_tasks": 1}})
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    with store._locked(sid) as (root_fd, _):
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.1)  # the writer now waits on the lock
        os.rename(sid, f".trash-{sid}", src_dir_fd=root_fd, dst_dir_fd=root_fd)
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], SessionNotFoundError)
    assert not (manager.sessions_dir / sid).exists()


def _increment_many(root: str, sid: str, times: int) -> None:
    manager = SessionManager(root, durable=False)
    for _ in range(times):
        manager.increment_statistics(sid, completed_tasks=1)


def test_processes_do_not_lose_increments(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_increment_many, args=(str(tmp_path), sid, 30)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    session = manager.get_session(sid)
    assert session.statistics.completed_tasks == 90
    assert session.revision == 91


def test_non_ascii_text_round_trips_as_utf8(manager: SessionManager) -> None:
    sid = manager.create_session("Ajouter la connexion — 登录 🚀").session_id
    raw = metadata(manager, sid).read_bytes()
    assert "登录 🚀".encode() in raw
    assert manager.get_session(sid).feature_request == "Ajouter la connexion — 登录 🚀"
