"""The file store's reservations of create keys: crashes, waiters, deletes, rebuilds."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from maestro import FileSessionStore, Session, SessionManager
from tests.conftest import GIT


def reservation(manager: SessionManager, key: str) -> Path:
    return manager.sessions_dir.parent / "requests" / hashlib.sha256(key.encode()).hexdigest()


def _stop_before_the_session(root: str, key: str) -> None:
    """Reserve ``key``, then stop before the session exists (the parent kills us)."""
    real_create = FileSessionStore._create

    def stopped(self: FileSessionStore, stored: Session, **kwargs: Any) -> Session:
        os.kill(os.getpid(), signal.SIGSTOP)
        return real_create(self, stored, **kwargs)

    FileSessionStore._create = stopped  # type: ignore[method-assign]
    SessionManager(root).create_session("crashed", git_context=GIT, request_id=key)
    raise AssertionError("the creator was not stopped")


def _stopped_child(root: Path, key: str) -> Any:
    context = multiprocessing.get_context("spawn")
    child = context.Process(target=_stop_before_the_session, args=(str(root), key))
    child.start()
    assert child.pid is not None
    _, status = os.waitpid(child.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    return child


def _kill(child: Any) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL


def test_a_creator_killed_after_reserving_leaves_a_key_the_retry_takes_over(
    manager: SessionManager,
) -> None:
    child = _stopped_child(manager.repo_root, "job-9")
    holder = reservation(manager, "job-9").read_text().strip()
    _kill(child)
    assert not (manager.sessions_dir / holder).exists()

    retried = manager.create_session("crashed", git_context=GIT, request_id="job-9")
    assert retried.session_id != holder
    assert reservation(manager, "job-9").read_text().strip() == retried.session_id
    assert [s.session_id for s in manager.query_sessions()] == [retried.session_id]


def test_a_second_creator_waits_for_the_first_and_never_makes_a_twin(
    manager: SessionManager,
) -> None:
    child = _stopped_child(manager.repo_root, "job-10")  # holds the reservation's lock
    outcome: list[Session] = []
    waiter = threading.Thread(
        target=lambda: outcome.append(
            SessionManager(manager.repo_root, lock_timeout=120).create_session(
                "crashed", git_context=GIT, request_id="job-10"
            )
        )
    )
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive()  # blocked behind the stopped creator, not racing past it
    _kill(child)
    waiter.join(timeout=120)
    assert not waiter.is_alive()
    assert [s.session_id for s in manager.query_sessions()] == [outcome[0].session_id]


def test_a_torn_reservation_is_dead(manager: SessionManager) -> None:
    path = reservation(manager, "job-11")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"3f01b5")  # a write cut short
    created = manager.create_session("x", git_context=GIT, request_id="job-11")
    assert path.read_text().strip() == created.session_id


def test_delete_removes_the_reservation_and_a_rebuild_keeps_it(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT, request_id="job-12").session_id
    assert reservation(manager, "job-12").exists()
    manager.rebuild_index()
    (manager.sessions_dir.parent / "index.sqlite3").unlink()
    assert manager.create_session("x", git_context=GIT, request_id="job-12").session_id == sid
    manager.delete_session(sid)
    assert not reservation(manager, "job-12").exists()


def test_a_keyless_create_writes_no_reservation(manager: SessionManager) -> None:
    manager.create_session("x", git_context=GIT)
    assert not (manager.sessions_dir.parent / "requests").exists()


def test_a_symlinked_requests_directory_is_refused(manager: SessionManager, tmp_path: Path) -> None:
    manager.create_session("x", git_context=GIT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (manager.sessions_dir.parent / "requests").symlink_to(elsewhere)
    with pytest.raises(PermissionError):
        manager.create_session("y", git_context=GIT, request_id="job-13")
    assert list(elsewhere.iterdir()) == []
