"""The exceptions maestro raises.

Every error derives from :class:`SessionError` *and* from the built-in
exception that code written against the original prototype already catches,
so ``except FileNotFoundError`` or ``except ValueError`` keep working::

    SessionError (Exception)
    ├── SessionNotFoundError (FileNotFoundError)    no such session / metadata.json
    │   └── InvalidSessionIdError (ValueError)      malformed id, refused before any I/O
    ├── SessionValidationError (ValueError)         unknown or read-only field, wrong type,
    │   │                                           out-of-range value, bad enum value,
    │   │                                           record failing the JSON Schema
    │   ├── InvalidTransitionError                  transition not in the whitelist
    │   └── AmbiguousSessionIdError                 an id prefix matching several sessions
    ├── CorruptSessionError (json.JSONDecodeError)  stored record unreadable or invalid
    ├── ConflictError                               expected_revision did not match, or a
    │                                               request id came back with other arguments
    ├── SessionExistsError (FileExistsError)        a session with that id already exists
    ├── LockTimeoutError (TimeoutError)             per-session lock not acquired in time
    ├── UnsafePathError (PermissionError)           symlink or path escaping the store
    ├── UnsupportedOperationError (ValueError)      the store in use lacks the capability
    └── StorageError (OSError)                      the disk or database refused an operation
        └── StoreUnavailableError                   the database cannot be used: unreachable,
                                                    login refused, no such database, or a
                                                    schema newer than this code

``InvalidSessionIdError`` is both a ``ValueError`` and a not-found error, the
way :class:`io.UnsupportedOperation` is both ``OSError`` and ``ValueError``.
``CorruptSessionError`` is a ``json.JSONDecodeError`` and therefore also a
``ValueError``.

Messages name the session id and the field at fault; they never quote the
feature request or the contents of a file.
"""

from __future__ import annotations

import errno as _errno
import json

__all__ = [
    "AmbiguousSessionIdError",
    "ConflictError",
    "CorruptSessionError",
    "InvalidSessionIdError",
    "InvalidTransitionError",
    "LockTimeoutError",
    "SessionError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionValidationError",
    "StorageError",
    "StoreUnavailableError",
    "UnsafePathError",
    "UnsupportedOperationError",
]

_MAX_ID_IN_MESSAGE = 60


def describe_id(value: object) -> str:
    """A short, printable rendering of an id that may be hostile input."""
    text = repr(value)
    if len(text) > _MAX_ID_IN_MESSAGE:
        text = text[: _MAX_ID_IN_MESSAGE - 4] + "...'"
    return text


def _restore(cls: type[SessionError], args: tuple[object, ...], state: dict[str, object]) -> object:
    error = cls.__new__(cls)
    if isinstance(error, OSError):
        OSError.__init__(error, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class SessionError(Exception):
    """Root of every error raised by maestro."""

    session_id: str | None = None

    def __reduce__(self) -> tuple[object, ...]:
        # The subclasses' constructors take other arguments than ``args``;
        # rebuild from the attributes so errors cross process boundaries intact.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class SessionNotFoundError(SessionError, FileNotFoundError):
    """The session, its directory or its ``metadata.json`` does not exist."""

    def __init__(self, session_id: str, detail: str = "") -> None:
        message = f"session {session_id} not found"
        if detail:
            message = f"{message}: {detail}"
        super().__init__(_errno.ENOENT, message)
        self.session_id = session_id

    def __str__(self) -> str:
        return str(self.strerror)


class InvalidSessionIdError(SessionNotFoundError, ValueError):
    """The id is not a canonical lowercase UUID; nothing was looked up."""

    def __init__(self, value: object) -> None:
        OSError.__init__(
            self,
            _errno.ENOENT,
            f"invalid session id {describe_id(value)}: expected a lowercase UUID "
            "such as 3f01b541-5cc9-47a7-9f8b-d884159c705f",
        )
        self.value = value
        self.session_id = None


class SessionValidationError(SessionError, ValueError):
    """A value, field or record was refused; nothing was written."""

    def __init__(self, message: str, *, session_id: str | None = None) -> None:
        if session_id is not None:
            message = f"session {session_id}: {message}"
        super().__init__(message)
        self.session_id = session_id


class InvalidTransitionError(SessionValidationError):
    """The state machine does not allow this transition."""

    def __init__(
        self,
        session_id: str | None,
        current: str,
        target: str,
        allowed: tuple[str, ...],
        *,
        note: str = "",
        message: str | None = None,
    ) -> None:
        if message is None:
            choices = ", ".join(allowed) if allowed else "none (terminal state)"
            message = (
                f"invalid state transition {current} -> {target}; allowed from {current}: {choices}"
            )
            if note:
                message = f"{message} ({note})"
        super().__init__(message, session_id=session_id)
        self.current = current
        self.target = target
        self.allowed = allowed


class AmbiguousSessionIdError(SessionValidationError):
    """An id prefix names more than one session; ``matches`` lists them."""

    def __init__(self, prefix: str, matches: list[str]) -> None:
        shown = ", ".join(m[:13] for m in matches[:5])
        more = ", ..." if len(matches) > 5 else ""
        super().__init__(
            f"id prefix {prefix} is ambiguous: it matches {len(matches)} sessions "
            f"({shown}{more}); give more characters"
        )
        self.prefix = prefix
        self.matches = matches


class CorruptSessionError(SessionError, json.JSONDecodeError):
    """A stored record cannot be read: bad JSON, wrong types or schema.

    It is a :class:`json.JSONDecodeError`, so ``except json.JSONDecodeError``
    (and ``except ValueError``) catch it.  ``doc`` is left empty on purpose:
    the record's contents never travel inside an exception.  ``where`` names
    the place the store keeps the record in (``metadata.json`` in the file
    store, a table row in a database).
    """

    def __init__(
        self,
        session_id: str,
        detail: str,
        *,
        where: str = "the stored record",
        lineno: int = 1,
        colno: int = 1,
    ) -> None:
        message = f"session {session_id}: {where} is unreadable: {detail}"
        json.JSONDecodeError.__init__(self, message, "", 0)
        self.lineno = lineno
        self.colno = colno
        self.session_id = session_id
        self.where = where
        self.args = (message,)

    def __str__(self) -> str:
        return self.msg


class ConflictError(SessionError):
    """``expected_revision`` did not match the stored revision (compare-and-swap).

    Also raised, with ``request_id`` set (and ``expected``/``actual`` left
    ``None``), when a request id already recorded for the session comes back
    with other arguments: it names another request, not a retry.
    """

    expected: int | None
    actual: int | None

    def __init__(
        self,
        session_id: str,
        expected: int | None = None,
        actual: int | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        if request_id is not None:
            message = (
                f"session {session_id}: request id {describe_id(request_id)} was already "
                "used with other arguments; a new request needs a new request id"
            )
        else:
            message = (
                f"session {session_id}: revision conflict: expected revision {expected}, "
                f"stored revision is {actual}; re-read the session and retry"
            )
        super().__init__(message)
        self.session_id = session_id
        self.expected = expected
        self.actual = actual
        self.request_id = request_id


class SessionExistsError(SessionError, FileExistsError):
    """A session with this id already exists."""

    def __init__(self, session_id: str) -> None:
        super().__init__(_errno.EEXIST, f"session {session_id} already exists")
        self.session_id = session_id

    def __str__(self) -> str:
        return str(self.strerror)


class LockTimeoutError(SessionError, TimeoutError):
    """Another writer held the session's lock for longer than the timeout."""

    def __init__(self, session_id: str, timeout: float) -> None:
        super().__init__(
            _errno.ETIMEDOUT,
            f"session {session_id}: lock not acquired within {timeout:g} s; "
            "another process is writing it",
        )
        self.session_id = session_id
        self.timeout = timeout

    def __str__(self) -> str:
        return str(self.strerror)


class UnsafePathError(SessionError, PermissionError):
    """A path inside the store is a symlink or leads outside it; it was not followed.

    ``session_id`` is ``None`` when the store itself (``.flow``, ``sessions/``)
    is reached through a symlink.
    """

    def __init__(self, session_id: str | None, detail: str) -> None:
        what = f"session {session_id}: " if session_id else ""
        super().__init__(_errno.EPERM, f"{what}refused: {detail}")
        self.session_id = session_id

    def __str__(self) -> str:
        return str(self.strerror)


class StorageError(SessionError, OSError):
    """The storage refused an operation; ``errno`` is the underlying one.

    ``cause`` may be an ``OSError`` (its errno and reason are kept) or any
    other failure of the engine underneath, a database driver's error for one
    (``errno`` is then ``EIO`` and the reason is the first line of its
    message; the error itself stays reachable as ``__cause__``).

    ``committed`` is false when nothing changed (the previous record is
    intact).  It is true when the change is in place although the operation
    reported a failure: in the file store, the new record was renamed into
    place but the directory fsync that makes the rename durable failed, so it
    is what readers see now, yet it might not survive a power cut.
    """

    def __init__(
        self,
        session_id: str | None,
        action: str,
        cause: BaseException,
        *,
        committed: bool = False,
    ) -> None:
        what = f"session {session_id}: " if session_id else ""
        if isinstance(cause, OSError):
            code = cause.errno
            reason = cause.strerror or type(cause).__name__
        else:
            code = _errno.EIO
            lines = str(cause).strip().splitlines()
            reason = lines[0] if lines else type(cause).__name__
        super().__init__(code, f"{what}{action} failed: {reason}")
        self.session_id = session_id
        self.committed = committed

    def __str__(self) -> str:
        return str(self.strerror)


class StoreUnavailableError(StorageError):
    """The store's database cannot be used at all; ``reason`` says why.

    ``reason`` is one of ``"unreachable"``, ``"authentication"``,
    ``"missing_database"``, ``"schema_too_new"``, ``"pool_exhausted"`` or
    ``"error"``.  The message names neither the password nor the full URL.
    """

    def __init__(self, message: str, *, reason: str = "error") -> None:
        SessionError.__init__(self)
        OSError.__init__(self, _errno.EIO, message)
        self.session_id = None
        self.committed = False
        self.reason = reason

    def __str__(self) -> str:
        return str(self.strerror)


class UnsupportedOperationError(SessionError, ValueError):
    """The store in use does not offer this operation (see its capabilities).

    A ``ValueError``, like the validation error it replaces, so existing
    ``except ValueError`` clauses keep working.
    """

    def __init__(self, operation: str, store: str, *, needs: str = "") -> None:
        message = f"{operation} is not supported by the {store}"
        if needs:
            message = f"{message}; it needs {needs}"
        super().__init__(message)
        self.operation = operation
        self.store = store
