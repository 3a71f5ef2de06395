"""Commands that create and read sessions: create, show, path, rerun, list, search."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from maestro import errors
from maestro.cli.context import (
    _EPILOG,
    _WIDE,
    EXIT_USAGE,
    CommandError,
    Context,
    _console,
    handled,
    pass_ctx,
)
from maestro.cli.group import cli
from maestro.cli.options import (
    _filters,
    _Number,
    _prd,
    filter_options,
    request_id_option,
    session_id_argument,
    wide_option,
)
from maestro.models import Session, utcnow
from maestro.textsafe import visible

# ---------------------------------------------------------------- create and read


@cli.command(epilog=_EPILOG)
@click.argument("feature_request", metavar="REQUEST", required=False)
@click.option(
    "--file",
    "request_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Read REQUEST from this file (REQUEST '-' reads stdin).",
)
@click.option("--max-iterations", type=_Number(minimum=1), metavar="N", help="Default 3.")
@click.option("--timeout-minutes", type=_Number(minimum=1), metavar="N", help="Default 120.")
@click.option("--no-auto-checkpoint", is_flag=True, help="Turn automatic checkpoints off.")
@click.option("--prd", metavar="PATH", help="The PRD of the session (stored as given).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the new id.")
@request_id_option
@pass_ctx
@handled
def create(
    ctx: Context,
    feature_request: str | None,
    request_file: Path | None,
    max_iterations: int | None,
    timeout_minutes: int | None,
    no_auto_checkpoint: bool,
    prd: str | None,
    quiet: bool,
    request_id: str | None,
) -> None:
    """Start a session for REQUEST (in state initializing) and print its id.

    The git branch and commit of the root are recorded with it.  A long
    request can come from a file (--file PATH) or from stdin (REQUEST -);
    its trailing newlines are dropped.

    \b
    Example:
      maestro create "Add OAuth login" --max-iterations 5 --prd docs/prd-oauth.md
      maestro create --quiet "Fix the flaky login test"
      maestro create --quiet --request-id job-4711 "Fix the flaky login test"
      maestro create --file docs/request.md
      maestro create - < request.txt
    """
    feature_request = _request_text(feature_request, request_file)
    configuration: dict[str, Any] = {}
    if max_iterations is not None:
        configuration["max_iterations"] = max_iterations
    if timeout_minutes is not None:
        configuration["timeout_minutes"] = timeout_minutes
    if no_auto_checkpoint:
        configuration["auto_checkpoint"] = False
    session = ctx.manager().create_session(
        feature_request,
        configuration,
        prd_reference=_prd(prd) if prd else None,
        request_id=request_id,
    )
    if ctx.as_json:
        ctx.emit_json(session.to_dict())
    elif quiet:
        click.echo(session.session_id)
    else:
        git = session.git_context
        from maestro.gitctx import DETACHED, describe_branch

        where = describe_branch(git)
        if git.branch != DETACHED:  # "(detached at 3f01b54)" stands alone
            where = f"on branch {where}"
        click.echo(f"created session {session.session_id} {visible(where)}")


def _request_text(argument: str | None, path: Path | None) -> str:
    """The request of ``create``: the argument, stdin for ``-``, or the file."""
    if (argument is None) == (path is None):
        raise click.UsageError("give the request as REQUEST, as - (stdin) or with --file PATH")
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise click.BadParameter("is not UTF-8 text", param_hint="--file") from None
        except OSError as error:
            raise click.BadParameter(
                f"cannot be read ({error.strerror or error})", param_hint="--file"
            ) from None
    elif argument == "-":
        text = sys.stdin.read()
    else:
        return str(argument)
    text = text.rstrip("\r\n")
    if not text.strip():
        raise click.UsageError("the request is empty")
    return text


@cli.command(epilog=_EPILOG)
@session_id_argument
@click.option("--full", is_flag=True, help="Print a long request whole, not folded.")
@pass_ctx
@handled
def show(ctx: Context, session_id: str, full: bool) -> None:
    """Show a session: its record, a timeline of its states, statistics, history.

    The timeline has one row per state over the session's whole life, so
    the order of the phases, loops and paused time are visible, with the
    time spent in each state and its share.

    \b
    Example:
      maestro show 3f01b541
      maestro --json show 3f01b541 | jq .seconds_in_state
      maestro show 3f01b541 --full
    """
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


@cli.command(epilog=_EPILOG)
@session_id_argument
@pass_ctx
@handled
def path(ctx: Context, session_id: str) -> None:
    """Print the directory holding a session's files (metadata.json and the rest).

    Only stores that keep a directory per session have one (not memory:).

    \b
    Example:
      maestro path 3f01b541
      maestro path 3f01b541 --json
    """
    directory = ctx.manager().session_directory(ctx.resolve(session_id))
    if ctx.as_json:
        ctx.emit_json({"path": str(directory)})
    else:
        click.echo(str(directory))


@cli.command(epilog=_EPILOG)
@session_id_argument
@click.option("-q", "--quiet", is_flag=True, help="Print only the new id.")
@request_id_option
@pass_ctx
@handled
def rerun(ctx: Context, session_id: str, quiet: bool, request_id: str | None) -> None:
    """Start a new session with a finished session's request and configuration.

    The new session records the one it runs again (rerun_of), and
    `maestro show` of the finished one lists its reruns; the finished
    session itself is not changed.  Only a completed or failed session
    can be run again.

    \b
    Example:
      maestro rerun 3f01b541
      maestro rerun --quiet 3f01b541
    """
    session = ctx.manager().rerun_session(ctx.resolve(session_id), request_id=request_id)
    if ctx.as_json:
        ctx.emit_json(session.to_dict())
    elif quiet:
        click.echo(session.session_id)
    else:
        from maestro.render import short_id

        assert session.rerun_of is not None
        click.echo(
            f"created session {session.session_id}, a rerun of {short_id(session.rerun_of)}, "
            f"on branch {visible(session.git_context.branch)}"
        )


def _print_sessions(
    ctx: Context,
    sessions: list[Session],
    total: int | None = None,
    *,
    wide: bool = False,
    footer: bool = True,
) -> None:
    if ctx.as_json:
        ctx.emit_json([s.to_dict() for s in sessions])
        return
    if not sessions:
        click.echo("no sessions match")
        return
    if ctx.is_terminal():
        from maestro.render import sessions_table

        out = ctx.out
        if wide:  # a console as wide as the table: Rich never prints beyond its console
            out = _console(stderr=False)
            out.width = _WIDE
        out.print(sessions_table(sessions, utcnow(), width=out.width, glyphs=ctx.glyphs()))
    else:
        from maestro.plain import session_plain_rows

        click.echo(session_plain_rows(sessions), nl=False)
    if not footer:
        return
    count = len(sessions)
    if total is not None and total > count:
        ctx.footer(f"{count} of {total} sessions (raise --limit to see more)")
    else:
        ctx.footer(f"{count} session{'s' if count != 1 else ''}")


def _query_and_print(
    ctx: Context, limit: int | None, filters: dict[str, Any], *, wide: bool = False
) -> None:
    """Query, count what a limit left out, print: what ``list`` and ``search`` share."""
    manager = ctx.manager()
    sessions = manager.query_sessions(limit=limit, **filters)
    total = manager.count_sessions(**filters) if limit is not None else None
    _print_sessions(ctx, sessions, total, wide=wide)


#: How many sessions human ``list`` shows unless --limit says otherwise.
LIST_DEFAULT = 30


@cli.command("list", epilog=_EPILOG)
@filter_options
@click.option(
    "--worktree",
    metavar="NAME",
    help="Only sessions created in this linked worktree (its name, as in `maestro show`).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    metavar="N",
    help=f"At most N sessions [default: {LIST_DEFAULT}; every match with --json].",
)
@click.option(
    "--offset",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Skip the first N matches.",
)
@click.option(
    "--cursor",
    metavar="CURSOR",
    help="Go on after the page this cursor ended (printed below a page); '' starts. "
    "With --json, prints {sessions, next_cursor}.",
)
@click.option(
    "--sort",
    type=click.Choice(["created", "updated"]),
    default="created",
    show_default=True,
    help="Newest first by creation or by last update.",
)
@wide_option
@pass_ctx
@handled
def list_sessions(
    ctx: Context,
    statuses: tuple[str, ...],
    phases: tuple[str, ...],
    branch: str | None,
    since: datetime | None,
    until: datetime | None,
    active: bool,
    worktree: str | None,
    limit: int | None,
    offset: int,
    cursor: str | None,
    sort: str,
    wide: bool,
) -> None:
    """List sessions, newest first: 30 unless --limit (all with --json).

    --since and --until bound the creation time: an age (30m, 2h, 2d, 1w)
    counts back from now, or give an ISO date or time.  Below a page, a
    footer says how many more there are and how to see them (on stderr
    when the output is a pipe).  --cursor pages stay put while sessions
    are created: nothing repeats, nothing older is skipped.

    \b
    Example:
      maestro list --active
      maestro list --status failed --status paused --since 1w
      maestro list --branch main --until 2026-01-31 --limit 20
      maestro list --sort updated --limit 10 --offset 10
      maestro --json list --limit 100 --cursor '' | jq -r .next_cursor
      maestro list --worktree wt-login
    """
    filters = _filters(statuses, phases, branch, since, until, active)
    if worktree is not None:
        filters["worktree"] = worktree
    if cursor is not None and offset:
        raise click.UsageError("--cursor and --offset cannot be combined; use one")
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
        click.echo("no sessions match")
        return
    _print_sessions(ctx, sessions, wide=wide, footer=False)
    total = manager.count_sessions(**filters)
    ctx.footer(_list_footer(len(sessions), total, offset, limit, cursor, next_cursor))


def _list_footer(
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


@cli.command(epilog=_EPILOG)
@click.argument("words", nargs=-1, required=True, metavar="TEXT...")
@filter_options
@click.option("--limit", type=_Number(minimum=1), metavar="N", help="At most N sessions.")
@wide_option
@pass_ctx
@handled
def search(
    ctx: Context,
    words: tuple[str, ...],
    statuses: tuple[str, ...],
    phases: tuple[str, ...],
    branch: str | None,
    since: datetime | None,
    until: datetime | None,
    active: bool,
    limit: int | None,
    wide: bool,
) -> None:
    """Full-text search of the feature requests, best match first.

    Every word must occur (case and accents ignored); a word ending in *
    matches as a prefix.

    \b
    Example:
      maestro search oauth login
      maestro search 'auth*' --status failed
    """
    filters = _filters(statuses, phases, branch, since, until, active)
    text = " ".join(words)
    if not text.strip():
        raise click.UsageError(
            "give at least one word to search for, such as: maestro search oauth"
        )
    _query_and_print(ctx, limit, {**filters, "text": text}, wide=wide)
