"""Every store: filters, order, ties, windows, counts and full-text search.

Each answer is checked against :meth:`SessionQuery.apply` over every stored
session, the reference any store must agree with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any

import pytest

from maestro import (
    GitContext,
    Session,
    SessionManager,
    SessionPhase,
    SessionQuery,
    SessionStatus,
)
from tests.conftest import GIT, Clock

S = SessionStatus


@pytest.fixture
def populated(manager: SessionManager, clock: Clock) -> list[Session]:
    """Nine sessions an hour apart on two branches, in assorted states."""
    made: list[Session] = []
    plans = [
        ("main", []),
        ("feat/a", [S.PLANNING]),
        ("main", [S.PLANNING, S.GENERATING_TASKS]),
        ("feat/a", [S.FAILED]),
        ("main", [S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING]),
        ("feat/a", [S.PAUSED]),
        ("main", [S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING, S.VALIDATING]),
        (
            "feat/a",
            [
                S.PLANNING,
                S.GENERATING_TASKS,
                S.IMPLEMENTING,
                S.VALIDATING,
                S.GENERATING_REPORT,
                S.COMPLETED,
            ],
        ),
        ("main", [S.PLANNING]),
    ]
    for index, (branch, path) in enumerate(plans):
        git = GitContext(branch, f"{index:040x}", "/repo")
        sid = manager.create_session(f"request {index}", git_context=git).session_id
        for state in path:
            manager.transition_state(sid, state)
        made.append(manager.get_session(sid))
        clock.advance(3600)
    return made


def ids(sessions: list[Session]) -> list[str]:
    return [s.session_id for s in sessions]


def test_query_returns_newest_first(manager: SessionManager, populated: list[Session]) -> None:
    assert ids(manager.query_sessions()) == ids(populated[::-1])
    assert ids(manager.get_recent_sessions(3)) == ids(populated[::-1][:3])
    assert manager.get_recent_sessions(0) == []


def test_query_filters(manager: SessionManager, populated: list[Session]) -> None:
    everything = populated[::-1]
    assert ids(manager.query_sessions(status=S.PLANNING)) == ids(
        [s for s in everything if s.status is S.PLANNING]
    )
    several = manager.query_sessions(status=["failed", S.COMPLETED])
    assert {s.status for s in several} == {S.FAILED, S.COMPLETED} and len(several) == 2
    assert ids(manager.query_sessions(branch="feat/a")) == ids(
        [s for s in everything if s.git_context.branch == "feat/a"]
    )
    assert ids(manager.query_sessions(phase="implement")) == ids(
        [s for s in everything if s.current_phase is SessionPhase.IMPLEMENT]
    )
    assert ids(manager.query_sessions(status="planning", branch="main", limit=1)) == ids(
        [populated[8]]
    )


def test_time_bounds_compare_instants_not_strings(
    manager: SessionManager, populated: list[Session]
) -> None:
    third = populated[2].created_at  # 11:00 UTC
    in_new_york = third.astimezone(timezone(timedelta(hours=-5))).isoformat()  # 06:00-05:00
    found = manager.query_sessions(created_after=in_new_york, created_before=in_new_york)
    assert ids(found) == [populated[2].session_id]
    naive_utc = third.replace(tzinfo=None)
    assert ids(manager.query_sessions(created_before=naive_utc)) == ids(populated[2::-1])
    assert ids(manager.query_sessions(created_after=third + timedelta(seconds=1))) == ids(
        populated[:2:-1]
    )
    z_string = "2026-03-01T12:00:00Z"
    assert ids(manager.query_sessions(created_after=z_string)) == ids(populated[:2:-1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": -1},
        {"limit": "3"},
        {"status": "asleep"},
        {"created_after": "soon"},
        {"phase": 3},
        {"created_before": 12},
    ],
)
def test_query_refuses_bad_arguments(manager: SessionManager, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        manager.query_sessions(**kwargs)  # type: ignore[arg-type]


def test_list_active_sessions(manager: SessionManager, populated: list[Session]) -> None:
    active = manager.list_active_sessions()
    assert ids(active) == ids([s for s in populated[::-1] if not s.is_terminal])
    assert all(s.status not in (S.COMPLETED, S.FAILED) for s in active)


def reference(manager: SessionManager, **kwargs: Any) -> list[Session]:
    """What ``query_sessions(**kwargs)`` must answer: the query applied to every session."""
    everything = [entry.session for entry in manager.store.scan() if entry.session is not None]
    return SessionQuery.build(**kwargs).apply(everything)


REQUESTS = [
    "Add OAuth login with Google and GitHub",
    "Fix the flaky login test on CI",
    "Build a REST API for user management",
    "Café menu: résumé upload and naïve search",
    "Migrate authentication to OAuth 2.1",
    "Refactor the payment service",
]


@pytest.fixture
def filled(manager: SessionManager, clock: Clock) -> list[Session]:
    made = []
    paths = [[], [S.PLANNING], [S.FAILED], [S.PLANNING, S.GENERATING_TASKS], [S.PAUSED], []]
    for number, (request, path) in enumerate(zip(REQUESTS, paths, strict=True)):
        git = GitContext(
            "main" if number % 2 else "feat/x",
            f"{number:040x}",
            "/r",
            number == 3,
            "wt" if number == 3 else None,
        )
        sid = manager.create_session(request, git_context=git).session_id
        for state in path:
            clock.advance(1)
            manager.transition_state(sid, state)
        made.append(manager.get_session(sid))
        clock.advance(60)
    return made


QUERIES: list[dict[str, Any]] = [
    {},
    {"status": "planning"},
    {"status": ["failed", "paused", "initializing"]},
    {"phase": "plan"},
    {"branch": "main"},
    {"branch": "main", "status": "initializing", "limit": 1},
    {"worktree": "wt"},
    {"limit": 2},
    {"limit": 2, "offset": 2},
    {"offset": 5},
    {"order_by": "updated"},
    {"order_by": "updated", "descending": False, "limit": 3},
    {"created_after": "2026-03-01T09:02:00Z"},
    {"created_before": "2026-03-01T09:03:00+00:00", "created_after": "2026-03-01T08:00:00Z"},
    {"updated_after": "2026-03-01T09:04:00Z"},
    {"text": "login", "order_by": "created"},
    {"text": "OAUTH", "order_by": "created"},
    {"text": "auth*", "order_by": "created"},
    {"text": "cafe resume", "order_by": "created"},
    {"text": "login oauth", "order_by": "created"},
    {"text": "nothing-matches-this", "order_by": "created"},
]


@pytest.mark.parametrize("kwargs", QUERIES, ids=lambda q: json.dumps(q))
def test_every_filter_order_and_window_answers_like_the_reference(
    manager: SessionManager, filled: list[Session], kwargs: dict[str, Any]
) -> None:
    assert manager.query_sessions(**kwargs) == reference(manager, **kwargs)
    counted = {
        k: v for k, v in kwargs.items() if k not in ("limit", "offset", "order_by", "descending")
    }
    assert manager.count_sessions(**counted) == len(reference(manager, **counted))


def test_count_ignores_the_window(manager: SessionManager, filled: list[Session]) -> None:
    assert manager.store.count(SessionQuery.build(limit=1, offset=2)) == len(filled)
    assert manager.store.count(SessionQuery.build(branch="main", limit=0)) == 3


def test_windows_page_through_without_overlap(
    manager: SessionManager, filled: list[Session]
) -> None:
    pages = [manager.query_sessions(limit=4, offset=offset) for offset in range(0, 8, 4)]
    assert [len(page) for page in pages] == [4, 2]
    assert ids(pages[0] + pages[1]) == ids(filled[::-1])
    assert manager.query_sessions(limit=0) == []
    assert manager.query_sessions(offset=99) == []


def test_ties_are_broken_by_session_id(manager: SessionManager, clock: Clock) -> None:
    made = [manager.create_session(f"same moment {n}", git_context=GIT) for n in range(5)]
    by_id = sorted(ids(made))
    assert ids(manager.query_sessions()) == by_id[::-1]
    assert ids(manager.query_sessions(descending=False)) == by_id
    assert ids(manager.query_sessions(order_by="updated")) == by_id[::-1]
    assert ids(manager.query_sessions(text="moment", order_by="created")) == by_id[::-1]
    pages = [manager.query_sessions(limit=2, offset=n) for n in (0, 2, 4)]
    assert [sid for page in pages for sid in ids(page)] == by_id[::-1]


def test_order_by_update_follows_the_last_write(manager: SessionManager, clock: Clock) -> None:
    first = manager.create_session("first", git_context=GIT).session_id
    clock.advance(1)
    second = manager.create_session("second", git_context=GIT).session_id
    clock.advance(1)
    manager.increment_statistics(first, total_tasks=1)
    assert ids(manager.query_sessions()) == [second, first]
    assert ids(manager.query_sessions(order_by="updated")) == [first, second]
    assert ids(manager.query_sessions(order_by="updated", descending=False)) == [second, first]


def test_updated_and_active_bounds(manager: SessionManager, clock: Clock) -> None:
    start = clock.now
    quiet = manager.create_session("quiet", git_context=GIT).session_id
    beating = manager.create_session("beating", git_context=GIT).session_id
    clock.advance(600)
    manager.heartbeat(beating)  # activity, not an update
    touched = manager.create_session("touched", git_context=GIT).session_id
    assert set(ids(manager.query_sessions(updated_before=start))) == {quiet, beating}
    assert ids(manager.query_sessions(updated_after=start + timedelta(seconds=1))) == [touched]
    assert ids(manager.query_sessions(active_before=start + timedelta(seconds=1))) == [quiet]
    assert manager.count_sessions(active_before=start) == 1


def test_full_text_search_matches_every_word_folded(
    manager: SessionManager, filled: list[Session]
) -> None:
    def found(text: str) -> set[str]:
        return {s.session_id for s in manager.query_sessions(text=text)}

    assert found("login") == {filled[0].session_id, filled[1].session_id}
    assert found("LOGIN google") == {filled[0].session_id}
    assert found("auth*") == {filled[4].session_id}
    assert found("cafe RESUME naive") == {filled[3].session_id}
    assert found("oauth") == {filled[0].session_id, filled[4].session_id}
    assert found("payment missing-word") == set()
    assert manager.count_sessions(text="login") == 2


def test_rank_order_returns_exactly_the_matches(
    manager: SessionManager, filled: list[Session]
) -> None:
    manager.create_session("login login login: the login page", git_context=GIT)
    ranked = manager.query_sessions(text="login")
    assert {s.session_id for s in ranked} == {
        s.session_id for s in reference(manager, text="login", order_by="created")
    }
    assert len(ranked) == 3
    assert len(manager.query_sessions(text="login", limit=2)) == 2


def test_search_refuses_text_without_words(manager: SessionManager) -> None:
    with pytest.raises(ValueError, match="at least one word"):
        manager.query_sessions(text=" -- ")
    with pytest.raises(ValueError, match="needs a text search"):
        manager.query_sessions(order_by="rank")


def test_resolve_session_id_accepts_unique_prefixes(
    manager: SessionManager, open_manager: Callable[..., SessionManager]
) -> None:
    sid = manager.create_session("a", git_context=GIT).session_id
    assert manager.resolve_session_id(sid[:8]) == sid
    assert open_manager().resolve_session_id(sid[:6]) == sid
    twin = sid[:6] + ("0" if sid[6] != "0" else "1") + sid[7:]
    made = manager.get_session(sid)
    made.session_id = twin
    manager.store.create(made)
    with pytest.raises(ValueError, match="ambiguous"):
        manager.resolve_session_id(sid[:6])
    assert manager.resolve_session_id(sid[:7]) == sid
