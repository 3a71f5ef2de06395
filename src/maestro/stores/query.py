"""The query a store answers: filters, order and window (:class:`SessionQuery`).

Re-exported by :mod:`maestro.stores.base`; only the operations that query
load it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from maestro.errors import SessionValidationError
from maestro.models import Session, SessionPhase, SessionStatus, parse_timestamp
from maestro.records import record

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from maestro.search import SearchTerms
    from maestro.stores.base import OrderBy

__all__ = ["SessionQuery"]


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
        raise SessionValidationError(
            f'{name} must be one value or a list of them, such as ["planning", "failed"]'
        ) from None
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
        raise SessionValidationError(
            f"{name} must be an ISO 8601 timestamp such as 2026-01-07T13:02:57Z"
        )
    return parse_timestamp(value, name=name)


def _as_bound(value: object) -> tuple[datetime, str]:
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not isinstance(value[0], datetime)
        or value[0].tzinfo is None
        or not isinstance(value[1], str)
    ):
        raise SessionValidationError("after must be (an aware datetime, a session id)")
    return (value[0], value[1])


@record(frozen=True)
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

    ``after`` is a keyset bound: the sort key (time, session id) of the last
    session of the previous page; only sessions strictly beyond it in the
    query's order match.  It needs a time order (``created`` or
    ``updated``): a search rank is no stable key.
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
    after: tuple[datetime, str] | None = None
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
        after: tuple[datetime, str] | None = None,
    ) -> SessionQuery:
        """Check and normalise user-supplied filters (strings, enums, lists)."""
        if text is None:
            terms = None
        else:
            from maestro.search import parse_search

            terms = parse_search(text)
        if order_by is None:
            order_by = "created" if terms is None else "rank"
        if order_by not in ("created", "updated", "rank"):
            raise SessionValidationError("order_by must be 'created', 'updated' or 'rank'")
        if order_by == "rank" and terms is None:
            raise SessionValidationError("order_by='rank' needs a text search")
        if after is not None:
            after = _as_bound(after)
            if order_by == "rank":
                raise SessionValidationError(
                    "pages by cursor need order_by 'created' or 'updated': "
                    "a search rank is no stable key"
                )
        for name, number in (("limit", limit), ("offset", offset)):
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, int) or number < 0
            ):
                raise SessionValidationError(
                    f"{name} must be a whole number of at least 0, such as 20"
                )
        for name, text in (("branch", branch), ("worktree", worktree)):
            if text is not None and not isinstance(text, str):
                raise SessionValidationError(f'{name} must be text, such as "main"')
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
            after=after,
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
        if self.after is not None:
            key = self.sort_key(session)
            if (key >= self.after) if self.descending else (key <= self.after):
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
