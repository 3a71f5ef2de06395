"""Terminal rendering of sessions (Rich): tables, panels, relative times."""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from maestro.models import Session, SessionStatus, utcnow

__all__ = [
    "STATUS_STYLE",
    "format_duration",
    "history_table",
    "relative_time",
    "session_details",
    "status_text",
]

STATUS_STYLE: dict[SessionStatus, str] = {
    SessionStatus.INITIALIZING: "cyan",
    SessionStatus.PLANNING: "blue",
    SessionStatus.GENERATING_TASKS: "blue",
    SessionStatus.IMPLEMENTING: "magenta",
    SessionStatus.VALIDATING: "yellow",
    SessionStatus.GENERATING_REPORT: "cyan",
    SessionStatus.COMPLETED: "green",
    SessionStatus.FAILED: "red",
    SessionStatus.PAUSED: "dim",
}


def status_text(status: SessionStatus) -> Text:
    return Text(status.value, style=STATUS_STYLE.get(status, ""))


def format_duration(seconds: float) -> str:
    """``0.4s``, ``12s``, ``3m 05s``, ``2h 07m``, ``3d 04h``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def relative_time(moment: datetime | None, now: datetime | None = None) -> str:
    """``just now``, ``3 min ago``, ``2 h ago``, ``5 days ago``."""
    if moment is None:
        return "-"
    seconds = ((now or utcnow()) - moment).total_seconds()
    if seconds < 0:
        return "in the future"
    if seconds < 45:
        return "just now"
    if seconds < 90 * 60:
        return f"{max(1, round(seconds / 60))} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def _timestamp(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def session_details(session: Session) -> Table:
    """A two-column key/value table of the record."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    git = session.git_context
    where = f"{git.branch} @ {git.commit[:12]}"
    if git.is_worktree:
        where += f" (worktree {git.worktree_name})"
    status = status_text(session.status)
    if session.paused_from is not None:
        status.append(f"  (from {session.paused_from.value})", style="dim")
    stats = session.statistics
    rows: list[tuple[str, RenderableType]] = [
        ("id", session.session_id),
        ("request", session.feature_request),
        ("status", status),
        ("phase", session.current_phase.value if session.current_phase else "-"),
        ("git", where),
        ("created", _timestamp(session.created_at)),
        ("updated", _timestamp(session.updated_at)),
        ("completed", _timestamp(session.completed_at)),
        (
            "tasks",
            f"{stats.completed_tasks}/{stats.total_tasks} done, {stats.failed_tasks} failed",
        ),
        ("duration", format_duration(stats.duration_seconds)),
        ("revision", str(session.revision)),
    ]
    if session.prd_reference is not None:
        rows.insert(5, ("prd", session.prd_reference.path))
    for key, value in rows:
        table.add_row(key, value)
    return table


def history_table(session: Session) -> Table:
    """One row per state change: when, from, to, how long it lasted, why."""
    table = Table(title="history", title_justify="left", expand=False)
    table.add_column("at (UTC)", no_wrap=True)
    table.add_column("from", no_wrap=True)
    table.add_column("to", no_wrap=True)
    table.add_column("lasted", justify="right")
    table.add_column("reason", overflow="fold")
    entries = session.history
    for index, entry in enumerate(entries):
        following = (
            entries[index + 1].at if index + 1 < len(entries) else (session.completed_at or None)
        )
        lasted = "-"
        if following is not None:
            lasted = format_duration((following - entry.at).total_seconds())
        elif not session.is_terminal:
            lasted = format_duration((utcnow() - entry.at).total_seconds()) + "+"
        table.add_row(
            entry.at.strftime("%H:%M:%S.%f")[:-3],
            status_text(entry.from_status),
            status_text(entry.to_status),
            lasted,
            entry.reason or "",
        )
    return table


def session_view(session: Session) -> Group:
    return Group(session_details(session), Text(""), history_table(session))
