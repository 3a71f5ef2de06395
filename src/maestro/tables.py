"""The sessions table without Rich: its cells, its column widths, its helpers.

What :func:`maestro.render.sessions_table` and :func:`maestro.render.fitted_table`
compute before Rich draws anything: the cells of a sessions table
(:func:`session_rows`), the width of every column (:func:`column_widths`),
the colours of the statuses, the short ids and the relative times.  Nothing
here imports Rich, Click or :mod:`typing`, so the command line can use them
before it knows whether it will draw with Rich.
"""

from __future__ import annotations

from maestro.gitctx import describe_branch
from maestro.models import SessionStatus, utcnow
from maestro.plain import one_line
from maestro.textsafe import visible

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime

    from maestro.models import Session

__all__ = [
    "SHORT_ID",
    "STATUS_STYLE",
    "SessionRows",
    "column_widths",
    "relative_time",
    "session_rows",
    "short_id",
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

SHORT_ID = 8


def short_id(session_id: str) -> str:
    """The first characters of an id: enough to tell sessions apart in a table."""
    return session_id[:SHORT_ID]


def relative_time(moment: datetime | None, now: datetime | None = None) -> str:
    """``just now``, ``3 min ago``, ``2 h ago``, ``5 days ago``."""
    if moment is None:
        return "-"
    seconds = ((now or utcnow()) - moment).total_seconds()
    if seconds < -45:
        return "in future"
    if seconds < 45:
        return "just now"
    if seconds < 90 * 60:
        return f"{max(1, round(seconds / 60))} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


# ---------------------------------------------------------------- the cells


class SessionRows:
    """The cells of a sessions table, and how its columns fit.

    Each cell is its text (already through :func:`~maestro.textsafe.visible`)
    and the style it is drawn in (``""``: none).
    """

    __slots__ = ("caps", "flexible", "headers", "rows")

    def __init__(
        self,
        headers: tuple[str, ...],
        rows: list[tuple[tuple[str, str], ...]],
        flexible: int,
        caps: dict[int, int],
    ) -> None:
        self.headers = headers
        self.rows = rows
        #: The column cut to what the others leave (the request).
        self.flexible = flexible
        #: The most a column takes before the request is cut.
        self.caps = caps


def session_rows(sessions: Sequence[Session], now: datetime) -> SessionRows:
    """One row per session: short id, status, phase, branch, age, request.

    A worktree column (``-`` for the main checkout) comes after the branch
    when the rows come from more than one worktree of the repository.
    """
    worktrees = {session.git_context.worktree_name for session in sessions}
    with_worktree = len(worktrees) > 1
    rows = []
    for session in sessions:
        git = session.git_context
        row = [
            (short_id(session.session_id), ""),
            (session.status.value, STATUS_STYLE.get(session.status, "")),
            (session.current_phase.value if session.current_phase else "-", ""),
            (visible(describe_branch(git)), ""),
        ]
        if with_worktree:
            row.append((visible(git.worktree_name or "-"), ""))
        row += [
            (relative_time(session.created_at, now), ""),
            (one_line(session.feature_request), ""),
        ]
        rows.append(tuple(row))
    headers = ("id", "status", "phase", "branch", *(("worktree",) if with_worktree else ()))
    return SessionRows(
        (*headers, "age", "request"),
        rows,
        len(headers) + 1,
        # 21: "(detached at 3f01b54)" whole.
        {3: 21, 4: 16} if with_worktree else {3: 21},
    )


# ---------------------------------------------------------------- the widths


def column_widths(
    headers: Sequence[str],
    lengths: Iterable[Sequence[int]],
    *,
    width: int,
    flexible: int,
    caps: dict[int, int] | None = None,
) -> list[int]:
    """How wide each column is drawn, to fit ``width`` with two spaces between columns.

    Every column is as wide as its longest cell or header (at most
    ``caps[column]``), the ``flexible`` one cut to what the others leave.
    On a narrow terminal the capped columns give way first, down to their
    headers, for the flexible one to keep ten columns.  ``lengths`` are the
    lengths of the cells, row by row.
    """
    natural = [len(header) for header in headers]
    for row in lengths:
        natural = [max(size, length) for size, length in zip(natural, row, strict=True)]
    for column, cap in (caps or {}).items():
        natural[column] = max(len(headers[column]), min(natural[column], cap))
    gaps = 2 * (len(headers) - 1)
    fixed = sum(size for column, size in enumerate(natural) if column != flexible)
    room = width - gaps - fixed
    for column in caps or {}:  # a narrow terminal: capped columns give way first
        if room >= 10:
            break
        give = min(natural[column] - len(headers[column]), 10 - room)
        natural[column] -= give
        room += give
    natural[flexible] = max(len(headers[flexible]), min(natural[flexible], room))
    return natural
