"""Sessions as plain rows for a pipe, without loading Rich.

A table is for a terminal; a pipe (``maestro list | cut -f1``) gets the
rows as ``gh`` prints them: tab-separated whole cells, no header, rule,
padding or cut.  Nothing here imports Rich, so a command whose output is
piped starts without it; :mod:`maestro.render` re-exports these functions
beside the tables they stand in for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from maestro.gitctx import describe_branch
from maestro.models import Session, format_timestamp
from maestro.textsafe import visible

__all__ = ["activity_plain_rows", "one_line", "plain_rows", "session_plain_rows"]


def one_line(text: str) -> str:
    """Whitespace (line breaks included) as single spaces; other controls as escapes."""
    return visible(" ".join(text.split()))


def plain_rows(rows: Sequence[Sequence[str]]) -> str:
    """Rows for a pipe: tab-separated cells, one line each.  Cells are single
    lines already (``visible`` escapes tabs)."""
    return "".join("\t".join(row) + "\n" for row in rows)


def session_plain_rows(sessions: Sequence[Session]) -> str:
    """``sessions_table`` for a pipe: whole id, status, phase, branch, creation time, request."""
    return plain_rows(
        [
            (
                session.session_id,
                session.status.value,
                session.current_phase.value if session.current_phase else "-",
                visible(describe_branch(session.git_context)),
                format_timestamp(session.created_at),
                one_line(session.feature_request),
            )
            for session in sessions
        ]
    )


def activity_plain_rows(
    sessions: Sequence[Session], *, last_activity: Mapping[str, datetime] | None = None
) -> str:
    """``activity_table`` for a pipe: whole id, status, last activity, timeout, request."""
    seen = last_activity or {}
    return plain_rows(
        [
            (
                session.session_id,
                session.status.value,
                format_timestamp(seen.get(session.session_id, session.last_activity)),
                str(session.configuration.timeout_minutes),
                one_line(session.feature_request),
            )
            for session in sessions
        ]
    )
