"""The contract every session store fulfils, and the query it answers.

A store persists whole session records.  It owns durability and concurrency:
``modify`` is a read-modify-write under the session's lock that re-reads the
record after taking the lock, checks ``expected_revision`` and bumps
``revision``.  All lifecycle rules live above it, in :class:`SessionManager`,
so every backend enforces them identically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from maestro.errors import SessionValidationError
from maestro.models import Session, SessionPhase, SessionStatus, parse_timestamp
from maestro.search import SearchTerms, parse_search

__all__ = ["ScanEntry", "SessionQuery", "SessionStore", "Transform"]

Transform = Callable[[Session], Session]
OrderBy = Literal["created", "updated", "rank"]


def _as_set(
    value: object, enum: type[SessionStatus] | type[SessionPhase], name: str
) -> frozenset[str] | None:
    if value is None:
        return None
    items: Iterable[object] = (
        [value] if isinstance(value, str) else value  # type: ignore[assignment]
    )
    try:
        members = list(items)
    except TypeError:
        raise SessionValidationError(f"{name} must be a value or a list of values") from None
    result: set[str] = set()
    for item in members:
        try:
            result.add(enum(item if isinstance(item, str) else str(item)).value)
        except ValueError:
            choices = ", ".join(member.value for member in enum)
            raise SessionValidationError(f"{name} must be among {choices}") from None
    return frozenset(result)


def _as_time(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str | datetime):
        raise SessionValidationError(f"{name} must be a datetime or an ISO 8601 string")
    return parse_timestamp(value, name=name)


@dataclass(frozen=True)
class SessionQuery:
    """Filters, order and window of a session query.

    Every filter is optional; given ones must all hold.  Time bounds are
    inclusive and compared as instants; ``active_before`` bounds the last
    activity (creation, update or heartbeat, whichever is latest).  ``text``
    requires every word of a full-text search (see :mod:`maestro.search`).
    Results are ordered by
    ``order_by``: creation (the default), last update, or search rank (the
    default when ``text`` is given; best match first, then newest), newest
    first unless ``descending`` is false, with the session id breaking ties
    so that pages never overlap.
    """

    statuses: frozenset[str] | None = None
    phases: frozenset[str] | None = None
    branch: str | None = None
    worktree: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    active_before: datetime | None = None
    text: SearchTerms | None = None
    order_by: OrderBy = "created"
    descending: bool = True
    limit: int | None = None
    offset: int = 0

    @classmethod
    def build(
        cls,
        *,
        status: object = None,
        phase: object = None,
        branch: str | None = None,
        worktree: str | None = None,
        created_after: object = None,
        created_before: object = None,
        updated_after: object = None,
        updated_before: object = None,
        active_before: object = None,
        text: str | None = None,
        order_by: str | None = None,
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> SessionQuery:
        """Check and normalise user-supplied filters (strings, enums, lists)."""
        terms = None if text is None else parse_search(text)
        if order_by is None:
            order_by = "created" if terms is None else "rank"
        if order_by not in ("created", "updated", "rank"):
            raise SessionValidationError("order_by must be 'created', 'updated' or 'rank'")
        if order_by == "rank" and terms is None:
            raise SessionValidationError("order_by='rank' needs a text search")
        for name, number in (("limit", limit), ("offset", offset)):
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, int) or number < 0
            ):
                raise SessionValidationError(f"{name} must be a non-negative integer")
        for name, text in (("branch", branch), ("worktree", worktree)):
            if text is not None and not isinstance(text, str):
                raise SessionValidationError(f"{name} must be a string")
        return cls(
            statuses=_as_set(status, SessionStatus, "status"),
            phases=_as_set(phase, SessionPhase, "phase"),
            branch=branch,
            worktree=worktree,
            created_after=_as_time(created_after, "created_after"),
            created_before=_as_time(created_before, "created_before"),
            updated_after=_as_time(updated_after, "updated_after"),
            updated_before=_as_time(updated_before, "updated_before"),
            active_before=_as_time(active_before, "active_before"),
            text=terms,
            order_by="rank"
            if order_by == "rank"
            else "updated"
            if order_by == "updated"
            else "created",
            descending=bool(descending),
            limit=limit,
            offset=offset,
        )

    def matches(self, session: Session) -> bool:
        """Whether ``session`` passes every filter of this query."""
        if self.statuses is not None and session.status.value not in self.statuses:
            return False
        if self.phases is not None and (
            session.current_phase is None or session.current_phase.value not in self.phases
        ):
            return False
        if self.branch is not None and session.git_context.branch != self.branch:
            return False
        if self.worktree is not None and session.git_context.worktree_name != self.worktree:
            return False
        if self.created_after is not None and session.created_at < self.created_after:
            return False
        if self.created_before is not None and session.created_at > self.created_before:
            return False
        updated = session.updated_at or session.created_at
        if self.updated_after is not None and updated < self.updated_after:
            return False
        if self.updated_before is not None and updated > self.updated_before:
            return False
        if self.active_before is not None and session.last_activity > self.active_before:
            return False
        return self.text is None or self.text.matches(session.feature_request)

    def sort_key(self, session: Session) -> tuple[datetime, str]:
        moment = session.created_at
        if self.order_by == "updated":
            moment = session.updated_at or session.created_at
        return (moment, session.session_id)

    def window(self, ordered: list[Session]) -> list[Session]:
        """Apply ``offset`` and ``limit`` to already ordered results."""
        end = None if self.limit is None else self.offset + self.limit
        return ordered[self.offset : end]

    def apply(self, sessions: Iterable[Session]) -> list[Session]:
        """Filter, order and window ``sessions``: the reference answer of any store.

        Without an index there is no search rank; ``order_by="rank"`` then
        orders by creation.
        """
        chosen = [s for s in sessions if self.matches(s)]
        chosen.sort(key=self.sort_key, reverse=self.descending)
        return self.window(chosen)


@dataclass(frozen=True)
class ScanEntry:
    """One session directory seen by a full scan: its record or why it has none."""

    session_id: str
    session: Session | None
    error: Exception | None


@runtime_checkable
class SessionStore(Protocol):
    """Persistence of session records (see the module docstring)."""

    def load(self, session_id: str) -> Session:
        """The stored session; ``SessionNotFoundError`` / ``CorruptSessionError``."""
        ...

    def create(self, session: Session) -> Session:
        """Store a new session with revision 1; ``SessionExistsError`` if the id is taken."""
        ...

    def modify(
        self, session_id: str, change: Transform, *, expected_revision: int | None = None
    ) -> Session:
        """Apply ``change`` to the freshly read record under the lock and store it."""
        ...

    def delete(self, session_id: str, *, expected_revision: int | None = None) -> None:
        """Remove the session and everything stored with it."""
        ...

    def query(self, query: SessionQuery) -> list[Session]:
        """Sessions matching ``query``, ordered and windowed; unreadable ones skipped."""
        ...

    def count(self, query: SessionQuery) -> int:
        """How many sessions match ``query``'s filters (its window ignored)."""
        ...

    def scan(self) -> Iterator[ScanEntry]:
        """Every session the store holds, readable or not, in no particular order."""
        ...
