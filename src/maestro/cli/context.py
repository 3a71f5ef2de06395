"""What every command receives, and how it reports: the context, output, errors.

Rich is imported only when something is drawn, :mod:`logging` only when the
library has something to say, and Click only by the Click side of a command
(:func:`handled`, :func:`pass_ctx`): the commands :mod:`maestro.cli.direct`
runs without Click use the rest of this module as the Click commands do.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from maestro import errors
from maestro.textsafe import json_text, visible

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any, NoReturn, TypeVar

    from rich.console import Console

    from maestro.cli.terminal import Terminal
    from maestro.manager import SessionManager
    from maestro.render import Glyphs

    F = TypeVar("F", bound=Callable[..., Any])
    R = TypeVar("R")

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


Progress = Callable[[int, int], None]


def echo(message: str, *, err: bool = False, nl: bool = True) -> None:
    """``click.echo(message, err=err, nl=nl)``, without loading Click where it would
    write the same bytes.

    Click writes a string to a text stream as it is (and flushes), unless the
    stream's encoding is ASCII (it writes UTF-8 to the bytes beneath instead)
    or the text holds an escape sequence and the stream is not a terminal (it
    strips it).  Those cases, and any stream not a plain text file, go to
    Click itself.
    """
    stream = sys.stderr if err else sys.stdout
    text = message + "\n" if nl else message
    if "\x1b" not in text and _written_as_is(stream):
        if text:
            stream.write(text)
        stream.flush()
        return
    import click

    click.echo(message, err=err, nl=nl)


def _written_as_is(stream: object) -> bool:
    """Whether Click's echo writes a string to ``stream`` unchanged."""
    if not isinstance(stream, io.TextIOWrapper) or sys.platform == "win32":
        return False
    if stream.errors is None:
        return False
    import codecs

    try:
        return codecs.lookup(stream.encoding).name != "ascii"
    except LookupError:
        return False


def _no_progress(done: int, total: int) -> None:
    return None


#: The width --wide draws tables at: every cell whole.
_WIDE = 100_000


class CommandError(Exception):
    """An expected failure the command line detects itself (not the library)."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    no_color = bool(os.environ.get("NO_COLOR"))
    options: dict[str, Any] = {}
    force_tty = os.environ.get("MAESTRO_FORCE_TTY", "").strip()
    if force_tty:
        # Like GH_FORCE_TTY: tables as on a terminal, a number of 20 or more gives
        # the columns (1 or yes just turns it on); colours only if FORCE_COLOR asks.
        options["force_terminal"] = True
        if not os.environ.get("FORCE_COLOR"):
            options["color_system"] = None
        if force_tty.isdigit() and int(force_tty) >= 20:
            options["width"] = int(force_tty)
    return Console(
        stderr=stderr,
        no_color=no_color or None,
        highlight=False,
        emoji=False,
        soft_wrap=False,
        **options,
    )


class Context:
    """What every command receives: where the store is and how to print."""

    def __init__(
        self,
        root: Path | None,
        as_json: bool,
        store: str | None = None,
        json_fields: tuple[str, ...] | None = None,
        all_projects: bool = False,
    ) -> None:
        self.root = root
        self.as_json = as_json
        self.store = store
        #: The fields ``--json=a,b`` selected; ``None`` prints every field.
        self.json_fields = json_fields
        #: ``--all-projects``: every project's sessions of a shared store.
        self.all_projects = all_projects
        #: The command as its help names it (``maestro show``); ``None``: Click's context says.
        self.command: str | None = None
        self._manager: SessionManager | None = None
        self._out: Console | None = None
        self._err: Console | None = None

    def __repr__(self) -> str:
        return (
            f"Context(root={self.root!r}, as_json={self.as_json!r}, store={self.store!r}, "
            f"json_fields={self.json_fields!r}, all_projects={self.all_projects!r})"
        )

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = _console(stderr=False)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = _console(stderr=True)
        return self._err

    def manager(self) -> SessionManager:
        if self._manager is None:
            self._manager = self.open_manager()
        return self._manager

    def open_manager(self, **options: Any) -> SessionManager:
        """A new manager on the chosen store: ``--store`` wins over ``--root``."""
        if self.store is None and self.root is not None and not self.root.is_dir():
            # Also for a --root given after the command's name.
            raise CommandError(f"--root {self.root}: no such directory", EXIT_USAGE)
        if self.all_projects:
            options.setdefault("all_projects", True)
        return _open_manager(self.root, self.store, **options)

    def resolve(self, prefix: str) -> str:
        """The full id of the session ``prefix`` names (a unique prefix of 6+ characters)."""
        try:
            return self.manager().resolve_session_id(prefix.strip().lower())
        except errors.AmbiguousSessionIdError as error:
            raise CommandError(str(error), EXIT_USAGE) from None

    def emit_json(self, payload: Any) -> None:
        if self.json_fields is not None:
            from maestro.cli.fields import _select_fields

            payload = _select_fields(payload, self.json_fields)
        # Exact strings, but DEL, C1 and bidi controls escaped like C0 ones.
        echo(json_text(json.dumps(payload, indent=2, ensure_ascii=False)))

    def footer(self, line: str) -> None:
        """A line about a table: below it on a terminal, on stderr in a pipe
        (so that the rows a script reads are rows only)."""
        echo(line, err=not self.is_terminal())

    def command_path(self) -> str:
        """The command being run, as its help names it: ``maestro show``."""
        if self.command is None:
            import click

            below = click.get_current_context().command_path.split()[1:]
            return " ".join(["maestro", *below])
        return self.command

    def is_terminal(self, *, stderr: bool = False) -> bool:
        """``out.is_terminal`` (or ``err``'s), without loading Rich for a plain pipe
        or a plain terminal.

        Rich is asked only when the environment may force a terminal or refuse
        one (``MAESTRO_FORCE_TTY``, ``FORCE_COLOR``, ``TTY_COMPATIBLE``...) or
        Rich has its own way of telling (see :mod:`maestro.cli.terminal`).
        """
        console = self._err if stderr else self._out
        if console is None:
            from maestro.cli.terminal import FORCING, is_terminal

            stream = sys.stderr if stderr else sys.stdout
            known = is_terminal(stream)
            if known is not None:
                return known
            forced = any(name in os.environ for name in FORCING)
            try:
                if not forced and not stream.isatty():
                    return False
            except (AttributeError, ValueError):
                return False  # no stream, or a closed one: Rich says no terminal too
            console = self.err if stderr else self.out
        return console.is_terminal

    def terminal(self) -> Terminal | None:
        """stdout as its console would see it, learnt without loading Rich; ``None``
        where it is no terminal, only Rich can tell, or the console is made already."""
        if self._out is not None:
            return None
        from maestro.cli.terminal import stdout_terminal

        return stdout_terminal()

    def glyphs(self) -> Glyphs:
        from maestro.cli.terminal import utf
        from maestro.render import ASCII_GLYPHS, UNICODE_GLYPHS

        return UNICODE_GLYPHS if utf(self.out.encoding or "") else ASCII_GLYPHS

    @contextmanager
    def progress(self, label: str) -> Iterator[Progress]:
        """A progress callback: a bar on stderr when it is a terminal, else nothing."""
        if not self.is_terminal(stderr=True):
            yield _no_progress
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as Bar

        with Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.err,
            transient=False,
        ) as bar:
            task = bar.add_task(label, total=None)

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total or None)

            yield update


# ---------------------------------------------------------------- errors


def _exit_code(error: Exception) -> int:
    if isinstance(error, CommandError):
        return error.code
    if isinstance(error, errors.InvalidSessionIdError):
        return EXIT_USAGE
    if isinstance(error, errors.SessionNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, errors.InvalidTransitionError):
        return EXIT_INVALID_TRANSITION
    if isinstance(error, errors.ConflictError):
        return EXIT_CONFLICT
    return EXIT_ERROR


def _hint(error: Exception, ctx: Context) -> str:
    """What to do about ``error``, when its message does not say it already."""
    if isinstance(error, errors.InvalidSessionIdError):
        return "give a full id or a unique prefix of 6+ characters, see `maestro list`"
    if isinstance(error, errors.SessionNotFoundError):
        root = ctx.manager().repo_root
        return f"see `maestro list` for the sessions under {root}, or pass --root"
    if isinstance(error, errors.CorruptSessionError):
        return "run `maestro doctor --fix` to quarantine it"
    if isinstance(error, errors.UnsafePathError):
        # Without a session the store itself is linked: the message says what to do.
        return "run `maestro doctor --fix`" if error.session_id else ""
    if isinstance(error, errors.LockTimeoutError):
        return "retry in a moment"
    if isinstance(error, errors.StoreUnavailableError):
        return _STORE_HINTS.get(error.reason, "")
    if isinstance(error, errors.InvalidTransitionError | errors.ConflictError | CommandError):
        return ""
    if isinstance(error, errors.SessionValidationError):
        return f"see `{ctx.command_path()} --help`"
    if isinstance(error, OSError):
        return "check the path, free space and permissions"
    return ""


#: What to do when the store's server cannot be used, by ``StoreUnavailableError.reason``.
_STORE_HINTS = {
    "unreachable": "check the host and port of --store or MAESTRO_STORE, and that the server runs",
    "authentication": "check the user and password of --store or MAESTRO_STORE",
    "missing_database": "create it with createdb, or name another in --store or MAESTRO_STORE",
    "schema_too_new": "this maestro is older than the database's schema: upgrade maestro",
    "pool_exhausted": "retry in a moment",
}


def fail(ctx: Context, error: Exception) -> NoReturn:
    """Print one line for an expected error and exit with its code."""
    from rich.text import Text

    message = " ".join(str(error).split()) or type(error).__name__
    hint = _hint(error, ctx)
    if hint:
        message += f" ({hint})"
    if ctx.as_json:
        code = _exit_code(error)
        kind = type(error).__name__
        _json_error(
            "UsageError" if code == EXIT_USAGE and kind == "CommandError" else kind, message, code
        )
        sys.exit(_exit_code(error))
    message = visible(message)  # it may name a path or echo an argument
    ctx.err.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    sys.exit(_exit_code(error))


def _json_error(kind: str, message: str, code: int) -> None:
    """An error as scripts read it under --json: one JSON object on stderr."""
    payload = {"error": {"type": kind, "message": message, "exit_code": code}}
    echo(json_text(json.dumps(payload, ensure_ascii=False)), err=True)


@contextmanager
def _long_work_bar(ctx: Context) -> Iterator[None]:
    """A progress bar for long work the library reports inside a command.

    The first query on a large store without an index reads every record;
    on a terminal that shows as a bar on stderr, drawn from the first report
    on (a quick command draws nothing and loads no Rich for it).
    """
    from maestro.progress import reporting

    with ExitStack() as bars:
        update: Progress | None = None
        quiet = False

        def report(done: int, total: int) -> None:
            nonlocal update, quiet
            if quiet:
                return
            if update is None:
                if not ctx.is_terminal(stderr=True):
                    quiet = True
                    return
                update = bars.enter_context(ctx.progress("indexing sessions"))
            update(done, total)

        with reporting(report):
            yield


def run_handled(ctx: Context, func: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Run a command's work, expected errors turned into one red line and an exit code.

    Both sides of a command run it through here: :func:`handled` for Click,
    :mod:`maestro.cli.direct` without it.
    """
    try:
        with _long_work_bar(ctx):
            return func(*args, **kwargs)
    except BrokenPipeError:
        raise  # the reader went away (`maestro list | head`): the caller exits quietly
    except (errors.SessionError, CommandError, OSError) as error:
        fail(ctx, error)


class UsageProblem(Exception):
    """Arguments that cannot go together, found by a command's own code.

    Raised before the command reads or prints anything; the Click side
    reports it as Click reports a usage error (:func:`handled`).
    """


def handled(func: F) -> F:
    """Turn expected errors raised by a command into one red line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import click

        ctx = click.get_current_context().find_object(Context)
        assert ctx is not None
        try:
            return run_handled(ctx, func, *args, **kwargs)
        except UsageProblem as problem:
            raise click.UsageError(str(problem)) from None

    return wrapper  # type: ignore[return-value]


def pass_ctx(func: Callable[..., R]) -> Callable[..., R]:
    """Click's ``pass_obj`` for the :class:`Context` (Click loads with the command's module)."""
    import click

    return click.make_pass_decorator(Context)(func)


def _stderr_handler_class() -> type[logging.Handler]:
    """The handler class, defined once :mod:`logging` is loaded (most commands never load it)."""
    global _HANDLER_CLASS
    if _HANDLER_CLASS is not None:
        return _HANDLER_CLASS
    import logging

    class StderrHandler(logging.Handler):
        """Library warnings (skipped unreadable sessions...) as ``warning:`` lines on stderr.

        A warning repeated within one command (a query may meet the same broken
        session twice) is printed once.
        """

        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.seen: set[str] = set()

        def emit(self, record: logging.LogRecord) -> None:
            message = visible(" ".join(self.format(record).split()))
            if message not in self.seen:
                self.seen.add(message)
                echo(f"warning: {message}", err=True)

    _HANDLER_CLASS = StderrHandler
    return StderrHandler


_HANDLER_CLASS: type[logging.Handler] | None = None


def _install_log_handler() -> None:
    """Print the library's warnings on stderr: now if :mod:`logging` is loaded, else
    when a first message loads it."""
    from maestro.lazylog import when_loaded

    when_loaded("maestro.cli", _add_log_handler)


def _add_log_handler() -> None:
    import logging

    handler_class = _stderr_handler_class()
    log = logging.getLogger("maestro")
    for handler in log.handlers:
        if isinstance(handler, handler_class):
            handler.seen.clear()  # type: ignore[attr-defined]
            return
    log.addHandler(handler_class())


def _open_manager(root: Path | None, store: str | None, **options: Any) -> SessionManager:
    from maestro.manager import SessionManager

    # A store URL says where the sessions are; --root then plays no part.
    if store:
        return SessionManager(store=store, **options)
    return SessionManager(root, **options)
