"""The exception tree: built-in bases, messages, and survival across processes."""

from __future__ import annotations

import json
import pickle

import pytest

import maestro
from maestro import errors


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (errors.SessionNotFoundError("s"), (FileNotFoundError, OSError)),
        (errors.InvalidSessionIdError("../x"), (FileNotFoundError, ValueError)),
        (errors.SessionValidationError("bad"), (ValueError,)),
        (
            errors.InvalidTransitionError("s", "a", "b", ()),
            (errors.SessionValidationError, ValueError),
        ),
        (errors.CorruptSessionError("s", "bad"), (json.JSONDecodeError, ValueError)),
        (errors.ConflictError("s", 1, 2), ()),
        (
            errors.AmbiguousSessionIdError("abcdef", ["a", "b"]),
            (errors.SessionValidationError, ValueError),
        ),
        (errors.SessionExistsError("s"), (FileExistsError,)),
        (errors.LockTimeoutError("s", 1.0), (TimeoutError,)),
        (errors.UnsafePathError("s", "link"), (PermissionError,)),
        (errors.StorageError("s", "write", OSError(28, "full")), (OSError,)),
        (errors.StorageError("s", "write", RuntimeError("server gone")), (OSError,)),
        (errors.UnsupportedOperationError("reindex", "memory store"), (ValueError,)),
    ],
)
def test_every_error_is_a_session_error_and_its_builtin(
    error: Exception, bases: tuple[type[BaseException], ...]
) -> None:
    assert isinstance(error, errors.SessionError)
    for base in bases:
        assert isinstance(error, base)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error)
    assert getattr(copy, "session_id", None) == getattr(error, "session_id", None)


def test_the_tree_is_drawn_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, name


def test_storage_error_keeps_errno() -> None:
    error = errors.StorageError("s", "writing", OSError(28, "No space left on device"))
    assert error.errno == 28 and "No space left" in str(error)


def test_storage_error_takes_any_cause() -> None:
    """A database driver's error becomes EIO with the first line of its message."""
    cause = RuntimeError("connection refused\nDETAIL: host 10.0.0.1")
    error = errors.StorageError(None, "saving the session", cause, committed=True)
    assert error.errno == 5 and error.committed
    assert str(error) == "saving the session failed: connection refused"


def test_corrupt_error_names_where_the_record_lives() -> None:
    error = errors.CorruptSessionError("s", "bad JSON", where="row sessions(s)")
    assert str(error) == "session s: row sessions(s) is unreadable: bad JSON"
    assert error.where == "row sessions(s)"


def test_public_names_are_pinned() -> None:
    assert set(maestro.__all__) == {
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
    }
    for name in maestro.__all__:
        assert hasattr(maestro, name)
