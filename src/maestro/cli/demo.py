"""``maestro demo``: one session through its whole lifecycle, in a store of its own."""

from __future__ import annotations

from pathlib import Path

import click

from maestro.cli.context import _EPILOG, Context, _open_manager, handled, pass_ctx
from maestro.cli.group import cli
from maestro.models import Session
from maestro.textsafe import visible


@cli.command(epilog=_EPILOG)
@pass_ctx
@handled
def demo(ctx: Context) -> None:
    """Walk one session through its whole lifecycle and show it.

    It creates a session in a new temporary store (with --root, --store or
    MAESTRO_ROOT: in the store chosen), takes it through planning,
    task generation, implementation (with a pause and a resume), a failed
    validation and the fix, the report and completion, then shows it as
    `maestro show` does.  Its clock plays about two and a half hours of work
    in a moment, so that the timeline has something to show.

    \b
    Example:
      maestro demo
      maestro --json demo | jq .history
    """
    from rich.text import Text

    from maestro.demo import demo_clock, run_demo
    from maestro.render import show_view

    clock = demo_clock()
    scratch: Path | None = None
    if ctx.root is None and ctx.store is None:
        # The demo's sessions are invented and backdated: they have no place
        # among the user's real ones unless the user says so.
        import tempfile

        from maestro.gitctx import capture_git_context
        from maestro.manager import resolve_root

        scratch = Path(tempfile.mkdtemp(prefix="maestro-demo-"))
        manager = _open_manager(scratch, None, clock=clock)
        # Shown as if recorded where it was run: the repository the user is in.
        git_context = capture_git_context(resolve_root())
        where = f"demo store: {visible(str(scratch))} (pass --root to keep the demo elsewhere)"
        click.echo(where, err=ctx.as_json)
    else:
        manager = ctx.open_manager(clock=clock)
        git_context = None

    def say(line: str) -> None:
        if not ctx.as_json:  # Text, not markup: the line holds the branch name
            ctx.out.print(Text(visible(line)))

    session: Session = run_demo(manager, say, pace=clock.advance, git_context=git_context)
    if ctx.as_json:
        ctx.emit_json(session.to_dict())
        return
    ctx.out.print()
    ctx.out.print(show_view(session, clock.now, width=ctx.out.width, glyphs=ctx.glyphs()))
    ctx.out.print()
    stored = manager.sessions_dir / session.session_id / "metadata.json"
    if stored.is_file():  # a file store; a database keeps the record in its rows
        click.echo(f"stored in {visible(str(stored))}")
    again = f"--root {_shell_word(str(scratch))} " if scratch is not None else ""
    click.echo(f"see it again with: maestro {again}show {session.session_id[:8]}")


def _shell_word(text: str) -> str:
    import shlex

    return visible(shlex.quote(text))
