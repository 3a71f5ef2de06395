"""Commands that change a session: transition, pause, resume, fail, complete,
update, increment, heartbeat, delete."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

import click

from maestro import errors
from maestro.cli.context import _EPILOG, EXIT_USAGE, CommandError, Context, handled, pass_ctx
from maestro.cli.group import cli
from maestro.cli.options import (
    STATUSES,
    _assignments_callback,
    _complete_target_states,
    _non_empty,
    _Number,
    _prd,
    expected_revision_option,
    request_id_option,
    session_id_argument,
)
from maestro.models import Session, SessionStatistics, SessionStatus
from maestro.textsafe import visible


def _moved(ctx: Context, session: Session) -> None:
    """Report a state change: the record as JSON, or one line."""
    if ctx.as_json:
        ctx.emit_json(session.to_dict())
        return
    from rich.text import Text

    from maestro.render import short_id, status_text

    change = session.history[-1]
    line = Text(f"{short_id(session.session_id)}  ")
    line.append_text(status_text(change.from_status))
    line.append(f" {ctx.glyphs().arrow} ")
    line.append_text(status_text(change.to_status))
    if session.current_phase is not None:
        line.append(f"  phase {session.current_phase.value}")
    if change.reason:
        line.append(f"  ({visible(change.reason)})")
    ctx.out.print(line)


# ---------------------------------------------------------------- the state machine


@cli.command(epilog=_EPILOG)
@session_id_argument
@click.argument(
    "state",
    type=click.Choice(STATUSES),
    metavar="STATE",
    shell_complete=_complete_target_states,
)
@click.option("--reason", callback=_non_empty, help="Why; kept in the history.")
@expected_revision_option
@request_id_option
@pass_ctx
@handled
def transition(
    ctx: Context,
    session_id: str,
    state: str,
    reason: str | None,
    expected_revision: int | None,
    request_id: str | None,
) -> None:
    """Move a session to STATE, if the state machine allows it (else exit 4).

    \b
    initializing → planning → generating_tasks → implementing ⇄ validating
      → generating_report → completed; any active state → paused, failed.

    \b
    Example:
      maestro transition 3f01b541 planning
      maestro transition 3f01b541 implementing --reason "2 tests failed"
    """
    session = ctx.manager().transition_state(
        ctx.resolve(session_id),
        state,
        reason=reason,
        expected_revision=expected_revision,
        request_id=request_id,
    )
    _moved(ctx, session)


@cli.command(epilog=_EPILOG)
@session_id_argument
@click.option("--reason", callback=_non_empty, help="Why; kept in the history.")
@expected_revision_option
@request_id_option
@pass_ctx
@handled
def pause(
    ctx: Context,
    session_id: str,
    reason: str | None,
    expected_revision: int | None,
    request_id: str | None,
) -> None:
    """Pause an active session; `maestro resume` takes it back where it was.

    \b
    Example:
      maestro pause 3f01b541 --reason "waiting for review"
    """
    session = ctx.manager().pause_session(
        ctx.resolve(session_id),
        reason=reason,
        expected_revision=expected_revision,
        request_id=request_id,
    )
    _moved(ctx, session)


@cli.command(epilog=_EPILOG)
@session_id_argument
@click.option("--reason", callback=_non_empty, help="Why; kept in the history.")
@expected_revision_option
@request_id_option
@pass_ctx
@handled
def resume(
    ctx: Context,
    session_id: str,
    reason: str | None,
    expected_revision: int | None,
    request_id: str | None,
) -> None:
    """Resume a paused session in the state it was paused from.

    \b
    Example:
      maestro resume 3f01b541 --reason "review approved"
    """
    session = ctx.manager().resume_session(
        ctx.resolve(session_id),
        reason=reason,
        expected_revision=expected_revision,
        request_id=request_id,
    )
    _moved(ctx, session)


@cli.command("fail", epilog=_EPILOG)
@session_id_argument
@click.option("--reason", required=True, callback=_non_empty, help="Why it failed (required).")
@expected_revision_option
@request_id_option
@pass_ctx
@handled
def fail_session(
    ctx: Context,
    session_id: str,
    reason: str,
    expected_revision: int | None,
    request_id: str | None,
) -> None:
    """Mark a session failed, with the reason.

    \b
    Example:
      maestro fail 3f01b541 --reason "the build is broken upstream"
    """
    session = ctx.manager().transition_state(
        ctx.resolve(session_id),
        SessionStatus.FAILED,
        reason=reason,
        expected_revision=expected_revision,
        request_id=request_id,
    )
    _moved(ctx, session)


@cli.command(epilog=_EPILOG)
@session_id_argument
@click.option("--reason", callback=_non_empty, help="A note kept in the history.")
@expected_revision_option
@request_id_option
@pass_ctx
@handled
def complete(
    ctx: Context,
    session_id: str,
    reason: str | None,
    expected_revision: int | None,
    request_id: str | None,
) -> None:
    """Mark a session completed (from generating_report only, else exit 4).

    \b
    Example:
      maestro complete 3f01b541
    """
    session = ctx.manager().transition_state(
        ctx.resolve(session_id),
        SessionStatus.COMPLETED,
        reason=reason,
        expected_revision=expected_revision,
        request_id=request_id,
    )
    _moved(ctx, session)


# ---------------------------------------------------------------- other changes


@cli.command(epilog=_EPILOG)
@session_id_argument
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_assignments_callback,
    help="A field to change (repeatable); dots reach nested fields.",
)
@click.option("--prd", metavar="PATH", help="Set the PRD (file name = its base name).")
@click.option(
    "--reason",
    callback=_non_empty,
    help="Kept in the history when --set status=... changes the state.",
)
@expected_revision_option
@request_id_option
@pass_ctx
@handled
def update(
    ctx: Context,
    session_id: str,
    assignments: dict[str, Any],
    prd: str | None,
    reason: str | None,
    expected_revision: int | None,
    request_id: str | None,
) -> None:
    """Change fields of a session in one atomic write.

    VALUE is read as JSON when it parses (10, true, null, {"a": 1}) and
    as text otherwise; quote a number to store it as text ('"42"').
    Nested objects merge: statistics.total_tasks=10 keeps the other
    counters.  Fields: feature_request, status, current_phase,
    statistics.*, configuration.*, git_context.*, prd_reference.*.

    \b
    Example:
      maestro update 3f01b541 --set statistics.total_tasks=10 --set configuration.max_iterations=5
      maestro update 3f01b541 --set feature_request="Add OAuth and SAML login"
      maestro update 3f01b541 --prd docs/prd-oauth-v2.md
    """
    updates: dict[str, Any] = dict(assignments)
    if prd is not None:
        if "prd_reference" in updates:
            raise click.UsageError("give the PRD with --prd or --set prd_reference..., not both")
        updates["prd_reference"] = _prd(prd)
    if not updates:
        raise click.UsageError("nothing to change: give --set KEY=VALUE or --prd PATH")
    session = ctx.manager().update_session(
        ctx.resolve(session_id),
        updates,
        expected_revision=expected_revision,
        reason=reason,
        request_id=request_id,
    )
    if ctx.as_json:
        ctx.emit_json(session.to_dict())
        return
    from maestro.render import short_id

    changed = visible(", ".join(_leaves(updates)))
    click.echo(f"{short_id(session.session_id)}  updated {changed}  (revision {session.revision})")


def _leaves(updates: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in updates.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


@cli.command(epilog=_EPILOG, context_settings={"ignore_unknown_options": True})
@session_id_argument
@click.argument("counter", type=click.Choice(SessionStatistics.COUNTERS), metavar="COUNTER")
@click.argument("amount", type=_Number(), default=1, required=False, metavar="[N]")
@expected_revision_option
@request_id_option
@pass_ctx
@handled
def increment(
    ctx: Context,
    session_id: str,
    counter: str,
    amount: int,
    expected_revision: int | None,
    request_id: str | None,
) -> None:
    """Add N (default 1, may be negative) to a statistics counter, atomically.

    COUNTER: total_tasks, completed_tasks, failed_tasks, decisions_made,
    checkpoints_created, error_recovery_count.

    \b
    Example:
      maestro increment 3f01b541 completed_tasks
      maestro increment 3f01b541 failed_tasks -1
    """
    deltas: dict[str, Any] = {counter: amount}
    session = ctx.manager().increment_statistics(
        ctx.resolve(session_id),
        expected_revision=expected_revision,
        request_id=request_id,
        **deltas,
    )
    if ctx.as_json:
        ctx.emit_json(session.to_dict())
        return
    from maestro.render import short_id

    value = getattr(session.statistics, counter)
    click.echo(f"{short_id(session.session_id)}  {counter} {value} ({amount:+d})")


@cli.command(epilog=_EPILOG)
@session_id_argument
@request_id_option
@pass_ctx
@handled
def heartbeat(ctx: Context, session_id: str, request_id: str | None) -> None:
    """Record that the worker driving a session is alive (keeps it from going stale).

    \b
    Example:
      maestro heartbeat 3f01b541
      maestro --json heartbeat 3f01b541 | jq .heartbeat_at
    """
    session = ctx.manager().heartbeat(ctx.resolve(session_id), request_id=request_id)
    if ctx.as_json:
        ctx.emit_json(session.to_dict())
        return
    from maestro.render import short_id

    assert session.heartbeat_at is not None
    click.echo(
        f"{short_id(session.session_id)}  heartbeat at "
        f"{session.heartbeat_at.strftime('%Y-%m-%d %H:%M:%S')} UTC"
    )


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


@cli.command(epilog=_EPILOG)
@session_id_argument
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@expected_revision_option
@request_id_option
@pass_ctx
@handled
def delete(
    ctx: Context,
    session_id: str,
    yes: bool,
    expected_revision: int | None,
    request_id: str | None,
) -> None:
    """Delete a session's directory and every file in it.

    Asks for confirmation on a terminal; without one (scripts, pipes)
    --yes is required.  With --request-id, deleting a session that is
    already gone succeeds (give the full id: a prefix of a deleted
    session matches nothing).

    \b
    Example:
      maestro delete 3f01b541
      maestro delete 3f01b541 --yes
    """
    manager = ctx.manager()
    sid = ctx.resolve(session_id)
    if not yes:
        if not _stdin_is_tty():
            raise CommandError(
                f"refusing to delete session {sid} without confirmation: stdin is not "
                "a terminal; pass --yes",
                EXIT_USAGE,
            )
        try:
            session: Session | None = manager.get_session(sid)
        except errors.SessionNotFoundError:
            if request_id is None:
                raise
            session = None  # a retried delete: nothing is left to confirm
        if session is not None:
            request = " ".join(session.feature_request.split())
            if len(request) > 50:
                request = request[:47] + "..."
            if not click.confirm(
                f"delete session {sid} ({session.status.value}, '{visible(request)}') "
                "and all its files?",
                default=False,
                err=True,
            ):
                raise CommandError("not confirmed; nothing was deleted")
            if expected_revision is None:
                expected_revision = session.revision  # delete what was shown, nothing newer
    manager.delete_session(sid, expected_revision=expected_revision, request_id=request_id)
    if ctx.as_json:
        ctx.emit_json({"deleted": sid})
    else:
        click.echo(f"deleted session {sid}")
