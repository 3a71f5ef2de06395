"""``maestro mcp`` in process: every tool and resource through the SDK's own client.

Each tool is called as an agent would (``Client.call_tool``) on a real file
store: its result, each kind of error it can give, and a retry with the same
``request_id``.  The agent-facing interface (tools, schemas, annotations,
resource templates) is pinned by a golden file: changing it is deliberate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from mcp import Client, MCPError

from maestro import SessionManager, SessionStatus
from maestro.mcp.server import build_server, session_uri, timeline_uri

from .conftest import GIT, Clock

GOLDEN = Path(__file__).parent / "data" / "mcp_tools.json"
SECRET = "Rotate the s3cr3t-t0ken in vault/prod"

Body = Callable[[Client], Awaitable[None]]


def run(manager: SessionManager, body: Body, *, allow_delete: bool = False) -> None:
    """Serve ``manager`` in process and run ``body`` with a connected client."""

    async def main() -> None:
        server = build_server(manager, allow_delete=allow_delete)
        async with Client(server) as client:
            with anyio.fail_after(30):
                await body(client)

    anyio.run(main)


async def ok(client: Client, tool: str, **arguments: Any) -> Any:
    """The structured result of a successful call."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    # The text content carries the same result, for clients that read only text.
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


async def error(client: Client, tool: str, **arguments: Any) -> str:
    """The text of a call that failed as a tool error (not a protocol error)."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    text: str = result.content[0].text  # type: ignore[union-attr]
    assert SECRET not in text
    return text


def seed(manager: SessionManager, status: SessionStatus = SessionStatus.PLANNING) -> str:
    """A session (with the secret request) moved to ``status``."""
    session = manager.create_session(SECRET, git_context=GIT)
    path = {
        SessionStatus.INITIALIZING: [],
        SessionStatus.PLANNING: ["planning"],
        SessionStatus.COMPLETED: [
            "planning",
            "generating_tasks",
            "implementing",
            "validating",
            "generating_report",
            "completed",
        ],
        SessionStatus.PAUSED: ["planning", "paused"],
    }[status]
    for state in path:
        manager.transition_state(session.session_id, state)
    return session.session_id


# ---------------------------------------------------------------- the interface


def _normalised(node: Any, *, field_names: bool = False) -> Any:
    """A schema without what a generator adds on its own: titles (not fields named title)."""
    if isinstance(node, dict):
        return {
            key: _normalised(value, field_names=key in ("properties", "$defs"))
            for key, value in sorted(node.items())
            if field_names or not (key == "title" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [_normalised(item) for item in node]
    return node


def _wire(model: Any) -> Any:
    return (
        None if model is None else model.model_dump(mode="json", by_alias=True, exclude_none=True)
    )


def interface(manager: SessionManager) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def body(client: Client) -> None:
        tools = (await client.list_tools()).tools
        templates = (await client.list_resource_templates()).resource_templates
        found["tools"] = [
            {
                "name": tool.name,
                "description": tool.description,
                "annotations": _wire(tool.annotations),
                "input_schema": _normalised(tool.input_schema),
                "output_schema": _normalised(tool.output_schema),
            }
            for tool in sorted(tools, key=lambda t: t.name)
        ]
        found["resource_templates"] = [
            {"uri_template": t.uri_template, "name": t.name, "mime_type": t.mime_type}
            for t in sorted(templates, key=lambda t: t.uri_template)
        ]

    run(manager, body, allow_delete=True)
    return found


def test_tools_and_schemas_match_the_golden_file(manager: SessionManager) -> None:
    """Set MAESTRO_UPDATE_GOLDEN=1 to rewrite it after a deliberate change."""
    found = interface(manager)
    text = json.dumps(found, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("MAESTRO_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert json.loads(GOLDEN.read_text(encoding="utf-8")) == json.loads(text)


def test_the_interface_is_what_agents_are_promised(manager: SessionManager) -> None:
    tools = {tool["name"]: tool for tool in interface(manager)["tools"]}
    reads = {
        "list_sessions",
        "search_sessions",
        "get_session",
        "session_timeline",
        "stats",
        "find_stale_sessions",
    }
    writes = {
        "create_session",
        "transition_session",
        "pause_session",
        "resume_session",
        "update_session",
        "increment_statistics",
        "heartbeat",
        "delete_session",
    }
    assert set(tools) == reads | writes
    for name, tool in tools.items():
        assert tool["description"].strip() and tool["output_schema"]["type"] == "object"
        assert tool["annotations"]["readOnlyHint"] is (name in reads)
    assert tools["delete_session"]["annotations"]["destructiveHint"] is True
    assert tools["create_session"]["annotations"]["destructiveHint"] is False
    transition = tools["transition_session"]["input_schema"]
    assert transition["required"] == ["session_id", "to"]
    assert set(transition["properties"]) == {
        "session_id",
        "to",
        "reason",
        "expected_revision",
        "request_id",
    }
    assert "feature_request" in tools["create_session"]["input_schema"]["required"]
    listing = tools["list_sessions"]["input_schema"]["properties"]
    assert {"status", "phase", "branch", "created_after", "limit", "cursor"} <= set(listing)


def test_delete_is_offered_only_when_allowed(manager: SessionManager) -> None:
    async def body(client: Client) -> None:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "delete_session" not in names and "create_session" in names
        assert "delete_session" in await error(client, "delete_session", session_id=seed(manager))

    run(manager, body)


# ---------------------------------------------------------------- reads


def test_get_session_by_id_and_prefix(manager: SessionManager) -> None:
    sid = seed(manager)

    async def body(client: Client) -> None:
        record = await ok(client, "get_session", session_id=sid)
        assert record["session_id"] == sid and record["status"] == "planning"
        assert record["history"][0] == {
            "from": "initializing",
            "to": "planning",
            "at": record["history"][0]["at"],
            "reason": None,
        }
        assert "requests" not in record
        assert (await ok(client, "get_session", session_id=sid[:8]))["session_id"] == sid

    run(manager, body)


def test_not_found_names_the_id_it_looked_for(manager: SessionManager) -> None:
    missing = "3f01b541-5cc9-47a7-9f8b-d884159c705f"

    async def body(client: Client) -> None:
        for tool in ("get_session", "session_timeline", "heartbeat", "pause_session"):
            text = await error(client, tool, session_id=missing)
            assert "not_found" in text and missing in text
        text = await error(client, "transition_session", session_id=missing, to="planning")
        assert "not_found" in text and missing in text
        text = await error(client, "get_session", session_id="not an id")
        assert "invalid_argument" in text and "lowercase UUID" in text

    run(manager, body)


def test_list_sessions_filters_and_pages(manager: SessionManager, clock: Clock) -> None:
    ids = []
    for _ in range(5):
        clock.advance(1)
        ids.append(seed(manager))
    clock.advance(1)
    done = seed(manager, SessionStatus.COMPLETED)
    at_second = manager.get_session(ids[1]).last_activity.isoformat()

    async def body(client: Client) -> None:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page = await ok(client, "list_sessions", status=["planning"], limit=2, cursor=cursor)
            seen += [s["session_id"] for s in page["sessions"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1] and pages == 3
        page = await ok(client, "list_sessions", status=["completed", "failed"])
        assert [s["session_id"] for s in page["sessions"]] == [done]
        first_two = await ok(client, "list_sessions", active_before=at_second, descending=False)
        assert [s["session_id"] for s in first_two["sessions"]] == ids[:2]
        oldest = await ok(client, "list_sessions", descending=False, limit=1)
        assert oldest["sessions"][0]["session_id"] == ids[0]
        text = await error(client, "list_sessions", cursor="garbage")
        assert "invalid_argument" in text and "cursor" in text
        other = await ok(client, "list_sessions", limit=1)
        cursor = other["next_cursor"]
        text = await error(client, "list_sessions", status=["planning"], cursor=cursor)
        assert "other filters" in text
        assert "limit" in await error(client, "list_sessions", limit=0)
        assert "status" in await error(client, "list_sessions", status=["sleeping"])

    run(manager, body)


def test_search_sessions_ranks_feature_requests(manager: SessionManager) -> None:
    oauth = manager.create_session("Add OAuth login", git_context=GIT).session_id
    manager.create_session("Fix the CSV export", git_context=GIT)

    async def body(client: Client) -> None:
        found = await ok(client, "search_sessions", text="oauth")
        assert [s["session_id"] for s in found["sessions"]] == [oauth]
        assert (await ok(client, "search_sessions", text="nothing-like-it"))["sessions"] == []
        none = await ok(client, "search_sessions", text="oauth", status=["completed"])
        assert none["sessions"] == []

    run(manager, body)


def test_session_timeline(manager: SessionManager, clock: Clock) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    clock.advance(60)
    manager.transition_state(sid, "planning")
    clock.advance(30)
    manager.pause_session(sid)
    clock.advance(10)

    async def body(client: Client) -> None:
        timeline = await ok(client, "session_timeline", session_id=sid)
        assert timeline["session_id"] == sid and timeline["finished"] is False
        assert [s["state"] for s in timeline["timeline"]] == ["initializing", "planning", "paused"]
        assert timeline["active_seconds"] == 90 and timeline["paused_seconds"] == 10

    run(manager, body)


def test_stats(manager: SessionManager) -> None:
    seed(manager)
    seed(manager, SessionStatus.COMPLETED)

    async def body(client: Client) -> None:
        stats = await ok(client, "stats")
        assert stats["total"] == 2 and stats["success_rate"] == 1.0
        assert stats["by_status"] == {"planning": 1, "completed": 1}
        assert stats["by_branch"] == {"main": 2}
        assert (await ok(client, "stats", status=["planning"]))["total"] == 1
        text = await error(client, "stats", created_after="yesterday-ish")
        assert "invalid_argument" in text and "ISO 8601" in text

    run(manager, body)


def test_find_stale_sessions(manager: SessionManager, clock: Clock) -> None:
    stale = seed(manager)
    clock.advance(3 * 3600)
    fresh = seed(manager)
    manager.heartbeat(fresh)

    async def body(client: Client) -> None:
        found = await ok(client, "find_stale_sessions", older_than="1h")
        assert [s["session_id"] for s in found["sessions"]] == [stale]
        by_timeout = await ok(client, "find_stale_sessions")
        assert [s["session_id"] for s in by_timeout["sessions"]] == [stale]
        assert "invalid_argument" in await error(client, "find_stale_sessions", older_than="soon")

    run(manager, body)


# ---------------------------------------------------------------- writes


def test_create_session_and_its_retry(manager: SessionManager) -> None:
    async def body(client: Client) -> None:
        created = await ok(
            client,
            "create_session",
            feature_request="Add OAuth login",
            configuration={"max_iterations": 5},
            prd_reference="docs/prd.md",
            request_id="req-1",
        )
        assert created["status"] == "initializing" and created["revision"] == 1
        assert created["configuration"]["max_iterations"] == 5
        assert created["configuration"]["timeout_minutes"] == 120
        assert created["prd_reference"]["filename"] == "prd.md"
        again = await ok(
            client,
            "create_session",
            feature_request="Add OAuth login",
            configuration={"max_iterations": 5},
            prd_reference="docs/prd.md",
            request_id="req-1",
        )
        assert again == created
        text = await error(client, "create_session", feature_request="Other", request_id="req-1")
        assert "conflict" in text and "req-1" in text
        assert "feature_request" in await error(client, "create_session", feature_request="")
        text = await error(
            client, "create_session", feature_request="x", configuration={"max_iterations": 0}
        )
        assert "max_iterations" in text

    run(manager, body)
    assert len(manager.query_sessions()) == 1


def test_transition_session(manager: SessionManager) -> None:
    sid = seed(manager, SessionStatus.INITIALIZING)

    async def body(client: Client) -> None:
        moved = await ok(
            client,
            "transition_session",
            session_id=sid,
            to="planning",
            reason="plan approved",
            expected_revision=1,
            request_id="t-1",
        )
        assert moved["status"] == "planning" and moved["current_phase"] == "plan"
        assert moved["history"][-1]["reason"] == "plan approved" and moved["revision"] == 2
        retry = await ok(
            client,
            "transition_session",
            session_id=sid,
            to="planning",
            reason="plan approved",
            expected_revision=1,
            request_id="t-1",
        )
        assert retry == moved
        text = await error(client, "transition_session", session_id=sid, to="completed")
        assert text.endswith(
            f"invalid_transition: session {sid} is planning and cannot go to completed; "
            "allowed targets: generating_tasks, failed, paused"
        )
        text = await error(
            client, "transition_session", session_id=sid, to="generating_tasks", expected_revision=1
        )
        assert "conflict" in text and "current revision: 2" in text
        assert "expected_revision=2" in text
        text = await error(client, "transition_session", session_id=sid, to="sleeping")
        assert "to" in text
        await ok(client, "transition_session", session_id=sid, to="failed", reason="broken")
        text = await error(client, "transition_session", session_id=sid, to="planning")
        assert "failed, a final state; allowed targets: none" in text

    run(manager, body)
    history = manager.get_session(sid).history
    assert [(h.from_status, h.to_status) for h in history] == [
        ("initializing", "planning"),
        ("planning", "failed"),
    ]


def test_pause_and_resume(manager: SessionManager) -> None:
    sid = seed(manager)

    async def body(client: Client) -> None:
        paused = await ok(client, "pause_session", session_id=sid, reason="lunch", request_id="p")
        assert paused["status"] == "paused" and paused["paused_from"] == "planning"
        retry = await ok(client, "pause_session", session_id=sid, reason="lunch", request_id="p")
        assert retry == paused
        text = await error(client, "pause_session", session_id=sid)
        assert "invalid_transition" in text and "allowed targets: planning" in text
        resumed = await ok(client, "resume_session", session_id=sid, request_id="r")
        assert resumed["status"] == "planning" and resumed["paused_from"] is None
        assert await ok(client, "resume_session", session_id=sid, request_id="r") == resumed
        text = await error(client, "resume_session", session_id=sid)
        assert "invalid_transition" in text and "only a paused session can be resumed" in text
        paused_again = await ok(client, "pause_session", session_id=sid)
        text = await error(client, "resume_session", session_id=sid, expected_revision=1)
        assert f"conflict: session {sid} is at revision {paused_again['revision']}" in text

    run(manager, body)


def test_update_session(manager: SessionManager) -> None:
    sid = seed(manager)

    async def body(client: Client) -> None:
        updated = await ok(
            client,
            "update_session",
            session_id=sid,
            updates={
                "statistics": {"total_tasks": 8},
                "configuration": {"timeout_minutes": 30},
                "prd_reference": "docs/prd-v2.md",
            },
            request_id="u-1",
        )
        assert updated["statistics"]["total_tasks"] == 8
        assert updated["configuration"] == {
            "max_iterations": 3,
            "timeout_minutes": 30,
            "auto_checkpoint": True,
            "error_recovery_enabled": True,
        }
        assert updated["prd_reference"]["path"] == "docs/prd-v2.md"
        retry = await ok(
            client,
            "update_session",
            session_id=sid,
            updates={
                "statistics": {"total_tasks": 8},
                "configuration": {"timeout_minutes": 30},
                "prd_reference": "docs/prd-v2.md",
            },
            request_id="u-1",
        )
        assert retry == updated
        moved = await ok(
            client,
            "update_session",
            session_id=sid,
            updates={"status": "generating_tasks"},
            reason="plan done",
        )
        assert moved["status"] == "generating_tasks"
        assert moved["history"][-1]["reason"] == "plan done"
        text = await error(
            client, "update_session", session_id=sid, updates={"statistics": {"completed_tasks": 9}}
        )
        assert "invalid_argument" in text and "total_tasks" in text
        text = await error(client, "update_session", session_id=sid, updates={"revision": 7})
        assert "revision" in text
        finish = {"status": "completed"}
        text = await error(client, "update_session", session_id=sid, updates=finish)
        assert "allowed targets: implementing, failed, paused" in text
        text = await error(
            client,
            "update_session",
            session_id=sid,
            updates={"current_phase": "plan"},
            expected_revision=1,
        )
        assert f"current revision: {moved['revision']}" in text

    run(manager, body)


def test_increment_statistics(manager: SessionManager) -> None:
    sid = seed(manager)

    async def body(client: Client) -> None:
        counted = await ok(
            client,
            "increment_statistics",
            session_id=sid,
            total_tasks=5,
            completed_tasks=2,
            request_id="i-1",
        )
        assert counted["statistics"]["total_tasks"] == 5
        assert counted["statistics"]["completed_tasks"] == 2
        again = await ok(
            client,
            "increment_statistics",
            session_id=sid,
            total_tasks=5,
            completed_tasks=2,
            request_id="i-1",
        )
        assert again == counted
        text = await error(client, "increment_statistics", session_id=sid)
        assert "invalid_argument" in text and "no counter" in text
        text = await error(client, "increment_statistics", session_id=sid, failed_tasks=-1)
        assert "negative" in text
        text = await error(
            client, "increment_statistics", session_id=sid, decisions_made=1, expected_revision=1
        )
        assert f"current revision: {counted['revision']}" in text

    run(manager, body)
    assert manager.get_session(sid).statistics.completed_tasks == 2


def test_heartbeat(manager: SessionManager, clock: Clock) -> None:
    sid = seed(manager)
    done = seed(manager, SessionStatus.COMPLETED)

    async def body(client: Client) -> None:
        clock.advance(5)
        beat = await ok(client, "heartbeat", session_id=sid, request_id="h-1")
        assert beat["heartbeat_at"] is not None
        assert await ok(client, "heartbeat", session_id=sid, request_id="h-1") == beat
        text = await error(client, "heartbeat", session_id=done)
        assert "invalid_argument" in text and "completed" in text
        text = await error(client, "heartbeat", session_id=sid, expected_revision=0)
        assert f"current revision: {beat['revision']}" in text

    run(manager, body)


def test_delete_session(manager: SessionManager) -> None:
    sid = seed(manager)
    other = seed(manager)

    async def body(client: Client) -> None:
        text = await error(client, "delete_session", session_id=other, expected_revision=1)
        assert "conflict" in text and "current revision: 2" in text
        gone = await ok(client, "delete_session", session_id=sid, request_id="d-1")
        assert gone == {"session_id": sid, "deleted": True}
        assert await ok(client, "delete_session", session_id=sid, request_id="d-1") == gone
        text = await error(client, "delete_session", session_id=sid)
        assert "not_found" in text and sid in text

    run(manager, body, allow_delete=True)
    assert [s.session_id for s in manager.query_sessions()] == [other]


def test_no_error_quotes_stored_text(manager: SessionManager) -> None:
    """The feature request may hold anything; an error only names ids, states, fields."""
    sid = seed(manager)

    async def body(client: Client) -> None:
        texts = [
            await error(client, "transition_session", session_id=sid, to="completed"),
            await error(client, "update_session", session_id=sid, updates={"feature_request": ""}),
            await error(client, "heartbeat", session_id=sid, expected_revision=0),
            await error(client, "create_session", feature_request=SECRET, request_id="x" * 201),
        ]
        assert all(sid in text or "request_id" in text for text in texts)

    run(manager, body)


# ---------------------------------------------------------------- resources


def test_resources_read_the_record_and_the_timeline(manager: SessionManager) -> None:
    sid = seed(manager)
    missing = "3f01b541-5cc9-47a7-9f8b-d884159c705f"

    async def body(client: Client) -> None:
        templates = (await client.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} == {
            "maestro://sessions/{id}",
            "maestro://sessions/{id}/timeline",
        }
        read = await client.read_resource(session_uri(sid))
        content = read.contents[0]
        assert content.mime_type == "application/json"
        record = json.loads(content.text)  # type: ignore[union-attr]
        assert record == await ok(client, "get_session", session_id=sid)
        read = await client.read_resource(timeline_uri(sid))
        timeline = json.loads(read.contents[0].text)  # type: ignore[union-attr]
        assert [s["state"] for s in timeline["timeline"]] == ["initializing", "planning"]
        with pytest.raises(MCPError) as raised:
            await client.read_resource(session_uri(missing))
        assert missing in str(raised.value) and "not_found" in str(raised.value)
        with pytest.raises(MCPError) as raised:
            await client.read_resource(timeline_uri("3F01B541-nope"))
        assert "invalid_argument" in str(raised.value)

    run(manager, body)


def test_listeners_hear_of_writes_from_another_manager(tmp_path: Path) -> None:
    """Updates come from the change feed: a write through another manager (as another
    process would make) reaches the listener, for both resources of the session."""
    manager = SessionManager(tmp_path)
    writer = SessionManager(tmp_path)
    sid = writer.create_session("x", git_context=GIT).session_id
    other = writer.create_session("y", git_context=GIT).session_id

    async def body(client: Client) -> None:
        wanted = [session_uri(sid), timeline_uri(sid)]
        async with client.listen(resource_subscriptions=wanted) as updates:
            await anyio.to_thread.run_sync(lambda: writer.transition_state(other, "planning"))
            await anyio.to_thread.run_sync(lambda: writer.transition_state(sid, "planning"))
            heard: set[str] = set()
            async for event in updates:
                heard.add(event.uri)  # type: ignore[union-attr]
                if heard == set(wanted):
                    break
        assert heard == set(wanted)

    run(manager, body)


def test_the_memory_store_is_served_too() -> None:
    manager = SessionManager(store="memory:")

    async def body(client: Client) -> None:
        created = await ok(client, "create_session", feature_request="x")
        assert (await ok(client, "get_session", session_id=created["session_id"]))["revision"] == 1

    run(manager, body)
