"""Every store with a change feed: what ``manager.changes()`` promises."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

import pytest

from maestro import (
    Capability,
    ChangeEvent,
    ChangeKind,
    SessionManager,
    SessionStatus,
    SessionValidationError,
)
from tests.conftest import GIT

K = ChangeKind
S = SessionStatus
pytestmark = pytest.mark.needs(Capability.CHANGES)


def _all(manager: SessionManager, since: str | None = None) -> list[ChangeEvent]:
    return list(manager.changes(since))


def _last_cursor(manager: SessionManager) -> str | None:
    events = _all(manager)
    return events[-1].cursor if events else None


def test_every_write_is_one_event_of_its_kind(manager: SessionManager) -> None:
    sid = manager.create_session("Add OAuth", git_context=GIT).session_id
    manager.transition_state(sid, S.PLANNING)
    manager.update_session(sid, {"status": "generating_tasks"})
    manager.update_session(sid, {"statistics": {"total_tasks": 3}})
    manager.pause_session(sid)
    manager.resume_session(sid)
    manager.heartbeat(sid)
    manager.increment_statistics(sid, completed_tasks=1)
    manager.delete_session(sid)

    events = _all(manager)
    assert [(e.kind, e.revision, e.from_status, e.to_status) for e in events] == [
        (K.CREATED, 1, None, "initializing"),
        (K.TRANSITIONED, 2, "initializing", "planning"),
        (K.TRANSITIONED, 3, "planning", "generating_tasks"),
        (K.UPDATED, 4, "generating_tasks", "generating_tasks"),
        (K.PAUSED, 5, "generating_tasks", "paused"),
        (K.RESUMED, 6, "paused", "generating_tasks"),
        (K.HEARTBEAT, 7, "generating_tasks", "generating_tasks"),
        (K.INCREMENTED, 8, "generating_tasks", "generating_tasks"),
        (K.DELETED, 8, "generating_tasks", None),
    ]
    assert {e.session_id for e in events} == {sid}
    assert len({e.cursor for e in events}) == len(events)
    assert all(e.at.tzinfo is not None for e in events)
    assert events[0].to_dict()["kind"] == "created"
    assert set(events[0].to_dict()) == {
        "cursor",
        "kind",
        "session_id",
        "revision",
        "from_status",
        "to_status",
        "at",
        "request_id",
    }


def test_a_refused_write_is_no_event(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    with pytest.raises(ValueError):
        manager.transition_state(sid, S.COMPLETED)  # not allowed from initializing
    with pytest.raises(ValueError):
        manager.resume_session(sid)
    assert [e.kind for e in _all(manager)] == [K.CREATED]


def test_reading_resumes_after_a_saved_cursor_in_a_new_manager(
    open_manager: Callable[..., SessionManager],
) -> None:
    first = open_manager()
    a = first.create_session("a", git_context=GIT).session_id
    first.transition_state(a, S.PLANNING)
    saved = _last_cursor(first)
    assert saved is not None
    b = first.create_session("b", git_context=GIT).session_id
    first.heartbeat(a)

    later = open_manager()
    after = _all(later, saved)
    assert [(e.session_id, e.kind) for e in after] == [(b, K.CREATED), (a, K.HEARTBEAT)]
    # Reading from the last cursor again gives nothing, however often.
    assert _all(later, after[-1].cursor) == []
    assert _all(open_manager(), after[-1].cursor) == []


def test_without_since_it_reads_from_the_oldest_kept_event(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    events = _all(manager)
    assert [(e.session_id, e.kind) for e in events] == [(sid, K.CREATED)]


def test_following_without_since_starts_at_the_current_end(manager: SessionManager) -> None:
    manager.create_session("before", git_context=GIT)
    assert list(manager.changes(follow=True, timeout=0.2)) == []


def test_following_waits_for_a_write_made_meanwhile(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    cursor = _last_cursor(manager)
    writer = threading.Thread(target=manager.transition_state, args=(sid, S.PLANNING))
    writer.start()
    try:
        following = manager.changes(cursor, follow=True, timeout=30)
        event = next(following)
    finally:
        writer.join()
    assert (event.session_id, event.kind, event.to_status) == (
        sid,
        K.TRANSITIONED,
        "planning",
    )


def test_following_ends_at_its_timeout(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    cursor = _last_cursor(manager)
    manager.heartbeat(sid)
    # The event already there is given, then nothing more comes.
    assert [e.kind for e in manager.changes(cursor, follow=True, timeout=0.3)] == [K.HEARTBEAT]


def test_filters_keep_some_events(manager: SessionManager) -> None:
    a = manager.create_session("a", git_context=GIT).session_id
    b = manager.create_session("b", git_context=GIT).session_id
    manager.transition_state(a, S.PLANNING)
    manager.transition_state(b, S.PLANNING)
    manager.transition_state(b, S.FAILED)
    manager.heartbeat(a)

    assert [e.kind for e in manager.changes(session_id=b)] == [
        K.CREATED,
        K.TRANSITIONED,
        K.TRANSITIONED,
    ]
    assert [(e.session_id, e.to_status) for e in manager.changes(status="failed")] == [
        (b, "failed")
    ]
    # ``status`` is the status after the change: the heartbeat of a planning session too.
    assert [e.session_id for e in manager.changes(status=[S.PLANNING])] == [a, b, a]
    assert [e.session_id for e in manager.changes(kind=K.HEARTBEAT)] == [a]
    assert [e.kind for e in manager.changes(kind=["created", "heartbeat"], session_id=a)] == [
        K.CREATED,
        K.HEARTBEAT,
    ]


def test_session_filters_judge_each_event_by_its_session(manager: SessionManager) -> None:
    other = GIT.__class__(branch="feature/x", commit="1" * 40, repo_root="/repo", is_worktree=False)
    a = manager.create_session("Add OAuth login", git_context=GIT).session_id
    b = manager.create_session("Fix the cache", git_context=other).session_id
    manager.transition_state(a, S.PLANNING)
    manager.transition_state(b, S.PLANNING)
    manager.heartbeat(a)

    assert [(e.session_id, e.kind) for e in manager.changes(branch="feature/x")] == [
        (b, K.CREATED),
        (b, K.TRANSITIONED),
    ]
    assert [e.session_id for e in manager.changes(text="oauth")] == [a, a, a]
    assert [e.session_id for e in manager.changes(text="cach*", kind="created")] == [b]
    plan = manager.get_session(a).current_phase
    assert plan is not None
    assert {e.session_id for e in manager.changes(phase=plan)} == {a, b}
    assert [e.kind for e in manager.changes(phase=plan, branch="main")] == [
        K.CREATED,
        K.TRANSITIONED,
        K.HEARTBEAT,
    ]
    with pytest.raises(SessionValidationError):
        manager.changes(created_after="yesterday")


def test_a_session_leaving_a_filtered_view_passes_once_more(manager: SessionManager) -> None:
    # One filter judges a live stream: a session that stops matching (or is
    # deleted) gives one more event, so a view of the filtered sessions can
    # drop it; then nothing until it matches again.
    sid = manager.create_session("Add OAuth login", git_context=GIT).session_id
    manager.transition_state(sid, S.PLANNING)
    plan = manager.get_session(sid).current_phase
    assert plan is not None
    wanted = manager.change_filter(phase=plan)
    start = manager.changes_cursor()

    def judged() -> list[tuple[ChangeKind, bool]]:
        nonlocal start
        events = list(manager.changes(start))
        start = events[-1].cursor
        return [(e.kind, wanted(e)) for e in events]

    manager.heartbeat(sid)
    assert judged() == [(K.HEARTBEAT, True)]
    manager.transition_state(sid, S.GENERATING_TASKS)
    assert manager.get_session(sid).current_phase != plan
    manager.heartbeat(sid)
    assert judged() == [(K.TRANSITIONED, True), (K.HEARTBEAT, False)]
    manager.delete_session(sid)
    assert judged() == [(K.DELETED, False)]
    again = manager.create_session("Add OAuth login", git_context=GIT).session_id
    manager.transition_state(again, S.PLANNING)
    # Events read later are judged by the session as it is then: its
    # creation passes too, as the session is in the phase now.
    wanted = manager.change_filter(phase=plan)
    assert judged() == [(K.CREATED, True), (K.TRANSITIONED, True)]
    manager.delete_session(again)
    assert judged() == [(K.DELETED, True)]


def test_bad_arguments_are_refused_before_reading(manager: SessionManager) -> None:
    with pytest.raises(SessionValidationError):
        manager.changes(status="nope")
    with pytest.raises(SessionValidationError):
        manager.changes(kind="nope")
    with pytest.raises(SessionValidationError):
        manager.changes(timeout=-1)
    with pytest.raises(ValueError):
        manager.changes(session_id="not-an-id")
    with pytest.raises(SessionValidationError):
        list(manager.changes("not a cursor"))


def test_concurrent_writers_every_change_once_in_revision_order(
    manager: SessionManager,
) -> None:
    ids = [manager.create_session(f"s{i}", git_context=GIT).session_id for i in range(3)]
    rounds = 15

    def work(sid: str) -> None:
        for _ in range(rounds):
            manager.increment_statistics(sid, completed_tasks=1)

    threads = [threading.Thread(target=work, args=(sid,)) for sid in ids for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    revisions: dict[str, list[int]] = defaultdict(list)
    for event in _all(manager):
        assert event.revision is not None and event.session_id is not None
        revisions[event.session_id].append(event.revision)
    # Each session: created at 1, then every increment, no gap, no repeat.
    for sid in ids:
        assert revisions[sid] == list(range(1, 2 * rounds + 2))
        assert manager.get_session(sid).statistics.completed_tasks == 2 * rounds


@pytest.mark.needs(Capability.CHANGES, Capability.REINDEX)
def test_a_rebuilt_index_tells_readers_to_start_over(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    cursor = _last_cursor(manager)
    manager.rebuild_index()
    manager.heartbeat(sid)
    events = _all(manager, cursor)
    assert events[0].kind is K.RESET
    assert events[0].session_id is None and events[0].revision is None
    assert [e.kind for e in events[1:]] == [K.HEARTBEAT]
    # The reset's cursor is where reading goes on from: no second reset.
    assert [e.kind for e in _all(manager, events[0].cursor)] == [K.HEARTBEAT]


@pytest.mark.needs(Capability.CHANGES)
def test_events_carry_the_request_id_of_the_write(manager: SessionManager) -> None:
    """The feed names the request each change answered; a retry adds no event."""
    start = manager.changes_cursor()
    sid = manager.create_session("x", git_context=GIT, request_id="create-1").session_id
    manager.transition_state(sid, SessionStatus.PLANNING, request_id="move-1")
    manager.transition_state(sid, SessionStatus.PLANNING, request_id="move-1")  # a retry
    manager.update_session(sid, {"status": "generating_tasks"}, request_id="update-1")
    manager.heartbeat(sid)
    manager.delete_session(sid, request_id="delete-1")
    seen = [(e.kind, e.revision, e.request_id) for e in manager.changes(start)]
    assert seen == [
        (ChangeKind.CREATED, 1, "create-1"),
        (ChangeKind.TRANSITIONED, 2, "move-1"),
        (ChangeKind.TRANSITIONED, 3, "update-1"),
        (ChangeKind.HEARTBEAT, 4, None),
        (ChangeKind.DELETED, 4, "delete-1"),
    ]
