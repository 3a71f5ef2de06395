"""The command line: the demo, help with examples, errors as one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from maestro import SessionManager, SessionStatus
from maestro.cli import cli

S = SessionStatus


def run(root: Path, *args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, ["--root", str(root), *args], catch_exceptions=False)


def test_demo_walks_a_full_lifecycle(tmp_path: Path) -> None:
    result = run(tmp_path, "demo")
    assert result.exit_code == 0, result.output
    [session] = SessionManager(tmp_path).query_sessions()
    assert session.status is S.COMPLETED and session.completed_at is not None
    path = [(h.from_status, h.to_status) for h in session.history]
    assert (S.IMPLEMENTING, S.PAUSED) in path and (S.PAUSED, S.IMPLEMENTING) in path
    assert (S.VALIDATING, S.IMPLEMENTING) in path
    assert path[-1] == (S.GENERATING_REPORT, S.COMPLETED)
    assert session.session_id in result.output
    assert "history" in result.output and "generating_report" in result.output


def test_demo_json_prints_the_record(tmp_path: Path) -> None:
    result = run(tmp_path, "--json", "demo")
    assert result.exit_code == 0
    record = json.loads(result.output)
    assert record["status"] == "completed" and len(record["history"]) == 10


def all_commands(group: click.Group) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [("", group)]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += [(f"{name} {sub}".strip(), c) for sub, c in all_commands(command)]
        else:
            found.append((name, command))
    return found


@pytest.mark.parametrize("name", [name for name, _ in all_commands(cli)])
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "maestro " in result.output.split("Example", 1)[1]


def test_help_documents_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "Exit codes" in result.output and "3 session not found" in result.output


def test_installed_executable_runs_the_demo(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "maestro"
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    env = {**os.environ, "NO_COLOR": "1", "MAESTRO_ROOT": str(tmp_path)}
    done = subprocess.run(
        [str(script), "demo"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and "\x1b[" not in done.stdout
