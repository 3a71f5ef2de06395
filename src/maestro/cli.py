"""The ``maestro`` command: a thin layer over :class:`maestro.SessionManager`.

Each command opens a manager, makes a few library calls and renders the
result: Rich tables for people, ``--json`` for scripts.  Expected errors are
one line on stderr and a distinct exit code, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console

from maestro import errors
from maestro.manager import SessionManager
from maestro.models import Session

__all__ = ["EXIT_CODES", "cli", "main"]

#: Exit codes, documented in ``maestro --help`` and the README.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INVALID_TRANSITION = 4
EXIT_CONFLICT = 5
EXIT_CODES = {
    "ok": EXIT_OK,
    "error": EXIT_ERROR,
    "usage": EXIT_USAGE,
    "not found": EXIT_NOT_FOUND,
    "invalid transition": EXIT_INVALID_TRANSITION,
    "conflict": EXIT_CONFLICT,
}

_EPILOG = """\b
Exit codes: 0 ok, 1 error, 2 usage, 3 session not found,
            4 invalid transition, 5 revision conflict.
"""


@dataclass
class Context:
    """What every command receives: where the store is and how to print."""

    root: Path | None
    as_json: bool
    out: Console
    err: Console

    def manager(self) -> SessionManager:
        return SessionManager(self.root)

    def emit_json(self, payload: Any) -> None:
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _consoles() -> tuple[Console, Console]:
    no_color = bool(os.environ.get("NO_COLOR"))
    out = Console(no_color=no_color, highlight=False, soft_wrap=False)
    err = Console(stderr=True, no_color=no_color, highlight=False)
    return out, err


def _exit_code(error: Exception) -> int:
    if isinstance(error, errors.InvalidSessionIdError):
        return EXIT_USAGE
    if isinstance(error, errors.SessionNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, errors.InvalidTransitionError):
        return EXIT_INVALID_TRANSITION
    if isinstance(error, errors.ConflictError):
        return EXIT_CONFLICT
    return EXIT_ERROR


def _hint(error: Exception) -> str:
    if isinstance(error, errors.InvalidSessionIdError):
        return "copy the id from `maestro list`"
    if isinstance(error, errors.SessionNotFoundError):
        return "see `maestro list` for the sessions under this root (or pass --root)"
    if isinstance(error, errors.ConflictError):
        return "someone else changed it; show it again and retry"
    if isinstance(error, errors.CorruptSessionError):
        return "run `maestro doctor`"
    if isinstance(error, errors.LockTimeoutError):
        return "another process is writing this session; retry"
    return ""


def fail(ctx: Context, error: Exception) -> NoReturn:
    """Print one line for an expected error and exit with its code."""
    hint = _hint(error)
    message = str(error) + (f" ({hint})" if hint else "")
    ctx.err.print(f"[red]error:[/red] {message}", markup=True, highlight=False, soft_wrap=True)
    sys.exit(_exit_code(error))


F = TypeVar("F", bound=Callable[..., Any])


def handled(func: F) -> F:
    """Turn library errors raised by a command into one red line and an exit code."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Context)
        assert ctx is not None
        try:
            return func(*args, **kwargs)
        except errors.SessionError as error:
            fail(ctx, error)
        except OSError as error:
            fail(ctx, error)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper  # type: ignore[return-value]


@click.group(epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MAESTRO_ROOT",
    help="Directory holding .flow/maestro (default: $MAESTRO_ROOT, the git top level, the cwd).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.version_option(package_name="maestro-sessions", prog_name="maestro")
@click.pass_context
def cli(click_ctx: click.Context, root: Path | None, as_json: bool) -> None:
    """Record, query and steer the sessions of the Maestro orchestrator.

    \b
    Example:
      maestro demo
    """
    out, err = _consoles()
    click_ctx.obj = Context(root=root, as_json=as_json, out=out, err=err)


pass_ctx = click.make_pass_decorator(Context)


@cli.command(epilog=_EPILOG)
@pass_ctx
@handled
def demo(ctx: Context) -> None:
    """Walk one session through its whole lifecycle and show it.

    It creates a session under the current root, takes it through planning,
    task generation, implementation (with a pause and a resume), a failed
    validation and the fix, the report and completion, then prints the
    record and its history.

    \b
    Example:
      maestro demo
      maestro --json demo | jq .history
    """
    from maestro.demo import run_demo
    from maestro.render import session_view

    manager = ctx.manager()
    say: Callable[[str], None] = (lambda _: None) if ctx.as_json else ctx.out.print
    session: Session = run_demo(manager, say)
    if ctx.as_json:
        ctx.emit_json(session.to_dict())
        return
    ctx.out.print()
    ctx.out.print(session_view(session))
    ctx.out.print()
    click.echo(f"stored in {manager.sessions_dir / session.session_id / 'metadata.json'}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="maestro")
