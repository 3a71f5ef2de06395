"""The contract every session store fulfils, and the query it answers.

A store persists whole session records.  It owns durability and concurrency:
``modify`` is a read-modify-write under the session's lock that re-reads the
record after taking the lock, checks ``expected_revision`` and bumps
``revision``.  All lifecycle rules live above it, in :class:`SessionManager`,
so every backend enforces them identically.

Required of every store: :class:`SessionStore` below.  Optional, and declared
in the store's ``capabilities`` (a frozenset of :class:`Capability`), never
discovered by probing for methods:

* ``PREFIX_LOOKUP`` -- ``session_ids(prefix)`` lists ids cheaply
  (:class:`PrefixLookup`);
* ``CHANGES`` -- a change feed (:class:`ChangeFeed`), written in the same
  transaction as the change;
* ``REINDEX`` -- a derived index that can be rebuilt from the records
  (:class:`Reindexable`);
* ``DOCTOR`` -- checks and repairs of the stored data (:class:`Doctor`);
* ``DIRECTORY_EXPORT`` -- export and import of whole session directories
  (other files of a session travel with its record; :class:`DirectoryExport`);
* ``MULTI_PROCESS`` -- safe for writers in several processes at once;
* ``MIGRATIONS`` -- a database schema with numbered upgrades (:class:`Migratable`);
* ``STAMPED_QUERIES`` -- a query answered with a stamp that later proves,
  cheaply, that the same query would give the same answer (:class:`StampedQueries`).

An operation a store does not declare raises
:class:`~maestro.errors.UnsupportedOperationError`.

Writes carry what the change feed and idempotent requests need: ``modify``
takes the ``kind`` of change (a :class:`ChangeKind`) and the caller's
``request_id``; ``create`` with a ``request_id`` reserves that key with the
new session, atomically, and returns the session already created under it
instead when there is one (its id then differs from the one passed in); a
transform passed to ``modify`` may raise :class:`NoChange` to write nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from maestro.errors import ConflictError, SessionValidationError, UnsupportedOperationError
from maestro.models import (
    SCHEMA_VERSION,
    Session,
    SessionPhase,
    SessionStatus,
    format_timestamp,
    parse_timestamp,
)

if TYPE_CHECKING:  # the reports and the search are loaded by the operations that use them
    from maestro.reports import AdoptResult, DoctorReport, ExportResult, ImportResult, Progress
    from maestro.search import SearchTerms

__all__ = [
    "Capability",
    "ChangeEvent",
    "ChangeFeed",
    "ChangeKind",
    "DirectoryExport",
    "Doctor",
    "Migratable",
    "NoChange",
    "PrefixLookup",
    "Reindexable",
    "ScanEntry",
    "SessionQuery",
    "SessionStore",
    "Transform",
    "apply_change",
    "check_request_id_type",
    "reported_kind",
    "require",
]

Transform = Callable[[Session], Session]
OrderBy = Literal["created", "updated", "rank"]


class Capability(StrEnum):
    """What a store offers beyond the required contract (see the module docstring)."""

    PREFIX_LOOKUP = "prefix_lookup"
    CHANGES = "changes"
    REINDEX = "reindex"
    DOCTOR = "doctor"
    DIRECTORY_EXPORT = "directory_export"
    MULTI_PROCESS = "multi_process"
    MIGRATIONS = "migrations"
    STAMPED_QUERIES = "stamped_queries"


def require(store: SessionStore, capability: Capability, operation: str) -> None:
    """Raise ``UnsupportedOperationError`` unless ``store`` declares ``capability``."""
    if capability not in store.capabilities:
        raise UnsupportedOperationError(
            operation, store.display_name, needs=f"the {capability.value} capability"
        )


class ChangeKind(StrEnum):
    """What a change event reports."""

    CREATED = "created"
    UPDATED = "updated"
    TRANSITIONED = "transitioned"
    PAUSED = "paused"
    RESUMED = "resumed"
    HEARTBEAT = "heartbeat"
    INCREMENTED = "incremented"
    DELETED = "deleted"
    #: A change made outside the library and noticed by the store (a
    #: restored directory, say); its revision may be lower than before.
    REPLACED = "replaced"
    #: The events after the reader's cursor are no longer kept (retention, a
    #: rebuilt index): the reader must re-read what it needs.  No session.
    RESET = "reset"


def reported_kind(kind: ChangeKind, from_status: str | None, to_status: str | None) -> ChangeKind:
    """The kind a change is reported as: an update that moved the status is a transition."""
    if kind is ChangeKind.UPDATED and from_status is not None and from_status != to_status:
        return ChangeKind.TRANSITIONED
    return kind


@dataclass(frozen=True)
class ChangeEvent:
    """One committed change, as the change feed reports it.

    ``cursor`` is opaque: pass it back as ``since`` to read what came after.
    ``from_status``/``to_status`` are the status before and after (equal when
    the status did not change; ``from_status`` is ``None`` on creation,
    ``to_status`` on deletion).
    """

    cursor: str
    kind: ChangeKind
    session_id: str | None
    revision: int | None
    from_status: str | None
    to_status: str | None
    at: datetime
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "kind": self.kind.value,
            "session_id": self.session_id,
            "revision": self.revision,
            "from_status": self.from_status,
            "to_status": self.to_status,
            "at": format_timestamp(self.at),
            "request_id": self.request_id,
        }


class NoChange(Exception):
    """Raised by a ``modify`` transform to store nothing.

    The store then returns the record as it is stored, with its revision
    unchanged and no change event.  A transform must raise it before it
    mutates the session it was given.
    """


def apply_change(
    session_id: str, current: Session, change: Transform, expected_revision: int | None
) -> Session | None:
    """What every store's ``modify`` does to the record it read under its lock.

    Checks ``expected_revision``, applies ``change`` (``None`` when it raised
    :class:`NoChange`: nothing is to be stored), keeps the id read-only and
    stamps the next revision and the current schema version.  Read anything
    needed of ``current`` first: ``change`` may return it changed in place.
    """
    if expected_revision is not None and expected_revision != current.revision:
        raise ConflictError(session_id, expected_revision, current.revision)
    revision = current.revision
    try:
        updated = change(current)
    except NoChange:
        return None
    if updated.session_id != session_id:
        raise SessionValidationError("session_id is read-only", session_id=session_id)
    updated.revision = revision + 1
    updated.schema_version = SCHEMA_VERSION
    return updated


def check_request_id_type(request_id: object) -> None:
    """A store's own guard: the manager checked the id's form, a direct caller may not have."""
    if request_id is not None and not isinstance(request_id, str):
        raise SessionValidationError("request_id must be a string")


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


@dataclass(frozen=True)
class ScanEntry:
    """One session directory seen by a full scan: its record or why it has none."""

    session_id: str
    session: Session | None
    error: Exception | None


@runtime_checkable
class SessionStore(Protocol):
    """Persistence of session records (see the module docstring)."""

    #: The optional parts of the contract this store offers.
    capabilities: frozenset[Capability]
    #: A short name for messages: "file store", "memory store".
    display_name: str

    def load(self, session_id: str) -> Session:
        """The stored session; ``SessionNotFoundError`` / ``CorruptSessionError``."""
        ...

    def create(self, session: Session, *, request_id: str | None = None) -> Session:
        """Store a new session with revision 1; ``SessionExistsError`` if the id is taken.

        With ``request_id``, the key is reserved together with the session;
        when a session was already created under that key, it is returned as
        stored and nothing is written.
        """
        ...

    def modify(
        self,
        session_id: str,
        change: Transform,
        *,
        expected_revision: int | None = None,
        kind: ChangeKind = ChangeKind.UPDATED,
        request_id: str | None = None,
    ) -> Session:
        """Apply ``change`` to the freshly read record under the lock and store it.

        ``change`` may raise :class:`NoChange`: nothing is stored and the
        record is returned as it is.  It may be called more than once (a
        store may try it on a version it remembers before reading the row):
        only the result stored counts, so it acts on nothing but the session
        it is given.  ``kind`` and ``request_id`` describe
        the change for the change feed; an ``UPDATED`` change that moves the
        status is reported as ``TRANSITIONED`` (:func:`reported_kind`).
        """
        ...

    def delete(
        self,
        session_id: str,
        *,
        expected_revision: int | None = None,
        request_id: str | None = None,
    ) -> None:
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


class PrefixLookup(Protocol):
    """``Capability.PREFIX_LOOKUP``."""

    def session_ids(self, prefix: str = "") -> list[str]:
        """The ids starting with ``prefix``, sorted."""
        ...


class Reindexable(Protocol):
    """``Capability.REINDEX``: a derived index rebuilt from the records."""

    def rebuild_index(self) -> int:
        """Rebuild the whole index; returns the rows written."""
        ...

    def reindex(self, session_ids: list[str]) -> int:
        """Re-read these sessions into the index; returns the rows written."""
        ...


class DirectoryExport(Protocol):
    """``Capability.DIRECTORY_EXPORT``: whole session directories to and from an archive."""

    def export_sessions(
        self,
        sessions: Iterable[Session],
        target: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> ExportResult:
        """Write these sessions, with every file stored beside them, to ``target``."""
        ...

    def import_sessions(
        self,
        source: str | os.PathLike[str],
        *,
        max_file_bytes: int | None = None,
        max_total_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Bring in an export: checked whole first, the higher revision wins."""
        ...

    def adopt_sessions(self, sessions_dir: str | os.PathLike[str], *, move: bool) -> AdoptResult:
        """The session directories of another store of this kind at ``sessions_dir``.

        With ``move``, each is moved here whole (every file of it), under its
        lock; an id this store holds too is reported, never overwritten, and
        a session whose lock is busy stays for a later call.
        """
        ...

    def session_directory(self, session_id: str) -> Path:
        """The directory holding the session's files (whether it exists or not)."""
        ...


class Migratable(Protocol):
    """``Capability.MIGRATIONS``: a schema brought up to date by numbered steps."""

    def upgrade_schema(self) -> tuple[int, int]:
        """Apply the missing steps: (the version this process found, the version now)."""
        ...

    def health(self) -> dict[str, str]:
        """Short facts about the engine (schema version, connections...), for doctor."""
        ...


class Doctor(Protocol):
    """``Capability.DOCTOR``: checks and repairs of the stored data."""

    def doctor(
        self, *, fix: bool = False, reindex: bool = False, progress: Progress | None = None
    ) -> DoctorReport:
        """What is wrong with the stored data; with ``fix``, repaired."""
        ...


class StampedQueries(Protocol):
    """``Capability.STAMPED_QUERIES``: answers that can be proven current later.

    ``query_stamped`` answers ``query`` (a window from its start: ``offset``
    0), and with ``count`` how many sessions match its filters in all
    (beyond the window and the keyset bound), after one look at how fresh
    the store is; its stamp is ``None`` when it cannot vouch for the answer.
    ``is_current(stamp)`` is True only if the same call would give the same
    answer now, also after writes by other processes and edits by hand.
    """

    def query_stamped(
        self, query: SessionQuery, *, count: bool = False
    ) -> tuple[list[Session], int | None, object | None]:
        """The sessions, the count if asked (else ``None``), and the stamp."""
        ...

    def is_current(self, stamp: object) -> bool:
        """Whether the call that gave ``stamp`` would give the same answer now."""
        ...


class ChangeFeed(Protocol):
    """``Capability.CHANGES``: the committed changes, in commit order.

    ``changes_after(None)`` starts at the oldest kept event.  When events
    after ``cursor`` are no longer kept, or ``cursor`` belongs to another
    history (a rebuilt index), the first event returned is a ``RESET`` whose
    cursor is the point reading continues from.  A string that is no cursor
    at all raises ``SessionValidationError``.
    """

    def changes_after(self, cursor: str | None, *, limit: int = 1000) -> list[ChangeEvent]:
        """Up to ``limit`` events after ``cursor``, oldest first."""
        ...

    def feed_end(self) -> str:
        """The cursor of the newest event (reading from it yields only later ones)."""
        ...

    def wait_for_change(self, cursor: str, timeout: float) -> bool:
        """Block until an event after ``cursor`` may exist, or ``timeout`` seconds pass."""
        ...
