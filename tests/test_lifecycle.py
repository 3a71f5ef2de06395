"""The state machine: every pair of states, pause semantics, phases, timing."""

from __future__ import annotations

import itertools

import pytest

from maestro import InvalidTransitionError, SessionManager, SessionPhase, SessionStatus
from maestro.lifecycle import TRANSITIONS, allowed_targets, check_transition

from .conftest import Clock

S = SessionStatus

# The design's diagram, written out edge by edge independently of the table in
# the code: the happy path, the validate → implement loop, and pause/fail from
# every non-terminal state.
WORKING = [
    S.INITIALIZING,
    S.PLANNING,
    S.GENERATING_TASKS,
    S.IMPLEMENTING,
    S.VALIDATING,
    S.GENERATING_REPORT,
]
EXPECTED_EDGES = {
    (S.INITIALIZING, S.PLANNING),
    (S.PLANNING, S.GENERATING_TASKS),
    (S.GENERATING_TASKS, S.IMPLEMENTING),
    (S.IMPLEMENTING, S.VALIDATING),
    (S.VALIDATING, S.GENERATING_REPORT),
    (S.VALIDATING, S.IMPLEMENTING),
    (S.GENERATING_REPORT, S.COMPLETED),
} | {(state, target) for state in WORKING for target in (S.PAUSED, S.FAILED)}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(WORKING, SessionStatus)))
def test_every_pair_from_a_working_state(current: SessionStatus, target: SessionStatus) -> None:
    allowed = (current, target) in EXPECTED_EDGES
    assert (target in TRANSITIONS[current]) is allowed
    if allowed:
        check_transition("id", current, target)
    else:
        with pytest.raises(InvalidTransitionError):
            check_transition("id", current, target)


@pytest.mark.parametrize("terminal", [S.COMPLETED, S.FAILED])
@pytest.mark.parametrize("target", list(SessionStatus))
def test_terminal_states_are_locked(terminal: SessionStatus, target: SessionStatus) -> None:
    assert TRANSITIONS[terminal] == ()
    with pytest.raises(InvalidTransitionError, match="terminal"):
        check_transition("id", terminal, target)


@pytest.mark.parametrize(("origin", "target"), list(itertools.product(WORKING, SessionStatus)))
def test_paused_adds_no_power(origin: SessionStatus, target: SessionStatus) -> None:
    """From paused: back to the origin, or wherever the origin could go (but pause)."""
    allowed = target is origin or ((origin, target) in EXPECTED_EDGES and target is not S.PAUSED)
    assert (target in allowed_targets(S.PAUSED, origin)) is allowed
    if allowed:
        check_transition("id", S.PAUSED, target, origin)
    else:
        with pytest.raises(InvalidTransitionError, match=f"paused from {origin.value}"):
            check_transition("id", S.PAUSED, target, origin)


def test_paused_to_completed_only_from_generating_report() -> None:
    origins = [o for o in WORKING if S.COMPLETED in allowed_targets(S.PAUSED, o)]
    assert origins == [S.GENERATING_REPORT]


def test_paused_without_origin_never_completes() -> None:
    targets = allowed_targets(S.PAUSED, None)
    assert S.COMPLETED not in targets and S.PAUSED not in targets
    assert S.FAILED in targets and S.IMPLEMENTING in targets


def test_upper_bound_covers_every_paused_target() -> None:
    for origin in WORKING:
        assert set(allowed_targets(S.PAUSED, origin)) <= set(TRANSITIONS[S.PAUSED])


def test_state_transitions_is_a_public_read_only_class_attribute() -> None:
    assert SessionManager.STATE_TRANSITIONS is TRANSITIONS
    with pytest.raises(TypeError):
        SessionManager.STATE_TRANSITIONS[S.COMPLETED] = (S.PLANNING,)  # type: ignore[index]


# ---------------------------------------------------------------- through the manager


def walk(manager: SessionManager, sid: str, *states: SessionStatus) -> None:
    for state in states:
        manager.transition_state(sid, state)


@pytest.mark.parametrize(
    ("status", "phase"),
    [
        (S.PLANNING, SessionPhase.PLAN),
        (S.GENERATING_TASKS, SessionPhase.GENERATE_TASKS),
        (S.IMPLEMENTING, SessionPhase.IMPLEMENT),
        (S.VALIDATING, SessionPhase.VALIDATE),
        (S.GENERATING_REPORT, SessionPhase.CLEANUP),
    ],
)
def test_phase_follows_status(
    manager: SessionManager, status: SessionStatus, phase: SessionPhase
) -> None:
    sid = manager.create_session("x").session_id
    path = WORKING[1 : WORKING.index(status) + 1]
    walk(manager, sid, *path)
    assert manager.get_session(sid).current_phase is phase


def test_phase_is_kept_through_pause_and_terminal_states(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    walk(manager, sid, S.PLANNING, S.GENERATING_TASKS)
    assert manager.pause_session(sid).current_phase is SessionPhase.GENERATE_TASKS
    assert manager.transition_state(sid, S.FAILED).current_phase is SessionPhase.GENERATE_TASKS


def test_explicit_phase_wins_over_the_status(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    session = manager.update_session(sid, {"status": "planning", "current_phase": "validate"})
    assert session.status is S.PLANNING and session.current_phase is SessionPhase.VALIDATE


def test_terminal_sets_completed_at_and_active_duration(
    manager: SessionManager, clock: Clock
) -> None:
    sid = manager.create_session("x").session_id
    clock.advance(10)
    manager.transition_state(sid, S.PLANNING)  # 10 s initializing
    clock.advance(20)
    manager.pause_session(sid)  # 20 s planning
    clock.advance(1000)
    manager.resume_session(sid)  # 1000 s paused: excluded
    clock.advance(5)
    done = manager.transition_state(sid, S.FAILED, reason="gave up")  # 5 s planning
    assert done.completed_at == clock.now
    assert done.statistics.duration_seconds == pytest.approx(35.0)
    assert done.history[-1].reason == "gave up"


def test_completed_session_cannot_move(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    walk(manager, sid, *WORKING[1:], S.COMPLETED)
    for target in SessionStatus:
        with pytest.raises(InvalidTransitionError):
            manager.transition_state(sid, target)
    with pytest.raises(InvalidTransitionError):
        manager.pause_session(sid)
    assert manager.get_session(sid).status is S.COMPLETED


def test_pause_resume_returns_to_origin_and_clears_paused_from(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    walk(manager, sid, S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING)
    paused = manager.pause_session(sid, reason="review")
    assert paused.status is S.PAUSED and paused.paused_from is S.IMPLEMENTING
    resumed = manager.resume_session(sid)
    assert resumed.status is S.IMPLEMENTING and resumed.paused_from is None
    assert [(h.from_status, h.to_status) for h in resumed.history[-2:]] == [
        (S.IMPLEMENTING, S.PAUSED),
        (S.PAUSED, S.IMPLEMENTING),
    ]


def test_paused_session_cannot_skip_ahead(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    walk(manager, sid, S.PLANNING)
    manager.pause_session(sid)
    with pytest.raises(InvalidTransitionError):
        manager.transition_state(sid, S.IMPLEMENTING)
    with pytest.raises(InvalidTransitionError):
        manager.transition_state(sid, S.COMPLETED)
    assert manager.transition_state(sid, S.GENERATING_TASKS).status is S.GENERATING_TASKS


def test_resume_requires_a_paused_session(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    with pytest.raises(InvalidTransitionError, match="only a paused session"):
        manager.resume_session(sid)


def test_pausing_twice_is_refused(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    manager.pause_session(sid)
    with pytest.raises(InvalidTransitionError):
        manager.pause_session(sid)


def test_an_explicit_empty_phase_wins_over_the_status(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    session = manager.update_session(sid, {"status": "planning", "current_phase": None})
    assert session.status is S.PLANNING and session.current_phase is None
    assert manager.get_session(sid).current_phase is None
