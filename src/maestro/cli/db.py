"""``maestro db``: the database schema of a store that has one (PostgreSQL)."""

from __future__ import annotations

import click

from maestro.cli.context import _EPILOG, Context, handled, pass_ctx
from maestro.cli.group import cli


@cli.group(epilog=_EPILOG)
def db() -> None:
    """The database schema of a database store (PostgreSQL).

    \b
    Example:
      maestro --store postgresql://maestro@db.internal/maestro db upgrade
    """


@db.command(epilog=_EPILOG)
@pass_ctx
@handled
def upgrade(ctx: Context) -> None:
    """Bring the store's database schema up to date.

    Applies the numbered schema steps the database lacks, each in one
    transaction, under a lock: workers starting at once wait, then find the
    work done.  Opening a store does the same on first use; this command
    does it ahead of time and says what it found.  A database newer than
    this maestro is refused.

    \b
    Example:
      maestro --store postgresql://maestro@db.internal/maestro db upgrade
      maestro --store postgresql://maestro@db.internal/maestro --json db upgrade
    """
    from maestro import Capability

    manager = ctx.manager()
    if Capability.MIGRATIONS not in manager.store.capabilities:
        # Nothing to do: records of older versions are migrated as they are read.
        if ctx.as_json:
            ctx.emit_json({"found": None, "version": None, "upgraded": False})
        else:
            click.echo(f"nothing to upgrade: the {manager.store.display_name} has no schema")
        return
    found, now = manager.upgrade_schema()
    if ctx.as_json:
        ctx.emit_json({"found": found, "version": now, "upgraded": found != now})
    elif found == now:
        click.echo(f"schema up to date (version {now})")
    else:
        click.echo(f"schema upgraded from version {found} to {now}")
