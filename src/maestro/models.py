"""The session record: enums, dataclasses, timestamps.

Field names and defaults are those of the original prototype, so records it
wrote open unchanged.  Every dataclass checks its own fields on construction
(``Session(status="planning", ...)`` converts the string, a negative counter
raises ``ValueError``) and round-trips exactly through ``to_dict()`` /
``from_dict()``.

Timestamps are timezone-aware UTC ``datetime`` objects in memory and ISO 8601
strings ending in ``Z`` on disk (``2026-01-07T13:02:57.119275Z``, the
prototype's own shape).  Strings are accepted wherever a timestamp is: naive
ones are read as UTC, offsets are converted.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum

from maestro.errors import SessionValidationError
from maestro.records import field, field_names, record, required_names

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

__all__ = [
    "SCHEMA_VERSION",
    "TERMINAL_STATES",
    "GitContext",
    "PRDReference",
    "RequestRecord",
    "Session",
    "SessionConfiguration",
    "SessionPhase",
    "SessionStatistics",
    "SessionStatus",
    "StateChange",
    "format_timestamp",
    "parse_timestamp",
    "utcnow",
]

#: Version of the record format written by this library.  Records without a
#: ``schema_version`` key were written by the original prototype (version 0).
SCHEMA_VERSION = 1


class SessionStatus(StrEnum):
    """Where a session is in its lifecycle."""

    INITIALIZING = "initializing"
    PLANNING = "planning"
    GENERATING_TASKS = "generating_tasks"
    IMPLEMENTING = "implementing"
    VALIDATING = "validating"
    GENERATING_REPORT = "generating_report"
    COMPLETED = "completed"
    FAILED = "failed"
    PAUSED = "paused"


#: The states nothing leaves: the one definition every module uses.
TERMINAL_STATES: frozenset[SessionStatus] = frozenset(
    {SessionStatus.COMPLETED, SessionStatus.FAILED}
)


class SessionPhase(StrEnum):
    """The orchestrator phase a session is executing."""

    PLAN = "plan"
    GENERATE_TASKS = "generate_tasks"
    IMPLEMENT = "implement"
    VALIDATE = "validate"
    CLEANUP = "cleanup"


# ---------------------------------------------------------------- timestamps


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def parse_timestamp(value: str | datetime, *, name: str = "timestamp") -> datetime:
    """Read an ISO 8601 string or a ``datetime`` as an aware UTC ``datetime``.

    Naive values (the prototype's ``...Z``-less strings, naive datetimes) are
    taken as UTC; values with an offset are converted, so comparisons are
    between instants, never between strings.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise SessionValidationError(
                f"{name} must be an ISO 8601 timestamp such as 2026-01-07T13:02:57Z"
            ) from None
    else:
        raise SessionValidationError(
            f"{name} must be an ISO 8601 timestamp such as 2026-01-07T13:02:57Z, "
            f"got {describe(value)}"
        )
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise SessionValidationError(f"{name} is out of range once converted to UTC") from None


def format_timestamp(moment: datetime) -> str:
    """Write a timestamp as ISO 8601 UTC with microseconds and a ``Z``."""
    # Every write serialises the whole history again, so the texts of recent
    # moments are kept.  Equal moments are the same instant (or the same
    # naive time, taken as UTC), so they have one text.
    text = _FORMATTED.get(moment)
    if text is None:
        utc = moment if moment.tzinfo is UTC else parse_timestamp(moment)
        # In UTC the text always ends in "+00:00": cut it rather than copy the moment.
        text = utc.isoformat(timespec="microseconds")[:-6] + "Z"
        if len(_FORMATTED) >= _FORMATTED_KEPT:
            _FORMATTED.clear()
        _FORMATTED[moment] = text
    return text


_FORMATTED: dict[datetime, str] = {}
_FORMATTED_KEPT = 4096


def _optional_timestamp(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str | datetime):
        raise SessionValidationError(
            f"{name} must be an ISO 8601 timestamp such as 2026-01-07T13:02:57Z, "
            f"got {describe(value)}",
        )
    return parse_timestamp(value, name=name)


# ---------------------------------------------------------------- value checks


def describe(value: object) -> str:
    """What a value is, in the words of someone writing JSON or a command line.

    Never the value itself (it may come from a damaged file and hold any
    text) and never a Python type name.
    """
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    return "a value of another kind"


#: Largest integer a record holds: JSON readers commonly stop at 64 bits.
MAX_INT = 2**63 - 1


def _require_str(value: object, name: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise SessionValidationError(f"{name} must be text, got {describe(value)}")
    if not empty and not value.strip():
        raise SessionValidationError(f"{name} must not be empty")
    if "\x00" in value:
        raise SessionValidationError(f"{name} must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SessionValidationError(
                f"{name} must be valid Unicode text (it holds a lone surrogate)"
            ) from None
    return value


def _require_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SessionValidationError(
            f"{name} must be a whole number such as {minimum + 3}, got {describe(value)}"
        )
    if value < minimum:
        raise SessionValidationError(f"{name} must be at least {minimum}, got {value}")
    if value > MAX_INT:
        raise SessionValidationError(f"{name} must be <= {MAX_INT}")
    return value


def _require_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise SessionValidationError(f"{name} must be true or false, got {describe(value)}")
    return value


def _require_seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SessionValidationError(
            f"{name} must be a number of seconds such as 42.5, got {describe(value)}"
        )
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise SessionValidationError(f"{name} must be a finite number >= 0, got {value}")
    return number


if TYPE_CHECKING:
    _E = TypeVar("_E", SessionStatus, SessionPhase)

# Lookup tables: an enum call costs far more than a dict lookup, and records
# are full of enum values (every history entry holds two).
_BY_VALUE: dict[type[Any], dict[str, Any]] = {
    SessionStatus: {member.value: member for member in SessionStatus},
    SessionPhase: {member.value: member for member in SessionPhase},
}


def _require_enum(enum: type[_E], value: object, name: str) -> _E:
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        member: _E | None = _BY_VALUE[enum].get(value)
        if member is not None:
            return member
    choices = ", ".join(member.value for member in enum)
    # The value itself is not quoted: it may come from a damaged file and hold
    # any text, the feature request included.
    shown = "a value not among them" if isinstance(value, str) else describe(value)
    raise SessionValidationError(f"{name} must be one of {choices}; got {shown}")


def _require_mapping(value: object, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SessionValidationError(
            f"{name} must be an object of fields, such as {{...}} in JSON, got {describe(value)}"
        )
    return value


if TYPE_CHECKING:
    _D = TypeVar("_D")


_FIELD_NAMES: dict[type[Any], frozenset[str]] = {}


def _field_names(cls: type[Any]) -> frozenset[str]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(field_names(cls))
    return names


def _from_mapping(cls: type[_D], data: object, name: str) -> _D:
    """Build a flat dataclass from a mapping, refusing unknown keys."""
    mapping = _require_mapping(data, name)
    known = _field_names(cls)
    unknown = [] if mapping.keys() <= known else sorted(map(str, set(mapping) - known))
    if unknown:
        raise SessionValidationError(f"{name} has unknown field(s): {', '.join(map(str, unknown))}")
    try:
        return cls(**mapping)
    except TypeError:
        missing = sorted(name for name in required_names(cls) if name not in mapping)
        raise SessionValidationError(
            f"{name} is missing required field(s): {', '.join(missing)}"
        ) from None


# ---------------------------------------------------------------- nested records


@record
class GitContext:
    """Git repository context captured when the session was created."""

    branch: str
    commit: str
    repo_root: str
    is_worktree: bool = False
    worktree_name: str | None = None

    def __post_init__(self) -> None:
        self.branch = _require_str(self.branch, "git_context.branch")
        self.commit = _require_str(self.commit, "git_context.commit")
        self.repo_root = _require_str(self.repo_root, "git_context.repo_root")
        self.is_worktree = _require_bool(self.is_worktree, "git_context.is_worktree")
        if self.worktree_name is not None:
            self.worktree_name = _require_str(self.worktree_name, "git_context.worktree_name")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "branch": self.branch,
            "commit": self.commit,
            "repo_root": self.repo_root,
            "is_worktree": self.is_worktree,
        }
        if self.worktree_name is not None:
            data["worktree_name"] = self.worktree_name
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GitContext:
        return _from_mapping(cls, data, "git_context")


@record
class PRDReference:
    """Where the product requirements document of the session lives."""

    filename: str
    path: str
    version: str | None = None

    def __post_init__(self) -> None:
        self.filename = _require_str(self.filename, "prd_reference.filename")
        self.path = _require_str(self.path, "prd_reference.path")
        if self.version is not None:
            self.version = _require_str(self.version, "prd_reference.version")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"filename": self.filename, "path": self.path}
        if self.version is not None:
            data["version"] = self.version
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PRDReference:
        return _from_mapping(cls, data, "prd_reference")


@record
class SessionStatistics:
    """Counters kept while the session runs."""

    #: The counters, in their order (no annotation: a class constant, not a field).
    COUNTERS = (
        "total_tasks",
        "completed_tasks",
        "failed_tasks",
        "decisions_made",
        "checkpoints_created",
        "error_recovery_count",
    )

    total_tasks: int = 0
    completed_tasks: int = 0
    failed_tasks: int = 0
    decisions_made: int = 0
    checkpoints_created: int = 0
    error_recovery_count: int = 0
    duration_seconds: float = 0.0

    def __post_init__(self) -> None:
        for name in self.COUNTERS:
            _require_int(getattr(self, name), f"statistics.{name}", 0)
        self.duration_seconds = _require_seconds(
            self.duration_seconds, "statistics.duration_seconds"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_tasks": self.total_tasks,
            "completed_tasks": self.completed_tasks,
            "failed_tasks": self.failed_tasks,
            "decisions_made": self.decisions_made,
            "checkpoints_created": self.checkpoints_created,
            "error_recovery_count": self.error_recovery_count,
            "duration_seconds": self.duration_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionStatistics:
        return _from_mapping(cls, data, "statistics")


@record
class SessionConfiguration:
    """Settings the orchestrator runs the session with."""

    max_iterations: int = 3
    timeout_minutes: int = 120
    auto_checkpoint: bool = True
    error_recovery_enabled: bool = True

    def __post_init__(self) -> None:
        _require_int(self.max_iterations, "configuration.max_iterations", 1)
        _require_int(self.timeout_minutes, "configuration.timeout_minutes", 1)
        _require_bool(self.auto_checkpoint, "configuration.auto_checkpoint")
        _require_bool(self.error_recovery_enabled, "configuration.error_recovery_enabled")

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_iterations": self.max_iterations,
            "timeout_minutes": self.timeout_minutes,
            "auto_checkpoint": self.auto_checkpoint,
            "error_recovery_enabled": self.error_recovery_enabled,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionConfiguration:
        return _from_mapping(cls, data, "configuration")


@record
class StateChange:
    """One entry of a session's ``history``: a state change and when it happened.

    Stored as ``{"from": ..., "to": ..., "at": ..., "reason": ...}``.
    """

    from_status: SessionStatus
    to_status: SessionStatus
    at: datetime
    reason: str | None = None

    def __post_init__(self) -> None:
        self.from_status = _require_enum(SessionStatus, self.from_status, "history.from")
        self.to_status = _require_enum(SessionStatus, self.to_status, "history.to")
        self.at = parse_timestamp(self.at, name="history.at")
        if self.reason is not None:
            self.reason = _require_str(self.reason, "history.reason", empty=True)

    def to_dict(self) -> dict[str, Any]:
        # ``_value_`` is what ``.value`` returns, without the descriptor: every
        # write serialises the whole history again.
        data: dict[str, Any] = {
            "from": self.from_status._value_,
            "to": self.to_status._value_,
            "at": format_timestamp(self.at),
        }
        if self.reason is not None:
            data["reason"] = self.reason
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StateChange:
        mapping = _require_mapping(data, "history entry")
        unknown = sorted(set(mapping) - {"from", "to", "at", "reason"})
        if unknown:
            raise SessionValidationError(
                f"history entry has unknown field(s): {', '.join(unknown)}"
            )
        for key in ("from", "to", "at"):
            if key not in mapping:
                raise SessionValidationError(f"history entry is missing {key!r}")
        return cls(mapping["from"], mapping["to"], mapping["at"], mapping.get("reason"))


_FINGERPRINT = re.compile(r"[0-9a-f]{32}")

#: Operations a request id can be recorded for (a delete leaves no record).
REQUEST_OPERATIONS = frozenset(
    {"create", "update", "transition", "resume", "increment", "heartbeat"}
)


@record
class RequestRecord:
    """One idempotent request a session remembers (an entry of ``requests``).

    ``fingerprint`` is a hash of the operation and its arguments, so that a
    retry can be told from another request reusing the id; ``revision`` is
    the revision the request produced.  Stored as ``{"id", "operation",
    "fingerprint", "revision"}``.
    """

    request_id: str
    operation: str
    fingerprint: str
    revision: int

    def __post_init__(self) -> None:
        # As strict as the schema: a record these accept is one the writer can store.
        self.request_id = _require_str(self.request_id, "requests.id", empty=True)
        if not 1 <= len(self.request_id) <= 200:
            raise SessionValidationError("requests.id must hold 1 to 200 characters")
        if not isinstance(self.operation, str) or self.operation not in REQUEST_OPERATIONS:
            raise SessionValidationError(
                "requests.operation must be one of " + ", ".join(sorted(REQUEST_OPERATIONS))
            )
        if not isinstance(self.fingerprint, str) or not _FINGERPRINT.fullmatch(self.fingerprint):
            raise SessionValidationError("requests.fingerprint must be 32 lowercase hex digits")
        _require_int(self.revision, "requests.revision", 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "operation": self.operation,
            "fingerprint": self.fingerprint,
            "revision": self.revision,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestRecord:
        mapping = _require_mapping(data, "requests entry")
        keys = {"id", "operation", "fingerprint", "revision"}
        unknown = sorted(set(mapping) - keys)
        if unknown:
            raise SessionValidationError(
                f"requests entry has unknown field(s): {', '.join(unknown)}"
            )
        for key in sorted(keys):
            if key not in mapping:
                raise SessionValidationError(f"requests entry is missing {key!r}")
        return cls(mapping["id"], mapping["operation"], mapping["fingerprint"], mapping["revision"])


# ---------------------------------------------------------------- the session

#: Top-level keys this version knows; any other top-level key found in a
#: stored record is kept verbatim in ``Session.extra`` and written back.
KNOWN_FIELDS = (
    "schema_version",
    "session_id",
    "feature_request",
    "status",
    "created_at",
    "updated_at",
    "completed_at",
    "git_context",
    "current_phase",
    "prd_reference",
    "statistics",
    "configuration",
    "revision",
    "paused_from",
    "heartbeat_at",
    "history",
    "requests",
    "rerun_of",
)


@record
class Session:
    """One orchestrator run: what was asked, where, and how far it got."""

    session_id: str
    feature_request: str
    status: SessionStatus
    created_at: datetime
    git_context: GitContext
    current_phase: SessionPhase | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    prd_reference: PRDReference | None = None
    statistics: SessionStatistics = field(default_factory=SessionStatistics)
    configuration: SessionConfiguration = field(default_factory=SessionConfiguration)
    # Beyond the prototype: all top-level, so its loader still reads our files.
    paused_from: SessionStatus | None = None
    heartbeat_at: datetime | None = None
    history: list[StateChange] = field(default_factory=list)
    revision: int = 0
    schema_version: int = SCHEMA_VERSION
    #: Idempotent requests remembered: the create key for the session's life,
    #: and the most recent others (see :mod:`maestro.idempotency`).
    requests: list[RequestRecord] = field(default_factory=list, repr=False)
    #: The finished session this one runs again (``maestro rerun``), if any.
    rerun_of: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.session_id = _require_str(self.session_id, "session_id")
        self.feature_request = _require_str(self.feature_request, "feature_request")
        self.status = _require_enum(SessionStatus, self.status, "status")
        self.created_at = parse_timestamp(self.created_at, name="created_at")
        if isinstance(self.git_context, Mapping):
            self.git_context = GitContext.from_dict(self.git_context)
        elif not isinstance(self.git_context, GitContext):
            raise SessionValidationError(
                'git_context must be an object of fields such as {"branch": "main"}'
            )
        if self.current_phase is not None:
            self.current_phase = _require_enum(SessionPhase, self.current_phase, "current_phase")
        self.updated_at = _optional_timestamp(self.updated_at, "updated_at")
        self.completed_at = _optional_timestamp(self.completed_at, "completed_at")
        if isinstance(self.prd_reference, Mapping):
            self.prd_reference = PRDReference.from_dict(self.prd_reference)
        elif self.prd_reference is not None and not isinstance(self.prd_reference, PRDReference):
            raise SessionValidationError(
                'prd_reference must be an object of fields such as {"path": "docs/prd.md"}, or none'
            )
        if isinstance(self.statistics, Mapping):
            self.statistics = SessionStatistics.from_dict(self.statistics)
        elif not isinstance(self.statistics, SessionStatistics):
            raise SessionValidationError(
                'statistics must be an object of fields such as {"total_tasks": 8}'
            )
        if isinstance(self.configuration, Mapping):
            self.configuration = SessionConfiguration.from_dict(self.configuration)
        elif not isinstance(self.configuration, SessionConfiguration):
            raise SessionValidationError(
                'configuration must be an object of fields such as {"max_iterations": 5}'
            )
        if self.paused_from is not None:
            self.paused_from = _require_enum(SessionStatus, self.paused_from, "paused_from")
        self.heartbeat_at = _optional_timestamp(self.heartbeat_at, "heartbeat_at")
        if not isinstance(self.history, list):
            raise SessionValidationError("history must be a list")
        self.history = [
            entry if isinstance(entry, StateChange) else StateChange.from_dict(entry)
            for entry in self.history
        ]
        _require_int(self.revision, "revision", 0)
        _require_int(self.schema_version, "schema_version", 0)
        if not isinstance(self.requests, list):
            raise SessionValidationError("requests must be a list")
        self.requests = [
            entry if isinstance(entry, RequestRecord) else RequestRecord.from_dict(entry)
            for entry in self.requests
        ]
        if self.rerun_of is not None:
            self.rerun_of = _require_str(self.rerun_of, "rerun_of")
        if not isinstance(self.extra, dict):
            raise SessionValidationError("extra must be an object of fields")
        clashes = sorted(set(self.extra) & set(KNOWN_FIELDS))
        if clashes:
            raise SessionValidationError(
                f"extra must not hold known field(s): {', '.join(clashes)}"
            )

    @property
    def is_terminal(self) -> bool:
        """True for completed and failed sessions: nothing leaves those states."""
        return self.status in TERMINAL_STATES

    @property
    def last_activity(self) -> datetime:
        """The latest of creation, last update and last heartbeat."""
        latest = self.created_at
        for moment in (self.updated_at, self.heartbeat_at):
            if moment is not None and moment > latest:
                latest = moment
        return latest

    def to_dict(self) -> dict[str, Any]:
        """The record as stored in ``metadata.json`` (JSON-ready, ``None`` left out)."""
        data: dict[str, Any] = {
            "schema_version": self.schema_version,
            "session_id": self.session_id,
            "feature_request": self.feature_request,
            "status": self.status.value,
            "created_at": format_timestamp(self.created_at),
        }
        if self.updated_at is not None:
            data["updated_at"] = format_timestamp(self.updated_at)
        if self.completed_at is not None:
            data["completed_at"] = format_timestamp(self.completed_at)
        data["git_context"] = self.git_context.to_dict()
        if self.current_phase is not None:
            data["current_phase"] = self.current_phase.value
        if self.prd_reference is not None:
            data["prd_reference"] = self.prd_reference.to_dict()
        data["statistics"] = self.statistics.to_dict()
        data["configuration"] = self.configuration.to_dict()
        data["revision"] = self.revision
        if self.paused_from is not None:
            data["paused_from"] = self.paused_from.value
        if self.heartbeat_at is not None:
            data["heartbeat_at"] = format_timestamp(self.heartbeat_at)
        data["history"] = [entry.to_dict() for entry in self.history]
        if self.requests:
            # Left out when empty: a record without requests stays byte for byte as before.
            data["requests"] = [entry.to_dict() for entry in self.requests]
        if self.rerun_of is not None:
            data["rerun_of"] = self.rerun_of
        data.update(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session:
        """Build a session from a record (this version's or the prototype's).

        Unknown top-level keys are kept in ``extra``; unknown keys inside the
        nested objects are refused.  Raises ``SessionValidationError``.
        """
        if type(data) is dict:
            # Any exception: the checks below find what is wrong and say it.
            with contextlib.suppress(Exception):
                return _checked_session(data)
        mapping = _require_mapping(data, "session record")
        for key in ("session_id", "feature_request", "status", "created_at", "git_context"):
            if key not in mapping:
                raise SessionValidationError(f"session record is missing {key!r}")
        statistics = mapping.get("statistics")
        configuration = mapping.get("configuration")
        history = mapping.get("history", [])
        if not isinstance(history, list):
            raise SessionValidationError("history must be a list")
        requests = mapping.get("requests", [])
        if not isinstance(requests, list):
            raise SessionValidationError("requests must be a list")
        return cls(
            session_id=mapping["session_id"],
            feature_request=mapping["feature_request"],
            status=mapping["status"],
            created_at=mapping["created_at"],
            git_context=GitContext.from_dict(mapping["git_context"]),
            current_phase=mapping.get("current_phase"),
            updated_at=mapping.get("updated_at"),
            completed_at=mapping.get("completed_at"),
            prd_reference=(
                PRDReference.from_dict(mapping["prd_reference"])
                if mapping.get("prd_reference") is not None
                else None
            ),
            statistics=(
                SessionStatistics.from_dict(statistics)
                if statistics is not None
                else SessionStatistics()
            ),
            configuration=(
                SessionConfiguration.from_dict(configuration)
                if configuration is not None
                else SessionConfiguration()
            ),
            paused_from=mapping.get("paused_from"),
            heartbeat_at=mapping.get("heartbeat_at"),
            history=[StateChange.from_dict(entry) for entry in history],
            revision=mapping.get("revision", 0),
            schema_version=mapping.get("schema_version", SCHEMA_VERSION),
            requests=[RequestRecord.from_dict(entry) for entry in requests],
            rerun_of=mapping.get("rerun_of"),
            extra={k: v for k, v in mapping.items() if k not in KNOWN_FIELDS},
        )


# ---------------------------------------------------------------- trusted records


def _bare(cls: type[_D], values: dict[str, Any]) -> _D:
    """An instance of a dataclass with ``values`` set and ``__post_init__`` skipped."""
    instance = object.__new__(cls)
    instance.__dict__ = values
    return instance


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is UTC else parse_timestamp(moment)


def session_from_trusted_record(record: Mapping[str, Any]) -> Session:
    """Rebuild a session from a record this library serialised itself.

    Equal to ``Session.from_dict(record)`` for any record produced by
    ``Session.to_dict()``, at a fraction of the cost: nothing is checked
    again.  Only for records that never left the library's hands (the
    derived index keeps such copies); anything read from a file goes
    through ``from_dict``.
    """
    git = record["git_context"]
    prd = record.get("prd_reference")
    stats = record["statistics"]
    phase = record.get("current_phase")
    paused_from = record.get("paused_from")
    heartbeat_at = record.get("heartbeat_at")
    updated_at = record.get("updated_at")
    completed_at = record.get("completed_at")
    statuses = _BY_VALUE[SessionStatus]
    return _bare(
        Session,
        {
            "session_id": record["session_id"],
            "feature_request": record["feature_request"],
            "status": statuses[record["status"]],
            "created_at": _instant(record["created_at"]),
            "git_context": _bare(
                GitContext,
                {
                    "branch": git["branch"],
                    "commit": git["commit"],
                    "repo_root": git["repo_root"],
                    "is_worktree": git["is_worktree"],
                    "worktree_name": git.get("worktree_name"),
                },
            ),
            "current_phase": None if phase is None else _BY_VALUE[SessionPhase][phase],
            "updated_at": None if updated_at is None else _instant(updated_at),
            "completed_at": None if completed_at is None else _instant(completed_at),
            "prd_reference": None
            if prd is None
            else _bare(
                PRDReference,
                {"filename": prd["filename"], "path": prd["path"], "version": prd.get("version")},
            ),
            "statistics": _bare(
                SessionStatistics, {**stats, "duration_seconds": float(stats["duration_seconds"])}
            ),
            "configuration": _bare(SessionConfiguration, dict(record["configuration"])),
            "paused_from": None if paused_from is None else statuses[paused_from],
            "heartbeat_at": None if heartbeat_at is None else _instant(heartbeat_at),
            "history": [
                _bare(
                    StateChange,
                    {
                        "from_status": statuses[entry["from"]],
                        "to_status": statuses[entry["to"]],
                        "at": _instant(entry["at"]),
                        "reason": entry.get("reason"),
                    },
                )
                for entry in record["history"]
            ],
            "revision": record["revision"],
            "schema_version": record["schema_version"],
            "requests": [
                _bare(
                    RequestRecord,
                    {
                        "request_id": entry["id"],
                        "operation": entry["operation"],
                        "fingerprint": entry["fingerprint"],
                        "revision": entry["revision"],
                    },
                )
                for entry in record.get("requests", ())
            ],
            "rerun_of": record.get("rerun_of"),
            "extra": {}
            if record.keys() <= _KNOWN
            else {k: v for k, v in record.items() if k not in _KNOWN},
        },
    )


_KNOWN = frozenset(KNOWN_FIELDS)
_GIT_KEYS = frozenset(("branch", "commit", "repo_root", "is_worktree", "worktree_name"))
_PRD_KEYS = frozenset(("filename", "path", "version"))
_STATISTICS_KEYS = frozenset(SessionStatistics.COUNTERS) | {"duration_seconds"}
_CONFIGURATION_KEYS = frozenset(
    ("max_iterations", "timeout_minutes", "auto_checkpoint", "error_recovery_enabled")
)
_HISTORY_KEYS = frozenset(("from", "to", "at", "reason"))
_REQUEST_KEYS = frozenset(("id", "operation", "fingerprint", "revision"))


def _checked_session(record: dict[str, Any]) -> Session:
    """:meth:`Session.from_dict` of a plain record, checked field by field without the
    dataclasses' generic machinery; any exception means "ask ``from_dict``".

    Every value goes through the very check (``_require_*``, ``parse_timestamp``,
    the enum tables) that the constructors apply to it, with the same
    defaults, and the objects are made with those results, so a session
    returned here equals the one the constructors would make.  Whatever is
    not plainly right (a nested value of another type, an unknown or missing
    key, a failed check) raises, and ``from_dict`` starts over on its own
    path, which reports the problem in its words.  Reading 100,000 records
    from their files spends most of its time here.
    """
    get = record.get
    statuses = _BY_VALUE[SessionStatus]
    text = _require_str
    number = _require_int
    flag = _require_bool
    git = record["git_context"]
    if type(git) is not dict or not git.keys() <= _GIT_KEYS:
        raise ValueError
    worktree = git.get("worktree_name")
    git_context = _bare(
        GitContext,
        {
            "branch": text(git["branch"], "git_context.branch"),
            "commit": text(git["commit"], "git_context.commit"),
            "repo_root": text(git["repo_root"], "git_context.repo_root"),
            "is_worktree": flag(git.get("is_worktree", False), "git_context.is_worktree"),
            "worktree_name": None
            if worktree is None
            else text(worktree, "git_context.worktree_name"),
        },
    )
    prd = get("prd_reference")
    prd_reference = None
    if prd is not None:
        if type(prd) is not dict or not prd.keys() <= _PRD_KEYS:
            raise ValueError
        version = prd.get("version")
        prd_reference = _bare(
            PRDReference,
            {
                "filename": text(prd["filename"], "prd_reference.filename"),
                "path": text(prd["path"], "prd_reference.path"),
                "version": None if version is None else text(version, "prd_reference.version"),
            },
        )
    stats = get("statistics")
    if stats is None:
        statistics = SessionStatistics()
    else:
        if type(stats) is not dict or not stats.keys() <= _STATISTICS_KEYS:
            raise ValueError
        values: dict[str, Any] = {}
        for name in SessionStatistics.COUNTERS:
            count = stats.get(name, 0)
            # What _require_int(count, ..., 0) lets through, bool excluded by type.
            if type(count) is not int or not 0 <= count <= MAX_INT:
                raise ValueError
            values[name] = count
        values["duration_seconds"] = _require_seconds(
            stats.get("duration_seconds", 0.0), "statistics.duration_seconds"
        )
        statistics = _bare(SessionStatistics, values)
    config = get("configuration")
    if config is None:
        configuration = SessionConfiguration()
    else:
        if type(config) is not dict or not config.keys() <= _CONFIGURATION_KEYS:
            raise ValueError
        configuration = _bare(
            SessionConfiguration,
            {
                "max_iterations": number(config.get("max_iterations", 3), "configuration", 1),
                "timeout_minutes": number(config.get("timeout_minutes", 120), "configuration", 1),
                "auto_checkpoint": flag(config.get("auto_checkpoint", True), "configuration"),
                "error_recovery_enabled": flag(
                    config.get("error_recovery_enabled", True), "configuration"
                ),
            },
        )
    entries = get("history", [])
    if type(entries) is not list:
        raise ValueError
    history = []
    for entry in entries:
        if type(entry) is not dict or not entry.keys() <= _HISTORY_KEYS:
            raise ValueError
        reason = entry.get("reason")
        history.append(
            _bare(
                StateChange,
                {
                    "from_status": statuses[entry["from"]],
                    "to_status": statuses[entry["to"]],
                    "at": parse_timestamp(entry["at"], name="history.at"),
                    "reason": None if reason is None else text(reason, "history", empty=True),
                },
            )
        )
    entries = get("requests", [])
    if type(entries) is not list:
        raise ValueError
    requests = []
    for entry in entries:
        if type(entry) is not dict or entry.keys() != _REQUEST_KEYS:
            raise ValueError
        request_id = text(entry["id"], "requests.id", empty=True)
        fingerprint = entry["fingerprint"]
        if (
            not 1 <= len(request_id) <= 200
            or entry["operation"] not in REQUEST_OPERATIONS
            or type(fingerprint) is not str
            or not _FINGERPRINT.fullmatch(fingerprint)
        ):
            raise ValueError
        requests.append(
            _bare(
                RequestRecord,
                {
                    "request_id": request_id,
                    "operation": entry["operation"],
                    "fingerprint": fingerprint,
                    "revision": number(entry["revision"], "requests.revision", 0),
                },
            )
        )
    phase = get("current_phase")
    paused_from = get("paused_from")
    rerun_of = get("rerun_of")
    return _bare(
        Session,
        {
            "session_id": text(record["session_id"], "session_id"),
            "feature_request": text(record["feature_request"], "feature_request"),
            "status": statuses[record["status"]],
            "created_at": parse_timestamp(record["created_at"], name="created_at"),
            "git_context": git_context,
            "current_phase": None if phase is None else _BY_VALUE[SessionPhase][phase],
            "updated_at": _optional_timestamp(get("updated_at"), "updated_at"),
            "completed_at": _optional_timestamp(get("completed_at"), "completed_at"),
            "prd_reference": prd_reference,
            "statistics": statistics,
            "configuration": configuration,
            "paused_from": None if paused_from is None else statuses[paused_from],
            "heartbeat_at": _optional_timestamp(get("heartbeat_at"), "heartbeat_at"),
            "history": history,
            "revision": number(get("revision", 0), "revision", 0),
            "schema_version": number(get("schema_version", SCHEMA_VERSION), "schema_version", 0),
            "requests": requests,
            "rerun_of": None if rerun_of is None else text(rerun_of, "rerun_of"),
            "extra": {}
            if record.keys() <= _KNOWN
            else {k: v for k, v in record.items() if k not in _KNOWN},
        },
    )


#: Every field of a session but ``extra``, which holds the record's other keys.
_RECORD_FIELDS = frozenset(field_names(Session)) - {"extra"}


def session_from_owned_record(record: dict[str, Any]) -> Session:
    """:func:`session_from_trusted_record` of a record decoded for this call alone.

    Equal to it, and faster on a large result: instead of being copied, the
    record's dicts become the objects' own and are changed in place (the
    session's, its git context's, statistics' and configuration's), so the
    caller must not use ``record`` afterwards.
    """
    new = object.__new__
    statuses = _BY_VALUE[SessionStatus]
    git = record["git_context"]
    if "worktree_name" not in git:
        git["worktree_name"] = None
    git_context = new(GitContext)
    git_context.__dict__ = git
    stats = record["statistics"]
    if type(stats["duration_seconds"]) is not float:
        stats["duration_seconds"] = float(stats["duration_seconds"])
    statistics = new(SessionStatistics)
    statistics.__dict__ = stats
    configuration = new(SessionConfiguration)
    configuration.__dict__ = record["configuration"]
    get = record.get
    phase = get("current_phase")
    prd = get("prd_reference")
    paused_from = get("paused_from")
    heartbeat_at = get("heartbeat_at")
    updated_at = get("updated_at")
    completed_at = get("completed_at")
    history = record["history"]
    requests = get("requests")
    record["status"] = statuses[record["status"]]
    record["created_at"] = _instant(record["created_at"])
    record["git_context"] = git_context
    record["current_phase"] = None if phase is None else _BY_VALUE[SessionPhase][phase]
    record["updated_at"] = None if updated_at is None else _instant(updated_at)
    record["completed_at"] = None if completed_at is None else _instant(completed_at)
    record["prd_reference"] = (
        None
        if prd is None
        else _bare(
            PRDReference,
            {"filename": prd["filename"], "path": prd["path"], "version": prd.get("version")},
        )
    )
    record["statistics"] = statistics
    record["configuration"] = configuration
    record["paused_from"] = None if paused_from is None else statuses[paused_from]
    record["heartbeat_at"] = None if heartbeat_at is None else _instant(heartbeat_at)
    if history:
        record["history"] = [
            _bare(
                StateChange,
                {
                    "from_status": statuses[entry["from"]],
                    "to_status": statuses[entry["to"]],
                    "at": _instant(entry["at"]),
                    "reason": entry.get("reason"),
                },
            )
            for entry in history
        ]
    record["requests"] = (
        [
            _bare(
                RequestRecord,
                {
                    "request_id": entry["id"],
                    "operation": entry["operation"],
                    "fingerprint": entry["fingerprint"],
                    "revision": entry["revision"],
                },
            )
            for entry in requests
        ]
        if requests
        else []
    )
    if "rerun_of" not in record:
        record["rerun_of"] = None
    if len(record) == len(_RECORD_FIELDS):
        record["extra"] = {}
    else:
        record["extra"] = {k: record.pop(k) for k in list(record) if k not in _RECORD_FIELDS}
    session = new(Session)
    session.__dict__ = record
    return session
