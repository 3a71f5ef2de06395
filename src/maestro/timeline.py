"""A session's life state by state: the value ``maestro show`` draws and prints as JSON.

Computed once here so that every face (terminal, JSON, later HTTP) shows the
same segments and the same seconds.
"""

from __future__ import annotations

from datetime import datetime

from maestro.lifecycle import Segment, segments
from maestro.models import Session, SessionStatus, format_timestamp
from maestro.records import record

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SessionTimeline"]


@record(frozen=True)
class SessionTimeline:
    """One segment per stay in a state, from creation to ``end``.

    ``end`` is when the session finished, or the moment the timeline was
    taken for a session still running.  Paused time is a state of its own:
    it counts in ``seconds_in_state`` and ``paused_seconds``, never in
    ``active_seconds``.
    """

    session_id: str
    start: datetime
    end: datetime
    finished: bool
    segments: tuple[Segment, ...]

    @classmethod
    def of(cls, session: Session, now: datetime) -> SessionTimeline:
        """The timeline of ``session`` as of ``now`` (ignored once it has finished)."""
        end = session.completed_at if session.is_terminal and session.completed_at else now
        return cls(
            session_id=session.session_id,
            start=session.created_at,
            end=max(end, session.created_at),
            finished=session.is_terminal,
            segments=tuple(segments(session, end)),
        )

    @property
    def life_seconds(self) -> float:
        """From creation to ``end``."""
        return (self.end - self.start).total_seconds()

    @property
    def seconds_in_state(self) -> dict[SessionStatus, float]:
        """Seconds spent in each state visited, in the order first visited."""
        totals: dict[SessionStatus, float] = {}
        for piece in self.segments:
            totals[piece.state] = totals.get(piece.state, 0.0) + piece.seconds
        return totals

    @property
    def paused_seconds(self) -> float:
        return sum(p.seconds for p in self.segments if p.state is SessionStatus.PAUSED)

    @property
    def active_seconds(self) -> float:
        """Seconds spent working: every segment but the paused ones."""
        return sum(p.seconds for p in self.segments if p.state is not SessionStatus.PAUSED)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``timeline`` holds the segments, oldest first."""
        return {
            "timeline": [
                {
                    "state": piece.state.value,
                    "start": format_timestamp(piece.start),
                    "end": format_timestamp(piece.end),
                    "seconds": piece.seconds,
                }
                for piece in self.segments
            ],
            "seconds_in_state": {
                state.value: seconds for state, seconds in self.seconds_in_state.items()
            },
            "active_seconds": self.active_seconds,
            "paused_seconds": self.paused_seconds,
            "started_at": format_timestamp(self.start),
            "ended_at": format_timestamp(self.end),
            "finished": self.finished,
        }
