"""The ``maestro`` command: a thin layer over :class:`maestro.SessionManager`.

Each command opens a manager, makes a few library calls and renders the
result: Rich tables for people, ``--json`` for scripts.  Expected errors are
one line on stderr and a distinct exit code, never a traceback.  Rich is
imported only when something is drawn, so ``--help`` and shell completion
start quickly.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from maestro import ChangeEvent, ChangeKind, errors
from maestro.ages import parse_age
from maestro.gitctx import DETACHED, describe_branch
from maestro.lifecycle import ACTIVE_STATES
from maestro.manager import SessionManager
from maestro.models import (
    KNOWN_FIELDS,
    TERMINAL_STATES,
    PRDReference,
    Session,
    SessionPhase,
    SessionStatistics,
    SessionStatus,
    parse_timestamp,
    utcnow,
)
from maestro.textsafe import json_text, visible

if TYPE_CHECKING:
    import logging

    from click.shell_completion import CompletionItem
    from rich.console import Console

    from maestro.render import Glyphs
    from maestro.reports import ExportResult

__all__ = ["EXIT_CODES", "CommandError", "cli", "main", "parse_age", "parse_assignments"]

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

_MAIN_EPILOG = (
    _EPILOG
    + """
\b
IDs: a full session id, or a unique prefix of 6 or more characters.
Ages: 30m, 2h, 2d, 1w; dates: 2026-01-07 or 2026-01-07T13:00:00+02:00.
\b
Shell completion (commands, options, states, session ids):
  bash  eval "$(_MAESTRO_COMPLETE=bash_source maestro)"    in ~/.bashrc
  zsh   eval "$(_MAESTRO_COMPLETE=zsh_source maestro)"     in ~/.zshrc
  fish  _MAESTRO_COMPLETE=fish_source maestro | source     in
        ~/.config/fish/completions/maestro.fish
"""
)

STATUSES = [s.value for s in SessionStatus]
PHASES = [p.value for p in SessionPhase]
TERMINAL = sorted(s.value for s in TERMINAL_STATES)

Progress = Callable[[int, int], None]


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


@dataclass
class Context:
    """What every command receives: where the store is and how to print."""

    root: Path | None
    as_json: bool
    store: str | None = None
    #: The fields ``--json=a,b`` selected; ``None`` prints every field.
    json_fields: tuple[str, ...] | None = None
    #: ``--all-projects``: every project's sessions of a shared store.
    all_projects: bool = False
    _manager: SessionManager | None = field(default=None, repr=False)
    _out: Console | None = field(default=None, repr=False)
    _err: Console | None = field(default=None, repr=False)

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
            payload = _select_fields(payload, self.json_fields)
        # Exact strings, but DEL, C1 and bidi controls escaped like C0 ones.
        click.echo(json_text(json.dumps(payload, indent=2, ensure_ascii=False)))

    def footer(self, line: str) -> None:
        """A line about a table: below it on a terminal, on stderr in a pipe
        (so that the rows a script reads are rows only)."""
        click.echo(line, err=not self.is_terminal())

    def is_terminal(self, *, stderr: bool = False) -> bool:
        """``out.is_terminal`` (or ``err``'s), without loading Rich for a plain pipe.

        Rich is asked only when the stream is a terminal or the environment
        may force one (``MAESTRO_FORCE_TTY``, ``FORCE_COLOR``, ``TTY_COMPATIBLE``).
        """
        console = self._err if stderr else self._out
        if console is None:
            stream = sys.stderr if stderr else sys.stdout
            forced = any(
                name in os.environ
                for name in ("MAESTRO_FORCE_TTY", "FORCE_COLOR", "TTY_COMPATIBLE")
            )
            try:
                if not forced and not stream.isatty():
                    return False
            except (AttributeError, ValueError):
                return False  # no stream, or a closed one: Rich says no terminal too
            console = self.err if stderr else self.out
        return console.is_terminal

    def glyphs(self) -> Glyphs:
        from maestro.render import ASCII_GLYPHS, UNICODE_GLYPHS

        encoding = (self.out.encoding or "").lower().replace("-", "")
        return UNICODE_GLYPHS if encoding.startswith("utf") else ASCII_GLYPHS

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
    command = " ".join(["maestro", *click.get_current_context().command_path.split()[1:]])
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
        return f"see `{command} --help`"
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


F = TypeVar("F", bound=Callable[..., Any])


def _json_error(kind: str, message: str, code: int) -> None:
    """An error as scripts read it under --json: one JSON object on stderr."""
    payload = {"error": {"type": kind, "message": message, "exit_code": code}}
    click.echo(json_text(json.dumps(payload, ensure_ascii=False)), err=True)


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


def handled(func: F) -> F:
    """Turn expected errors raised by a command into one red line and an exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context().find_object(Context)
        assert ctx is not None
        try:
            with _long_work_bar(ctx):
                return func(*args, **kwargs)
        except BrokenPipeError:
            raise  # the reader went away (`maestro list | head`): Click exits quietly
        except (errors.SessionError, CommandError, OSError) as error:
            fail(ctx, error)

    return wrapper  # type: ignore[return-value]


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
                click.echo(f"warning: {message}", err=True)

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


# ---------------------------------------------------------------- argument types


def _age_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    """An option holding a positive duration: ``30m``, ``2h``, ``2d``, ``1w``."""
    if value is None:
        return None
    age = parse_age(value)
    if age is None:
        raise click.BadParameter(
            f"{value!r} is not an age such as 30m, 2h, 2d or 1w", ctx=ctx, param=param
        )
    if age <= timedelta(0):
        raise click.BadParameter(f"{value!r} must be longer than zero", ctx=ctx, param=param)
    return age


def _moment_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> datetime | None:
    """An option holding a point in time: an age before now (``2d``) or an ISO date or time."""
    if value is None:
        return None
    age = parse_age(value)
    if age is not None:
        try:
            return utcnow() - age
        except OverflowError:
            raise click.BadParameter(
                f"{value!r} reaches before year 1", ctx=ctx, param=param
            ) from None
    try:
        return parse_timestamp(value)
    except errors.SessionValidationError:
        raise click.BadParameter(
            f"{value!r} is neither an age (30m, 2h, 2d, 1w) nor an ISO date "
            "(2026-01-07, 2026-01-07T13:00:00Z)",
            ctx=ctx,
            param=param,
        ) from None


_DATE_ONLY = re.compile(r"\s*\d{4}-\d{2}-\d{2}\s*")


def _until_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> datetime | None:
    """Like ``--since``, except that a date alone means up to the end of that day.

    ``--until 2026-11-30`` reads as "through November 30"; midnight would
    leave out the whole day.
    """
    moment = _moment_callback(ctx, param, value)
    if moment is not None and value is not None and _DATE_ONLY.fullmatch(value):
        try:
            return moment + timedelta(days=1, microseconds=-1)
        except OverflowError:
            return moment  # 9999-12-31: its day already reaches the end of time
    return moment


def _no_nan(name: str) -> Any:
    raise ValueError(name)


def _value(raw: str) -> Any:
    """A ``--set`` value: JSON when it parses (numbers, booleans, null, objects), else text."""
    try:
        return json.loads(raw, parse_constant=_no_nan)
    except ValueError:
        return raw


def parse_assignments(assignments: Sequence[str]) -> dict[str, Any]:
    """``["statistics.total_tasks=10", ...]`` as nested updates; ``ValueError`` if malformed."""
    updates: dict[str, Any] = {}
    for assignment in assignments:
        key, equals, raw = assignment.partition("=")
        if not equals:
            raise ValueError(f"{assignment!r} is not KEY=VALUE (e.g. statistics.total_tasks=10)")
        parts = key.strip().split(".")
        if any(not part.strip() for part in parts):
            raise ValueError(f"{assignment!r} has an empty key (e.g. statistics.total_tasks=10)")
        target = updates
        for depth, part in enumerate(parts[:-1]):
            inner = target.setdefault(part, {})
            if not isinstance(inner, dict):
                raise ValueError(f"{'.'.join(parts[: depth + 1])} is set twice")
            target = inner
        if parts[-1] in target:
            raise ValueError(f"{key.strip()} is set twice")
        target[parts[-1]] = _value(raw)
    return updates


def _assignments_callback(
    ctx: click.Context, param: click.Parameter, value: Sequence[str]
) -> dict[str, Any]:
    try:
        return parse_assignments(value)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from None


def _complete_session_ids(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Session ids starting with what was typed, each with its feature request as help."""
    from click.shell_completion import CompletionItem

    params = ctx.find_root().params
    prefix = incomplete.strip().lower()
    try:
        manager = _open_manager(params.get("root"), params.get("store"))
        ids = manager.session_ids(prefix)
    except (errors.SessionError, OSError, ValueError):
        return []
    items = []
    for sid in ids[:200]:
        help_text = None
        if len(ids) <= 30:
            try:
                help_text = visible(manager.get_session(sid).feature_request[:60])
            except (errors.SessionError, OSError, ValueError):
                help_text = None
        items.append(CompletionItem(sid, help=help_text))
    return items


def _complete_target_states(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The states the session named before may move to, starting with what was typed.

    Every state when the session cannot be read (a prefix not unique yet, no
    store): completion must never fail.
    """
    from click.shell_completion import CompletionItem

    from maestro.lifecycle import allowed_targets

    choices: Sequence[str] = STATUSES
    params = ctx.find_root().params
    given = ctx.params.get("session_id")
    if isinstance(given, str):
        try:
            manager = _open_manager(params.get("root"), params.get("store"))
            session = manager.get_session(manager.resolve_session_id(given))
            choices = [s.value for s in allowed_targets(session.status, session.paused_from)]
        except (errors.SessionError, OSError, ValueError):
            pass
    return [CompletionItem(c) for c in choices if c.startswith(incomplete)]


# ---------------------------------------------------------------- shared options


class _Number(click.ParamType):  # type: ignore[type-arg]  # generic from Click 8.2 only
    """A whole number or a number of seconds, refused in words a user reads.

    Click's own types say "is not a valid integer range"; this says what is
    wanted, with an example.
    """

    def __init__(self, *, minimum: int | None = None, whole: bool = True) -> None:
        self.minimum = minimum
        self.whole = whole
        self.name = "whole number" if whole else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number: float = value
        else:
            try:
                number = int(str(value)) if self.whole else float(str(value))
            except ValueError:
                number = float("nan")
        if number != number or number in (float("inf"), float("-inf")):
            self.fail(f"{visible(str(value))!r} is not {self._wanted()}", param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"{visible(str(value))} is too small: give {self._wanted()}", param, ctx)
        return number

    def _wanted(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        example = 3 if self.minimum is None or self.minimum < 3 else self.minimum
        at_least = "" if self.minimum is None else f" of at least {self.minimum}"
        return f"{kind}{at_least}, such as {example if self.whole else float(example) + 0.5}"


def session_id_argument(func: F) -> F:
    return click.argument("session_id", metavar="ID", shell_complete=_complete_session_ids)(func)


def expected_revision_option(func: F) -> F:
    return click.option(
        "--expected-revision",
        type=_Number(minimum=0),
        metavar="N",
        help="Only if the stored revision is N (compare-and-swap); else exit 5.",
    )(func)


def request_id_option(func: F) -> F:
    return click.option(
        "--request-id",
        metavar="KEY",
        help="Idempotency key: a retry with the same KEY changes nothing and prints "
        "the session as stored now; the same KEY with other arguments exits 5.",
    )(func)


def filter_options(func: F) -> F:
    """--status, --phase, --branch, --since, --until, --active."""
    options = [
        click.option(
            "--status",
            "statuses",
            multiple=True,
            type=click.Choice(STATUSES),
            metavar="STATE",
            help="Only sessions in this state (repeatable).",
        ),
        click.option(
            "--phase",
            "phases",
            multiple=True,
            type=click.Choice(PHASES),
            metavar="PHASE",
            help="Only sessions in this phase (repeatable).",
        ),
        click.option("--branch", help="Only sessions created on this git branch."),
        click.option(
            "--since",
            metavar="WHEN",
            callback=_moment_callback,
            help="Created at or after: an age (2d, 3h) or a date.",
        ),
        click.option(
            "--until",
            metavar="WHEN",
            callback=_until_callback,
            help="Created at or before: an age (2d, 3h), a time, or a date (the whole day).",
        ),
        click.option("--active", is_flag=True, help="Only sessions not completed or failed."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filters(
    statuses: Sequence[str],
    phases: Sequence[str],
    branch: str | None,
    since: datetime | None,
    until: datetime | None,
    active: bool,
) -> dict[str, Any]:
    """The ``query_sessions`` keyword arguments of the filter options."""
    if active and statuses:
        raise click.UsageError("--active and --status cannot be combined; use one")
    if since is not None and until is not None and since > until:
        raise click.UsageError(
            "--since is later than --until, so nothing can match; "
            "give the earlier moment to --since, such as --since 2026-11-01 --until 2026-11-30"
        )
    filters: dict[str, Any] = {}
    if active:
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


# ---------------------------------------------------------------- --json fields

#: The top-level fields of a session record, and short names scripts ask for.
SESSION_FIELDS = KNOWN_FIELDS
_SESSION_ALIASES: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "id": lambda record: record.get("session_id"),
    "branch": lambda record: record.get("git_context", {}).get("branch"),
    "commit": lambda record: record.get("git_context", {}).get("commit"),
    "phase": lambda record: record.get("current_phase"),
}


#: Commands that change a session and print its record.
_WRITES_A_SESSION = frozenset(
    {
        "create",
        "transition",
        "pause",
        "resume",
        "fail",
        "complete",
        "update",
        "increment",
        "heartbeat",
        "rerun",
    }
)


def _is_record(payload: Any) -> bool:
    return isinstance(payload, dict) and "session_id" in payload and "feature_request" in payload


def _select_fields(payload: Any, fields: Sequence[str]) -> Any:
    """``payload`` cut to ``fields``, as ``gh --json a,b`` does; a missing field is null.

    A list is cut item by item; ``show``'s ``{"session": ..., timeline...}``
    is flattened first so its fields and the timeline's are asked alike.
    """
    if isinstance(payload, list):
        if not payload:
            _check_fields(fields, [*SESSION_FIELDS, *_SESSION_ALIASES])
        return [_select_fields(item, fields) for item in payload]
    if not isinstance(payload, dict):
        return payload
    if set(payload) == {"sessions", "next_cursor"}:  # a page: its sessions are cut
        return {**payload, "sessions": _select_fields(payload["sessions"], fields)}
    flat = dict(payload)
    record = flat.pop("session") if _is_record(flat.get("session")) else flat
    if _is_record(record):
        flat = {
            **{name: None for name in SESSION_FIELDS},
            **record,
            **{name: get(record) for name, get in _SESSION_ALIASES.items()},
            **{key: value for key, value in flat.items() if key != "session"},
        }
    _check_fields(fields, flat)
    return {name: flat.get(name) for name in fields}


def _check_fields(fields: Sequence[str], known: Iterable[str]) -> None:
    names = set(known)
    unknown = [name for name in fields if name not in names]
    if unknown:
        raise CommandError(
            f"unknown --json field {', '.join(unknown)}; known fields: {', '.join(sorted(names))}",
            EXIT_USAGE,
        )


def _parse_json_fields(text: str) -> tuple[str, ...]:
    fields = tuple(name.strip() for name in text.split(","))
    if not all(fields):
        raise click.UsageError(
            f"--json={text}: give field names separated by commas, e.g. --json=id,status"
        )
    return fields


def _is_value(args: Sequence[str], index: int) -> bool:
    return index > 0 and args[index - 1] in ("--root", "--store")


def _wants_json(args: Sequence[str]) -> bool:
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json" or arg.startswith("--json="):
            return True
    return False


def _split_json_fields(
    args: list[str], *, leading: bool
) -> tuple[list[str], tuple[str, ...] | None]:
    """``--json=FIELDS`` as ``--json``, and FIELDS.

    ``--json`` takes a value only after ``=``, so ``search --json oauth``
    still searches for oauth.  With ``leading`` (the group's own options)
    the scan stops at the command name.
    """
    fields: tuple[str, ...] | None = None
    rewritten: list[str] = []
    for index, arg in enumerate(args):
        ends = leading and not arg.startswith("-") and not _is_value(args, index)
        if arg == "--" or ends:
            rewritten.extend(args[index:])
            break
        if arg.startswith("--json="):
            fields = _parse_json_fields(arg.removeprefix("--json="))
            arg = "--json"
        rewritten.append(arg)
    return rewritten, fields


def _obj(ctx: click.Context) -> Context:
    obj = ctx.find_object(Context)
    assert obj is not None  # the group's callback made it before any command parses
    return obj


def _set_root(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        _obj(ctx).root = value


def _set_store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        _obj(ctx).store = value


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        obj = _obj(ctx)
        obj.as_json = True
        pending = ctx.meta.get(_PENDING)
        if pending is not None:
            obj.json_fields = pending


_PENDING = "maestro.json_fields"


class MaestroCommand(click.Command):
    """A command that also takes the global --root, --store and --json after its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = {name for param in self.params for name in getattr(param, "opts", [])}
        extra: list[click.Parameter] = [
            click.Option(
                ["--root"],
                type=click.Path(file_okay=False, path_type=Path),
                expose_value=False,
                callback=_set_root,
                help="As `maestro --root`.",
            ),
            click.Option(
                ["--store"],
                metavar="URL",
                expose_value=False,
                callback=_set_store,
                help="As `maestro --store`.",
            ),
        ]
        if "--json" not in names:
            extra.append(
                click.Option(
                    ["--json"],
                    is_flag=True,
                    expose_value=False,
                    callback=_set_json,
                    help="Print JSON; --json=a,b prints only those fields.",
                )
            )
        self.params.extend(param for param in extra if param.opts[0] not in names)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rewritten, fields = _split_json_fields(args, leading=False)
        if fields is not None:
            ctx.meta[_PENDING] = fields
        rest = super().parse_args(ctx, rewritten)
        obj = ctx.find_object(Context)
        if obj is not None and obj.json_fields is not None and self.name in _WRITES_A_SESSION:
            # Checked before the change is made, not after it printed nothing.
            try:
                _check_fields(obj.json_fields, [*SESSION_FIELDS, *_SESSION_ALIASES])
            except CommandError as error:
                raise click.UsageError(str(error), ctx=ctx) from None
        return rest


class MaestroGroup(click.Group):
    """The ``maestro`` group: its commands take the global options too, and a
    usage error under --json is a JSON object on stderr."""

    command_class = MaestroCommand

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["maestro.argv"] = list(args)
        try:
            rewritten, fields = _split_json_fields(args, leading=True)
            if fields is not None:
                ctx.meta[_PENDING] = fields
            return super().parse_args(ctx, rewritten)
        except click.UsageError as error:
            self._json_usage(ctx, error)
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as error:
            self._json_usage(ctx, error)
            raise

    @staticmethod
    def _json_usage(ctx: click.Context, error: click.UsageError) -> None:
        obj = ctx.find_object(Context)
        if (obj is not None and obj.as_json) or _wants_json(ctx.meta.get("maestro.argv", [])):
            _json_error("UsageError", " ".join(error.format_message().split()), EXIT_USAGE)
            raise click.exceptions.Exit(EXIT_USAGE)


# ---------------------------------------------------------------- the group


class _OneLineUsage(MaestroGroup):
    """A group whose usage errors are one line, like every other error.

    Click prints a usage block, a hint and the error on four lines; a script
    reading stderr, and a person, want the one line saying what was wrong.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        try:
            result = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.UsageError as error:
            below = error.ctx.command_path.split()[1:] if error.ctx is not None else []
            path = " ".join(["maestro", *below])
            message = " ".join(error.format_message().split())
            click.echo(f"error: {visible(message)} (see `{path} --help`)", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_ERROR)
        except BrokenPipeError:
            # The reader went away (| head): quiet, as Click itself would be.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout for good
            sys.exit(EXIT_ERROR)
        # Without standalone mode Click returns the exit code a command asked for.
        sys.exit(result if isinstance(result, int) else EXIT_OK)


@click.group(
    cls=_OneLineUsage,
    epilog=_MAIN_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MAESTRO_ROOT",
    help="Directory holding .flow/maestro (default: $MAESTRO_ROOT, the repository's main "
    "checkout, also from a linked worktree, the cwd).",
)
@click.option(
    "--store",
    metavar="URL",
    envvar="MAESTRO_STORE",
    help="Store URL: a path or file:PATH (a root, like --root), memory:, "
    "postgresql://USER@HOST/DB (default: $MAESTRO_STORE; overrides --root).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option(
    "--all-projects",
    is_flag=True,
    envvar="MAESTRO_ALL_PROJECTS",
    help="On a store shared by several projects (postgresql://), show every project's "
    "sessions, not only this repository's.",
)
@click.version_option(package_name="maestro-sessions", prog_name="maestro")
@click.pass_context
def cli(
    click_ctx: click.Context,
    root: Path | None,
    store: str | None,
    as_json: bool,
    all_projects: bool,
) -> None:
    """Record, query and steer the sessions of the Maestro orchestrator.

    Sessions live in <root>/.flow/maestro/sessions, one directory each.
    Tables and charts are for people; --json prints the same data as JSON
    (timestamps ISO 8601 UTC) for scripts.  Colours are off when the
    output is not a terminal or NO_COLOR is set.

    \b
    Example:
      maestro create "Add OAuth login"
      maestro list --active --since 2d
      maestro show 3f01b5
      maestro --json list --status failed | jq '.[].session_id'
    """
    _install_log_handler()
    fields = click_ctx.meta.pop(_PENDING, None) if as_json else None
    click_ctx.obj = Context(root=root, as_json=as_json, store=store or None, json_fields=fields)
    click_ctx.obj.all_projects = all_projects
    if root is not None and not store and not root.is_dir():
        # A mistyped root would otherwise become a new, empty store.
        source = "--root" if _from_command_line(click_ctx, "root") else "MAESTRO_ROOT"
        fail(click_ctx.obj, CommandError(f"{source} {root}: no such directory", EXIT_USAGE))


def _from_command_line(click_ctx: click.Context, name: str) -> bool:
    from click.core import ParameterSource

    return click_ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


pass_ctx = click.make_pass_decorator(Context)


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


def _prd(path: str) -> PRDReference:
    return PRDReference(filename=os.path.basename(path.rstrip("/")) or path, path=path)


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


def wide_option(func: F) -> F:
    return click.option(
        "--wide", is_flag=True, help="Show whole cells on a terminal (a pipe always gets them)."
    )(func)


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


# ---------------------------------------------------------------- the state machine


def _non_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        # The same for every command: a blank reason says nothing.
        raise click.BadParameter(
            'must not be empty; leave it out or say why, such as --reason "review approved"',
            ctx=ctx,
            param=param,
        )
    return value


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
    summary = ctx.manager().stats(**_filters(statuses, phases, branch, since, until, active))
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
    filters = _filters(statuses, phases, branch, since, until, active)
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


def _open_manager(root: Path | None, store: str | None, **options: Any) -> SessionManager:
    # A store URL says where the sessions are; --root then plays no part.
    if store:
        return SessionManager(store=store, **options)
    return SessionManager(root, **options)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="maestro")


from maestro.cli import db as _db  # noqa: E402, F401  (registers its commands)
from maestro.cli import mcp as _mcp  # noqa: E402, F401  (registers its commands)
from maestro.cli import serve as _serve  # noqa: E402, F401  (registers its commands)
