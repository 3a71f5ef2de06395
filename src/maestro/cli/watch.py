"""``maestro watch``: the changes to the sessions as they are committed."""

from __future__ import annotations

import json
import sys
from datetime import UTC

import click

from maestro import ChangeEvent, ChangeKind
from maestro.cli.context import (
    _EPILOG,
    EXIT_ERROR,
    EXIT_OK,
    CommandError,
    Context,
    handled,
    pass_ctx,
)
from maestro.cli.group import cli
from maestro.cli.options import PHASES, STATUSES, TERMINAL, _complete_session_ids, _Number
from maestro.models import SessionStatus
from maestro.textsafe import json_text, visible


def _event_line(event: ChangeEvent, arrow: str) -> str:
    """One readable line of ``maestro watch``: time, kind, short id, from -> to, revision."""
    moment = event.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if event.kind is ChangeKind.RESET:
        return (
            f"{moment}  {'reset':<12}  the events after the cursor are no longer kept;"
            f" re-read what you need (continuing at {event.cursor})"
        )
    before = event.from_status or "(new)"
    after = event.to_status or "(deleted)"
    move = after if before == after else f"{before} {arrow} {after}"
    line = f"{moment}  {event.kind.value:<12}  {(event.session_id or '')[:8]}  {move}"
    if event.revision is not None:
        line += f"  rev {event.revision}"
    if event.request_id is not None:
        line += f"  request {visible(event.request_id)}"
    return line


@cli.command(epilog=_EPILOG)
@click.argument("session_id", required=False, metavar="[ID]", shell_complete=_complete_session_ids)
@click.option(
    "--since",
    metavar="CURSOR",
    help="Start after this cursor (an event's, from --json) instead of now.",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES),
    metavar="STATE",
    help="Only changes that leave a session in this state (repeatable).",
)
@click.option(
    "--phase",
    "phases",
    multiple=True,
    type=click.Choice(PHASES),
    metavar="PHASE",
    help="Only changes to sessions in this phase when the change is read (repeatable).",
)
@click.option("--branch", help="Only changes to sessions created on this git branch.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--timeout",
    type=_Number(minimum=0, whole=False),
    metavar="SECONDS",
    help="Stop after this long (default: never).",
)
@click.option(
    "--exec",
    "command",
    metavar="CMD",
    help="Run CMD once per change, the change as JSON on stdin; a failing CMD is "
    "reported and watching goes on.",
)
@pass_ctx
@handled
def watch(
    ctx: Context,
    session_id: str | None,
    since: str | None,
    statuses: tuple[str, ...],
    phases: tuple[str, ...],
    branch: str | None,
    as_json: bool,
    timeout: float | None,
    command: str | None = None,
) -> None:
    """Follow the changes to the sessions as they are committed, one line each.

    Each line: time, kind (created, updated, transitioned, paused, resumed,
    heartbeat, incremented, deleted, replaced, reset), session, the state
    before and after, the revision and the request id.  --json prints each
    change as one JSON object per line, with its cursor: pass it to --since
    to go on after it later.  Ctrl-C stops (exit 0).

    --phase and --branch keep the changes of the sessions that match, as
    each session is when its change is read; a session that stops matching
    (or is deleted) shows one more change.

    With ID, only that session is followed, until it ends: exit 0 when it
    completes, 1 when it fails or is deleted (at once if it already has).

    --exec CMD runs CMD (split like a shell does, run without one) for each
    change shown, after its line, one at a time: the change's JSON object on
    its stdin, MAESTRO_EVENT_KIND, MAESTRO_SESSION_ID and
    MAESTRO_EVENT_CURSOR in its environment.  A CMD that fails is reported
    on stderr and the watch goes on.

    \b
    Example:
      maestro watch
      maestro watch 3f01b5 && echo done
      maestro watch --json --status failed | jq -r .session_id
      maestro watch --branch main --phase implement
      maestro watch --status failed --exec ./notify-failure.sh
    """
    react = None
    if command is not None:
        from maestro.cli.watch_exec import EventCommand

        react = EventCommand(command)
    manager = ctx.manager()
    as_json = as_json or ctx.as_json
    sid = ctx.resolve(session_id) if session_id is not None else None
    arrow = "->" if as_json else ctx.glyphs().arrow

    def show(event: ChangeEvent) -> None:
        if statuses and event.to_status not in statuses and event.kind is not ChangeKind.RESET:
            return
        if as_json:
            click.echo(json_text(json.dumps(event.to_dict(), ensure_ascii=False)))
        else:
            click.echo(_event_line(event, arrow))
        if react is not None:
            react(event)

    def follow(cursor: str | None, *, wait: bool) -> str | None:
        """Show the events after ``cursor``; exit when the watched session ends."""
        events = manager.changes(
            cursor,
            follow=wait,
            timeout=timeout,
            session_id=sid,
            status=None if sid is not None or not statuses else list(statuses),
            phase=list(phases) or None,
            branch=branch,
        )
        try:
            for event in events:
                cursor = event.cursor
                show(event)
                if sid is None:
                    continue
                if event.kind is ChangeKind.RESET:
                    # Changes to the session may be among those gone: look at it.
                    _exit_if_ended(manager.get_session(sid).status)
                elif event.kind is ChangeKind.DELETED:
                    raise CommandError(f"session {sid} was deleted")
                elif event.to_status in TERMINAL:
                    _exit_if_ended(SessionStatus(event.to_status))
        finally:
            events.close()
        return cursor

    try:
        # The end is taken before the session is looked at: a change made
        # in between is then read, not missed.
        cursor: str | None = since if since is not None else manager.changes_cursor()
        if sid is not None:
            if since is not None:
                cursor = follow(since, wait=False)  # what was missed first
            _exit_if_ended(manager.get_session(sid).status)
        follow(cursor, wait=True)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a watch ends: exit 0
    if sid is not None:
        raise CommandError(f"session {sid} has not ended after {timeout or 0:g} s")


def _exit_if_ended(status: SessionStatus) -> None:
    """Exit as ``gh run watch --exit-status`` does once a session has ended."""
    if status is SessionStatus.COMPLETED:
        sys.exit(EXIT_OK)
    if status is SessionStatus.FAILED:
        sys.exit(EXIT_ERROR)
