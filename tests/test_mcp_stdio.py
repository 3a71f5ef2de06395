"""``maestro mcp`` as an MCP client starts it: a subprocess spoken to over stdio.

The SDK's own client launches the installed command, lists the tools,
creates a session, moves it, reads its resource, and hears of a write that
another process (the ``maestro`` command line) makes meanwhile.  Everything
the server writes to stdout is recorded on the way: every line must be a
JSON-RPC message, even though the server meets a damaged record (a logged
warning) and runs git (whose chatter goes to stderr).

Set ``MAESTRO_MCP_TRANSCRIPT=PATH`` to keep the calls and results as text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from mcp import Client, StdioServerParameters

from .test_cli_e2e import MAESTRO, git_env, make_repository

#: Runs a command with stdout piped through: each line is passed on and kept in a file.
TEE = textwrap.dedent(
    """
    import subprocess, sys
    log_path, command = sys.argv[1], sys.argv[2:]
    child = subprocess.Popen(command, stdout=subprocess.PIPE)
    with open(log_path, "wb") as log:
        for line in iter(child.stdout.readline, b""):
            log.write(line)
            log.flush()
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
    sys.exit(child.wait())
    """
)


#: The fields of a session record the transcript shows.
SHOWN = ("session_id", "status", "current_phase", "revision", "history")


class Transcript:
    """The calls an agent made and what came back, as a reader would want them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def call(self, tool: str, arguments: dict[str, Any], result: Any) -> None:
        self.lines.append(f"→ {tool} {json.dumps(arguments)}")
        if result.is_error:
            self.lines.append(f"← error: {result.content[0].text}")
            return
        content = result.structured_content
        if "session_id" in content:  # a session record: the fields an agent acts on
            content = {key: content[key] for key in SHOWN}
        self.lines.append(f"← {json.dumps(content)}")

    def note(self, line: str) -> None:
        self.lines.append(line)


def test_an_agent_drives_a_session_over_stdio(tmp_path: Path) -> None:
    env = git_env(tmp_path / "home")
    (tmp_path / "home").mkdir()
    repo = tmp_path / "app"
    make_repository(repo, env)
    damaged = repo / ".flow" / "maestro" / "sessions" / str(uuid.uuid4())
    damaged.mkdir(parents=True)
    (damaged / "metadata.json").write_text("{damaged")
    tee = tmp_path / "tee.py"
    tee.write_text(TEE)
    wire = tmp_path / "stdout.jsonl"
    env = {**env, "PYTHONWARNINGS": "always"}
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(tee), str(wire), str(MAESTRO), "mcp"],
        cwd=str(repo),
        env=env,
    )
    transcript = Transcript()

    async def call(client: Client, tool: str, **arguments: Any) -> Any:
        result = await client.call_tool(tool, arguments)
        transcript.call(tool, arguments, result)
        return result

    async def agent() -> None:
        async with Client(params, read_timeout_seconds=60) as client:
            names = sorted(tool.name for tool in (await client.list_tools()).tools)
            transcript.note(f"tools: {', '.join(names)}")
            assert "transition_session" in names and "delete_session" not in names

            listed = await call(client, "list_sessions", status=["initializing"])
            assert listed.structured_content == {"sessions": [], "next_cursor": None}
            created = await call(
                client,
                "create_session",
                feature_request="Add OAuth login",
                request_id="agent-7/create",
            )
            record = created.structured_content
            sid = record["session_id"]
            assert record["git_context"]["branch"] == "main"
            moved = await call(
                client,
                "transition_session",
                session_id=sid[:8],
                to="planning",
                reason="request understood",
                expected_revision=record["revision"],
            )
            assert moved.structured_content["status"] == "planning"
            refused = await call(client, "transition_session", session_id=sid[:8], to="completed")
            assert refused.is_error and "allowed targets: generating_tasks" in (
                refused.content[0].text
            )

            uri = f"maestro://sessions/{sid}"
            read = await client.read_resource(uri)
            stored = json.loads(read.contents[0].text)
            transcript.note(f"read {uri}: status {stored['status']}, revision {stored['revision']}")
            assert stored["revision"] == moved.structured_content["revision"]

            async with client.listen(resource_subscriptions=[uri]) as updates:
                transcript.note(f"listening to {uri}")
                done = await anyio.to_thread.run_sync(
                    lambda: subprocess.run(
                        [str(MAESTRO), "pause", sid, "--reason", "reviewer away"],
                        cwd=repo,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=60,
                    )
                )
                assert done.returncode == 0, done.stderr
                transcript.note(f"(another process: maestro pause {sid[:8]})")
                with anyio.fail_after(30):
                    async for event in updates:
                        transcript.note(f"update: {event.uri}")  # type: ignore[union-attr]
                        assert event.uri == uri  # type: ignore[union-attr]
                        break
            read = await client.read_resource(uri)
            again = json.loads(read.contents[0].text)
            transcript.note(f"read {uri}: status {again['status']}, revision {again['revision']}")
            assert again["status"] == "paused" and again["paused_from"] == "planning"

    anyio.run(agent)

    lines = wire.read_bytes().splitlines()
    assert len(lines) >= 8
    for line in lines:
        message = json.loads(line)
        assert message.get("jsonrpc") == "2.0", line[:200]
    keep = os.environ.get("MAESTRO_MCP_TRANSCRIPT")
    if keep:
        Path(keep).write_text("\n".join(transcript.lines) + "\n", encoding="utf-8")
