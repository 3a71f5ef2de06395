"""JSON Schema validation of session records, and migrations between versions.

The schema ships in the package (``maestro/schemas/session.schema.json``,
draft-07) and is compiled once.  Every record is validated before it is
written and after it is read.

Versions:

* 0 -- written by the original prototype: no ``schema_version``, ``revision``
  or ``history``; ``current_phase``/``prd_reference`` absent when unset.
* 1 -- this library: adds ``schema_version``, ``revision``, ``history`` and
  ``paused_from`` at the top level only, so the prototype's loader can still
  read what we write.

Older records are migrated in memory when read and persisted in the new
format on their next write; a record from a *newer* version is refused
rather than half understood.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache

from maestro.errors import SessionValidationError
from maestro.models import SCHEMA_VERSION

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["SCHEMA_VERSION", "load_schema", "migrate", "schema_errors", "validate_record"]


@cache
def load_schema() -> dict[str, Any]:
    """The JSON Schema of a stored session record, as a dict."""
    from importlib import resources

    text = resources.files("maestro").joinpath("schemas/session.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _inline_definitions(node: Any, definitions: Mapping[str, Any]) -> Any:
    """Replace local ``{"$ref": "#/definitions/x"}`` by the definition itself.

    Same meaning, but the compiled validator no longer builds a name for every
    reference it follows, which made each history entry cost several µs.
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/") and len(node) == 1:
            return _inline_definitions(definitions[ref.removeprefix("#/definitions/")], definitions)
        return {key: _inline_definitions(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_definitions(item, definitions) for item in node]
    return node


@cache
def _validator() -> Callable[[Any], Any]:
    # The compiler is loaded with the first write, not with every command.
    import fastjsonschema

    schema = dict(load_schema())
    definitions = schema.pop("definitions", {})
    validate: Callable[[Any], Any] = fastjsonschema.compile(
        _inline_definitions(schema, definitions)
    )
    return validate


def schema_errors(record: Any) -> str | None:
    """``None`` when ``record`` satisfies the schema, else what is wrong with it."""
    validate = _validator()
    import fastjsonschema

    trimmed, fresh = _without_seen_entries(record)
    try:
        validate(trimmed)
    except fastjsonschema.JsonSchemaValueException as error:
        problem = error
        if trimmed is not record:
            # Positions in the message must be those of the whole record.
            try:
                validate(record)
            except fastjsonschema.JsonSchemaValueException as whole:
                problem = whole
        # The library's message names the path ("data.statistics.total_tasks must be
        # bigger than or equal to 0"); the offending value is not part of it.
        return str(problem.message).replace("data.", "", 1).replace("data ", "record ", 1)
    for seen, key in fresh:
        if len(seen) >= _SEEN_KEPT:
            seen.clear()
        seen.add(key)
    return None


#: Entries of the top-level lists whose items the schema checks one by one,
#: with nothing relating one item to another, that passed the check already.
#: Every write serialises a session's whole history again; only its new
#: entries need checking.  An entry is known by its keys and values (see
#: ``_entry_key``).
_SEEN: dict[str, set[tuple[tuple[str, Any], ...]]] = {"history": set(), "requests": set()}
_SEEN_KEPT = 16384  # some 400 bytes each: a few MB at the most


def _without_seen_entries(
    record: Any,
) -> tuple[Any, list[tuple[set[tuple[tuple[str, Any], ...]], tuple[Any, ...]]]]:
    """``record`` less the list entries known valid, and the keys of the others."""
    fresh: list[tuple[set[tuple[tuple[str, Any], ...]], tuple[Any, ...]]] = []
    if type(record) is not dict:
        return record, fresh
    trimmed = record
    for name, seen in _SEEN.items():
        items = record.get(name)
        if type(items) is not list or not items:
            continue
        unknown = []
        for item in items:
            key = _entry_key(item)
            if key is None or key not in seen:
                unknown.append(item)
                if key is not None:
                    fresh.append((seen, key))
        if len(unknown) != len(items):
            if trimmed is record:
                trimmed = dict(record)
            trimmed[name] = unknown
    return trimmed, fresh


def _entry_key(item: Any) -> tuple[tuple[str, Any], ...] | None:
    """The entry's items, when every value is exactly a ``str``, an ``int`` or ``None``.

    Values of those types are equal only when they are the same JSON value
    (``True == 1``, but a ``bool`` is never taken), so equal keys are equal entries.
    """
    if type(item) is not dict:
        return None
    for value in item.values():
        kind = type(value)
        if kind is not str and kind is not int and value is not None:
            return None
    return tuple(item.items())


def validate_record(record: Mapping[str, Any], *, session_id: str | None = None) -> None:
    """Raise :class:`SessionValidationError` unless ``record`` satisfies the schema."""
    problem = schema_errors(record)
    if problem is not None:
        raise SessionValidationError(
            f"record fails the session schema: {problem}", session_id=session_id
        )


def _from_v0(record: dict[str, Any]) -> dict[str, Any]:
    """Prototype record → version 1: add the new top-level fields."""
    record = dict(record)
    record["schema_version"] = 1
    record.setdefault("revision", 0)
    record.setdefault("history", [])
    return record


_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _from_v0}


def record_version(record: Mapping[str, Any]) -> int:
    """The schema version of a stored record (0 for the prototype's)."""
    version = record.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise SessionValidationError("schema_version must be a non-negative integer")
    return version


def migrate(record: dict[str, Any], *, session_id: str | None = None) -> dict[str, Any]:
    """Bring a stored record up to :data:`SCHEMA_VERSION` (in memory only)."""
    version = record_version(record)
    if version > SCHEMA_VERSION:
        raise SessionValidationError(
            f"record has schema version {version}, newer than this maestro "
            f"understands ({SCHEMA_VERSION}); upgrade maestro to read it",
            session_id=session_id,
        )
    while version < SCHEMA_VERSION:
        record = _MIGRATIONS[version](record)
        version = record_version(record)
    return record
