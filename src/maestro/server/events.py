"""``GET /api/v1/events``: the change feed as server-sent events.

One thread per server follows the feed, keeps the latest events it read and
rings a doorbell for every open stream when something was committed; each
stream then takes the events after its own cursor, from those kept when its
cursor is among them, else from the feed (``manager.changes(since=...)``).
The feed is the truth, the doorbell only says when to look, so a stream that
connects, resumes with ``Last-Event-ID`` or misses a ring loses nothing; and
a hundred streams cost one waiting thread and one read per commit, not a
hundred.

Each event is ``id: CURSOR`` and ``data: {...}`` (``ChangeEvent.to_dict()``);
a comment line every ``keepalive`` seconds keeps proxies from closing an
idle stream.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator

import anyio.to_thread
import orjson

from maestro import ChangeEvent
from maestro.errors import SessionError
from maestro.feedfilter import ChangeFilter
from maestro.lazylog import LazyLogger
from maestro.manager import SessionManager

__all__ = ["FeedHub", "event_stream"]

log = LazyLogger("maestro.server")


class FeedHub:
    """Rings every subscriber's doorbell after each commit the feed reports."""

    def __init__(self, manager: SessionManager, *, poll: float = 1.0, keep: int = 2048) -> None:
        self.manager = manager
        self.poll = poll
        self.closed = False
        # The events read since ``_base``, the cursor the thread started from.
        self._recent: deque[ChangeEvent] = deque(maxlen=keep)
        self._positions: dict[str, int] = {}
        self._dropped = 0
        self._base: str | None = None
        self._bells: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def subscribe(self) -> asyncio.Event:
        bell = asyncio.Event()
        with self._lock:
            self._bells.add((asyncio.get_running_loop(), bell))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._follow, name="maestro-feed", daemon=True
                )
                self._thread.start()
        return bell

    def unsubscribe(self, bell: asyncio.Event) -> None:
        with self._lock:
            self._bells = {(loop, b) for loop, b in self._bells if b is not bell}

    def ring(self) -> None:
        with self._lock:
            bells = list(self._bells)
        for loop, bell in bells:
            try:
                loop.call_soon_threadsafe(bell.set)
            except RuntimeError:
                self.unsubscribe(bell)  # its loop is gone

    def close(self) -> None:
        """End every stream and the following thread."""
        self.closed = True
        self._stop.set()
        self.ring()

    def after(self, cursor: str) -> list[ChangeEvent] | None:
        """The events after ``cursor`` when it is one the hub still holds, else ``None``."""
        with self._lock:
            if cursor == self._base:
                return list(self._recent) if self._dropped == 0 else None
            position = self._positions.get(cursor)
            if position is None or position < self._dropped:
                return None
            return list(self._recent)[position - self._dropped + 1 :]

    def _keep(self, event: ChangeEvent) -> None:
        with self._lock:
            if len(self._recent) == self._recent.maxlen:
                gone = self._recent.popleft()
                del self._positions[gone.cursor]
                self._dropped += 1
            self._positions[event.cursor] = self._dropped + len(self._recent)
            self._recent.append(event)

    def _restart(self, cursor: str) -> None:
        with self._lock:
            self._recent.clear()
            self._positions.clear()
            self._dropped = 0
            self._base = cursor

    def _follow(self) -> None:
        cursor: str | None = None
        while not self._stop.is_set():
            try:
                if cursor is None:
                    cursor = self.manager.changes_cursor()
                    self._restart(cursor)
                events = self.manager.changes(cursor, follow=True, timeout=self.poll)
                try:
                    for event in events:
                        cursor = event.cursor
                        self._keep(event)
                        self.ring()
                        if self._stop.is_set():
                            break
                finally:
                    events.close()
            except SessionError as error:
                log.warning("change feed: %s", error)
                cursor = None
                self._stop.wait(self.poll)


def read_after(manager: SessionManager, cursor: str) -> list[ChangeEvent]:
    """Every event after ``cursor`` (what is there now; no waiting)."""
    events = manager.changes(cursor, follow=False)
    try:
        return list(events)
    finally:
        events.close()


def _judged(wanted: ChangeFilter, batch: list[ChangeEvent]) -> list[ChangeEvent]:
    return [event for event in batch if wanted(event)]


def _frame(event: ChangeEvent) -> bytes:
    return b"id: " + event.cursor.encode() + b"\ndata: " + orjson.dumps(event.to_dict()) + b"\n\n"


async def event_stream(
    hub: FeedHub,
    cursor: str,
    first: list[ChangeEvent],
    *,
    wanted: ChangeFilter,
    keepalive: float,
) -> AsyncIterator[bytes]:
    """The stream of one client, from ``cursor`` (``first``: what was read already).

    ``wanted`` is the client's own filter; when it reads sessions, each batch
    is judged in a worker thread.
    """
    bell = hub.subscribe()
    manager = hub.manager
    try:
        # Tells EventSource how soon to reconnect; the comment opens the stream at once.
        yield b"retry: 2000\n: connected\n\n"
        batch = first
        while True:
            if batch:
                cursor = batch[-1].cursor
                if wanted.needs_sessions:
                    passed = await anyio.to_thread.run_sync(_judged, wanted, batch)
                else:
                    passed = [event for event in batch if wanted(event)]
                for event in passed:
                    yield _frame(event)
            if hub.closed:
                return
            try:
                await asyncio.wait_for(bell.wait(), timeout=keepalive)
            except TimeoutError:
                yield b": keep-alive\n\n"
            bell.clear()  # before reading: a commit after the read rings again
            if hub.closed:
                return
            kept = hub.after(cursor)
            batch = (
                kept
                if kept is not None
                else await anyio.to_thread.run_sync(read_after, manager, cursor)
            )
    finally:
        hub.unsubscribe(bell)
