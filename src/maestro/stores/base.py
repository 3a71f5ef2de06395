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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from maestro.models import Session
from maestro.stores.events import ChangeEvent
from maestro.stores.kinds import (
    Capability,
    ChangeKind,
    NoChange,
    Transform,
    apply_change,
    check_request_id_type,
    reported_kind,
    require,
)
from maestro.stores.query import SessionQuery

if TYPE_CHECKING:  # the reports are loaded by the operations that use them
    from maestro.reports import AdoptResult, DoctorReport, ExportResult, ImportResult, Progress

__all__ = [
    "Capability",
    "ChangeEvent",
    "ChangeFeed",
    "ChangeKind",
    "DirectoryExport",
    "Doctor",
    "Migratable",
    "NoChange",
    "OrderBy",
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

OrderBy = Literal["created", "updated", "rank"]


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
