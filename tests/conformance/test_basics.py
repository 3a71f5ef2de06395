"""Every store: revisions on create and write, compare-and-swap, history."""

from __future__ import annotations

import pytest

from maestro import ConflictError, SessionManager, SessionStatus
from tests.conftest import GIT


def test_revision_is_one_on_create_and_grows_by_one_per_write(manager: SessionManager) -> None:
    session = manager.create_session("Add OAuth", git_context=GIT)
    assert session.revision == 1
    assert manager.get_session(session.session_id).revision == 1
    after = manager.transition_state(session.session_id, SessionStatus.PLANNING)
    assert after.revision == 2
    assert (
        manager.update_session(session.session_id, {"statistics": {"total_tasks": 3}}).revision == 3
    )


def test_expected_revision_conflicts(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    with pytest.raises(ConflictError):
        manager.transition_state(sid, SessionStatus.PLANNING, expected_revision=7)
    assert manager.get_session(sid).status is SessionStatus.INITIALIZING
    manager.transition_state(sid, SessionStatus.PLANNING, expected_revision=1)
    assert manager.get_session(sid).revision == 2
