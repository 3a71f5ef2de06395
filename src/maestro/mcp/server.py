"""The MCP server: tools and resources over one :class:`~maestro.SessionManager`.

Every tool is one or two manager calls; the rules (state machine, revisions,
request ids, validation) stay in the manager.  What this module adds is the
shape agents see: typed arguments named as in the Python API, typed results
(their output schemas), annotations, and errors worded so that an agent can
correct its call.

Resource updates follow the SDK's ``subscriptions/listen`` model: the server
owns a :class:`~mcp.server.subscriptions.InMemorySubscriptionBus`, and a task
that follows the store's change feed publishes ``ResourceUpdated`` for
``maestro://sessions/{id}`` and ``maestro://sessions/{id}/timeline`` whenever
a session changes, whichever process wrote it.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourcesListChanged, ResourceUpdated
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field

from maestro import Capability, ChangeEvent, ChangeKind, errors
from maestro.lazylog import LazyLogger
from maestro.manager import SessionManager
from maestro.mcp.models import (
    DeleteResult,
    Phase,
    SessionList,
    SessionPageResult,
    SessionRecord,
    StatsResult,
    Status,
    TimelineResult,
)
from maestro.models import Session

__all__ = [
    "SESSION_URI",
    "TIMELINE_URI",
    "build_server",
    "session_uri",
    "timeline_uri",
    "tool_error",
]

log = LazyLogger("maestro.mcp")

SESSION_URI = "maestro://sessions/{id}"
TIMELINE_URI = "maestro://sessions/{id}/timeline"

INSTRUCTIONS = """\
Maestro records the sessions of an autonomous coding orchestrator: one session
per feature request, moving through
initializing -> planning -> generating_tasks -> implementing <-> validating
-> generating_report -> completed; any running state may go to paused or
failed; completed and failed are final.  A paused session resumes where it was.

Every record has a revision that grows with each write: pass the revision you
read as expected_revision to write only if nobody wrote in between.  Give
writes a request_id of your own (any text, such as a UUID): a retry with the
same request_id and arguments changes nothing and returns the same session.
Session ids may be shortened to a unique prefix of 6 or more characters.
Read a session as maestro://sessions/{id}, its timeline as
maestro://sessions/{id}/timeline; both announce updates to listeners.
"""


def session_uri(session_id: str) -> str:
    return SESSION_URI.replace("{id}", session_id)


def timeline_uri(session_id: str) -> str:
    return TIMELINE_URI.replace("{id}", session_id)


# ---------------------------------------------------------------- errors


def tool_error(error: errors.SessionError) -> ToolError:
    """The error an agent reads: its kind first, then what to do about it.

    Built from the error's attributes (ids, states, revisions), never from
    stored text: a feature request or a file's contents cannot reach it.
    """
    if isinstance(error, errors.InvalidTransitionError) and error.allowed:
        allowed = ", ".join(error.allowed)
        return ToolError(
            f"invalid_transition: session {error.session_id} is {error.current} and cannot "
            f"go to {error.target}; allowed targets: {allowed}"
        )
    if isinstance(error, errors.InvalidTransitionError) and error.target == "resume":
        return ToolError(
            f"invalid_transition: session {error.session_id} is {error.current}, not paused; "
            "only a paused session can be resumed"
        )
    if isinstance(error, errors.InvalidTransitionError):
        return ToolError(
            f"invalid_transition: session {error.session_id} is {error.current}, a final "
            "state; allowed targets: none"
        )
    if isinstance(error, errors.ConflictError) and error.request_id is None:
        return ToolError(
            f"conflict: session {error.session_id} is at revision {error.actual}, not "
            f"{error.expected}: it was written since you read it; current revision: "
            f"{error.actual}. Read it again and retry with expected_revision={error.actual} "
            "if the change still applies"
        )
    if isinstance(error, errors.ConflictError):
        return ToolError(f"conflict: {error}")
    if isinstance(error, errors.InvalidSessionIdError):
        return ToolError(f"invalid_argument: {error}")
    if isinstance(error, errors.SessionNotFoundError):
        return ToolError(f"not_found: {error}; list_sessions shows the ids there are")
    kinds: list[tuple[type[errors.SessionError], str]] = [
        (errors.SessionValidationError, "invalid_argument"),
        (errors.UnsupportedOperationError, "unsupported"),
        (errors.CorruptSessionError, "corrupt_record"),
        (errors.LockTimeoutError, "busy"),
        (errors.UnsafePathError, "refused"),
        (errors.StorageError, "storage"),
    ]
    kind = next((name for cls, name in kinds if isinstance(error, cls)), "error")
    return ToolError(f"{kind}: {' '.join(str(error).split())}")


R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def _calling(action: Callable[[], R]) -> R:
    """Run ``action``; a library error becomes a tool error the agent can act on."""
    try:
        return action()
    except errors.SessionError as error:
        raise tool_error(error) from None


# ---------------------------------------------------------------- arguments

SessionId = Annotated[
    str,
    Field(
        description="The session's id, or a unique prefix of it of 6 or more characters",
        min_length=1,
        max_length=100,
    ),
]
ExpectedRevision = Annotated[
    int | None,
    Field(
        description="Write only if the session is still at this revision (as last read); "
        "a mismatch fails with the current revision",
        ge=0,
    ),
]
RequestId = Annotated[
    str | None,
    Field(
        description="Your idempotency key for this write (1-200 printable characters, "
        "such as a UUID): a retry with the same key and arguments changes nothing and "
        "returns the same result",
        min_length=1,
        max_length=200,
    ),
]
Reason = Annotated[
    str | None, Field(description="Why, in a few words; kept in the session's history")
]
Moment = Annotated[
    str | None, Field(description="ISO 8601 timestamp, such as 2026-01-07T13:00:00Z")
]
Statuses = Annotated[list[Status] | None, Field(description="Keep sessions in any of these states")]
Phases = Annotated[list[Phase] | None, Field(description="Keep sessions in any of these phases")]
Branch = Annotated[str | None, Field(description="Keep sessions on this git branch")]
Delta = Annotated[int | None, Field(description="Amount to add (negative subtracts)")]

_READ = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


def _write(*, destructive: bool, idempotent: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=False,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


class _Partial(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StatisticsUpdate(_Partial):
    """Counters to set (increment_statistics adds instead)."""

    total_tasks: int | None = Field(default=None, ge=0)
    completed_tasks: int | None = Field(default=None, ge=0)
    failed_tasks: int | None = Field(default=None, ge=0)
    decisions_made: int | None = Field(default=None, ge=0)
    checkpoints_created: int | None = Field(default=None, ge=0)
    error_recovery_count: int | None = Field(default=None, ge=0)


class ConfigurationInput(_Partial):
    """Settings to run the session with; those left out keep their value."""

    max_iterations: int | None = Field(default=None, ge=1)
    timeout_minutes: int | None = Field(default=None, ge=1)
    auto_checkpoint: bool | None = None
    error_recovery_enabled: bool | None = None


class GitContextUpdate(_Partial):
    """Where the session runs; fields left out keep their value."""

    branch: str | None = None
    commit: str | None = None
    repo_root: str | None = None
    is_worktree: bool | None = None
    worktree_name: str | None = None


class SessionUpdates(_Partial):
    """The fields to change; only those given change.  Nested objects merge."""

    feature_request: str | None = None
    status: Status | None = Field(
        default=None, description="A new state, checked like transition_session"
    )
    current_phase: Phase | None = None
    prd_reference: str | None = Field(
        default=None, description="The PRD's path, such as docs/prd.md"
    )
    statistics: StatisticsUpdate | None = None
    configuration: ConfigurationInput | None = None
    git_context: GitContextUpdate | None = None


def _given(model: BaseModel) -> dict[str, Any]:
    """The fields the caller set, nested objects as plain mappings of what they set."""
    given = {name: getattr(model, name) for name in model.model_fields_set}
    return {
        name: _given(value) if isinstance(value, BaseModel) else value
        for name, value in given.items()
    }


# ---------------------------------------------------------------- the server


def build_server(
    manager: SessionManager,
    *,
    allow_delete: bool = False,
    publish_changes: bool = True,
    name: str = "maestro",
) -> MCPServer[Any]:
    """An MCP server over ``manager``.

    ``allow_delete`` adds the ``delete_session`` tool.  ``publish_changes``
    follows the store's change feed while the server runs (when the store
    has one) and announces each changed session's resources to listeners.
    """
    bus = InMemorySubscriptionBus()

    @asynccontextmanager
    async def lifespan(app: MCPServer[Any]) -> AsyncIterator[None]:
        if not publish_changes or Capability.CHANGES not in manager.store.capabilities:
            yield None
            return
        try:
            cursor = await anyio.to_thread.run_sync(manager.changes_cursor)
        except errors.SessionError as error:
            # The tools still work; only listeners go without updates.
            log.warning("resource updates are off: %s", error)
            yield None
            return
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_follow_changes, manager, bus, cursor)
            try:
                yield None
            finally:
                tasks.cancel_scope.cancel()

    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("maestro-sessions")
    except PackageNotFoundError:  # pragma: no cover - a source tree not installed
        release = "0"
    server: MCPServer[Any] = MCPServer(
        name,
        title="Maestro sessions",
        instructions=INSTRUCTIONS,
        version=release,
        lifespan=lifespan,
        subscriptions=bus,
        log_level="WARNING",
    )

    def tool(annotations: ToolAnnotations) -> Callable[[F], F]:
        """Register a tool; its docstring, dedented, is what agents read."""

        def register(fn: F) -> F:
            description = inspect.cleandoc(fn.__doc__ or "")
            server.add_tool(fn, description=description, annotations=annotations)
            return fn

        return register

    def resolve(session_id: str) -> str:
        return manager.resolve_session_id(session_id.strip().lower())

    def record(session: Session) -> SessionRecord:
        return SessionRecord.of(session)

    # ------------------------------------------------------------ reads

    @tool(_READ)
    def list_sessions(
        status: Statuses = None,
        phase: Phases = None,
        branch: Branch = None,
        worktree: Annotated[
            str | None, Field(description="Keep sessions in this git worktree (its name)")
        ] = None,
        created_after: Moment = None,
        created_before: Moment = None,
        updated_after: Moment = None,
        updated_before: Moment = None,
        active_before: Annotated[
            str | None,
            Field(
                description="Keep sessions whose last activity (update or heartbeat) is at "
                "or before this ISO 8601 timestamp"
            ),
        ] = None,
        text: Annotated[
            str | None,
            Field(description="Words the feature request must all contain (word* for a prefix)"),
        ] = None,
        order_by: Annotated[
            Literal["created", "updated"], Field(description="Sort by creation or last update")
        ] = "created",
        descending: Annotated[bool, Field(description="Newest first")] = True,
        limit: Annotated[int, Field(description="Page size", ge=1, le=200)] = 50,
        cursor: Annotated[
            str | None,
            Field(description="next_cursor of the previous page (with the same filters)"),
        ] = None,
    ) -> SessionPageResult:
        """List sessions matching every filter given, one page at a time, newest first.

        Time bounds are inclusive.  When next_cursor is not null, call again
        with cursor=next_cursor and the same filters for the next page.
        """
        page = _calling(
            lambda: manager.query_page(
                status=status,
                phase=phase,
                branch=branch,
                worktree=worktree,
                created_after=created_after,
                created_before=created_before,
                updated_after=updated_after,
                updated_before=updated_before,
                active_before=active_before,
                text=text,
                order_by=order_by,
                descending=descending,
                limit=limit,
                cursor=cursor,
            )
        )
        return SessionPageResult.of(page)

    @tool(_READ)
    def search_sessions(
        text: Annotated[
            str,
            Field(
                description="Words the feature request must all contain; word* matches a prefix",
                min_length=1,
            ),
        ],
        status: Statuses = None,
        limit: Annotated[int, Field(description="At most this many", ge=1, le=200)] = 20,
    ) -> SessionList:
        """Full-text search over the feature requests, best match first."""
        return SessionList.of(
            _calling(lambda: manager.query_sessions(text=text, status=status, limit=limit))
        )

    @tool(_READ)
    def get_session(session_id: SessionId) -> SessionRecord:
        """Read one session: request, state, phase, git context, counters, history, revision."""
        return record(_calling(lambda: manager.get_session(resolve(session_id))))

    @tool(_READ)
    def session_timeline(session_id: SessionId) -> TimelineResult:
        """A session's life state by state: when it entered and left each, seconds per
        state, active and paused time."""
        return TimelineResult.of(_calling(lambda: manager.timeline(resolve(session_id))))

    @tool(_READ)
    def stats(
        status: Statuses = None,
        branch: Branch = None,
        created_after: Moment = None,
        created_before: Moment = None,
    ) -> StatsResult:
        """Counts by state, success rate, time spent per state and sessions per branch,
        over the sessions matching the filters (all when none is given)."""
        return StatsResult.of(
            _calling(
                lambda: manager.stats(
                    status=status,
                    branch=branch,
                    created_after=created_after,
                    created_before=created_before,
                )
            )
        )

    @tool(_READ)
    def find_stale_sessions(
        older_than: Annotated[
            str | None,
            Field(
                description="An age such as 30m, 2h or 1d; without it each session's own "
                "configuration.timeout_minutes applies"
            ),
        ] = None,
    ) -> SessionList:
        """Running sessions with no update or heartbeat for too long (a crashed worker's),
        oldest activity first.  Paused sessions are never stale."""
        return SessionList.of(_calling(lambda: manager.find_stale_sessions(older_than)))

    # ------------------------------------------------------------ writes

    @tool(_write(destructive=False))
    def create_session(
        feature_request: Annotated[
            str, Field(description="What the session is to build", min_length=1)
        ],
        configuration: ConfigurationInput | None = None,
        prd_reference: Annotated[
            str | None, Field(description="The PRD's path, such as docs/prd.md")
        ] = None,
        request_id: RequestId = None,
    ) -> SessionRecord:
        """Start a new session in state initializing; the git context is captured here.

        Give a request_id: if the answer is lost, calling again with it returns
        the session the first call created instead of a second one.
        """
        config = None if configuration is None else _given(configuration)
        return record(
            _calling(
                lambda: manager.create_session(
                    feature_request,
                    config,
                    prd_reference=prd_reference,
                    request_id=request_id,
                )
            )
        )

    @tool(_write(destructive=True))
    def transition_session(
        session_id: SessionId,
        to: Annotated[Status, Field(description="The state to move to")],
        reason: Reason = None,
        expected_revision: ExpectedRevision = None,
        request_id: RequestId = None,
    ) -> SessionRecord:
        """Move a session to another state, if the lifecycle allows it.

        initializing -> planning -> generating_tasks -> implementing <-> validating
        -> generating_report -> completed; any running state -> paused or failed.
        completed and failed are final (this is what makes the tool destructive).
        A refused move names the allowed targets.
        """
        return record(
            _calling(
                lambda: manager.transition_state(
                    resolve(session_id),
                    to,
                    reason=reason,
                    expected_revision=expected_revision,
                    request_id=request_id,
                )
            )
        )

    @tool(_write(destructive=False))
    def pause_session(
        session_id: SessionId,
        reason: Reason = None,
        expected_revision: ExpectedRevision = None,
        request_id: RequestId = None,
    ) -> SessionRecord:
        """Pause a running session; it remembers the state it was in (paused_from)."""
        return record(
            _calling(
                lambda: manager.pause_session(
                    resolve(session_id),
                    reason=reason,
                    expected_revision=expected_revision,
                    request_id=request_id,
                )
            )
        )

    @tool(_write(destructive=False))
    def resume_session(
        session_id: SessionId,
        reason: Reason = None,
        expected_revision: ExpectedRevision = None,
        request_id: RequestId = None,
    ) -> SessionRecord:
        """Return a paused session to the state it was paused from."""
        return record(
            _calling(
                lambda: manager.resume_session(
                    resolve(session_id),
                    reason=reason,
                    expected_revision=expected_revision,
                    request_id=request_id,
                )
            )
        )

    @tool(_write(destructive=True))
    def update_session(
        session_id: SessionId,
        updates: SessionUpdates,
        reason: Annotated[
            str | None, Field(description="Why; kept in the history when the status changes")
        ] = None,
        expected_revision: ExpectedRevision = None,
        request_id: RequestId = None,
    ) -> SessionRecord:
        """Change fields of a session in one atomic write.

        statistics, configuration and git_context merge into the stored values
        (counters are set, not added: use increment_statistics to add).  A
        status goes through the lifecycle like transition_session.  A finished
        session only takes statistics and prd_reference.
        """
        changes = _given(updates)
        return record(
            _calling(
                lambda: manager.update_session(
                    resolve(session_id),
                    changes,
                    reason=reason,
                    expected_revision=expected_revision,
                    request_id=request_id,
                )
            )
        )

    @tool(_write(destructive=False))
    def increment_statistics(
        session_id: SessionId,
        total_tasks: Delta = None,
        completed_tasks: Delta = None,
        failed_tasks: Delta = None,
        decisions_made: Delta = None,
        checkpoints_created: Delta = None,
        error_recovery_count: Delta = None,
        expected_revision: ExpectedRevision = None,
        request_id: RequestId = None,
    ) -> SessionRecord:
        """Add to statistics counters atomically, such as completed_tasks=1.

        Safe against concurrent writers; no counter may drop below zero, and
        completed_tasks + failed_tasks may not exceed a non-zero total_tasks.
        """
        given = {
            "total_tasks": total_tasks,
            "completed_tasks": completed_tasks,
            "failed_tasks": failed_tasks,
            "decisions_made": decisions_made,
            "checkpoints_created": checkpoints_created,
            "error_recovery_count": error_recovery_count,
        }
        deltas = {counter: amount for counter, amount in given.items() if amount is not None}
        return record(
            _calling(
                lambda: manager.increment_statistics(
                    resolve(session_id),
                    expected_revision=expected_revision,
                    request_id=request_id,
                    **deltas,
                )
            )
        )

    @tool(_write(destructive=False, idempotent=True))
    def heartbeat(
        session_id: SessionId,
        expected_revision: ExpectedRevision = None,
        request_id: RequestId = None,
    ) -> SessionRecord:
        """Record that the worker driving a running session is alive (heartbeat_at).

        Call it while working so find_stale_sessions does not report the session.
        """
        return record(
            _calling(
                lambda: manager.heartbeat(
                    resolve(session_id),
                    expected_revision=expected_revision,
                    request_id=request_id,
                )
            )
        )

    if allow_delete:

        @tool(_write(destructive=True, idempotent=True))
        def delete_session(
            session_id: SessionId,
            expected_revision: ExpectedRevision = None,
            request_id: RequestId = None,
        ) -> DeleteResult:
            """Delete a session and every file in its directory, for good.

            With a request_id, deleting again (a retry) succeeds.
            """
            sid = _calling(lambda: resolve(session_id))
            _calling(
                lambda: manager.delete_session(
                    sid, expected_revision=expected_revision, request_id=request_id
                )
            )
            return DeleteResult(session_id=sid, deleted=True)

    # ------------------------------------------------------------ resources

    def read(session_id: str, render: Callable[[str], BaseModel]) -> str:
        try:
            model = render(resolve(session_id))
        except errors.SessionNotFoundError as error:
            raise ResourceNotFoundError(str(tool_error(error))) from None
        except errors.SessionError as error:
            raise ResourceError(str(tool_error(error))) from None
        return json.dumps(model.model_dump(mode="json", by_alias=True), indent=2)

    @server.resource(
        SESSION_URI,
        name="session",
        description="A session's record as get_session returns it (JSON)",
        mime_type="application/json",
    )
    def session_resource(id: str) -> str:
        return read(id, lambda sid: record(manager.get_session(sid)))

    @server.resource(
        TIMELINE_URI,
        name="session_timeline",
        description="A session's timeline as session_timeline returns it (JSON)",
        mime_type="application/json",
    )
    def timeline_resource(id: str) -> str:
        return read(id, lambda sid: TimelineResult.of(manager.timeline(sid)))

    return server


# ---------------------------------------------------------------- updates


def _events_after(manager: SessionManager, cursor: str, stop: threading.Event) -> list[ChangeEvent]:
    """The events after ``cursor``, waiting up to a second for the first one."""
    events = list(manager.changes(cursor))
    if events or stop.is_set():
        return events
    waiting = manager.changes(cursor, follow=True, timeout=1.0)
    try:
        for event in waiting:
            return [event]  # the rest, if any, on the next call
    finally:
        waiting.close()
    return []


async def _follow_changes(
    manager: SessionManager, bus: InMemorySubscriptionBus, cursor: str
) -> None:
    """Publish the resources of every changed session until cancelled."""
    stop = threading.Event()
    try:
        while True:
            try:
                events = await anyio.to_thread.run_sync(
                    _events_after, manager, cursor, stop, abandon_on_cancel=True
                )
            except errors.SessionError as error:
                log.warning("reading the change feed failed: %s; retrying", error)
                await anyio.sleep(1.0)
                continue
            for event in events:
                cursor = event.cursor
                if event.kind is ChangeKind.RESET or event.session_id is None:
                    # What changed is no longer known: every session may have.
                    await bus.publish(ResourcesListChanged())
                    continue
                await bus.publish(ResourceUpdated(uri=session_uri(event.session_id)))
                await bus.publish(ResourceUpdated(uri=timeline_uri(event.session_id)))
    finally:
        stop.set()
