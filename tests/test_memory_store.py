"""The memory store's own parts: its change feed, retention and cursors."""

from __future__ import annotations

import dataclasses
import threading
import uuid

import pytest

from maestro import ChangeKind, SessionManager, SessionValidationError
from maestro.stores.base import NoChange
from maestro.stores.memory import MemoryStore

from .conftest import GIT, Clock


def test_every_write_is_one_event_with_its_details(clock: Clock) -> None:
    store = MemoryStore()
    manager = SessionManager(store=store, clock=clock)
    sid = manager.create_session("x", git_context=GIT).session_id
    clock.advance(5)
    manager.store.modify(
        sid,
        lambda s: dataclasses.replace(s, updated_at=clock.now),
        kind=ChangeKind.HEARTBEAT,
        request_id="r-1",
    )
    manager.store.modify(sid, _no_change)  # no write, no event
    manager.store.delete(sid, request_id="r-2")
    events = store.changes_after(None)
    assert [(e.kind, e.revision, e.from_status, e.to_status, e.request_id) for e in events] == [
        (ChangeKind.CREATED, 1, None, "initializing", None),
        (ChangeKind.HEARTBEAT, 2, "initializing", "initializing", "r-1"),
        (ChangeKind.DELETED, 2, "initializing", None, "r-2"),
    ]
    assert {e.session_id for e in events} == {sid}
    assert events[1].at == clock.now
    assert store.feed_end() == events[-1].cursor
    assert store.changes_after(events[0].cursor, limit=1) == [events[1]]
    assert store.changes_after(store.feed_end()) == []


def _no_change(session: object) -> object:
    raise NoChange


def test_retention_and_unknown_cursors_give_an_explicit_reset() -> None:
    store = MemoryStore(retention=3)
    manager = SessionManager(store=store)
    sid = manager.create_session("x", git_context=GIT).session_id
    first = store.feed_end()
    for _ in range(4):
        manager.increment_statistics(sid, total_tasks=1)
    kept = store.changes_after(None)
    assert [e.revision for e in kept] == [3, 4, 5]
    behind = store.changes_after(first)
    assert behind[0].kind is ChangeKind.RESET and behind[0].session_id is None
    assert behind[1:] == kept
    assert store.changes_after(behind[0].cursor) == kept  # reading goes on from the reset
    for foreign in (MemoryStore().feed_end(), store.feed_end() + "9"):
        reset = store.changes_after(foreign)
        assert reset[0].kind is ChangeKind.RESET and reset[1:] == kept
    for malformed in ("nonsense", "1:2", ""):  # no store makes these: a caller's mistake
        with pytest.raises(SessionValidationError):
            store.changes_after(malformed)
    assert store.changes_after(kept[1].cursor) == kept[2:]  # kept events: no reset
    with pytest.raises(SessionValidationError):
        MemoryStore(retention=0)


def test_a_waiting_reader_wakes_on_the_next_write() -> None:
    store = MemoryStore()
    manager = SessionManager(store=store)
    cursor = store.feed_end()
    assert store.wait_for_change(cursor, 0.01) is False
    woke: list[bool] = []
    reader = threading.Thread(target=lambda: woke.append(store.wait_for_change(cursor, 30)))
    reader.start()
    manager.create_session("x", git_context=GIT)
    reader.join(30)
    assert woke == [True]
    # A cursor of another store is answered by a reset, at once.
    assert store.wait_for_change(MemoryStore().feed_end(), 30) is True


def test_a_create_key_returns_the_session_made_under_it_for_its_life() -> None:
    store = MemoryStore()
    manager = SessionManager(store=store)
    made = manager.create_session("x", git_context=GIT)
    again = dataclasses.replace(made, session_id=str(uuid.uuid4()))
    first = store.create(again, request_id="key")
    retried = store.create(
        dataclasses.replace(made, session_id=str(uuid.uuid4())), request_id="key"
    )
    assert retried == first and first.session_id == again.session_id
    assert len(store.changes_after(None)) == 2  # the retry wrote nothing
    store.delete(first.session_id)
    fresh = store.create(dataclasses.replace(made, session_id=str(uuid.uuid4())), request_id="key")
    assert fresh.session_id != first.session_id
