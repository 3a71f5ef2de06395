"""``transition_state(..., from_state=)``: move only a session still in the state a caller saw."""

from __future__ import annotations

from pathlib import Path

import pytest

from maestro import InvalidTransitionError, SessionManager, SessionStatus, SessionValidationError

S = SessionStatus


def test_from_state_refuses_a_session_that_moved_on_and_writes_nothing(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("Add OAuth login").session_id
    manager.transition_state(sid, S.PLANNING)
    before = manager.get_session(sid)
    with pytest.raises(InvalidTransitionError, match="no longer initializing") as caught:
        manager.transition_state(sid, S.PAUSED, from_state=S.INITIALIZING)
    assert caught.value.current == "planning"
    assert caught.value.allowed == ("generating_tasks", "failed", "paused")
    assert manager.get_session(sid) == before


def test_from_state_ignores_writes_that_leave_the_state_alone(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("Add OAuth login").session_id
    seen = manager.transition_state(sid, S.PLANNING)
    manager.heartbeat(sid)
    manager.increment_statistics(sid, total_tasks=2)
    moved = manager.transition_state(sid, "paused", from_state="planning", reason="lunch")
    assert moved.status is S.PAUSED and moved.revision == seen.revision + 3
    assert moved.history[-1].reason == "lunch"


def test_from_state_takes_part_in_the_request_fingerprint(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("Add OAuth login").session_id
    first = manager.transition_state(sid, S.PLANNING, from_state=S.INITIALIZING, request_id="r1")
    again = manager.transition_state(sid, S.PLANNING, from_state=S.INITIALIZING, request_id="r1")
    assert again == first
    with pytest.raises(SessionValidationError, match="status must be one of"):
        manager.transition_state(sid, S.GENERATING_TASKS, from_state="flying")
