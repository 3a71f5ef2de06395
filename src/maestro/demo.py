"""The Quick start's main job: one session walked through its whole lifecycle."""

from __future__ import annotations

from collections.abc import Callable

from maestro.manager import SessionManager
from maestro.models import Session, SessionStatus

__all__ = ["DEMO_REQUEST", "run_demo"]

DEMO_REQUEST = "Demo: add a dark-mode toggle to the settings page"

S = SessionStatus


def run_demo(manager: SessionManager, say: Callable[[str], None] = lambda _: None) -> Session:
    """Create a session and drive it to ``completed`` the way an orchestrator would.

    On the way it pauses and resumes once and loops validate → implement once,
    so the history shows every kind of step.  ``say`` receives one line per step.
    """
    session = manager.create_session(DEMO_REQUEST, {"max_iterations": 3})
    sid = session.session_id
    say(f"created session {sid} on branch {session.git_context.branch}")

    def step(target: SessionStatus, reason: str | None = None) -> None:
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
    manager.pause_session(sid, reason="waiting for a design review")
    say("  ‖ paused             (waiting for a design review)")
    manager.resume_session(sid, reason="review approved")
    say("  ▶ resumed            (review approved)")
    manager.increment_statistics(sid, completed_tasks=2, checkpoints_created=1)
    step(S.VALIDATING)
    manager.increment_statistics(sid, failed_tasks=1)
    step(S.IMPLEMENTING, reason="2 tests failed; fixing")
    manager.increment_statistics(sid, failed_tasks=-1, error_recovery_count=1)
    step(S.VALIDATING)
    step(S.GENERATING_REPORT)
    step(S.COMPLETED)
    return manager.get_session(sid)
