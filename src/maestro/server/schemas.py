"""The JSON Schemas of the API's answers, for ``/openapi.json``.

A session is described by the record's own JSON Schema (the one every write
is validated against), so the document cannot drift from what is stored.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

__all__ = ["ERROR", "SESSION", "components", "responses"]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


SESSION = _ref("Session")
ERROR = _ref("Error")
SESSION_ARRAY = {
    "type": "object",
    "required": ["sessions"],
    "properties": {"sessions": {"type": "array", "items": SESSION}},
}
SESSION_LIST = {
    "type": "object",
    "required": ["sessions", "total", "next_cursor"],
    "properties": {
        "sessions": {"type": "array", "items": SESSION},
        "total": {"type": "integer", "minimum": 0},
        "next_cursor": {"type": ["string", "null"]},
    },
}
_SECONDS = {"type": "number", "minimum": 0}
_STAMP = {"type": "string"}
TIMELINE = {
    "type": "object",
    "required": [
        "session_id",
        "timeline",
        "seconds_in_state",
        "active_seconds",
        "paused_seconds",
        "started_at",
        "ended_at",
        "finished",
    ],
    "properties": {
        "session_id": {"type": "string"},
        "timeline": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["state", "start", "end", "seconds"],
                "properties": {
                    "state": {"type": "string"},
                    "start": _STAMP,
                    "end": _STAMP,
                    "seconds": _SECONDS,
                },
            },
        },
        "seconds_in_state": {"type": "object", "additionalProperties": _SECONDS},
        "active_seconds": _SECONDS,
        "paused_seconds": _SECONDS,
        "started_at": _STAMP,
        "ended_at": _STAMP,
        "finished": {"type": "boolean"},
    },
}
STATS = {
    "type": "object",
    "required": ["total", "by_status", "success_rate", "durations", "by_branch"],
    "properties": {
        "total": {"type": "integer", "minimum": 0},
        "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
        "success_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "durations": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["sessions", "median_seconds", "p90_seconds", "total_seconds"],
                "properties": {
                    "sessions": {"type": "integer"},
                    "median_seconds": _SECONDS,
                    "p90_seconds": _SECONDS,
                    "total_seconds": _SECONDS,
                },
            },
        },
        "by_branch": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}
OVERVIEW = {
    "type": "object",
    "required": ["days", "stats", "stale"],
    "properties": {
        "days": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["date", "completed", "failed", "active"],
                "properties": {
                    "date": {"type": "string"},
                    "completed": {"type": "integer"},
                    "failed": {"type": "integer"},
                    "active": {"type": "integer"},
                },
            },
        },
        "stats": STATS,
        "stale": {"type": "array", "items": SESSION},
    },
}
HEALTH = {
    "type": "object",
    "required": ["status"],
    "properties": {"status": {"const": "ok"}},
}

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "status"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "status": {"type": "integer"},
                "session_id": {"type": "string"},
                "current": {"type": "string"},
                "allowed": {"type": "array", "items": {"type": "string"}},
                "expected": {"type": ["integer", "null"]},
                "actual": {"type": ["integer", "null"]},
                "matches": {"type": "array", "items": {"type": "string"}},
            },
        }
    },
}

_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    204: "Deleted",
    304: "Not modified: the ETag given in If-None-Match is current",
    400: "Invalid input: a malformed parameter, body or header",
    401: "A token is required",
    403: "Refused: foreign Host, or a change from another site",
    404: "No such session",
    409: "Invalid transition (allowed targets given), or an id reused for another request",
    412: "If-Match named another revision than the stored one",
    413: "Body too large",
    500: "A stored record is unreadable",
    501: "The store in use lacks this operation",
    503: "The store is busy or unavailable; retry",
    507: "The disk is full",
}
#: Errors any route may answer with, whatever it does.
_ALWAYS = (401, 403, 413, 500, 503)


def responses(
    success: int | None, schema: dict[str, Any] | None, *errors: int
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: its success (with ``schema``) and its error statuses."""
    answer: dict[int | str, dict[str, Any]] = {}
    if success is not None:
        entry: dict[str, Any] = {"description": _DESCRIPTIONS[success]}
        if schema is not None:
            entry["content"] = {"application/json": {"schema": schema}}
        answer[success] = entry
    for status in sorted({*errors, *_ALWAYS}):
        if status == 304:
            answer[status] = {"description": _DESCRIPTIONS[status]}
            continue
        answer[status] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": ERROR}},
        }
    return answer


def _session_schema() -> dict[str, Any]:
    """The record's JSON Schema, its definitions moved to the document's components."""
    text = resources.files("maestro").joinpath("schemas/session.schema.json").read_text("utf-8")
    text = text.replace('"#/definitions/', '"#/components/schemas/Session_')
    schema: dict[str, Any] = json.loads(text)
    schema.pop("$schema", None)
    schema.pop("$id", None)
    return schema


def components() -> dict[str, Any]:
    """Schemas to add under ``components/schemas``."""
    session = _session_schema()
    definitions = session.pop("definitions", {})
    found = {"Session": session, "Error": _ERROR_SCHEMA}
    found.update({f"Session_{name}": value for name, value in definitions.items()})
    return found
