"""The parts of the store contract every store and the manager use as they run.

What a store declares it offers (:class:`Capability`), what a change is
(:class:`ChangeKind`), and the read-modify-write step every ``modify``
shares (:func:`apply_change`).  :mod:`maestro.stores.base` states the whole
contract and re-exports these; they live here so that the paths that only
read a session load neither :mod:`typing` nor the contract's dataclasses.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from maestro.errors import ConflictError, SessionValidationError, UnsupportedOperationError
from maestro.models import SCHEMA_VERSION, Session

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from maestro.stores.base import SessionStore

__all__ = [
    "Capability",
    "ChangeKind",
    "NoChange",
    "Transform",
    "apply_change",
    "check_request_id_type",
    "reported_kind",
    "require",
]

Transform = Callable[[Session], Session]


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
