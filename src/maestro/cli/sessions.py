"""Commands that create and read sessions: create, show, path, rerun, list, search."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from maestro.cli.context import (
    _EPILOG,
    Context,
    handled,
    pass_ctx,
)
from maestro.cli.group import cli
from maestro.cli.options import (
    _Number,
    _prd,
    filter_options,
    request_id_option,
    session_id_argument,
    wide_option,
)
from maestro.cli.reading import (
    LIST_DEFAULT,
    filters_of,
    list_sessions,
    query_and_print,
    show_session,
)
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
    show_session(ctx, session_id, full)


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
def list_command(
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
    list_sessions(
        ctx,
        statuses,
        phases,
        branch,
        since,
        until,
        active,
        worktree,
        limit,
        offset,
        cursor,
        sort,
        wide,
    )


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
    filters = filters_of(statuses, phases, branch, since, until, active)
    text = " ".join(words)
    if not text.strip():
        raise click.UsageError(
            "give at least one word to search for, such as: maestro search oauth"
        )
    query_and_print(ctx, limit, {**filters, "text": text}, wide=wide)
