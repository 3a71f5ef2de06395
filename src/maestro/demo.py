"""The Quick start's main job: one session walked through its whole lifecycle.

The demo plays a run of about two and a half hours in well under a second: it
uses a clock that starts that long ago and moves forward by a realistic amount
at each step, so the record, its history and the timeline of ``maestro show``
look like those of a real session that has just finished.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from maestro.manager import SessionManager
from maestro.models import GitContext, Session, SessionStatus, utcnow

__all__ = ["DEMO_REQUEST", "ReplayClock", "run_demo"]

DEMO_REQUEST = "Demo: add a dark-mode toggle to the settings page"

S = SessionStatus

#: Minutes spent in each state before the next step, in order: initializing,
#: planning, generating tasks, implementing, paused, implementing, validating
#: (tests fail), implementing, validating, generating the report.
_PACE = (2, 12, 8, 15, 40, 25, 30, 6, 15, 5)


class ReplayClock:
    """A clock that starts in the past and moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


def demo_clock() -> ReplayClock:
    """A clock whose demo run ends about now."""
    return ReplayClock(utcnow() - timedelta(minutes=sum(_PACE)))


def run_demo(
    manager: SessionManager,
    say: Callable[[str], None] = lambda _: None,
    pace: Callable[[float], None] = lambda _: None,
    *,
    git_context: GitContext | None = None,
) -> Session:
    """Create a session and drive it to ``completed`` the way an orchestrator would.

    On the way it pauses and resumes once and loops validate → implement once,
    so the history shows every kind of step.  ``say`` receives one line per
    step; ``pace(minutes)`` is called before each step (see :class:`ReplayClock`).
    ``git_context`` replaces the one of the manager's root (a scratch store
    has none worth showing).
    """
    minutes = iter(_PACE)

    def wait() -> None:
        pace(next(minutes, 1))

    session = manager.create_session(DEMO_REQUEST, {"max_iterations": 3}, git_context=git_context)
    sid = session.session_id
    say(f"created session {sid} on branch {session.git_context.branch}")

    def step(target: SessionStatus, reason: str | None = None) -> None:
        wait()
        moved = manager.transition_state(sid, target, reason=reason)
        phase = moved.current_phase.value if moved.current_phase else "-"
        say(f"  → {target.value:<18} phase {phase}" + (f"  ({reason})" if reason else ""))

    step(S.PLANNING)
    manager.update_session(
        sid,
        {
            "prd_reference": {
                "filename": "prd-dark-mode.md",
                "path": ".flow/maestro/prd-dark-mode.md",
            }
        },
    )
    step(S.GENERATING_TASKS)
    manager.update_session(sid, {"statistics": {"total_tasks": 4}})
    step(S.IMPLEMENTING)
    manager.increment_statistics(sid, completed_tasks=2, decisions_made=1)
    wait()
    manager.pause_session(sid, reason="waiting for a design review")
    say("  ‖ paused             (waiting for a design review)")
    wait()
    manager.resume_session(sid, reason="review approved")
    say("  ▶ resumed            (review approved)")
    manager.increment_statistics(sid, completed_tasks=1, checkpoints_created=1)
    step(S.VALIDATING)
    manager.increment_statistics(sid, failed_tasks=1)
    step(S.IMPLEMENTING, reason="2 tests failed; fixing")
    # The failed task is fixed: it moves from failed to completed.
    manager.increment_statistics(sid, failed_tasks=-1, completed_tasks=1, error_recovery_count=1)
    step(S.VALIDATING)
    step(S.GENERATING_REPORT)
    step(S.COMPLETED)
    return manager.get_session(sid)
