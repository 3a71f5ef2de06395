"""Every store: idempotent requests.

A write retried with its ``request_id`` writes nothing and returns the
session as stored now, also after other writes and from other processes;
the same id with other arguments is a ``ConflictError``.  The tests that
need other processes run only on stores that declare ``MULTI_PROCESS``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import uuid
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from maestro import (
    Capability,
    ConflictError,
    Session,
    SessionConfiguration,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
    SessionValidationError,
)
from maestro.idempotency import REQUESTS_KEPT
from tests.conformance.conftest import STORES
from tests.conftest import GIT

S = SessionStatus
Call = Callable[[SessionManager, str, str], Session]

#: One write of every kind: how to bring a session to where it is allowed,
#: and the write itself under a request id.
WRITES: dict[str, tuple[Callable[[SessionManager, str], Any], Call]] = {
    "update": (
        lambda m, sid: None,
        lambda m, sid, rid: m.update_session(
            sid, {"statistics": {"total_tasks": 5}, "status": "planning"}, request_id=rid
        ),
    ),
    "transition": (
        lambda m, sid: None,
        lambda m, sid, rid: m.transition_state(sid, S.PLANNING, reason="go", request_id=rid),
    ),
    "pause": (
        lambda m, sid: m.transition_state(sid, S.PLANNING),
        lambda m, sid, rid: m.pause_session(sid, reason="lunch", request_id=rid),
    ),
    "resume": (
        lambda m, sid: m.pause_session(m.transition_state(sid, S.PLANNING).session_id),
        lambda m, sid, rid: m.resume_session(sid, request_id=rid),
    ),
    "increment": (
        lambda m, sid: None,
        lambda m, sid, rid: m.increment_statistics(sid, completed_tasks=2, request_id=rid),
    ),
    "heartbeat": (
        lambda m, sid: None,
        lambda m, sid, rid: m.heartbeat(sid, request_id=rid),
    ),
    "fail": (
        lambda m, sid: None,
        lambda m, sid, rid: m.transition_state(sid, S.FAILED, reason="broken", request_id=rid),
    ),
    "compare-and-swap": (
        lambda m, sid: None,
        lambda m, sid, rid: m.update_session(
            sid, {"feature_request": "renamed"}, expected_revision=1, request_id=rid
        ),
    ),
}


def _unrelated_write(manager: SessionManager, sid: str) -> Session:
    """A write allowed in every state the writes above leave a session in."""
    return manager.increment_statistics(sid, decisions_made=1)


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_retry_writes_nothing_and_returns_the_session_as_stored_now(
    manager: SessionManager, write: str
) -> None:
    prepare, call = WRITES[write]
    sid = manager.create_session("Add OAuth", git_context=GIT).session_id
    prepare(manager, sid)
    first = call(manager, sid, "req-1")
    assert manager.get_session(sid).revision == first.revision

    again = call(manager, sid, "req-1")  # right away
    assert again.to_dict() == first.to_dict()

    between = _unrelated_write(manager, sid)  # another write comes in between
    later = call(manager, sid, "req-1")
    assert later.revision == between.revision
    assert later.to_dict() == manager.get_session(sid).to_dict() == between.to_dict()

    # A new id is a new request: it is applied (or refused) on its own.
    assert first.revision == between.revision - 1


def test_a_retry_from_a_new_manager_sees_the_first_call(
    open_manager: Callable[..., SessionManager],
) -> None:
    first = open_manager()
    sid = first.create_session("x", git_context=GIT, request_id="make").session_id
    first.increment_statistics(sid, completed_tasks=1, request_id="inc")
    second = open_manager()
    assert second.create_session("x", git_context=GIT, request_id="make").session_id == sid
    assert second.increment_statistics(sid, completed_tasks=1, request_id="inc").revision == 2
    assert second.get_session(sid).statistics.completed_tasks == 1


def test_counted_once_however_often_it_is_retried(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    for _ in range(3):
        manager.increment_statistics(sid, completed_tasks=1, request_id="a")
        manager.increment_statistics(sid, failed_tasks=1, request_id="b")
        manager.transition_state(sid, S.PLANNING, request_id="c")
    session = manager.get_session(sid)
    assert (session.statistics.completed_tasks, session.statistics.failed_tasks) == (1, 1)
    assert [change.to_status for change in session.history] == [S.PLANNING]
    assert session.revision == 4


def test_a_failed_write_records_nothing(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    with pytest.raises(ValueError):
        manager.transition_state(sid, S.COMPLETED, request_id="t")
    # the id was not used: the same call may go through once it is allowed
    assert manager.get_session(sid).requests[1:] == []
    manager.transition_state(sid, S.PLANNING, request_id="p")
    for state in (S.GENERATING_TASKS, S.IMPLEMENTING, S.VALIDATING, S.GENERATING_REPORT):
        manager.transition_state(sid, state)
    assert manager.transition_state(sid, S.COMPLETED, request_id="t").status is S.COMPLETED


def test_a_compare_and_swap_retry_finds_its_own_write_not_a_conflict(
    manager: SessionManager,
) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    manager.transition_state(sid, S.PLANNING, expected_revision=1, request_id="cas")
    manager.increment_statistics(sid, completed_tasks=1)
    assert (
        manager.transition_state(sid, S.PLANNING, expected_revision=1, request_id="cas").revision
        == 3
    )
    # a new request with a stale revision still conflicts
    with pytest.raises(ConflictError) as caught:
        manager.transition_state(sid, S.PAUSED, expected_revision=1, request_id="cas-2")
    assert (caught.value.expected, caught.value.actual, caught.value.request_id) == (1, 3, None)


# ------------------------------------------------------------ conflicts

CONFLICTS: dict[str, tuple[Call, Call]] = {
    "update": (
        lambda m, sid, rid: m.update_session(
            sid, {"statistics": {"total_tasks": 5}}, request_id=rid
        ),
        lambda m, sid, rid: m.update_session(
            sid, {"statistics": {"total_tasks": 6}}, request_id=rid
        ),
    ),
    "transition": (
        lambda m, sid, rid: m.transition_state(sid, S.PLANNING, request_id=rid),
        lambda m, sid, rid: m.transition_state(sid, S.PAUSED, request_id=rid),
    ),
    "reason": (
        lambda m, sid, rid: m.transition_state(sid, S.PLANNING, reason="a", request_id=rid),
        lambda m, sid, rid: m.transition_state(sid, S.PLANNING, reason="b", request_id=rid),
    ),
    "increment": (
        lambda m, sid, rid: m.increment_statistics(sid, completed_tasks=1, request_id=rid),
        lambda m, sid, rid: m.increment_statistics(sid, completed_tasks=2, request_id=rid),
    ),
    "expected revision": (
        lambda m, sid, rid: m.heartbeat(sid, expected_revision=1, request_id=rid),
        lambda m, sid, rid: m.heartbeat(sid, request_id=rid),
    ),
    "another operation": (
        lambda m, sid, rid: m.heartbeat(sid, request_id=rid),
        lambda m, sid, rid: m.increment_statistics(sid, completed_tasks=1, request_id=rid),
    ),
}


@pytest.mark.parametrize("case", sorted(CONFLICTS))
def test_the_same_id_with_other_arguments_is_a_conflict(manager: SessionManager, case: str) -> None:
    first, other = CONFLICTS[case]
    sid = manager.create_session("secret feature text", git_context=GIT).session_id
    done = first(manager, sid, "req-7")
    with pytest.raises(ConflictError) as caught:
        other(manager, sid, "req-7")
    error = caught.value
    assert error.session_id == sid and error.request_id == "req-7"
    assert sid in str(error) and "req-7" in str(error)
    assert "secret" not in str(error)
    assert manager.get_session(sid).to_dict() == done.to_dict()  # nothing written


def test_conflict_error_keeps_its_revision_constructor() -> None:
    error = ConflictError("3f01b541-5cc9-47a7-9f8b-d884159c705f", 3, 4)
    assert (error.expected, error.actual, error.request_id) == (3, 4, None)
    assert "expected revision 3" in str(error)


def test_request_ids_are_checked_before_anything_is_written(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    for bad in ("", " padded", "x" * 201, "tab\there", 42):
        with pytest.raises(SessionValidationError):
            manager.heartbeat(sid, request_id=bad)  # type: ignore[arg-type]
        with pytest.raises(SessionValidationError):
            manager.create_session("y", git_context=GIT, request_id=bad)  # type: ignore[arg-type]
    assert manager.get_session(sid).revision == 1
    assert manager.count_sessions() == 1


def test_a_store_refuses_a_request_id_that_is_not_text(manager: SessionManager) -> None:
    # The store's own guard, for callers that reach it without the manager.
    sid = manager.create_session("x", git_context=GIT).session_id
    store = manager.store
    with pytest.raises(SessionValidationError):
        store.modify(sid, lambda s: s, request_id=42)  # type: ignore[arg-type]
    with pytest.raises(SessionValidationError):
        store.delete(sid, request_id=42)  # type: ignore[arg-type]
    fresh = dataclasses.replace(manager.get_session(sid), session_id=str(uuid.uuid4()))
    with pytest.raises(SessionValidationError):
        store.create(fresh, request_id=42)  # type: ignore[arg-type]
    assert manager.get_session(sid).revision == 1
    assert manager.count_sessions() == 1


def test_update_cannot_touch_the_requests(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    with pytest.raises(SessionValidationError, match="read-only"):
        manager.update_session(sid, {"requests": []})


# ------------------------------------------------------------ create


def test_a_create_retry_returns_the_first_session(manager: SessionManager) -> None:
    first = manager.create_session(
        "Add OAuth", {"max_iterations": 5}, git_context=GIT, request_id="job-1"
    )
    manager.transition_state(first.session_id, S.PLANNING)
    again = manager.create_session(
        "Add OAuth", {"max_iterations": 5}, git_context=GIT, request_id="job-1"
    )
    assert again.session_id == first.session_id
    assert again.status is S.PLANNING and again.revision == 2  # as stored now
    assert manager.count_sessions() == 1
    with pytest.raises(ConflictError) as caught:
        manager.create_session("Add SAML", git_context=GIT, request_id="job-1")
    assert caught.value.session_id == first.session_id
    other = manager.create_session("Add OAuth", git_context=GIT, request_id="job-2")
    assert other.session_id != first.session_id
    assert manager.count_sessions() == 2


def test_records_without_requests_stay_as_they_were(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    manager.transition_state(sid, S.PLANNING)
    assert "requests" not in manager.get_session(sid).to_dict()


# ------------------------------------------------------------ what is kept


def test_the_last_requests_are_kept_and_the_create_key_for_life(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT, request_id="create-key").session_id
    for number in range(REQUESTS_KEPT + 1):
        manager.increment_statistics(sid, completed_tasks=1, request_id=f"r{number}")
    session = manager.get_session(sid)
    assert session.statistics.completed_tasks == REQUESTS_KEPT + 1
    assert len(session.requests) == REQUESTS_KEPT + 1  # the create key and the window
    assert session.requests[0].request_id == "create-key"
    # the second oldest is still known: a retry changes nothing
    assert manager.increment_statistics(sid, completed_tasks=1, request_id="r1") == session
    # the oldest is forgotten: the same call is taken for a new request
    again = manager.increment_statistics(sid, completed_tasks=1, request_id="r0")
    assert again.statistics.completed_tasks == REQUESTS_KEPT + 2
    assert again.revision == session.revision + 1
    # the create key outlives every window
    assert manager.create_session("x", git_context=GIT, request_id="create-key").session_id == sid
    assert manager.count_sessions() == 1


# ------------------------------------------------------------ delete


def test_a_delete_retry_of_a_session_already_gone_succeeds(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    manager.delete_session(sid, request_id="del-1")
    manager.delete_session(sid, request_id="del-1")  # the retry
    with pytest.raises(SessionNotFoundError):
        manager.delete_session(sid)  # without an id, gone is still an error
    # documented: with a request id, a session that does not exist is deleted
    manager.delete_session("3f01b541-5cc9-47a7-9f8b-d884159c705f", request_id="del-2")


def test_a_delete_reusing_another_writes_id_is_a_conflict(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    manager.heartbeat(sid, request_id="beat")
    with pytest.raises(ConflictError):
        manager.delete_session(sid, request_id="beat")
    assert manager.get_session(sid).revision == 2


def test_a_deleted_sessions_create_key_is_free_again(manager: SessionManager) -> None:
    first = manager.create_session("x", git_context=GIT, request_id="k").session_id
    manager.delete_session(first)
    second = manager.create_session("x", git_context=GIT, request_id="k").session_id
    assert second != first
    assert manager.create_session("x", git_context=GIT, request_id="k").session_id == second


# ------------------------------------------------------------ other processes


def _create_racer(
    store_name: str, root: str, keys: list[str], barrier: Barrier, results: Queue[Any]
) -> None:
    manager = STORES[store_name](Path(root))
    for key in keys:
        barrier.wait()
        session = manager.create_session("raced", git_context=GIT, request_id=key)
        results.put((key, session.session_id))


@pytest.mark.needs(Capability.MULTI_PROCESS)
def test_processes_racing_one_create_key_make_one_session(
    store_name: str, open_manager: Callable[..., SessionManager], tmp_path: Path
) -> None:
    manager = open_manager()
    root = manager.repo_root
    keys = [f"race-{n}" for n in range(5)]
    processes = 4
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results: Queue[Any] = context.Queue()
    children = [
        context.Process(target=_create_racer, args=(store_name, str(root), keys, barrier, results))
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in range(processes * len(keys))]
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    by_key: dict[str, set[str]] = {}
    for key, sid in outcomes:
        by_key.setdefault(key, set()).add(sid)
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert manager.count_sessions() == len(keys)
    for key, ids in by_key.items():
        assert manager.get_session(ids.pop()).requests[0].request_id == key


def _write_then_stop(store_name: str, root: str, operation: str, sid: str) -> None:
    """Make one write, then stop before the caller could hear its answer."""
    manager = STORES[store_name](Path(root))
    store = manager.store
    real_modify, real_create = store.modify, store.create

    def stop_after(result: Any) -> Any:
        os.kill(os.getpid(), signal.SIGSTOP)  # the parent kills us here
        return result

    store.modify = lambda *a, **k: stop_after(real_modify(*a, **k))  # type: ignore[method-assign]
    store.create = lambda *a, **k: stop_after(real_create(*a, **k))  # type: ignore[method-assign]
    if operation == "create":
        manager.create_session("killed", git_context=GIT, request_id="once")
    else:
        manager.increment_statistics(sid, completed_tasks=1, request_id="once")
    raise AssertionError("the writer was not stopped")


@pytest.mark.needs(Capability.MULTI_PROCESS)
@pytest.mark.parametrize("operation", ["create", "increment"])
def test_a_writer_killed_before_hearing_its_answer_is_retried_with_one_effect(
    store_name: str, open_manager: Callable[..., SessionManager], operation: str
) -> None:
    manager = open_manager()
    sid = manager.create_session("target", git_context=GIT).session_id
    context = multiprocessing.get_context("spawn")
    child = context.Process(
        target=_write_then_stop, args=(store_name, str(manager.repo_root), operation, sid)
    )
    child.start()
    assert child.pid is not None
    _, status = os.waitpid(child.pid, os.WUNTRACED)  # until it stopped after its write
    assert os.WIFSTOPPED(status)
    os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL

    if operation == "create":
        before = manager.count_sessions()
        retried = manager.create_session("killed", git_context=GIT, request_id="once")
        assert manager.count_sessions() == before == 2
        assert retried.revision == 1 and retried.feature_request == "killed"
    else:
        retried = manager.increment_statistics(sid, completed_tasks=1, request_id="once")
        assert retried.statistics.completed_tasks == 1
        assert retried.revision == 2 == manager.get_session(sid).revision


def test_equal_arguments_in_other_forms_are_the_same_request(manager: SessionManager) -> None:
    first = manager.create_session(
        "x", {"max_iterations": 5}, git_context=GIT, request_id="same"
    ).session_id
    config = SessionConfiguration(max_iterations=5)
    assert (
        manager.create_session("x", config, git_context=GIT, request_id="same").session_id == first
    )
    manager.update_session(first, {"status": "planning"}, request_id="u")
    manager.update_session(first, {"status": S.PLANNING}, request_id="u")
    assert manager.get_session(first).revision == 2
