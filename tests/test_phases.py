"""Phases, run resumption and in-process hooks, through the public API."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from typing import Any

import pytest

from maestro import (
    ChangeKind,
    InvalidTransitionError,
    Session,
    SessionManager,
    SessionStatus,
    SessionValidationError,
    StateChange,
    StorageError,
    Terminated,
    WorkerAliveError,
)

from .conftest import GIT, Clock

S = SessionStatus
KEY = "run-812"


def start(manager: SessionManager, to: SessionStatus = S.GENERATING_TASKS) -> str:
    """A session of run ``KEY`` walked to ``to``."""
    sid = manager.create_session("Add OAuth login", git_context=GIT, request_id=KEY).session_id
    path = [S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING, S.VALIDATING]
    for state in path[: path.index(to) + 1]:
        manager.transition_state(sid, state)
    return sid


def wait_for(check: Any, what: str) -> None:
    """Poll ``check`` until it holds (a generous bound; no test asserts on time)."""
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


# ---------------------------------------------------------------- entering and leaving


def test_a_phase_enters_its_state_and_moves_to_next(manager: SessionManager) -> None:
    sid = start(manager)
    with manager.phase(sid, S.IMPLEMENTING, reason="plan approved", next=S.VALIDATING) as p:
        assert p.session.status is S.IMPLEMENTING
        assert manager.get_session(sid).history[-1].reason == "plan approved"
    session = manager.get_session(sid)
    assert session.status is S.VALIDATING
    assert [h.to_status for h in session.history][-2:] == [S.IMPLEMENTING, S.VALIDATING]


def test_a_block_that_moved_the_session_itself_is_not_moved_again(
    manager: SessionManager,
) -> None:
    sid = start(manager)
    with manager.phase(sid, S.IMPLEMENTING, next=S.VALIDATING):
        manager.transition_state(sid, S.VALIDATING, reason="done early")
    session = manager.get_session(sid)
    assert session.status is S.VALIDATING and session.history[-1].reason == "done early"
    # Moved somewhere the next state cannot follow: that is the caller's to know.
    phase = manager.phase(sid, S.VALIDATING, next=S.GENERATING_REPORT)
    with pytest.raises(InvalidTransitionError), phase:
        manager.transition_state(sid, S.FAILED, reason="given up")


def test_entering_the_state_the_session_is_in_writes_nothing(manager: SessionManager) -> None:
    sid = start(manager, S.IMPLEMENTING)
    before = manager.get_session(sid)
    with manager.phase(sid, S.IMPLEMENTING, heartbeat_every=3600):
        pass
    assert manager.get_session(sid).revision == before.revision


def test_a_paused_or_finished_session_is_not_entered(manager: SessionManager) -> None:
    sid = start(manager, S.IMPLEMENTING)
    manager.pause_session(sid, reason="design review")
    with pytest.raises(SessionValidationError, match="paused"):
        manager.phase(sid, S.IMPLEMENTING).__enter__()
    assert manager.get_session(sid).status is S.PAUSED
    manager.transition_state(sid, S.FAILED)
    with pytest.raises(SessionValidationError, match="failed"):
        manager.phase(sid, S.IMPLEMENTING).__enter__()
    with pytest.raises(SessionValidationError, match="working state"):
        manager.phase(sid, S.COMPLETED)


def test_progress_sets_absolute_values_once(manager: SessionManager) -> None:
    sid = start(manager)
    with manager.phase(sid, S.IMPLEMENTING, heartbeat_every=3600) as p:
        p.progress(total_tasks=3)
        p.progress(completed_tasks=1)
        revision = p.session.revision
        # The same step again (a retry) changes nothing and writes nothing.
        assert p.progress(completed_tasks=1).revision == revision
        p.progress(completed_tasks=2, failed_tasks=1)
        with pytest.raises(SessionValidationError, match="counters"):
            p.progress(duration_seconds=3)
    stats = manager.get_session(sid).statistics
    assert (stats.total_tasks, stats.completed_tasks, stats.failed_tasks) == (3, 2, 1)


def test_an_exception_fails_the_session_with_its_type(manager: SessionManager) -> None:
    sid = start(manager)
    phase = manager.phase(sid, S.IMPLEMENTING, next=S.VALIDATING)
    with pytest.raises(RuntimeError, match="disk on fire"), phase:
        raise RuntimeError("disk on fire")
    session = manager.get_session(sid)
    assert session.status is S.FAILED
    assert session.history[-1].reason == "RuntimeError: disk on fire"
    assert session.statistics.error_recovery_count == 1


def test_an_exception_goes_to_the_fallback_state_for_a_retry(manager: SessionManager) -> None:
    sid = start(manager, S.VALIDATING)
    phase = manager.phase(sid, S.VALIDATING, fallback=S.IMPLEMENTING)
    with pytest.raises(AssertionError), phase:
        raise AssertionError("2 tests failed")
    session = manager.get_session(sid)
    assert session.status is S.IMPLEMENTING
    assert session.history[-1].reason == "AssertionError: 2 tests failed"
    assert session.statistics.error_recovery_count == 1
    # The retry re-enters implementing as it is, then validation passes.
    with manager.phase(sid, S.IMPLEMENTING, next=S.VALIDATING):
        pass
    with manager.phase(sid, S.VALIDATING, next=S.GENERATING_REPORT):
        pass
    assert manager.get_session(sid).status is S.GENERATING_REPORT


def test_a_fallback_the_state_machine_refuses_fails_instead(manager: SessionManager) -> None:
    sid = start(manager)
    with pytest.raises(ValueError), manager.phase(sid, S.IMPLEMENTING, fallback=S.PLANNING):
        raise ValueError("bad plan")
    assert manager.get_session(sid).status is S.FAILED


def test_keyboard_interrupt_pauses_instead_of_failing(manager: SessionManager) -> None:
    sid = start(manager)
    with pytest.raises(KeyboardInterrupt), manager.phase(sid, S.IMPLEMENTING):
        raise KeyboardInterrupt
    session = manager.get_session(sid)
    assert session.status is S.PAUSED and session.paused_from is S.IMPLEMENTING
    assert session.history[-1].reason == "interrupted (KeyboardInterrupt)"
    assert session.statistics.error_recovery_count == 0


def test_sigterm_in_the_main_thread_pauses_and_ends_with_143(manager: SessionManager) -> None:
    sid = start(manager)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as raised, manager.phase(sid, S.IMPLEMENTING):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between two bytecodes
            time.sleep(0.01)
    assert raised.value.code == 143
    session = manager.get_session(sid)
    assert session.status is S.PAUSED
    assert session.history[-1].reason == "interrupted (SIGTERM)"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_phase_in_another_thread_leaves_the_signal_handler_alone(
    manager: SessionManager,
) -> None:
    sid = start(manager)
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def work() -> None:
        with manager.phase(sid, S.IMPLEMENTING, next=S.VALIDATING):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [before]
    assert manager.get_session(sid).status is S.VALIDATING


def test_an_error_that_cannot_be_recorded_leaves_the_original_exception(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = start(manager)
    phase = manager.phase(sid, S.IMPLEMENTING, heartbeat_every=3600)

    def broken(*args: object, **kwargs: object) -> Session:
        raise StorageError(sid, "writing", OSError(28, "No space left on device"))

    with pytest.raises(RuntimeError, match="boom") as raised, phase:
        monkeypatch.setattr(manager, "increment_statistics", broken)
        raise RuntimeError("boom")
    assert any("could not record" in note for note in raised.value.__notes__)


# ---------------------------------------------------------------- request ids


def test_a_retried_step_never_counts_twice(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer to the error count is lost after it was stored; the step is retried."""
    sid = start(manager, S.VALIDATING)
    real = manager.increment_statistics
    lost: list[bool] = []

    def answer_lost(session_id: str, **kwargs: Any) -> Session:
        stored = real(session_id, **kwargs)
        if not lost:
            lost.append(True)
            raise StorageError(session_id, "reading the answer", OSError(5, "I/O error"))
        return stored

    monkeypatch.setattr(manager, "increment_statistics", answer_lost)
    for _ in range(2):  # the orchestrator retries the step that failed to record
        phase = manager.phase(sid, S.VALIDATING, fallback=S.IMPLEMENTING)
        with pytest.raises(AssertionError), phase:
            raise AssertionError("1 test failed")
    session = manager.get_session(sid)
    assert session.status is S.IMPLEMENTING
    assert session.statistics.error_recovery_count == 1
    assert all(entry.request_id.startswith(KEY) for entry in session.requests)


def test_request_ids_come_from_the_run_key(manager: SessionManager) -> None:
    sid = start(manager)
    with manager.phase(sid, S.IMPLEMENTING, next=S.VALIDATING) as p:
        p.progress(total_tasks=2)
    ids = [entry.request_id for entry in manager.get_session(sid).requests]
    assert ids == [
        KEY,
        f"{KEY}:generating_tasks->implementing@2",
        f"{KEY}:progress:total_tasks=2@3",
        f"{KEY}:implementing->validating@3",
    ]


# ---------------------------------------------------------------- heartbeats


def test_a_phase_heartbeats_in_the_background_and_stops(manager: SessionManager) -> None:
    sid = start(manager)
    with manager.phase(sid, S.IMPLEMENTING, heartbeat_every=0.01) as p:
        wait_for(lambda: p.heartbeats >= 3, "three heartbeats")
        assert manager.get_session(sid).heartbeat_at is not None
    beats = p.heartbeats
    kinds = [event.kind for event in manager.changes(session_id=sid)]
    assert kinds.count(ChangeKind.HEARTBEAT) == beats
    time.sleep(0.05)
    assert p.heartbeats == beats  # stopped with the phase


def test_the_default_heartbeat_is_a_quarter_of_the_timeout(manager: SessionManager) -> None:
    sid = manager.create_session("x", {"timeout_minutes": 8}, git_context=GIT).session_id
    with manager.phase(sid, S.PLANNING) as p:
        assert p.heartbeat_interval == 120.0
    with manager.phase(sid, S.PLANNING, heartbeat_every="1m") as p:
        assert p.heartbeat_interval == 60.0


# ---------------------------------------------------------------- async


def test_async_phase_moves_on_and_pauses_when_cancelled(manager: SessionManager) -> None:
    sid = start(manager)

    async def main() -> None:
        async with manager.phase(sid, S.IMPLEMENTING, next=S.VALIDATING) as p:
            p.progress(total_tasks=1)
        assert manager.get_session(sid).status is S.VALIDATING

        async def validate() -> None:
            async with manager.phase(sid, S.VALIDATING, next=S.GENERATING_REPORT):
                await asyncio.sleep(3600)

        task = asyncio.create_task(validate())
        await asyncio.sleep(0.01)
        wait_for(lambda: manager.get_session(sid).status is S.VALIDATING, "validating")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    session = manager.get_session(sid)
    assert session.status is S.PAUSED
    assert session.history[-1].reason == "interrupted (CancelledError)"


def test_sigterm_during_an_async_phase_pauses_and_ends_with_143(manager: SessionManager) -> None:
    sid = start(manager)
    before = signal.getsignal(signal.SIGTERM)

    async def main() -> None:
        async with manager.phase(sid, S.IMPLEMENTING, next=S.VALIDATING):
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(3600)

    with pytest.raises(Terminated) as raised:
        asyncio.run(main())
    assert raised.value.code == 143
    session = manager.get_session(sid)
    assert session.status is S.PAUSED
    assert session.history[-1].reason == "interrupted (SIGTERM)"
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------- resuming a run


def test_resume_run_of_an_unknown_key_is_none(manager: SessionManager) -> None:
    start(manager)
    assert manager.resume_run("another-run") is None


def test_a_stale_run_is_paused_as_worker_lost_then_resumed(
    manager: SessionManager, clock: Clock
) -> None:
    sid = start(manager, S.IMPLEMENTING)
    clock.advance(121 * 60)  # past the default timeout of 120 minutes
    run = manager.resume_run(KEY)
    assert run is not None and run.worker_lost
    assert (run.session_id, run.status, run.phase) == (sid, S.IMPLEMENTING, "implement")
    history = manager.get_session(sid).history
    assert [(h.from_status, h.to_status, h.reason) for h in history[-2:]] == [
        (S.IMPLEMENTING, S.PAUSED, "worker lost"),
        (S.PAUSED, S.IMPLEMENTING, "run resumed"),
    ]


def test_older_than_shortens_staleness(manager: SessionManager, clock: Clock) -> None:
    start(manager, S.IMPLEMENTING)
    clock.advance(10)
    with pytest.raises(WorkerAliveError, match="another worker"):
        manager.resume_run(KEY, older_than=30)
    clock.advance(30)
    run = manager.resume_run(KEY, older_than=30)
    assert run is not None and run.worker_lost and run.status is S.IMPLEMENTING


def test_a_paused_run_is_resumed_without_worker_lost(manager: SessionManager) -> None:
    sid = start(manager, S.VALIDATING)
    manager.pause_session(sid, reason="interrupted (KeyboardInterrupt)")
    run = manager.resume_run(KEY)
    assert run is not None and not run.worker_lost and run.status is S.VALIDATING
    assert "worker lost" not in [h.reason for h in manager.get_session(sid).history]


def test_a_finished_run_is_not_resumed(manager: SessionManager) -> None:
    sid = start(manager)
    manager.transition_state(sid, S.FAILED)
    assert manager.resume_run(KEY) is None


# ---------------------------------------------------------------- hooks


def test_transition_hooks_see_each_committed_change(manager: SessionManager) -> None:
    seen: list[tuple[str, StateChange]] = []
    failed: list[str] = []
    manager.on_transition(lambda session, change: seen.append((session.session_id, change)))
    manager.on_transition(lambda session, change: failed.append(session.session_id), to="failed")
    sid = start(manager)
    assert [change.to_status for _, change in seen] == [S.PLANNING, S.GENERATING_TASKS]
    manager.increment_statistics(sid, total_tasks=1)  # not a transition
    manager.pause_session(sid, reason="lunch", request_id="p1")
    manager.pause_session(sid, reason="lunch", request_id="p1")  # a retry: no write, no hook
    assert [change.to_status for _, change in seen][-1:] == [S.PAUSED]
    assert len(seen) == 3 and seen[-1][1].reason == "lunch"
    manager.transition_state(sid, S.FAILED)
    assert failed == [sid]


def test_a_failing_hook_is_logged_and_the_write_stands(
    manager: SessionManager, caplog: pytest.LogCaptureFixture
) -> None:
    after: list[SessionStatus] = []

    def broken(session: Session, change: StateChange) -> None:
        raise RuntimeError("hook bug")

    manager.on_transition(broken)
    manager.on_transition(lambda session, change: after.append(change.to_status))
    sid = manager.create_session("x", git_context=GIT).session_id
    with caplog.at_level(logging.ERROR, logger="maestro.hooks"):
        moved = manager.transition_state(sid, S.PLANNING)
    assert moved.status is S.PLANNING
    assert manager.get_session(sid).status is S.PLANNING
    assert after == [S.PLANNING]
    assert "hook bug" in caplog.text and "broken" in caplog.text


def test_change_hooks_see_every_kind_and_can_be_removed(manager: SessionManager) -> None:
    kinds: list[ChangeKind] = []
    remove = manager.on_change(lambda kind, session: kinds.append(kind))
    sid = manager.create_session("x", git_context=GIT).session_id
    manager.update_session(sid, {"status": "planning"})
    manager.heartbeat(sid)
    manager.increment_statistics(sid, decisions_made=1)
    manager.update_session(sid, {"statistics": {"total_tasks": 2}})
    assert kinds == [
        ChangeKind.TRANSITIONED,
        ChangeKind.HEARTBEAT,
        ChangeKind.INCREMENTED,
        ChangeKind.UPDATED,
    ]
    remove()
    manager.heartbeat(sid)
    assert len(kinds) == 4


def test_hooks_are_per_manager(manager: SessionManager, tmp_path: Any) -> None:
    other = SessionManager(tmp_path)
    seen: list[SessionStatus] = []
    manager.on_transition(lambda session, change: seen.append(change.to_status))
    sid = other.create_session("x", git_context=GIT).session_id
    other.transition_state(sid, S.PLANNING)
    assert seen == []
