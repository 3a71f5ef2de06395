"""The arguments and options commands share, their types, checks and completion."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import click

from maestro import errors
from maestro.cli.context import _open_manager
from maestro.models import (
    TERMINAL_STATES,
    PRDReference,
    SessionPhase,
    SessionStatus,
    parse_timestamp,
    utcnow,
)
from maestro.textsafe import visible

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

F = TypeVar("F", bound=Callable[..., Any])

STATUSES = [s.value for s in SessionStatus]
PHASES = [p.value for p in SessionPhase]
TERMINAL = sorted(s.value for s in TERMINAL_STATES)


# ---------------------------------------------------------------- argument types


def _age_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    """An option holding a positive duration: ``30m``, ``2h``, ``2d``, ``1w``."""
    if value is None:
        return None
    from maestro.ages import parse_age

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
    from maestro.ages import parse_age

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


#: A date alone, such as 2026-11-30.
_DATE_ONLY = r"\s*\d{4}-\d{2}-\d{2}\s*"


def _until_callback(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> datetime | None:
    """Like ``--since``, except that a date alone means up to the end of that day.

    ``--until 2026-11-30`` reads as "through November 30"; midnight would
    leave out the whole day.
    """
    moment = _moment_callback(ctx, param, value)
    if moment is not None and value is not None and re.fullmatch(_DATE_ONLY, value):
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


def _non_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        # The same for every command: a blank reason says nothing.
        raise click.BadParameter(
            'must not be empty; leave it out or say why, such as --reason "review approved"',
            ctx=ctx,
            param=param,
        )
    return value


def wide_option(func: F) -> F:
    return click.option(
        "--wide", is_flag=True, help="Show whole cells on a terminal (a pipe always gets them)."
    )(func)


def _prd(path: str) -> PRDReference:
    return PRDReference(filename=os.path.basename(path.rstrip("/")) or path, path=path)
