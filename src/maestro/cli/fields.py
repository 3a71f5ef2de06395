"""``--json=a,b``: the fields a script asks for, as ``gh --json`` takes them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import click

from maestro.cli.context import EXIT_USAGE, CommandError

# ---------------------------------------------------------------- --json fields

#: Short names scripts ask for, beside the top-level fields of a session record.
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


def _record_fields() -> tuple[str, ...]:
    """The top-level fields of a session record (the models load with the first record)."""
    from maestro.models import KNOWN_FIELDS

    return KNOWN_FIELDS


def session_fields() -> list[str]:
    """Every field ``--json=a,b`` may name for a session: its record's and the short names."""
    return [*_record_fields(), *_SESSION_ALIASES]


def _is_record(payload: Any) -> bool:
    return isinstance(payload, dict) and "session_id" in payload and "feature_request" in payload


def _select_fields(payload: Any, fields: Sequence[str]) -> Any:
    """``payload`` cut to ``fields``, as ``gh --json a,b`` does; a missing field is null.

    A list is cut item by item; ``show``'s ``{"session": ..., timeline...}``
    is flattened first so its fields and the timeline's are asked alike.
    """
    if isinstance(payload, list):
        if not payload:
            _check_fields(fields, session_fields())
        return [_select_fields(item, fields) for item in payload]
    if not isinstance(payload, dict):
        return payload
    if set(payload) == {"sessions", "next_cursor"}:  # a page: its sessions are cut
        return {**payload, "sessions": _select_fields(payload["sessions"], fields)}
    flat = dict(payload)
    record = flat.pop("session") if _is_record(flat.get("session")) else flat
    if _is_record(record):
        flat = {
            **{name: None for name in _record_fields()},
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
