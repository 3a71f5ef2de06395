"""Commands over many sessions and the store: stats, stale, gc, export, import, doctor."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from maestro.cli.context import (
    _EPILOG,
    EXIT_USAGE,
    CommandError,
    Context,
    Progress,
    handled,
    pass_ctx,
)
from maestro.cli.group import cli
from maestro.cli.options import STATUSES, TERMINAL, _age_callback, filter_options
from maestro.cli.reading import filters_of
from maestro.models import Session, utcnow
from maestro.textsafe import visible

if TYPE_CHECKING:
    from maestro.reports import ExportResult

# ---------------------------------------------------------------- many sessions


@cli.command(epilog=_EPILOG)
@filter_options
@pass_ctx
@handled
def stats(
    ctx: Context,
    statuses: tuple[str, ...],
    phases: tuple[str, ...],
    branch: str | None,
    since: datetime | None,
    until: datetime | None,
    active: bool,
) -> None:
    """Counts by status, success rate, time per state (median, p90), sessions per branch.

    \b
    Example:
      maestro stats
      maestro stats --since 1w --branch main
    """
    summary = ctx.manager().stats(**filters_of(statuses, phases, branch, since, until, active))
    if ctx.as_json:
        ctx.emit_json(summary.to_dict())
        return
    from maestro.render import stats_view

    ctx.out.print(stats_view(summary, width=ctx.out.width, glyphs=ctx.glyphs()))


def _sessions_brief(
    ctx: Context,
    sessions: Sequence[Session],
    now: datetime,
    last_activity: Mapping[str, datetime] | None = None,
) -> None:
    """A table of sessions with their last activity and timeout (plain rows in a pipe)."""
    if not ctx.is_terminal():
        from maestro.plain import activity_plain_rows

        click.echo(activity_plain_rows(sessions, last_activity=last_activity), nl=False)
        return
    from maestro.render import activity_table

    ctx.out.print(
        activity_table(
            sessions,
            now,
            width=ctx.out.width,
            glyphs=ctx.glyphs(),
            last_activity=last_activity,
        )
    )


@cli.command(epilog=_EPILOG)
@click.option(
    "--older-than",
    metavar="AGE",
    callback=_age_callback,
    help="Idle for longer than this (default: each session's timeout_minutes).",
)
@click.option("--reap", is_flag=True, help='Fail the stale sessions, reason "timed out".')
@pass_ctx
@handled
def stale(ctx: Context, older_than: timedelta | None, reap: bool) -> None:
    """Running sessions without an update or heartbeat for too long.

    A session is stale when its last activity is older than its own
    timeout_minutes, or than --older-than.  Paused sessions never are.
    --reap marks them failed with the reason "timed out".

    \b
    Example:
      maestro stale
      maestro stale --older-than 30m --reap
    """
    manager = ctx.manager()
    idle_since: dict[str, datetime] = {}
    if reap:
        # Reaping is itself activity: the table shows how idle they were before.
        idle_since = {
            s.session_id: s.last_activity for s in manager.find_stale_sessions(older_than)
        }
        sessions = manager.reap_stale_sessions(older_than, reason="timed out")
    else:
        sessions = manager.find_stale_sessions(older_than)
    if ctx.as_json:
        ctx.emit_json([s.to_dict() for s in sessions])
        return
    if not sessions:
        click.echo("no stale sessions")
        return
    _sessions_brief(ctx, sessions, utcnow(), idle_since)
    count = len(sessions)
    noun = f"{count} session{'s' if count != 1 else ''}"
    if reap:
        ctx.footer(f"{noun} failed (timed out)")
    else:
        ctx.footer(f"{noun} stale; `maestro stale --reap` fails them")


@cli.command(epilog=_EPILOG)
@click.option(
    "--older-than",
    metavar="AGE",
    required=True,
    callback=_age_callback,
    help="Last activity older than this: 30d, 2w...",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(STATUSES),
    metavar="STATE",
    help="States to remove (repeatable; default completed and failed).",
)
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@pass_ctx
@handled
def gc(ctx: Context, older_than: timedelta, statuses: tuple[str, ...], dry_run: bool) -> None:
    """Delete old finished sessions (retention), and print what was removed.

    A session changed while gc runs is kept.

    \b
    Example:
      maestro gc --older-than 30d --dry-run
      maestro gc --older-than 30d --status completed --status failed
    """
    with ctx.progress("removing sessions") as progress:
        removed = ctx.manager().gc(
            older_than, status=list(statuses or TERMINAL), dry_run=dry_run, progress=progress
        )
    if ctx.as_json:
        ctx.emit_json({"dry_run": dry_run, "removed": [s.to_dict() for s in removed]})
        return
    if not removed:
        click.echo("nothing to remove")
        return
    _sessions_brief(ctx, removed, utcnow())
    count = len(removed)
    noun = f"{count} session{'s' if count != 1 else ''}"
    ctx.footer(f"would remove {noun} (dry run)" if dry_run else f"removed {noun}")


@cli.command("export", epilog=_EPILOG)
@filter_options
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="PATH",
    help="The archive to write (.tar.gz), or - for standard output.",
)
@click.option("--force", is_flag=True, help="Replace the archive if it exists.")
@pass_ctx
@handled
def export_cmd(
    ctx: Context,
    statuses: tuple[str, ...],
    phases: tuple[str, ...],
    branch: str | None,
    since: datetime | None,
    until: datetime | None,
    active: bool,
    output: str,
    force: bool,
) -> None:
    """Write whole session directories (every file in them) to a .tar.gz.

    Without filters every session is exported.  An existing file is
    replaced only with --force.  With -o - the archive goes to standard
    output (and the summary to standard error).

    \b
    Example:
      maestro export -o sessions.tar.gz
      maestro export --status completed --since 1w -o last-week.tar.gz
      maestro export -o - | ssh backup 'cat > sessions.tar.gz'
    """
    filters = filters_of(statuses, phases, branch, since, until, active)
    to_stdout = output == "-"
    if to_stdout:
        stream = sys.stdout.buffer
        if stream.isatty():
            raise CommandError(
                "will not write a compressed archive to a terminal; "
                "redirect it (-o - > sessions.tar.gz) or give a file name",
                EXIT_USAGE,
            )
    else:
        path = Path(output)
        if path.is_dir():
            raise CommandError(f"{visible(output)} is a directory; give a file name", EXIT_USAGE)
        if (path.exists() or path.is_symlink()) and not force:
            raise CommandError(
                f"{visible(output)} already exists; pass --force to replace it", EXIT_USAGE
            )
        if not output.endswith((".tar.gz", ".tgz")):
            ctx.err.print(
                f"warning: {visible(output)} does not end in .tar.gz or .tgz; "
                "it is a gzip-compressed tar archive all the same",
                soft_wrap=True,
            )
    with ctx.progress("exporting") as progress:
        if to_stdout:
            result = _export_to_stream(ctx, filters, progress)
        else:
            result = ctx.manager().export_sessions(output, progress=progress, **filters)
    if ctx.as_json and not to_stdout:
        ctx.emit_json(result.to_dict())
        return
    where = "standard output" if to_stdout else visible(str(result.path))
    click.echo(
        f"exported {result.sessions} session{'s' if result.sessions != 1 else ''} "
        f"({result.files} files, {result.bytes} bytes) to {where}",
        err=to_stdout,
    )


def _export_to_stream(ctx: Context, filters: dict[str, Any], progress: Progress) -> ExportResult:
    """Export to a private temporary file, then copy it to standard output.

    The store writes an archive whole or not at all, to a path; streaming
    it afterwards keeps that, and a reader never sees a half archive
    followed by an error.
    """
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory(prefix="maestro-export-") as scratch:
        archive = Path(scratch) / "sessions.tar.gz"
        result = ctx.manager().export_sessions(archive, progress=progress, **filters)
        stream = sys.stdout.buffer
        with open(archive, "rb") as handle:
            shutil.copyfileobj(handle, stream)
        stream.flush()
    return result


_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _size_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """An option holding a size: bytes, or a number with k, M, G, T (powers of 1024)."""
    if value is None:
        return None
    text = value.strip().lower().removesuffix("b").removesuffix("i")
    number, unit = text, ""
    if text and text[-1] in _SIZE_UNITS:
        number, unit = text[:-1], text[-1]
    try:
        size = int(float(number) * _SIZE_UNITS[unit])
    except ValueError:
        size = 0
    if size <= 0:
        raise click.BadParameter(
            f"{value!r} is not a size such as 500k, 64M or 1G", ctx=ctx, param=param
        )
    return size


@cli.command("import", epilog=_EPILOG)
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--max-file-size",
    callback=_size_callback,
    envvar="MAESTRO_IMPORT_MAX_FILE_SIZE",
    help="Refuse an archive with a file larger than this [default: 64M; "
    "env MAESTRO_IMPORT_MAX_FILE_SIZE].",
)
@click.option(
    "--max-total-size",
    callback=_size_callback,
    envvar="MAESTRO_IMPORT_MAX_TOTAL_SIZE",
    help="Refuse an archive larger than this uncompressed [default: 1G; "
    "env MAESTRO_IMPORT_MAX_TOTAL_SIZE].",
)
@pass_ctx
@handled
def import_cmd(
    ctx: Context, archive: Path, max_file_size: int | None, max_total_size: int | None
) -> None:
    """Bring in the sessions of an export.

    The whole archive is checked before anything is written (names, sizes,
    clashes with the sessions here); a session already here is replaced
    only by a higher revision, whole, so importing twice changes nothing.

    \b
    Example:
      maestro import sessions.tar.gz
      maestro import --max-file-size 256M --max-total-size 4G big.tar.gz
    """
    with ctx.progress("importing") as progress:
        result = ctx.manager().import_sessions(
            archive,
            max_file_bytes=max_file_size,
            max_total_bytes=max_total_size,
            progress=progress,
        )
    if ctx.as_json:
        ctx.emit_json(result.to_dict())
        return
    click.echo(
        f"imported {visible(archive.name)}: {len(result.created)} created, "
        f"{len(result.updated)} updated, {len(result.unchanged)} unchanged"
    )


@cli.command(epilog=_EPILOG)
@click.option("--reindex", is_flag=True, help="Rebuild the query index.")
@click.option(
    "--fix",
    is_flag=True,
    help="Quarantine corrupt sessions (never deleted), remove leftovers, rebuild the index.",
)
@pass_ctx
@handled
def doctor(ctx: Context, reindex: bool, fix: bool) -> None:
    """Look for corrupt records, leftover temp files and a stale index.

    --fix moves corrupt sessions to .flow/maestro/quarantine/, moves
    sessions left in a linked worktree's own .flow into this store, and
    repairs the index.  Exits 1 while problems remain.

    \b
    Example:
      maestro doctor
      maestro doctor --fix
    """
    manager = ctx.manager()
    with ctx.progress("checking sessions") as progress:
        report = manager.doctor(fix=fix, reindex=reindex, progress=progress)
    after = None
    if fix:
        # The report lists what was found; look again to see what is left.
        with ctx.progress("checking again") as progress:
            after = manager.doctor(progress=progress)
    final = after or report
    if ctx.as_json:
        payload = report.to_dict()
        payload["healthy"] = final.healthy
        payload["remaining"] = after.to_dict() if after is not None else None
        ctx.emit_json(payload)
    else:
        from maestro.render import doctor_view

        ctx.out.print(doctor_view(report, after))
    if not final.healthy:
        raise CommandError(
            "problems remain" + ("" if fix else "; `maestro doctor --fix` repairs them")
        )
