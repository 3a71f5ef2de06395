"""Every store: revisions on create and write, compare-and-swap, history, copies."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import cast

import pytest

from maestro import (
    Capability,
    ConflictError,
    Session,
    SessionConfiguration,
    SessionExistsError,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
    SessionValidationError,
    StateChange,
)
from maestro.stores.base import NoChange, PrefixLookup
from tests.conftest import GIT, Clock

S = SessionStatus


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


def test_create_stores_a_fresh_record(manager: SessionManager, clock: Clock) -> None:
    session = manager.create_session("Add OAuth login", git_context=GIT)
    assert uuid.UUID(session.session_id).version == 4
    assert session.status is SessionStatus.INITIALIZING
    assert session.created_at == session.updated_at == clock.now
    assert session.history == [] and session.configuration == SessionConfiguration()
    assert manager.get_session(session.session_id) == session


def test_a_taken_id_is_refused(manager: SessionManager) -> None:
    session = manager.create_session("x", git_context=GIT)
    with pytest.raises(SessionExistsError):
        manager.store.create(dataclasses.replace(session, feature_request="other"))
    assert manager.get_session(session.session_id) == session


def test_a_missing_session_is_not_found_everywhere(manager: SessionManager) -> None:
    sid = str(uuid.uuid4())
    with pytest.raises(SessionNotFoundError) as caught:
        manager.get_session(sid)
    assert isinstance(caught.value, FileNotFoundError) and sid in str(caught.value)
    with pytest.raises(SessionNotFoundError):
        manager.update_session(sid, {"statistics": {"total_tasks": 1}})
    with pytest.raises(SessionNotFoundError):
        manager.delete_session(sid)


def test_history_records_every_transition(manager: SessionManager, clock: Clock) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    clock.advance(1)
    manager.transition_state(sid, "planning", reason="plan approved")
    clock.advance(1)
    manager.pause_session(sid)
    clock.advance(1)
    resumed = manager.resume_session(sid)
    assert [(h.from_status, h.to_status, h.at, h.reason) for h in resumed.history] == [
        (S.INITIALIZING, S.PLANNING, clock.now - timedelta(seconds=2), "plan approved"),
        (S.PLANNING, S.PAUSED, clock.now - timedelta(seconds=1), None),
        (S.PAUSED, S.PLANNING, clock.now, None),
    ]
    assert manager.get_session(sid) == resumed and resumed.revision == 4


def test_every_write_method_honours_expected_revision(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    writes = [
        lambda rev: manager.update_session(
            sid, {"statistics": {"total_tasks": 1}}, expected_revision=rev
        ),
        lambda rev: manager.transition_state(sid, S.PLANNING, expected_revision=rev),
        lambda rev: manager.pause_session(sid, expected_revision=rev),
        lambda rev: manager.resume_session(sid, expected_revision=rev),
        lambda rev: manager.increment_statistics(sid, completed_tasks=1, expected_revision=rev),
        lambda rev: manager.heartbeat(sid, expected_revision=rev),
    ]
    for write in writes:
        current = manager.get_session(sid)
        with pytest.raises(ConflictError) as caught:
            write(current.revision - 1)
        assert caught.value.expected == current.revision - 1
        assert caught.value.actual == current.revision
        assert manager.get_session(sid) == current
        assert write(current.revision).revision == current.revision + 1
    with pytest.raises(ConflictError):
        manager.delete_session(sid, expected_revision=1)
    manager.delete_session(sid, expected_revision=manager.get_session(sid).revision)
    with pytest.raises(SessionNotFoundError):
        manager.get_session(sid)


def test_reads_are_copies_the_caller_may_change(manager: SessionManager) -> None:
    created = manager.create_session("x", git_context=GIT)
    sid = created.session_id
    created.feature_request = "changed by the caller"
    loaded = manager.get_session(sid)
    loaded.statistics.total_tasks = 99
    loaded.history.append(StateChange(S.INITIALIZING, S.PLANNING, loaded.created_at))
    manager.query_sessions()[0].extra["mine"] = 1
    written = manager.increment_statistics(sid, completed_tasks=1)
    written.statistics.completed_tasks = 50
    stored = manager.get_session(sid)
    assert stored.feature_request == "x" and stored.history == [] and stored.extra == {}
    assert (stored.statistics.total_tasks, stored.statistics.completed_tasks) == (0, 1)


def test_a_transform_raising_no_change_writes_nothing(manager: SessionManager) -> None:
    session = manager.create_session("x", git_context=GIT)

    def nothing(current: Session) -> Session:
        raise NoChange

    returned = manager.store.modify(session.session_id, nothing)
    assert returned == session and returned.revision == 1
    assert manager.get_session(session.session_id).revision == 1


def test_the_session_id_cannot_be_changed_by_a_write(manager: SessionManager) -> None:
    session = manager.create_session("x", git_context=GIT)

    def rename(current: Session) -> Session:
        return dataclasses.replace(current, session_id=str(uuid.uuid4()))

    with pytest.raises(SessionValidationError, match="read-only"):
        manager.store.modify(session.session_id, rename)
    assert manager.get_session(session.session_id) == session
    assert len(manager.query_sessions()) == 1


def test_every_write_is_checked_against_the_schema(manager: SessionManager) -> None:
    session = manager.create_session("x", git_context=GIT)

    def add_set(current: Session) -> Session:
        current.extra["tags"] = {"a", "b"}
        return current

    with pytest.raises(ValueError, match="JSON cannot store"):
        manager.store.modify(session.session_id, add_set)
    assert manager.get_session(session.session_id) == session
    with pytest.raises(SessionValidationError):
        manager.store.create(
            dataclasses.replace(session, session_id=str(uuid.uuid4()), extra={"x": {1, 2}})
        )
    assert len(manager.query_sessions()) == 1


def test_text_in_every_script_round_trips(manager: SessionManager) -> None:
    request = "Ajouter la connexion — 登录 🚀 Ελληνικά \u200f"
    sid = manager.create_session(request, git_context=GIT).session_id
    assert manager.get_session(sid).feature_request == request
    assert manager.query_sessions()[0].feature_request == request


def test_delete_removes_the_session_and_only_it(manager: SessionManager) -> None:
    keep = manager.create_session("keep", git_context=GIT).session_id
    sid = manager.create_session("x", git_context=GIT).session_id
    manager.delete_session(sid)
    assert [s.session_id for s in manager.query_sessions()] == [keep]
    assert manager.count_sessions() == 1
    with pytest.raises(SessionNotFoundError):
        manager.delete_session(sid)


def test_sessions_outlive_the_manager(open_manager: Callable[..., SessionManager]) -> None:
    sid = open_manager().create_session("x", git_context=GIT).session_id
    again = open_manager()
    assert again.get_session(sid).feature_request == "x"
    assert again.increment_statistics(sid, total_tasks=1).revision == 2


def test_the_store_declares_what_it_offers(manager: SessionManager) -> None:
    store = manager.store
    assert isinstance(store.capabilities, frozenset)
    assert all(isinstance(c, Capability) for c in store.capabilities)
    assert isinstance(store.display_name, str) and store.display_name
    if Capability.PREFIX_LOOKUP not in store.capabilities:
        return
    sid = manager.create_session("x", git_context=GIT).session_id
    lookup = cast(PrefixLookup, store)
    assert lookup.session_ids(sid[:6]) == [sid] and lookup.session_ids() == [sid]
    assert lookup.session_ids("ffffffff-" if not sid.startswith("f") else "0000") == []
