"""Every store: the lifecycle rules, kept by the manager, hold whatever the store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from maestro import (
    InvalidTransitionError,
    PRDReference,
    SessionConfiguration,
    SessionManager,
    SessionPhase,
    SessionStatus,
    SessionValidationError,
)
from tests.conftest import Clock

S = SessionStatus


def test_create_session_takes_configuration_and_prd(manager: SessionManager) -> None:
    session = manager.create_session(
        "x",
        SessionConfiguration(max_iterations=7),
        prd_reference={"filename": "prd.md", "path": "docs/prd.md", "version": "1.0"},
    )
    assert session.configuration.max_iterations == 7
    assert session.prd_reference == PRDReference("prd.md", "docs/prd.md", "1.0")
    as_mapping = manager.create_session("y", configuration={"timeout_minutes": 5})
    assert as_mapping.configuration == SessionConfiguration(timeout_minutes=5)


@pytest.mark.parametrize("request_text", ["", "   ", None, 42])
def test_create_session_refuses_empty_or_non_text_requests(
    manager: SessionManager, request_text: object
) -> None:
    with pytest.raises(ValueError):
        manager.create_session(request_text)  # type: ignore[arg-type]


def test_seed_keyword_names_still_work(manager: SessionManager) -> None:
    session = manager.create_session(feature_request="kw", configuration=None)
    sid = session.session_id
    manager.transition_state(session_id=sid, new_state=S.PLANNING)
    manager.update_session(sid, updates={"statistics": {"total_tasks": 2}})
    assert manager.get_recent_sessions(count=1)[0].session_id == sid
    assert manager.get_session(session_id=sid).statistics.total_tasks == 2
    manager.delete_session(session_id=sid)


def test_update_merges_nested_statistics_and_configuration(manager: SessionManager) -> None:
    sid = manager.create_session("x", {"max_iterations": 4}).session_id
    manager.update_session(sid, {"statistics": {"total_tasks": 10, "completed_tasks": 3}})
    session = manager.update_session(
        sid, {"statistics": {"completed_tasks": 4}, "configuration": {"timeout_minutes": 30}}
    )
    assert session.statistics.total_tasks == 10 and session.statistics.completed_tasks == 4
    assert session.configuration == SessionConfiguration(max_iterations=4, timeout_minutes=30)
    assert manager.get_session(sid) == session


def test_update_bumps_updated_at_and_revision(manager: SessionManager, clock: Clock) -> None:
    session = manager.create_session("x")
    clock.advance(60)
    updated = manager.update_session(session.session_id, {"statistics": {"total_tasks": 1}})
    assert updated.updated_at == clock.now and updated.created_at == session.created_at
    assert updated.revision == session.revision + 1


@pytest.mark.parametrize(
    "field",
    [
        "session_id",
        "created_at",
        "updated_at",
        "completed_at",
        "history",
        "revision",
        "schema_version",
        "paused_from",
    ],
)
def test_update_refuses_read_only_fields(manager: SessionManager, field: str) -> None:
    session = manager.create_session("x")
    with pytest.raises(ValueError, match="read-only"):
        manager.update_session(session.session_id, {field: "anything"})
    assert manager.get_session(session.session_id) == session


@pytest.mark.parametrize(
    ("updates", "fragment"),
    [
        ({"colour": "blue"}, "unknown field"),
        ({"statistics": {"total_tasks": -1}}, "statistics.total_tasks must be at least 0"),
        ({"statistics": {"bogus": 1}}, "unknown field"),
        ({"statistics": 3}, "statistics must be"),
        ({"configuration": {"max_iterations": 0}}, "max_iterations must be at least 1"),
        ({"configuration": {"max_iterations": "3"}}, "max_iterations must be a whole number"),
        ({"current_phase": "nap"}, "current_phase must be one of"),
        ({"status": "sleeping"}, "status must be one of"),
        ({"feature_request": ""}, "must not be empty"),
        ({"git_context": {"is_worktree": "no"}}, "is_worktree must be true or false"),
    ],
)
def test_update_refuses_invalid_values_and_keeps_the_record(
    manager: SessionManager, updates: dict[str, object], fragment: str
) -> None:
    session = manager.create_session("x")
    with pytest.raises(SessionValidationError) as caught:
        manager.update_session(session.session_id, updates)
    assert fragment in str(caught.value)
    assert session.session_id in str(caught.value)
    assert manager.get_session(session.session_id) == session


def test_update_refuses_a_non_mapping(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    with pytest.raises(ValueError, match="updates must be an object of fields"):
        manager.update_session(sid, [("status", "planning")])  # type: ignore[arg-type]


def test_update_status_goes_through_the_state_machine(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    moved = manager.update_session(sid, {"status": "planning"}, reason="go")
    assert moved.status is S.PLANNING and moved.current_phase is SessionPhase.PLAN
    assert [(h.from_status, h.to_status, h.reason) for h in moved.history] == [
        (S.INITIALIZING, S.PLANNING, "go")
    ]
    with pytest.raises(InvalidTransitionError):
        manager.update_session(sid, {"status": "completed", "statistics": {"total_tasks": 9}})
    after = manager.get_session(sid)
    assert after.status is S.PLANNING and after.statistics.total_tasks == 0


def test_update_with_the_same_status_adds_no_history(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    session = manager.update_session(sid, {"status": "initializing", "feature_request": "y"})
    assert session.history == [] and session.feature_request == "y"


def test_invalid_transition_is_a_value_error_naming_the_session(manager: SessionManager) -> None:
    session = manager.create_session("Secret feature")
    with pytest.raises(ValueError) as caught:
        manager.transition_state(session.session_id, S.COMPLETED)
    assert isinstance(caught.value, InvalidTransitionError)
    assert session.session_id in str(caught.value)
    assert "initializing -> completed" in str(caught.value)
    assert "Secret" not in str(caught.value)
    assert manager.get_session(session.session_id) == session


def test_transition_to_the_same_state_is_refused(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    manager.transition_state(sid, S.PLANNING)
    with pytest.raises(InvalidTransitionError):
        manager.transition_state(sid, S.PLANNING)


def test_transition_refuses_unknown_state_names(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    with pytest.raises(SessionValidationError, match="status must be one of"):
        manager.transition_state(sid, "done")


def test_increment_statistics_adds(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    manager.increment_statistics(sid, total_tasks=5, completed_tasks=1)
    session = manager.increment_statistics(sid, completed_tasks=2, failed_tasks=1)
    stats = session.statistics
    assert (stats.total_tasks, stats.completed_tasks, stats.failed_tasks) == (5, 3, 1)


@pytest.mark.parametrize(
    ("deltas", "fragment"),
    [
        ({}, "no counter"),
        ({"duration_seconds": 1}, "unknown counter"),
        ({"bogus": 1}, "unknown counter"),
        ({"total_tasks": 1.5}, "must be a whole number"),
        ({"total_tasks": True}, "must be a whole number"),
        ({"total_tasks": -1}, "total_tasks is 0; subtracting 1 would make it negative"),
        ({"decisions_made": 0}, "increment of 0"),
    ],
)
def test_increment_refuses_bad_deltas(
    manager: SessionManager, deltas: dict[str, object], fragment: str
) -> None:
    session = manager.create_session("x")
    with pytest.raises(SessionValidationError, match=fragment):
        manager.increment_statistics(session.session_id, **deltas)  # type: ignore[arg-type]
    assert manager.get_session(session.session_id) == session


def test_finishing_sets_completed_at_and_the_active_duration(
    manager: SessionManager, clock: Clock
) -> None:
    sid = manager.create_session("x").session_id
    path = [S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING, S.PAUSED]
    for state in path:
        clock.advance(10)
        manager.transition_state(sid, state)
    clock.advance(100)  # paused time is not active time
    manager.resume_session(sid)
    for state in (S.VALIDATING, S.GENERATING_REPORT, S.COMPLETED):
        clock.advance(10)
        done = manager.transition_state(sid, state)
    assert done.completed_at == clock.now
    assert done.statistics.duration_seconds == 70.0
    with pytest.raises(InvalidTransitionError):
        manager.transition_state(sid, S.FAILED)


def test_pause_remembers_and_resume_returns(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    manager.transition_state(sid, S.PLANNING)
    paused = manager.pause_session(sid, reason="lunch")
    assert paused.status is S.PAUSED and paused.paused_from is S.PLANNING
    resumed = manager.resume_session(sid)
    assert resumed.status is S.PLANNING and resumed.paused_from is None
    with pytest.raises(InvalidTransitionError, match="only a paused session"):
        manager.resume_session(sid)


def test_a_heartbeat_keeps_updated_at_and_is_refused_when_finished(
    manager: SessionManager, clock: Clock
) -> None:
    session = manager.create_session("x")
    clock.advance(30)
    beaten = manager.heartbeat(session.session_id)
    assert beaten.heartbeat_at == clock.now and beaten.updated_at == session.updated_at
    assert beaten.last_activity == clock.now and beaten.revision == 2
    manager.transition_state(session.session_id, S.FAILED)
    with pytest.raises(SessionValidationError, match="nothing to keep alive"):
        manager.heartbeat(session.session_id)


def test_stale_sessions_are_found_and_reaped(manager: SessionManager, clock: Clock) -> None:
    stale = manager.create_session("stale").session_id
    paused = manager.create_session("paused").session_id
    manager.pause_session(paused)
    clock.advance(600)
    alive = manager.create_session("alive").session_id
    assert [s.session_id for s in manager.find_stale_sessions(timedelta(minutes=5))] == [stale]
    reaped = manager.reap_stale_sessions(timedelta(minutes=5))
    assert [s.session_id for s in reaped] == [stale] and reaped[0].status is S.FAILED
    assert manager.get_session(alive).status is S.INITIALIZING


def test_gc_deletes_only_old_finished_sessions(manager: SessionManager, clock: Clock) -> None:
    old = manager.create_session("old").session_id
    manager.transition_state(old, S.FAILED)
    running = manager.create_session("running").session_id
    clock.advance(3 * 86400)
    recent = manager.create_session("recent").session_id
    manager.transition_state(recent, S.FAILED)
    assert [s.session_id for s in manager.gc(timedelta(days=1), dry_run=True)] == [old]
    assert [s.session_id for s in manager.gc(timedelta(days=1))] == [old]
    assert {s.session_id for s in manager.query_sessions()} == {running, recent}
