"""Every store: ``iter_sessions`` streams exactly what ``query_sessions`` returns."""

from __future__ import annotations

from typing import Any

import pytest

from maestro import SessionManager, SessionStatus, SessionValidationError
from maestro import manager as manager_module
from tests.conftest import GIT, Clock

S = SessionStatus


def _fill(manager: SessionManager, clock: Clock, count: int) -> None:
    """``count`` sessions, three per instant (ties the id must break), some moved on."""
    for number in range(count):
        if number % 3 == 0:
            clock.advance(1)
        words = "oauth login" if number % 5 == 0 else "billing"
        sid = manager.create_session(f"{words} {number}", git_context=GIT).session_id
        if number % 4 == 1:
            manager.transition_state(sid, S.PLANNING)
        if number % 7 == 2:
            clock.advance(1)
            manager.increment_statistics(sid, total_tasks=1)


QUERIES: list[dict[str, Any]] = [
    {},
    {"status": "planning"},
    {"status": ["initializing", "planning"], "descending": False},
    {"order_by": "updated"},
    {"order_by": "updated", "descending": False},
    {"limit": 5},
    {"limit": 9, "offset": 4},
    {"offset": 20},
    {"offset": 40},
    {"status": "initializing", "limit": 7, "offset": 2, "order_by": "updated"},
    {"text": "oauth"},
    {"text": "oauth", "order_by": "created"},
    {"text": "oauth", "limit": 2, "offset": 1},
    {"branch": "elsewhere"},
]


@pytest.mark.parametrize("filters", QUERIES)
def test_the_stream_is_the_query(
    manager: SessionManager, clock: Clock, filters: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(manager, clock, 23)
    monkeypatch.setattr(manager_module, "ITER_PAGE", 4)  # many pages, ties across their edges
    expected = [s.session_id for s in manager.query_sessions(**filters)]
    assert [s.session_id for s in manager.iter_sessions(**filters)] == expected
    assert list(manager.iter_sessions(**filters)) == manager.query_sessions(**filters)


def test_the_stream_holds_one_page_at_a_time(
    manager: SessionManager, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(manager, clock, 23)
    monkeypatch.setattr(manager_module, "ITER_PAGE", 4)
    asked: list[int | None] = []
    query = manager.store.query

    def spy(q: Any) -> Any:
        asked.append(q.limit)
        return query(q)

    monkeypatch.setattr(manager.store, "query", spy)
    stream = manager.iter_sessions()
    assert asked == []  # nothing is read before the first session is asked for
    first = next(stream)
    assert asked == [4]
    rest = list(stream)
    assert len(rest) == 22 and first.session_id not in {s.session_id for s in rest}
    assert all(limit == 4 for limit in asked) and len(asked) == 6


def test_sessions_created_while_streaming_never_repeat_or_hide_older_ones(
    manager: SessionManager, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(manager, clock, 12)
    monkeypatch.setattr(manager_module, "ITER_PAGE", 3)
    before = [s.session_id for s in manager.query_sessions()]
    seen = []
    for session in manager.iter_sessions():
        seen.append(session.session_id)
        clock.advance(1)
        manager.create_session("made meanwhile", git_context=GIT)
    assert seen == before


def test_bad_arguments_fail_at_the_call(manager: SessionManager) -> None:
    with pytest.raises(SessionValidationError):
        manager.iter_sessions(status="no-such-state")
    with pytest.raises(SessionValidationError):
        manager.iter_sessions(limit=-1)
