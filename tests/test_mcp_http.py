"""``maestro mcp --http``: streamable HTTP, with the package's rule for who may connect.

Bound to a loopback address the server answers this machine; any other
address needs a token (``maestro.netpolicy``).  The ``Host`` header must name
the server, a browser's ``Origin`` must be the server's own, and a token,
once given, is required of every request.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from click.testing import CliRunner
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from maestro.cli import cli
from maestro.cli.mcp import Guard
from maestro.netpolicy import allowed_host_names

from .test_cli_e2e import MAESTRO


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            httpx2.get(url, timeout=1)
            return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


def test_an_agent_over_http_needs_the_token(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    command = [str(MAESTRO), "--root", str(tmp_path), "mcp", "--http", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--token", "s3cret"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(url, server)
        assert httpx2.post(url, json={}).status_code == 401
        bearer = {"Authorization": "Bearer s3cret"}
        assert httpx2.post(url, json={}, headers={**bearer, "Host": "evil.test"}).status_code == 421
        cross = {**bearer, "Origin": "http://evil.test"}
        assert httpx2.post(url, json={}, headers=cross).status_code == 403

        async def agent() -> None:
            with anyio.fail_after(60):
                await session()

        async def session() -> None:
            async with (
                httpx2.AsyncClient(headers=bearer) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert "create_session" in names
                created = await client.call_tool("create_session", {"feature_request": "x"})
                sid = created.structured_content["session_id"]  # type: ignore[index]
                read = await client.read_resource(f"maestro://sessions/{sid}")
                assert sid in read.contents[0].text  # type: ignore[union-attr]

        anyio.run(agent)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_another_address_needs_a_token(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--root", str(tmp_path), "mcp", "--http", "--host", "192.0.2.7"]
    result = runner.invoke(cli, args, env={"MAESTRO_TOKEN": None})
    assert result.exit_code == 1
    assert "give a token with --token or MAESTRO_TOKEN" in result.stderr
    result = runner.invoke(cli, ["--root", str(tmp_path), "mcp", "--token", "t"])
    assert result.exit_code == 2 and "--token applies to --http only" in result.stderr


def test_stdio_ends_when_its_input_does(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--root", str(tmp_path), "mcp"], input="")
    assert result.exit_code == 0 and result.stdout == ""
    # What serving changed in logging is put back for the rest of the process.
    assert logging.getLogger("maestro").propagate is True


def test_without_the_sdk_the_command_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "maestro.mcp.server", None)
    result = CliRunner().invoke(cli, ["--root", str(tmp_path), "mcp"], input="")
    assert result.exit_code == 1
    assert "pip install 'maestro-sessions[mcp]'" in result.stderr


def call(guard: Guard, headers: dict[str, str]) -> tuple[int, bool]:
    """The status the guard answered with, and whether the app was reached."""
    reached: list[bool] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard.app = app
    scope = {
        "type": "http",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    anyio.run(guard, scope, receive, send)
    return (sent[0]["status"] if sent else 200), bool(reached)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Host": "127.0.0.1:8766"}, (200, True)),
        ({"Host": "localhost:8766", "Origin": "http://localhost:8766"}, (200, True)),
        ({"Host": "rebound.example:8766"}, (421, False)),
        ({}, (421, False)),
        ({"Host": "127.0.0.1:8766", "Origin": "http://evil.test"}, (403, False)),
        ({"Host": "127.0.0.1:8766", "Origin": "null"}, (403, False)),
    ],
)
def test_the_guard_on_loopback(headers: dict[str, str], expected: tuple[int, bool]) -> None:
    guard = Guard(None, allowed_host_names("127.0.0.1"), None)  # type: ignore[arg-type]
    assert call(guard, headers) == expected


def test_the_guard_answers_the_names_it_is_given() -> None:
    anywhere = allowed_host_names("0.0.0.0", ["build-box"])  # noqa: S104 - not a bind
    guard = Guard(None, anywhere, "t")  # type: ignore[arg-type]
    bearer = {"Authorization": "Bearer t"}
    assert call(guard, {**bearer, "Host": "build-box:8766"}) == (200, True)
    assert call(guard, {**bearer, "Host": "other-box:8766"}) == (421, False)


def test_the_guard_with_a_token() -> None:
    guard = Guard(None, allowed_host_names("10.1.2.3"), "s3cret")  # type: ignore[arg-type]
    host = {"Host": "10.1.2.3:8766"}
    assert call(guard, host) == (401, False)
    assert call(guard, {**host, "Authorization": "Bearer wrong"}) == (401, False)
    assert call(guard, {**host, "Authorization": "Bearer s3cret"}) == (200, True)
