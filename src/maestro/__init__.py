"""maestro: the session manager of an autonomous coding orchestrator.

Every orchestrator run is a *session*, stored durably as one JSON file per
session under ``<root>/.flow/maestro/sessions/<id>/metadata.json``::

    from maestro import SessionManager, SessionStatus

    manager = SessionManager()                    # root: MAESTRO_ROOT, repository, cwd
    session = manager.create_session("Add OAuth login")
    manager.transition_state(session.session_id, SessionStatus.PLANNING)
    manager.increment_statistics(session.session_id, total_tasks=8)
    manager.query_sessions(status="planning", limit=10)
    page = manager.query_page(limit=50)          # next: cursor=page.next_cursor
"""

from maestro.errors import (
    AmbiguousSessionIdError,
    ConflictError,
    CorruptSessionError,
    InvalidSessionIdError,
    InvalidTransitionError,
    LockTimeoutError,
    SessionError,
    SessionExistsError,
    SessionNotFoundError,
    SessionValidationError,
    StorageError,
    UnsafePathError,
    UnsupportedOperationError,
)
from maestro.manager import SessionManager

#: Set by type checkers only (:mod:`typing` itself is not loaded to start).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from maestro.models import (
        GitContext,
        PRDReference,
        Session,
        SessionConfiguration,
        SessionPhase,
        SessionStatistics,
        SessionStatus,
        StateChange,
    )
    from maestro.pages import SessionPage
    from maestro.phases import Phase, RunState, Terminated, WorkerAliveError
    from maestro.stores.base import (
        Capability,
        ChangeEvent,
        ChangeKind,
        SessionQuery,
        SessionStore,
    )
    from maestro.stores.files import FileSessionStore
    from maestro.timeline import SessionTimeline

__version__ = "0.1.0"

#: Public names loaded on first use, so that ``from maestro import
#: SessionManager`` does not pay for them (a command line call is a process):
#: the models and the store contract load :mod:`dataclasses` and :mod:`typing`.
_LAZY = {
    "Capability": "maestro.stores.base",
    "ChangeEvent": "maestro.stores.base",
    "ChangeKind": "maestro.stores.base",
    "FileSessionStore": "maestro.stores.files",
    "GitContext": "maestro.models",
    "PRDReference": "maestro.models",
    "Phase": "maestro.phases",
    "RunState": "maestro.phases",
    "Session": "maestro.models",
    "SessionConfiguration": "maestro.models",
    "SessionPage": "maestro.pages",
    "SessionPhase": "maestro.models",
    "SessionQuery": "maestro.stores.base",
    "SessionStatistics": "maestro.models",
    "SessionStatus": "maestro.models",
    "SessionStore": "maestro.stores.base",
    "SessionTimeline": "maestro.timeline",
    "StateChange": "maestro.models",
    "Terminated": "maestro.phases",
    "WorkerAliveError": "maestro.phases",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'maestro' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AmbiguousSessionIdError",
    "Capability",
    "ChangeEvent",
    "ChangeKind",
    "ConflictError",
    "CorruptSessionError",
    "FileSessionStore",
    "GitContext",
    "InvalidSessionIdError",
    "InvalidTransitionError",
    "LockTimeoutError",
    "PRDReference",
    "Phase",
    "RunState",
    "Session",
    "SessionConfiguration",
    "SessionError",
    "SessionExistsError",
    "SessionManager",
    "SessionNotFoundError",
    "SessionPage",
    "SessionPhase",
    "SessionQuery",
    "SessionStatistics",
    "SessionStatus",
    "SessionStore",
    "SessionTimeline",
    "SessionValidationError",
    "StateChange",
    "StorageError",
    "Terminated",
    "UnsafePathError",
    "UnsupportedOperationError",
    "WorkerAliveError",
    "__version__",
]
