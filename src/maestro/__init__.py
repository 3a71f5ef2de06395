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
