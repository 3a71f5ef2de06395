"""Which change events a reader wants: by the event's fields, and by its session's.

A :class:`ChangeEvent` names its session, the kind of change and the status
after it; it carries no branch, phase, worktree, dates or request.  Filters on
those are answered by the session itself, as it is when the event is read (a
reader catching up on old events sees them judged by the sessions' current
state).  A session that matched earlier in the same read and no longer does
(it moved to another branch or phase) or is gone gives one more event, so a
live view of the filtered sessions can drop it; after that its events pass
only when it matches again.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from maestro.models import Session
from maestro.stores.base import ChangeEvent, ChangeKind, SessionQuery

__all__ = ["ChangeFilter"]


class ChangeFilter:
    """A predicate over change events; ``reset`` events always pass.

    ``load`` reads a session (``None`` when it is gone or unreadable); it is
    only called when ``query`` is given, so :attr:`needs_sessions` tells a
    caller whether a check may read the store.
    """

    def __init__(
        self,
        load: Callable[[str], Session | None],
        *,
        session_id: str | None = None,
        statuses: Collection[str] | None = None,
        kinds: Collection[str] | None = None,
        query: SessionQuery | None = None,
    ) -> None:
        self._load = load
        self.session_id = session_id
        self.statuses = statuses
        self.kinds = kinds
        self.query = query
        #: Sessions whose last judged event matched ``query``.
        self._inside: set[str] = set()

    @property
    def needs_sessions(self) -> bool:
        """Whether judging an event may read its session (blocking I/O)."""
        return self.query is not None

    def __call__(self, event: ChangeEvent) -> bool:
        if event.kind is ChangeKind.RESET:
            self._inside.clear()  # what was seen before the gap is unknown now
            return True
        if not (
            (self.session_id is None or event.session_id == self.session_id)
            and (self.statuses is None or event.to_status in self.statuses)
            and (self.kinds is None or event.kind.value in self.kinds)
        ):
            return False
        if self.query is None:
            return True
        sid = event.session_id
        if sid is None:
            return False
        session = None if event.kind is ChangeKind.DELETED else self._load(sid)
        if session is not None and self.query.matches(session):
            self._inside.add(sid)
            return True
        if sid in self._inside:  # it leaves the filtered view: say so once
            self._inside.discard(sid)
            return True
        return False
