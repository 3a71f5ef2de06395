"""Session ids: canonical lowercase UUIDs, checked before anything touches storage."""

from __future__ import annotations

import re

from maestro.errors import InvalidSessionIdError

__all__ = ["check_session_id", "is_session_id", "new_session_id"]

# Exactly what str(uuid.UUID(...)) produces: braces, "urn:uuid:", upper case,
# missing dashes, surrounding whitespace and embedded NULs all fail.
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_session_id(value: object) -> bool:
    """True when ``value`` is a canonical lowercase UUID string."""
    return isinstance(value, str) and _CANONICAL.fullmatch(value) is not None


def check_session_id(value: object) -> str:
    """Return ``value`` if it is a canonical session id, else raise ``InvalidSessionIdError``."""
    if not is_session_id(value):
        raise InvalidSessionIdError(value)
    assert isinstance(value, str)
    return value


def new_session_id() -> str:
    """A fresh random (version 4) session id."""
    import uuid  # only to make one: checking ids is a pattern match

    return str(uuid.uuid4())
