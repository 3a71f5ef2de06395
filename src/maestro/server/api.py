"""The routes of ``/api/v1``: each one a call or two to :class:`SessionManager`.

Conventions, the same on every route:

* a session is ``Session.to_dict()``; its ``ETag`` is its revision;
* ``If-Match`` is ``expected_revision`` (412 when it does not match),
  ``Idempotency-Key`` is ``request_id`` (a retry gives the first answer);
* a session id in a path may be a unique prefix of 6+ characters;
* errors are the maestro exception, mapped once in :mod:`maestro.server.errors`.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Body, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import StreamingResponse

from maestro import ChangeKind, Session, SessionPhase, SessionStatus, errors
from maestro.lifecycle import ACTIVE_STATES
from maestro.manager import SessionManager
from maestro.server import schemas
from maestro.server.events import FeedHub, event_stream, read_after
from maestro.server.pagecache import PageCache

__all__ = ["json_response", "router"]

router = APIRouter(prefix="/api/v1")

Status = Annotated[list[SessionStatus] | None, Query(description="Repeat for several states.")]
Phase = Annotated[list[SessionPhase] | None, Query(description="Repeat for several phases.")]
Moment = Annotated[
    str | None,
    Query(description="ISO 8601 instant or date, such as 2026-01-07T13:00:00Z.", max_length=64),
]
IfMatch = Annotated[str | None, Header(alias="If-Match", description="A revision, as ETag.")]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Makes a retry of this write a no-op."),
]


class Order(StrEnum):
    """Newest first by creation (default), oldest first, or by last update."""

    NEWEST = "-created"
    OLDEST = "created"
    RECENTLY_UPDATED = "-updated"
    LEAST_RECENTLY_UPDATED = "updated"


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    feature_request: str = Field(min_length=1, max_length=100_000)
    configuration: dict[str, Any] | None = None


class TransitionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    to: SessionStatus
    reason: str | None = Field(default=None, max_length=10_000)
    from_: SessionStatus | None = Field(
        default=None,
        alias="from",
        description="Refuse (409) if the session is no longer in this state.",
    )


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    reason: str | None = Field(default=None, max_length=10_000)
    from_: SessionStatus | None = Field(
        default=None,
        alias="from",
        description="Refuse (409) if the session is no longer in this state.",
    )


def _manager(request: Request) -> SessionManager:
    manager: SessionManager = request.app.state.manager
    return manager


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json_response(orjson.dumps(payload), status, headers)


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The response of JSON already made: every JSON answer of the API has these headers."""
    return Response(
        body,
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store", **(headers or {})},
    )


def _etag(session: Session) -> str:
    return f'"{session.revision}"'


def _session(session: Session, status: int = 200, **headers: str) -> Response:
    return _json(session.to_dict(), status, {"etag": _etag(session), **headers})


def _revision(if_match: str | None) -> int | None:
    """``If-Match: "7"`` → 7; ``*`` or no header → no check."""
    if if_match is None or if_match.strip() == "*":
        return None
    text = if_match.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        text = text[1:-1]
    if not text.isdigit() or len(text) > 18:
        raise errors.SessionValidationError(
            'If-Match must be a revision as the ETag gives it, such as "7"'
        )
    return int(text)


def _resolve(manager: SessionManager, session_id: str) -> str:
    return manager.resolve_session_id(session_id.strip().lower())


def _filters(
    status: list[SessionStatus] | None,
    phase: list[SessionPhase] | None,
    branch: str | None,
    worktree: str | None,
    created_after: str | None,
    created_before: str | None,
    updated_after: str | None,
    updated_before: str | None,
    q: str | None,
    active_before: str | None = None,
) -> dict[str, Any]:
    given = {
        "active_before": active_before,
        "status": status or None,
        "phase": phase or None,
        "branch": branch,
        "worktree": worktree,
        "created_after": created_after,
        "created_before": created_before,
        "updated_after": updated_after,
        "updated_before": updated_before,
        "text": q,
    }
    return {key: value for key, value in given.items() if value is not None}


@router.get(
    "/sessions",
    summary="List sessions, newest first, a page at a time",
    responses=schemas.responses(200, schemas.SESSION_LIST, 400),
)
def list_sessions(
    request: Request,
    status: Status = None,
    phase: Phase = None,
    branch: Annotated[str | None, Query(max_length=1000)] = None,
    worktree: Annotated[str | None, Query(max_length=1000)] = None,
    created_after: Moment = None,
    created_before: Moment = None,
    updated_after: Moment = None,
    updated_before: Moment = None,
    active_before: Annotated[
        str | None,
        Query(description="Last activity (update or heartbeat) at or before.", max_length=64),
    ] = None,
    q: Annotated[
        str | None,
        Query(description="Full-text search over the requests; word* is a prefix.", max_length=500),
    ] = None,
    order: Order = Order.NEWEST,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page.", max_length=512)
    ] = None,
) -> Response:
    manager = _manager(request)
    filters = _filters(
        status,
        phase,
        branch,
        worktree,
        created_after,
        created_before,
        updated_after,
        updated_before,
        q,
        active_before,
    )
    page = manager.query_page(
        **filters,
        limit=limit,
        order_by=order.value.lstrip("-"),
        descending=order.value.startswith("-"),
        cursor=cursor,
        with_total=True,
    )
    body = orjson.dumps(
        {
            "sessions": [s.to_dict() for s in page.sessions],
            "total": page.total,
            "next_cursor": page.next_cursor,
        }
    )
    # Answered again from these bytes while the page is current (see pagecache).
    pages: PageCache = request.app.state.pages
    pages.keep(request.scope.get("query_string", b""), page, body)
    return json_response(body)


@router.post(
    "/sessions",
    status_code=201,
    summary="Start a session",
    responses=schemas.responses(201, schemas.SESSION, 400, 409),
)
def create_session(
    request: Request,
    body: CreateBody,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    session = _manager(request).create_session(
        body.feature_request, body.configuration, request_id=idempotency_key
    )
    return _session(session, 201, location=f"/api/v1/sessions/{session.session_id}")


@router.get(
    "/sessions/{session_id}",
    summary="One session (a unique id prefix of 6+ characters works)",
    responses=schemas.responses(200, schemas.SESSION, 304, 400, 404),
)
def get_session(
    request: Request,
    session_id: str,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    manager = _manager(request)
    session = manager.get_session(_resolve(manager, session_id))
    etag = _etag(session)
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        if etag in tags or "*" in tags:
            return Response(status_code=304, headers={"etag": etag, "cache-control": "no-store"})
    return _session(session)


@router.get(
    "/sessions/{session_id}/timeline",
    summary="The session's life state by state, up to now",
    responses=schemas.responses(200, schemas.TIMELINE, 400, 404),
)
def get_timeline(request: Request, session_id: str) -> Response:
    manager = _manager(request)
    sid = _resolve(manager, session_id)
    return _json({"session_id": sid, **manager.timeline(sid).to_dict()})


@router.patch(
    "/sessions/{session_id}",
    summary="Change fields; nested objects merge",
    responses=schemas.responses(200, schemas.SESSION, 400, 404, 409, 412),
)
def update_session(
    request: Request,
    session_id: str,
    updates: Annotated[
        dict[str, Any],
        Body(description='Fields to change, such as {"current_phase": "plan"}.'),
    ],
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    manager = _manager(request)
    session = manager.update_session(
        _resolve(manager, session_id),
        updates,
        expected_revision=_revision(if_match),
        request_id=idempotency_key,
    )
    return _session(session)


@router.post(
    "/sessions/{session_id}/transitions",
    summary="Move a session to another state",
    responses=schemas.responses(200, schemas.SESSION, 400, 404, 409, 412),
)
def transition(
    request: Request,
    session_id: str,
    body: TransitionBody,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    manager = _manager(request)
    session = manager.transition_state(
        _resolve(manager, session_id),
        body.to,
        reason=body.reason,
        from_state=body.from_,
        expected_revision=_revision(if_match),
        request_id=idempotency_key,
    )
    return _session(session)


def _action(
    name: str, target: SessionStatus | None, summary: str
) -> None:  # registers one POST /sessions/{id}/<name> route
    @router.post(
        f"/sessions/{{session_id}}/{name}",
        summary=summary,
        name=name,
        responses=schemas.responses(200, schemas.SESSION, 400, 404, 409, 412),
    )
    def act(
        request: Request,
        session_id: str,
        body: Annotated[ActionBody | None, Body()] = None,
        if_match: IfMatch = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        manager = _manager(request)
        sid = _resolve(manager, session_id)
        given = body or ActionBody()
        options: dict[str, Any] = {
            "reason": given.reason,
            "expected_revision": _revision(if_match),
            "request_id": idempotency_key,
        }
        if target is None:  # resume: only a paused session can be resumed
            if given.from_ is not None and given.from_ is not SessionStatus.PAUSED:
                raise errors.SessionValidationError(
                    "a resumed session comes from paused; from must be paused or left out"
                )
            return _session(manager.resume_session(sid, **options))
        return _session(manager.transition_state(sid, target, from_state=given.from_, **options))


_action("pause", SessionStatus.PAUSED, "Pause an active session")
_action("resume", None, "Resume a paused session where it was")
_action("fail", SessionStatus.FAILED, "Fail a session (give a reason)")
_action("complete", SessionStatus.COMPLETED, "Complete a session")


@router.post(
    "/sessions/{session_id}/increment",
    summary="Add to statistics counters",
    responses=schemas.responses(200, schemas.SESSION, 400, 404, 409, 412),
)
def increment(
    request: Request,
    session_id: str,
    counters: Annotated[
        dict[str, int], Body(description='Counter → amount, such as {"completed_tasks": 1}.')
    ],
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    manager = _manager(request)
    session = manager.increment_statistics(
        _resolve(manager, session_id),
        expected_revision=_revision(if_match),
        request_id=idempotency_key,
        **counters,
    )
    return _session(session)


@router.post(
    "/sessions/{session_id}/heartbeat",
    summary="Record that the worker of a session is alive",
    responses=schemas.responses(200, schemas.SESSION, 400, 404, 409, 412),
)
def heartbeat(
    request: Request,
    session_id: str,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    manager = _manager(request)
    session = manager.heartbeat(
        _resolve(manager, session_id),
        expected_revision=_revision(if_match),
        request_id=idempotency_key,
    )
    return _session(session)


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    summary="Delete a session and its files",
    responses=schemas.responses(204, None, 400, 404, 409, 412),
)
def delete_session(
    request: Request,
    session_id: str,
    if_match: IfMatch = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    manager = _manager(request)
    sid = session_id.strip().lower()
    if idempotency_key is None or not _is_full_id(sid):
        sid = _resolve(manager, sid)  # a retry by full id succeeds once it is gone
    manager.delete_session(sid, expected_revision=_revision(if_match), request_id=idempotency_key)
    return Response(status_code=204)


def _is_full_id(text: str) -> bool:
    return len(text) == 36


@router.get(
    "/stats",
    summary="Counts, success rate, time per state, sessions per branch",
    responses=schemas.responses(200, schemas.STATS, 400),
)
def stats(
    request: Request,
    status: Status = None,
    phase: Phase = None,
    branch: Annotated[str | None, Query(max_length=1000)] = None,
    created_after: Moment = None,
    created_before: Moment = None,
) -> Response:
    filters = _filters(status, phase, branch, None, created_after, created_before, None, None, None)
    return _json(_manager(request).stats(**filters).to_dict())


@router.get(
    "/stale",
    summary="Running sessions nobody touched for too long",
    responses=schemas.responses(200, schemas.SESSION_ARRAY, 400),
)
def stale(
    request: Request,
    older_than: Annotated[
        str | None,
        Query(description="An age such as 30m; default: each session's timeout.", max_length=32),
    ] = None,
) -> Response:
    found = _manager(request).find_stale_sessions(older_than)
    return _json({"sessions": [s.to_dict() for s in found]})


@router.get(
    "/overview",
    summary="Sessions per day by outcome, statistics and stale sessions, for the dashboard",
    responses=schemas.responses(200, schemas.OVERVIEW, 400),
)
def overview(request: Request, days: Annotated[int, Query(ge=1, le=90)] = 14) -> Response:
    manager = _manager(request)
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    counts: dict[date, Counter[str]] = {first + timedelta(days=n): Counter() for n in range(days)}
    for session in manager.query_sessions(created_after=start):
        outcome = "active" if session.status in ACTIVE_STATES else session.status.value
        day = session.created_at.astimezone(UTC).date()
        if day in counts:
            counts[day][outcome] += 1
    return _json(
        {
            "days": [
                {
                    "date": day.isoformat(),
                    "completed": c["completed"],
                    "failed": c["failed"],
                    "active": c["active"],
                }
                for day, c in counts.items()
            ],
            "stats": manager.stats().to_dict(),
            "stale": [s.to_dict() for s in manager.find_stale_sessions()],
        }
    )


@router.get(
    "/events",
    summary="Changes as server-sent events, resumable with Last-Event-ID",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "A text/event-stream: `id: CURSOR` and `data: CHANGE` per change.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **schemas.responses(None, None, 400, 404, 501),
    },
)
async def events(
    request: Request,
    status: Annotated[
        list[SessionStatus] | None, Query(description="The state after the change.")
    ] = None,
    kind: Annotated[list[str] | None, Query(description="created, transitioned, ...")] = None,
    session_id: Annotated[str | None, Query(max_length=36)] = None,
    phase: Annotated[
        list[SessionPhase] | None,
        Query(description="Filters of the session, as it is when the event is sent."),
    ] = None,
    branch: Annotated[str | None, Query(max_length=1000)] = None,
    worktree: Annotated[str | None, Query(max_length=1000)] = None,
    created_after: Moment = None,
    created_before: Moment = None,
    updated_after: Moment = None,
    updated_before: Moment = None,
    q: Annotated[str | None, Query(max_length=500)] = None,
    since: Annotated[str | None, Query(description="A cursor; as Last-Event-ID.")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    manager = _manager(request)
    hub: FeedHub = request.app.state.hub
    start = last_event_id or since
    kinds = set(kind) if kind else None
    if kinds is not None:
        known = {k.value for k in ChangeKind}
        unknown = kinds - known
        if unknown:
            raise errors.SessionValidationError("unknown kind; kinds: " + ", ".join(sorted(known)))
    sid = None
    if session_id is not None:
        sid = await anyio.to_thread.run_sync(_resolve, manager, session_id)
    filters = _filters(
        status,
        phase,
        branch,
        worktree,
        created_after,
        created_before,
        updated_after,
        updated_before,
        q,
    )
    wanted = manager.change_filter(session_id=sid, kind=kinds, **filters)
    if start is None:
        cursor = await anyio.to_thread.run_sync(manager.changes_cursor)
        first: list[Any] = []
    else:
        cursor = start
        first = await anyio.to_thread.run_sync(read_after, manager, start)
    stream = event_stream(hub, cursor, first, wanted=wanted, keepalive=request.app.state.keepalive)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
