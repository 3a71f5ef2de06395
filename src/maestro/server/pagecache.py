"""The JSON of recent list pages, answered again while the manager proves it current.

``GET /api/v1/sessions`` is what a dashboard and most scripts ask, again
and again, of a store that mostly did not change.  The route keeps the JSON
it made of each page (by its query string), with the page's stamp; the next
request for the same query string is answered with those bytes when
:meth:`SessionManager.page_is_current` holds, asked when that request
arrives: nothing was written to the store since, from any process, and no
session of the page was changed on disk (a ``stat`` each).  A fresh answer
would then be the very same bytes; otherwise the route makes one.  That
check is cheap enough to make in the event loop, without the thread hop of
the route.

Only a query string asked before has its answer kept: pages asked once
(a script walking every page by cursor, a search typed once) would
otherwise push out the few a dashboard asks again and again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from maestro.manager import SessionManager
from maestro.pages import SessionPage
from maestro.records import replace
from maestro.server.security import ASGIApp, Receive, Scope, Send

__all__ = ["LIST_PATH", "PageCache"]

#: The route whose answers are kept.
LIST_PATH = "/api/v1/sessions"
#: Query strings whose answers are kept, the most recently used.
SIZE = 64
#: Query strings remembered as asked once, the most recent.
SEEN = 1024
#: A larger answer (pages of hundreds of long requests) is not kept.
MAX_KEPT_BYTES = 1024 * 1024


class PageCache:
    """The bytes of the last answers of :data:`LIST_PATH`, by query string."""

    def __init__(self, manager: SessionManager, size: int = SIZE) -> None:
        self._manager = manager
        self._size = size
        self._entries: OrderedDict[bytes, tuple[SessionPage, bytes]] = OrderedDict()
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, query_string: bytes) -> bytes | None:
        """The answer kept for ``query_string``, if its page is current now."""
        entry = self._entries.get(query_string)
        if entry is None:
            return None
        page, body = entry
        try:
            current = self._manager.page_is_current(page)
        except Exception:  # noqa: BLE001 - anything unproven is answered afresh
            current = False
        if not current:
            with self._lock:
                if self._entries.get(query_string) is entry:
                    del self._entries[query_string]
                    self._remember(query_string)  # asked before: the next answer is kept
            return None
        return body

    def keep(self, query_string: bytes, page: SessionPage, body: bytes) -> None:
        """Remember the answer ``body`` made of ``page``, if its query string was asked before.

        Only a page with a stamp, and not too large, is kept.
        """
        with self._lock:
            if query_string not in self._entries and query_string not in self._seen:
                self._remember(query_string)  # asked once so far: remembered, not kept
                return
            if page.stamp is None or len(body) > MAX_KEPT_BYTES:
                return
            self._seen.pop(query_string, None)
            # The stamp is all the page is kept for.
            self._entries[query_string] = (replace(page, sessions=[]), body)
            self._entries.move_to_end(query_string)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def _remember(self, query_string: bytes) -> None:
        self._seen[query_string] = None
        self._seen.move_to_end(query_string)
        while len(self._seen) > SEEN:
            self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def serve_kept(app: ASGIApp, cache: PageCache, answer: Any) -> ASGIApp:
    """``app``, with ``GET`` :data:`LIST_PATH` answered from ``cache`` when it can be.

    ``answer(body)`` makes the response of a page's JSON, as the route does.
    """

    async def kept(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == LIST_PATH:
            body = cache.get(scope.get("query_string", b""))
            if body is not None:
                await answer(body)(scope, receive, send)
                return
        await app(scope, receive, send)

    return kept
