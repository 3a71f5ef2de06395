"""Every store: writers in several threads lose nothing and wait a bounded time."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from maestro import LockTimeoutError, Session, SessionManager
from tests.conftest import GIT


def test_threads_do_not_lose_increments(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                manager.increment_statistics(sid, completed_tasks=1)
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    session = manager.get_session(sid)
    assert session.statistics.completed_tasks == 100 and session.revision == 101


def test_a_writer_gives_up_after_the_lock_timeout(
    open_manager: Callable[..., SessionManager],
) -> None:
    manager = open_manager(lock_timeout=0.2)
    sid = manager.create_session("x", git_context=GIT).session_id
    other = manager.create_session("y", git_context=GIT).session_id
    inside, release = threading.Event(), threading.Event()

    def slow(session: Session) -> Session:
        inside.set()
        release.wait(30)
        session.statistics.total_tasks = 7
        return session

    holder = threading.Thread(target=lambda: manager.store.modify(sid, slow))
    holder.start()
    try:
        assert inside.wait(30)
        with pytest.raises(LockTimeoutError) as caught:
            manager.increment_statistics(sid, completed_tasks=1)
        assert isinstance(caught.value, TimeoutError) and sid in str(caught.value)
        # another session is not held up, and reads do not wait
        assert manager.increment_statistics(other, completed_tasks=1).revision == 2
        assert manager.get_session(sid).revision == 1
    finally:
        release.set()
        holder.join(30)
    session = manager.increment_statistics(sid, completed_tasks=1)
    assert (session.statistics.total_tasks, session.revision) == (7, 3)
