"""The typed results of the MCP tools: each becomes a tool's output schema.

They mirror the stored record (:meth:`maestro.Session.to_dict`) field for
field, so an agent reads the same names in a tool result, a resource and a
``metadata.json``.  Only the idempotency bookkeeping (``requests``) is left
out: it is the library's own.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from maestro.models import Session
from maestro.pages import SessionPage
from maestro.stats import SessionStats
from maestro.timeline import SessionTimeline

__all__ = [
    "Configuration",
    "DeleteResult",
    "DurationSummary",
    "GitContext",
    "PRDReference",
    "SessionList",
    "SessionPageResult",
    "SessionRecord",
    "StateChange",
    "Statistics",
    "StatsResult",
    "TimelineResult",
    "TimelineSegment",
]

Status = Literal[
    "initializing",
    "planning",
    "generating_tasks",
    "implementing",
    "validating",
    "generating_report",
    "completed",
    "failed",
    "paused",
]
Phase = Literal["plan", "generate_tasks", "implement", "validate", "cleanup"]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class GitContext(_Model):
    """Where the session runs: branch, commit, checkout."""

    branch: str
    commit: str
    repo_root: str
    is_worktree: bool = False
    worktree_name: str | None = None


class PRDReference(_Model):
    """The product requirements document of the session."""

    filename: str
    path: str
    version: str | None = None


class Statistics(_Model):
    """Counters of the session's work."""

    total_tasks: int = 0
    completed_tasks: int = 0
    failed_tasks: int = 0
    decisions_made: int = 0
    checkpoints_created: int = 0
    error_recovery_count: int = 0
    duration_seconds: float = 0.0


class Configuration(_Model):
    """Settings the orchestrator runs the session with."""

    max_iterations: int = 3
    timeout_minutes: int = 120
    auto_checkpoint: bool = True
    error_recovery_enabled: bool = True


class StateChange(_Model):
    """One entry of the history: a state change, when, and why."""

    from_status: Status = Field(alias="from")
    to_status: Status = Field(alias="to")
    at: str = Field(description="ISO 8601 UTC")
    reason: str | None = None


class SessionRecord(_Model):
    """A session as stored: what was asked, where, its state, counters and history.

    ``revision`` grows by one on every write: pass it back as
    ``expected_revision`` to write only if nobody else wrote in between.
    Timestamps are ISO 8601 UTC.
    """

    session_id: str
    feature_request: str
    status: Status
    current_phase: Phase | None = None
    created_at: str
    updated_at: str | None = None
    completed_at: str | None = None
    heartbeat_at: str | None = None
    git_context: GitContext
    prd_reference: PRDReference | None = None
    statistics: Statistics
    configuration: Configuration
    revision: int
    paused_from: Status | None = None
    history: list[StateChange]
    rerun_of: str | None = None
    schema_version: int

    @classmethod
    def of(cls, session: Session) -> SessionRecord:
        record: dict[str, Any] = session.to_dict()
        record.pop("requests", None)
        for key in session.extra:  # fields of a newer version: not part of this schema
            record.pop(key, None)
        return cls.model_validate(record)


class SessionPageResult(_Model):
    """One page of sessions, newest first unless asked otherwise.

    ``next_cursor`` is null on the last page; otherwise pass it as ``cursor``,
    with the same filters, for the next page.
    """

    sessions: list[SessionRecord]
    next_cursor: str | None

    @classmethod
    def of(cls, page: SessionPage) -> SessionPageResult:
        return cls(
            sessions=[SessionRecord.of(s) for s in page.sessions], next_cursor=page.next_cursor
        )


class SessionList(_Model):
    """Sessions, in the order the tool describes."""

    sessions: list[SessionRecord]

    @classmethod
    def of(cls, sessions: list[Session]) -> SessionList:
        return cls(sessions=[SessionRecord.of(s) for s in sessions])


class TimelineSegment(_Model):
    """One stay in one state."""

    state: Status
    start: str
    end: str
    seconds: float


class TimelineResult(_Model):
    """A session's life state by state, up to now (or to its end once finished).

    Paused time counts in ``paused_seconds``, never in ``active_seconds``.
    """

    session_id: str
    timeline: list[TimelineSegment]
    seconds_in_state: dict[str, float]
    active_seconds: float
    paused_seconds: float
    started_at: str
    ended_at: str
    finished: bool

    @classmethod
    def of(cls, timeline: SessionTimeline) -> TimelineResult:
        return cls.model_validate({"session_id": timeline.session_id, **timeline.to_dict()})


class DurationSummary(_Model):
    """Seconds spent in one state across the sessions that went through it."""

    sessions: int
    median_seconds: float
    p90_seconds: float
    total_seconds: float


class StatsResult(_Model):
    """Counts by state, success rate (completed / finished; null while none has
    finished), time per state and sessions per branch."""

    total: int
    by_status: dict[str, int]
    success_rate: float | None
    durations: dict[str, DurationSummary]
    by_branch: dict[str, int]

    @classmethod
    def of(cls, stats: SessionStats) -> StatsResult:
        return cls.model_validate(stats.to_dict())


class DeleteResult(_Model):
    """The session deleted (with every file in its directory)."""

    session_id: str
    deleted: bool
