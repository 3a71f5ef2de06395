"""Statistics over a set of sessions: outcomes, time per state, branches."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from maestro.lifecycle import phase_durations
from maestro.models import TERMINAL_STATES, Session, SessionStatus

__all__ = ["DurationSummary", "SessionStats", "percentile", "summarize"]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile by linear interpolation (``0.5`` is the median)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class DurationSummary:
    """Seconds spent in one state across the sessions that went through it."""

    sessions: int
    median_seconds: float
    p90_seconds: float
    total_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "median_seconds": self.median_seconds,
            "p90_seconds": self.p90_seconds,
            "total_seconds": self.total_seconds,
        }


@dataclass(frozen=True)
class SessionStats:
    """What :meth:`SessionManager.stats` reports."""

    total: int
    by_status: dict[str, int]
    success_rate: float | None
    durations: dict[str, DurationSummary] = field(default_factory=dict)
    by_branch: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_status": self.by_status,
            "success_rate": self.success_rate,
            "durations": {state: d.to_dict() for state, d in self.durations.items()},
            "by_branch": self.by_branch,
        }


def summarize(sessions: Iterable[Session], now: datetime) -> SessionStats:
    """Statistics of ``sessions``; open sessions count their time up to ``now``.

    ``success_rate`` is completed / (completed + failed), ``None`` while no
    session has finished.
    """
    statuses: Counter[str] = Counter()
    branches: Counter[str] = Counter()
    spent: dict[str, list[float]] = {}
    total = 0
    for session in sessions:
        total += 1
        statuses[session.status.value] += 1
        branches[session.git_context.branch] += 1
        for state, seconds in phase_durations(session, now).items():
            spent.setdefault(state.value, []).append(seconds)
    finished = sum(statuses[state.value] for state in TERMINAL_STATES)
    return SessionStats(
        total=total,
        by_status={s.value: statuses[s.value] for s in SessionStatus if statuses[s.value]},
        success_rate=(statuses[SessionStatus.COMPLETED.value] / finished) if finished else None,
        durations={
            state.value: DurationSummary(
                sessions=len(spent[state.value]),
                median_seconds=percentile(spent[state.value], 0.5),
                p90_seconds=percentile(spent[state.value], 0.9),
                total_seconds=sum(spent[state.value]),
            )
            for state in SessionStatus
            if state.value in spent
        },
        by_branch=dict(branches.most_common()),
    )
