"""Every store: keyset pages walk the whole query once, and stay put under inserts."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from maestro import (
    Capability,
    SessionManager,
    SessionQuery,
    SessionStatus,
    SessionValidationError,
)
from tests.conftest import GIT, Clock

S = SessionStatus
ORDERS = [("created", True), ("created", False), ("updated", True), ("updated", False)]


def _fill(manager: SessionManager, clock: Clock, count: int, *, words: str = "alpha") -> list[str]:
    """``count`` sessions, three per instant (ties the id must break), some moved on."""
    made = []
    for number in range(count):
        if number % 3 == 0:
            clock.advance(1)
        sid = manager.create_session(f"{words} {number}", git_context=GIT).session_id
        if number % 4 == 1:
            manager.transition_state(sid, S.PLANNING)
        made.append(sid)
    return made


def _walk(manager: SessionManager, limit: int, **filters: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        page = manager.query_page(limit=limit, cursor=cursor, **filters)
        assert len(page.sessions) <= limit
        seen += [s.session_id for s in page.sessions]
        cursor = page.next_cursor
        if cursor is None:
            return seen
        assert len(page.sessions) == limit  # only the last page may be short
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize(("order_by", "descending"), ORDERS)
def test_walking_every_page_gives_the_whole_query_in_order(
    manager: SessionManager, clock: Clock, order_by: str, descending: bool
) -> None:
    _fill(manager, clock, 11)
    clock.advance(5)
    # later updates make the update order differ from the creation order
    for s in manager.query_sessions(order_by="created", descending=False)[::3]:
        clock.advance(1)
        manager.increment_statistics(s.session_id, total_tasks=1)
    for limit in (1, 3, 4, 11, 50):
        everything = [
            s.session_id for s in manager.query_sessions(order_by=order_by, descending=descending)
        ]
        assert len(everything) == 11
        assert _walk(manager, limit, order_by=order_by, descending=descending) == everything


def test_pages_honour_every_filter_and_a_search(manager: SessionManager, clock: Clock) -> None:
    _fill(manager, clock, 9, words="alpha")
    _fill(manager, clock, 7, words="beta")
    for filters in (
        {"status": "planning"},
        {"status": ["initializing", "planning"], "branch": "main"},
        {"text": "beta"},
        {"text": "alpha", "status": "initializing", "order_by": "updated"},
        {"branch": "elsewhere"},
    ):
        expected_filters = dict(filters)
        expected_filters.setdefault("order_by", "created")
        expected = [s.session_id for s in manager.query_sessions(**expected_filters)]
        assert _walk(manager, 2, **filters) == expected, filters


def test_a_session_from_an_empty_query_is_one_empty_last_page(manager: SessionManager) -> None:
    page = manager.query_page(limit=5)
    assert page.sessions == [] and page.next_cursor is None
    assert page.to_dict() == {"sessions": [], "next_cursor": None}


@pytest.mark.parametrize("descending", [True, False])
def test_inserts_between_pages_neither_repeat_nor_skip_older_sessions(
    manager: SessionManager, clock: Clock, descending: bool
) -> None:
    older = _fill(manager, clock, 10)
    seen: list[str] = []
    cursor = None
    added: list[str] = []
    while True:
        page = manager.query_page(limit=3, cursor=cursor, descending=descending)
        seen += [s.session_id for s in page.sessions]
        # other writers keep creating sessions, some at the very instant of the last ones
        added += _fill(manager, clock, 2)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == len(set(seen))  # nothing twice
    assert set(older) <= set(seen)  # nothing older missed
    if descending:
        assert set(seen) == set(older)  # newest first: the new ones are all before page one
    else:
        assert set(seen) - set(older) <= set(added)


def test_deleting_the_last_session_of_a_page_does_not_break_the_next(
    manager: SessionManager, clock: Clock
) -> None:
    made = _fill(manager, clock, 7)
    first = manager.query_page(limit=3)
    assert first.next_cursor is not None
    manager.delete_session(first.sessions[-1].session_id)
    rest = _walk_from(manager, first.next_cursor, 3)
    shown = [s.session_id for s in first.sessions]
    assert sorted(shown + rest) == sorted(made)


def _walk_from(manager: SessionManager, cursor: str | None, limit: int) -> list[str]:
    seen: list[str] = []
    while cursor is not None:
        page = manager.query_page(limit=limit, cursor=cursor)
        seen += [s.session_id for s in page.sessions]
        cursor = page.next_cursor
    return seen


def _altered(cursor: str) -> list[str]:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    variants = []
    for position in (0, len(raw) // 2, len(raw) - 1):
        changed = bytearray(raw)
        changed[position] ^= 0x01
        variants.append(base64.urlsafe_b64encode(bytes(changed)).decode().rstrip("="))
    return variants


def test_a_damaged_or_foreign_cursor_is_refused(manager: SessionManager, clock: Clock) -> None:
    _fill(manager, clock, 5)
    cursor = manager.query_page(limit=2).next_cursor
    assert cursor is not None
    for bad in [
        *_altered(cursor),
        cursor[:-3],
        cursor + "A",
        "",
        "not a cursor!",
        "eyJ2IjoxfQ",  # well-formed JSON, no checksum
    ]:
        with pytest.raises(SessionValidationError, match="cursor"):
            manager.query_page(limit=2, cursor=bad)
    # a cursor belongs to its filters and order
    for other in ({"status": "planning"}, {"descending": False}, {"order_by": "updated"}):
        with pytest.raises(SessionValidationError, match="other filters"):
            manager.query_page(limit=2, cursor=cursor, **other)
    with pytest.raises(SessionValidationError):
        manager.query_page(limit=2, cursor=123)  # type: ignore[arg-type]


def test_rank_order_and_bad_limits_are_refused(manager: SessionManager) -> None:
    with pytest.raises(SessionValidationError, match="rank"):
        manager.query_page(text="alpha", order_by="rank")
    with pytest.raises(SessionValidationError, match="rank"):
        SessionQuery.build(text="alpha", after=(GIT_TIME, "0" * 8))
    for limit in (0, -1, True, 2.5):
        with pytest.raises(SessionValidationError, match="limit"):
            manager.query_page(limit=limit)  # type: ignore[arg-type]


GIT_TIME = Clock().now


@pytest.mark.parametrize(("order_by", "descending"), ORDERS)
def test_the_store_honours_the_keyset_bound_like_the_reference(
    manager: SessionManager, clock: Clock, order_by: str, descending: bool
) -> None:
    _fill(manager, clock, 10)
    everything = manager.query_sessions(order_by="created")
    for pivot in everything[::2]:
        base = SessionQuery.build(order_by=order_by, descending=descending)
        query = dataclasses.replace(base, after=base.sort_key(pivot))
        assert [s.session_id for s in manager.store.query(query)] == [
            s.session_id for s in query.apply(everything)
        ]
        assert manager.store.count(query) == len(query.apply(everything))


def test_a_page_with_its_total_counts_every_match_on_every_page(
    manager: SessionManager, clock: Clock
) -> None:
    _fill(manager, clock, 7)
    wanted = manager.count_sessions(status="initializing")
    assert wanted >= 4
    cursor = None
    for _ in range(5):
        page = manager.query_page(limit=2, status="initializing", cursor=cursor, with_total=True)
        assert page.total == wanted
        cursor = page.next_cursor
        if cursor is None:
            break
    assert cursor is None
    assert manager.query_page(limit=2).total is None
    assert manager.query_page(limit=2, with_total=True, text="nowhere").total == 0


def test_a_page_stops_being_current_when_a_session_is_written(
    manager: SessionManager, clock: Clock
) -> None:
    made = _fill(manager, clock, 4)
    page = manager.query_page(limit=2, with_total=True)
    if Capability.STAMPED_QUERIES not in manager.store.capabilities:
        assert page.stamp is None and not manager.page_is_current(page)
    clock.advance(1)
    manager.heartbeat(made[0])  # not on the page: its order is by creation, newest first
    assert not manager.page_is_current(page)
    again = manager.query_page(limit=2, with_total=True)
    assert again.total == page.total == 4
    assert [s.session_id for s in again.sessions] == [s.session_id for s in page.sessions]
