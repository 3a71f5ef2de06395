"""What ``show``, ``list`` and ``search`` do once their arguments are read.

Both ways a command line reaches them call these functions: the Click
commands of :mod:`maestro.cli.sessions`, and :mod:`maestro.cli.direct`,
which reads the common forms of ``show`` and ``list`` without Click.  So
what they print, to which stream, and how they fail is decided here once.
Nothing here imports Click or Rich: a terminal's table is drawn without
Rich when it can be (:mod:`maestro.tables`), and loads it when it cannot.
"""

from __future__ import annotations

import sys

from maestro import errors
from maestro.cli.context import (
    _WIDE,
    EXIT_USAGE,
    CommandError,
    Context,
    UsageProblem,
    _console,
    echo,
)

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from typing import Any

    from maestro.models import Session

__all__ = [
    "LIST_DEFAULT",
    "filters_of",
    "list_sessions",
    "print_sessions",
    "query_and_print",
    "show_session",
]

#: How many sessions human ``list`` shows unless --limit says otherwise.
LIST_DEFAULT = 30


def filters_of(
    statuses: Sequence[str],
    phases: Sequence[str],
    branch: str | None,
    since: datetime | None,
    until: datetime | None,
    active: bool,
) -> dict[str, Any]:
    """The ``query_sessions`` keyword arguments of the filter options."""
    if active and statuses:
        raise UsageProblem("--active and --status cannot be combined; use one")
    if since is not None and until is not None and since > until:
        raise UsageProblem(
            "--since is later than --until, so nothing can match; "
            "give the earlier moment to --since, such as --since 2026-11-01 --until 2026-11-30"
        )
    filters: dict[str, Any] = {}
    if active:
        from maestro.lifecycle import ACTIVE_STATES

        filters["status"] = sorted(s.value for s in ACTIVE_STATES)
    elif statuses:
        filters["status"] = list(statuses)
    if phases:
        filters["phase"] = list(phases)
    if branch is not None:
        filters["branch"] = branch
    if since is not None:
        filters["created_after"] = since
    if until is not None:
        filters["created_before"] = until
    return filters


# ---------------------------------------------------------------- show


def show_session(ctx: Context, session_id: str, full: bool) -> None:
    """``maestro show``: a session's record, timeline, statistics and history."""
    from maestro.models import utcnow

    manager = ctx.manager()
    session = manager.get_session(ctx.resolve(session_id))
    now = utcnow()
    # Only a finished session can have been run again: others skip the scan.
    reruns = (
        [s.session_id for s in manager.reruns_of(session.session_id)]
        if (session.is_terminal)
        else []
    )
    if ctx.as_json:
        from maestro.timeline import SessionTimeline

        timeline = SessionTimeline.of(session, now)
        ctx.emit_json({"session": session.to_dict(), **timeline.to_dict(), "reruns": reruns})
        return
    from maestro.render import show_view

    view = show_view(
        session, now, width=ctx.out.width, glyphs=ctx.glyphs(), full=full, reruns=reruns
    )
    ctx.out.print(view)


# ---------------------------------------------------------------- list and search


def print_sessions(
    ctx: Context,
    sessions: list[Session],
    total: int | None = None,
    *,
    wide: bool = False,
    footer: bool = True,
) -> None:
    """Sessions as JSON, a table on a terminal, or plain rows in a pipe."""
    if ctx.as_json:
        ctx.emit_json([s.to_dict() for s in sessions])
        return
    if not sessions:
        echo("no sessions match")
        return
    drawn = None if wide else _drawn_without_rich(ctx, sessions)
    if drawn is not None:
        # Written as Rich writes a table: in one piece, then flushed.
        sys.stdout.write(drawn)
        sys.stdout.flush()
    elif ctx.is_terminal():
        from maestro.models import utcnow
        from maestro.render import sessions_table

        out = ctx.out
        if wide:  # a console as wide as the table: Rich never prints beyond its console
            out = _console(stderr=False)
            out.width = _WIDE
        out.print(sessions_table(sessions, utcnow(), width=out.width, glyphs=ctx.glyphs()))
    else:
        from maestro.plain import session_plain_rows

        echo(session_plain_rows(sessions), nl=False)
    if not footer:
        return
    count = len(sessions)
    if total is not None and total > count:
        ctx.footer(f"{count} of {total} sessions (raise --limit to see more)")
    else:
        ctx.footer(f"{count} session{'s' if count != 1 else ''}")


def _drawn_without_rich(ctx: Context, sessions: list[Session]) -> str | None:
    """The table a terminal gets, as Rich would print it, drawn without loading
    Rich (:mod:`maestro.tables`); ``None`` for anything but a plain terminal and
    a table of plain text, which Rich draws."""
    terminal = ctx.terminal()
    if terminal is None:
        return None
    from maestro.cli.terminal import utf
    from maestro.models import utcnow
    from maestro.tables import sessions_text

    return sessions_text(
        sessions,
        utcnow(),
        width=terminal.width,
        ellipsis=utf(terminal.encoding),  # the glyphs: Context.glyphs
        ascii_box=not terminal.encoding.startswith("utf"),  # Rich's box for the encoding
        no_color=terminal.no_color,
    )


def query_and_print(
    ctx: Context, limit: int | None, filters: dict[str, Any], *, wide: bool = False
) -> None:
    """Query, count what a limit left out, print: what ``list`` and ``search`` share."""
    manager = ctx.manager()
    sessions = manager.query_sessions(limit=limit, **filters)
    total = manager.count_sessions(**filters) if limit is not None else None
    print_sessions(ctx, sessions, total, wide=wide)


def list_sessions(
    ctx: Context,
    statuses: Sequence[str] = (),
    phases: Sequence[str] = (),
    branch: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    active: bool = False,
    worktree: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    cursor: str | None = None,
    sort: str = "created",
    wide: bool = False,
) -> None:
    """``maestro list``: a page of sessions, newest first, and a footer about the rest.

    The defaults are those of the command's options.
    """
    filters = filters_of(statuses, phases, branch, since, until, active)
    if worktree is not None:
        filters["worktree"] = worktree
    if cursor is not None and offset:
        raise UsageProblem("--cursor and --offset cannot be combined; use one")
    if limit is None and (cursor is not None or not ctx.as_json):
        limit = LIST_DEFAULT
    manager = ctx.manager()
    next_cursor: str | None = None
    if limit is not None and not offset:
        try:
            page = manager.query_page(limit=limit, order_by=sort, cursor=cursor or None, **filters)
        except errors.SessionValidationError as error:
            if not cursor:
                raise
            raise CommandError(f"--cursor: {error}", EXIT_USAGE) from None
        sessions, next_cursor = page.sessions, page.next_cursor
    else:
        sessions = manager.query_sessions(limit=limit, offset=offset, order_by=sort, **filters)
    if ctx.as_json:
        records = [s.to_dict() for s in sessions]
        if cursor is not None:
            ctx.emit_json({"sessions": records, "next_cursor": next_cursor})
        else:
            ctx.emit_json(records)
        return
    if not sessions:
        echo("no sessions match")
        return
    print_sessions(ctx, sessions, wide=wide, footer=False)
    total = manager.count_sessions(**filters)
    ctx.footer(list_footer(len(sessions), total, offset, limit, cursor, next_cursor))


def list_footer(
    shown: int,
    total: int,
    offset: int,
    limit: int | None,
    cursor: str | None,
    next_cursor: str | None,
) -> str:
    """``list``'s footer: what the page holds, and how to see what it left out."""
    if cursor:  # a later page: where it starts among the matches is not counted
        line = f"{shown} session{'s' if shown != 1 else ''} of {total}"
    elif offset:
        line = f"sessions {offset + 1}-{offset + shown} of {total}"
    elif shown < total:
        line = f"{shown} of {total} sessions"
    else:
        return f"{shown} session{'s' if shown != 1 else ''}"
    if cursor:
        return f"{line}; next page: --cursor {next_cursor}" if next_cursor else line
    more = total - offset - shown
    if more <= 0:
        return line
    if next_cursor is not None:
        return f"{line}; {more} more: --limit {total}, or the next page: --cursor {next_cursor}"
    return f"{line}; {more} more: --offset {offset + shown}, or --limit {total - offset}"
