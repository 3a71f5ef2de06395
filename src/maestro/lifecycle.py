"""The session state machine: the whitelist, as data, and the one check.

::

    initializing → planning → generating_tasks → implementing ⇄ validating
                                                                     ↓
                                           completed ← generating_report
    every non-terminal state → paused, failed
    completed, failed: terminal, nothing leaves them

``paused`` adds no power: a paused session may go back to the state it was
paused from, or wherever that state could go.  The state it was paused from is
kept in the record as ``paused_from``.  A paused record written by the
original prototype has no ``paused_from``; for those the origin is unknown and
the session may go to any non-terminal working state or to ``failed``, never
straight to ``completed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from maestro.errors import InvalidTransitionError
from maestro.models import TERMINAL_STATES, Session, SessionPhase, SessionStatus, StateChange
from maestro.records import record, replace

__all__ = [
    "ACTIVE_STATES",
    "PHASE_OF_STATUS",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "Segment",
    "active_seconds",
    "allowed_targets",
    "apply_transition",
    "check_transition",
    "phase_durations",
    "segments",
]

S = SessionStatus

#: The whitelist.  ``TRANSITIONS[PAUSED]`` is the upper bound of where a paused
#: session may go; the actual targets depend on ``paused_from`` (see
#: :func:`allowed_targets`).
TRANSITIONS: Mapping[SessionStatus, tuple[SessionStatus, ...]] = MappingProxyType(
    {
        S.INITIALIZING: (S.PLANNING, S.FAILED, S.PAUSED),
        S.PLANNING: (S.GENERATING_TASKS, S.FAILED, S.PAUSED),
        S.GENERATING_TASKS: (S.IMPLEMENTING, S.FAILED, S.PAUSED),
        S.IMPLEMENTING: (S.VALIDATING, S.FAILED, S.PAUSED),
        S.VALIDATING: (S.GENERATING_REPORT, S.IMPLEMENTING, S.FAILED, S.PAUSED),
        S.GENERATING_REPORT: (S.COMPLETED, S.FAILED, S.PAUSED),
        S.COMPLETED: (),
        S.FAILED: (),
        S.PAUSED: (
            S.INITIALIZING,
            S.PLANNING,
            S.GENERATING_TASKS,
            S.IMPLEMENTING,
            S.VALIDATING,
            S.GENERATING_REPORT,
            S.COMPLETED,
            S.FAILED,
        ),
    }
)

ACTIVE_STATES: frozenset[SessionStatus] = frozenset(SessionStatus) - TERMINAL_STATES

#: The phase a status implies.  Statuses not listed leave the phase as it is.
PHASE_OF_STATUS: Mapping[SessionStatus, SessionPhase] = MappingProxyType(
    {
        S.PLANNING: SessionPhase.PLAN,
        S.GENERATING_TASKS: SessionPhase.GENERATE_TASKS,
        S.IMPLEMENTING: SessionPhase.IMPLEMENT,
        S.VALIDATING: SessionPhase.VALIDATE,
        S.GENERATING_REPORT: SessionPhase.CLEANUP,
    }
)

_UNKNOWN_ORIGIN_TARGETS = (
    S.PLANNING,
    S.GENERATING_TASKS,
    S.IMPLEMENTING,
    S.VALIDATING,
    S.GENERATING_REPORT,
    S.FAILED,
)


def allowed_targets(
    status: SessionStatus, paused_from: SessionStatus | None = None
) -> tuple[SessionStatus, ...]:
    """Every state a session in ``status`` may move to next."""
    if status is not S.PAUSED:
        return TRANSITIONS[status]
    if paused_from is None or paused_from in (S.PAUSED, *TERMINAL_STATES):
        return _UNKNOWN_ORIGIN_TARGETS
    onward = tuple(t for t in TRANSITIONS[paused_from] if t is not S.PAUSED)
    return (paused_from, *onward)


def check_transition(
    session_id: str | None,
    current: SessionStatus,
    target: SessionStatus,
    paused_from: SessionStatus | None = None,
) -> None:
    """Raise :class:`InvalidTransitionError` unless ``current → target`` is allowed."""
    allowed = allowed_targets(current, paused_from)
    if target not in allowed:
        note = ""
        if current is S.PAUSED:
            note = (
                f"paused from {paused_from.value}"
                if paused_from is not None
                else "paused by an older version; origin unknown"
            )
        raise InvalidTransitionError(
            session_id,
            current.value,
            target.value,
            tuple(t.value for t in allowed),
            note=note,
        )


def apply_transition(
    session: Session,
    target: SessionStatus,
    *,
    at: datetime,
    reason: str | None = None,
) -> Session:
    """Return a copy of ``session`` moved to ``target``, checked and recorded.

    Appends to ``history``, keeps ``paused_from``, lets the phase follow the
    status, sets ``completed_at`` and the active ``duration_seconds`` on
    entering a terminal state.
    """
    check_transition(session.session_id, session.status, target, session.paused_from)
    entry = StateChange(session.status, target, at, reason)
    paused_from = session.status if target is S.PAUSED else None
    moved = replace(
        session,
        status=target,
        current_phase=PHASE_OF_STATUS.get(target, session.current_phase),
        paused_from=paused_from,
        history=[*session.history, entry],
    )
    if target in TERMINAL_STATES:
        moved.completed_at = at
        moved.statistics = replace(
            session.statistics, duration_seconds=round(active_seconds(moved, at), 6)
        )
    return moved


@record(frozen=True)
class Segment:
    """A stretch of a session's life spent in one state."""

    state: SessionStatus
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def segments(session: Session, until: datetime) -> list[Segment]:
    """The session's life in order, one segment per stay in a state.

    A running session is followed up to ``until``; a finished one ends at its
    last state change (the terminal state itself takes no time).
    """
    pieces: list[Segment] = []
    start = session.created_at
    state = session.history[0].from_status if session.history else session.status
    for entry in session.history:
        end = max(entry.at, start)
        pieces.append(Segment(state, start, end))
        start, state = end, entry.to_status
    if state not in TERMINAL_STATES:
        pieces.append(Segment(state, start, max(until, start)))
    return pieces


def active_seconds(session: Session, until: datetime) -> float:
    """Seconds spent working: created → terminal (or ``until``), paused time excluded."""
    return sum(piece.seconds for piece in segments(session, until) if piece.state is not S.PAUSED)


def phase_durations(session: Session, until: datetime) -> dict[SessionStatus, float]:
    """Seconds spent in each state (paused included, as its own entry)."""
    totals: dict[SessionStatus, float] = {}
    for piece in segments(session, until):
        totals[piece.state] = totals.get(piece.state, 0.0) + piece.seconds
    return totals
