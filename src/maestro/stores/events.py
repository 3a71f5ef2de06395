"""A change as the change feed reports it (:class:`ChangeEvent`).

Made by the stores that keep a feed when they are asked for one; re-exported
by :mod:`maestro.stores.base`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from maestro.models import format_timestamp, utcnow
from maestro.stores.kinds import ChangeKind

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ChangeEvent"]


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

    @classmethod
    def reset(cls, cursor: str) -> ChangeEvent:
        """The event that tells a reader its cursor lost its place: events may have
        been missed (dropped by retention, or of another history); reading goes
        on from ``cursor``."""
        return cls(cursor, ChangeKind.RESET, None, None, None, None, utcnow())

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
