"""Maestro's errors as HTTP answers: one status per error type, one body shape.

Every error body is ``{"error": {"type": ..., "message": ..., "status": ...}}``
with, when the error carries them, the states a session may move to
(``allowed``), the revisions that did not match (``expected``, ``actual``)
or the ids an ambiguous prefix matches (``matches``).  The type is the name
of the maestro exception (``InvalidTransitionError``), or, for what the
server itself refuses before reaching the sessions, one of
:data:`REQUEST_ERRORS`.
"""

from __future__ import annotations

import errno
from typing import Any

from maestro import errors

__all__ = ["REQUEST_ERRORS", "error_body", "status_of"]

#: Errors raised by the server itself, and their statuses.
REQUEST_ERRORS = {
    "RequestValidationError": 400,  # a parameter or body that fails the API's schema
    "MalformedHeaderError": 400,  # If-Match, If-None-Match or Last-Event-ID unreadable
    "UnauthorizedError": 401,  # a token is required and was not given
    "CrossOriginError": 403,  # a state-changing request from another site
    "HostNotAllowedError": 403,  # a Host header this server does not answer to
    "NotFoundError": 404,  # no such path
    "MethodNotAllowedError": 405,
    "RequestTooLargeError": 413,
    "UnsupportedMediaTypeError": 415,
}

# Most specific first: the first class an error is an instance of wins.
_STATUSES: tuple[tuple[type[errors.SessionError], int], ...] = (
    (errors.InvalidSessionIdError, 404),
    (errors.SessionNotFoundError, 404),
    (errors.InvalidTransitionError, 409),
    (errors.AmbiguousSessionIdError, 400),
    (errors.UnsupportedOperationError, 501),
    (errors.SessionValidationError, 400),
    (errors.SessionExistsError, 409),
    (errors.LockTimeoutError, 503),
    (errors.UnsafePathError, 500),
    (errors.CorruptSessionError, 500),
)


def status_of(error: errors.SessionError) -> int:
    """The HTTP status of a maestro error."""
    if isinstance(error, errors.ConflictError):
        # A request id reused for another request is a conflict; a revision
        # that did not match is If-Match failing.
        return 409 if error.request_id is not None else 412
    if isinstance(error, errors.StorageError):
        return 507 if error.errno == errno.ENOSPC else 503
    for cls, status in _STATUSES:
        if isinstance(error, cls):
            return status
    return 500


def error_body(kind: str, message: str, status: int, **extra: Any) -> dict[str, Any]:
    """The one shape of every error answer."""
    return {"error": {"type": kind, "message": message, "status": status, **extra}}


def describe(error: errors.SessionError) -> tuple[int, dict[str, Any]]:
    """The status and body of a maestro error."""
    status = status_of(error)
    extra: dict[str, Any] = {}
    if error.session_id is not None:
        extra["session_id"] = error.session_id
    if isinstance(error, errors.InvalidTransitionError):
        extra["current"] = error.current
        extra["allowed"] = list(error.allowed)
    elif isinstance(error, errors.ConflictError) and error.request_id is None:
        extra["expected"] = error.expected
        extra["actual"] = error.actual
    elif isinstance(error, errors.AmbiguousSessionIdError):
        extra["matches"] = error.matches[:20]
    message = " ".join(str(error).split()) or type(error).__name__
    return status, error_body(type(error).__name__, message, status, **extra)
