"""The server's guard: Host allow-list, Origin on writes, token off loopback, headers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from maestro import SessionManager
from maestro.cli import cli
from tests.serverkit import client

API = "/api/v1"
MAESTRO = [sys.executable, "-c", "from maestro.cli import main; main()"]


@pytest.fixture
def manager(tmp_path: Path) -> SessionManager:
    return SessionManager(tmp_path)


def test_a_foreign_host_is_refused_on_every_path(manager: SessionManager) -> None:
    http = client(manager)
    for path in ("/", "/healthz", f"{API}/sessions", "/openapi.json"):
        answer = http.get(path, headers={"host": "attacker.example"})
        assert answer.status_code == 403, path
        assert answer.json()["error"]["type"] == "HostNotAllowedError"
    answer = http.post(
        f"{API}/sessions", json={"feature_request": "x"}, headers={"host": "attacker.example:8765"}
    )
    assert answer.status_code == 403 and manager.count_sessions() == 0
    for host in ("localhost:8765", "127.0.0.1", "[::1]:8765"):
        assert http.get("/healthz", headers={"host": host}).status_code == 200, host


def test_allowed_host_adds_a_name_a_proxy_forwards(manager: SessionManager) -> None:
    http = client(manager, allowed_hosts=["maestro.example.org"])
    assert http.get("/healthz", headers={"host": "maestro.example.org"}).status_code == 200
    assert http.get("/healthz", headers={"host": "other.example.org"}).status_code == 403


def test_a_cross_site_write_is_refused_a_same_site_or_originless_one_is_not(
    manager: SessionManager,
) -> None:
    http = client(manager)
    body = {"feature_request": "Add OAuth login"}
    for origin in ("http://attacker.example", "null", "http://127.0.0.1:9999"):
        answer = http.post(f"{API}/sessions", json=body, headers={"origin": origin})
        assert answer.status_code == 403, origin
        assert answer.json()["error"]["type"] == "CrossOriginError"
    assert manager.count_sessions() == 0
    sid = http.post(f"{API}/sessions", json=body).json()["session_id"]  # curl sends no Origin
    same = http.post(f"{API}/sessions", json=body, headers={"origin": "http://127.0.0.1:8765"})
    assert same.status_code == 201
    for method, path in (("DELETE", f"{API}/sessions/{sid}"), ("PATCH", f"{API}/sessions/{sid}")):
        answer = http.request(method, path, json={}, headers={"origin": "https://evil.example"})
        assert answer.status_code == 403
    assert manager.count_sessions() == 2
    # Reading from another site is left to the browser's same-origin rule (no CORS headers).
    answer = http.get(f"{API}/sessions", headers={"origin": "http://attacker.example"})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def test_every_answer_carries_the_security_headers(manager: SessionManager) -> None:
    http = client(manager)
    for answer in (
        http.get("/"),
        http.get("/static/app.js"),
        http.get(f"{API}/sessions"),
        http.get(f"{API}/sessions/00000000"),
        http.get("/healthz", headers={"host": "attacker.example"}),
    ):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        policy = answer.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_with_a_token_every_request_needs_it(manager: SessionManager) -> None:
    http = client(manager, host="0.0.0.0", token="s3cret-token")  # noqa: S104
    for path in ("/", f"{API}/sessions", "/openapi.json", f"{API}/events"):
        answer = http.get(path)
        assert answer.status_code == 401, path
        assert answer.json()["error"]["type"] == "UnauthorizedError"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert http.get("/healthz").status_code == 200
    wrong = http.get(f"{API}/sessions", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = {"authorization": "Bearer s3cret-token"}
    assert http.get(f"{API}/sessions", headers=right).status_code == 200
    answer = http.post(f"{API}/sessions", json={"feature_request": "x"})
    assert answer.status_code == 401 and manager.count_sessions() == 0


def test_a_browser_trades_the_token_for_a_cookie(manager: SessionManager) -> None:
    http = client(manager, token="s3cret-token")
    assert http.get("/login", params={"token": "wrong"}).status_code == 401
    answer = http.get("/login", params={"token": "s3cret-token"}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert http.get(f"{API}/sessions").status_code == 200  # the client keeps the cookie


def test_serve_refuses_to_start_beyond_loopback_without_a_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAESTRO_TOKEN", raising=False)
    for host in ("0.0.0.0", "192.0.2.10", "::"):  # noqa: S104
        result = CliRunner().invoke(cli, ["--root", str(tmp_path), "serve", "--host", host])
        assert result.exit_code == 1, result.output
        assert "give a token with --token or MAESTRO_TOKEN" in result.output
    monkeypatch.setenv("MAESTRO_TOKEN", "   ")  # blank counts as none
    result = CliRunner().invoke(cli, ["--root", str(tmp_path), "serve", "--host", "0.0.0.0"])  # noqa: S104
    assert result.exit_code == 1


def test_serve_prints_its_url_answers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*MAESTRO, "--root", str(tmp_path), "serve", "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "MAESTRO_TOKEN": ""},
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"at (http://localhost:(\d+)/)", line)
        assert match, line
        port = match.group(2)
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert answer.json() == {"status": "ok"}
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/v1/events", timeout=10) as stream:
            assert stream.status_code == 200  # an open stream must not hold the server up
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
