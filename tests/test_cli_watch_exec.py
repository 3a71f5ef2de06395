"""``maestro watch --exec CMD``: a process per change, the change on stdin, failures not fatal."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from maestro import SessionManager, SessionStatus
from tests.conftest import GIT
from tests.test_cli import error_line, run

S = SessionStatus

#: The reaction: appends what it was given to a file; exits 3 on a pause.
REACTION = """
import json, os, sys
event = json.loads(sys.stdin.read())
env = {k: os.environ[k] for k in ("MAESTRO_EVENT_KIND", "MAESTRO_SESSION_ID",
                                  "MAESTRO_EVENT_CURSOR")}
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"event": event, "env": env}) + "\\n")
sys.exit(3 if event["kind"] == "paused" else 0)
"""


def _command(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "reaction.py"
    script.write_text(REACTION)
    out = tmp_path / "seen.jsonl"
    return shlex.join([sys.executable, str(script), str(out)]), out


def _changes(tmp_path: Path) -> tuple[str, str]:
    manager = SessionManager(tmp_path)
    cursor = manager.changes_cursor()
    sid = manager.create_session("x", git_context=GIT).session_id
    manager.transition_state(sid, S.PLANNING)
    manager.pause_session(sid, reason="lunch")
    manager.resume_session(sid)
    manager.transition_state(sid, S.FAILED, reason="tests failed")
    return cursor, sid


def test_each_change_runs_the_command_once_with_its_json_on_stdin(tmp_path: Path) -> None:
    cursor, sid = _changes(tmp_path)
    command, out = _command(tmp_path)
    result = run(
        tmp_path, "watch", "--json", "--since", cursor, "--timeout", "0", "--exec", command
    )
    assert result.exit_code == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    seen = [json.loads(line) for line in out.read_text().splitlines()]
    assert [entry["event"] for entry in seen] == printed
    assert [entry["event"]["kind"] for entry in seen] == [
        "created",
        "transitioned",
        "paused",
        "resumed",
        "transitioned",
    ]
    for entry in seen:
        assert entry["env"] == {
            "MAESTRO_EVENT_KIND": entry["event"]["kind"],
            "MAESTRO_SESSION_ID": sid,
            "MAESTRO_EVENT_CURSOR": entry["event"]["cursor"],
        }


def test_a_failing_command_is_reported_and_the_watch_goes_on(tmp_path: Path) -> None:
    cursor, sid = _changes(tmp_path)
    command, out = _command(tmp_path)
    result = run(tmp_path, "watch", sid, "--since", cursor, "--exec", command)
    assert result.exit_code == 1  # the session failed: the watch's own outcome
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert "exited 3 for the paused of " + sid[:8] in warnings[0]
    assert "watching goes on" in warnings[0]
    kinds = [json.loads(line)["event"]["kind"] for line in out.read_text().splitlines()]
    assert kinds == ["created", "transitioned", "paused", "resumed", "transitioned"]


def test_only_the_changes_shown_reach_the_command(tmp_path: Path) -> None:
    cursor, _ = _changes(tmp_path)
    command, out = _command(tmp_path)
    result = run(
        tmp_path, "watch", "--since", cursor, "--timeout", "0", "--status", "failed",
        "--exec", command,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    kinds = [json.loads(line)["event"]["to_status"] for line in out.read_text().splitlines()]
    assert kinds == ["failed"]


def test_a_missing_program_is_a_usage_error(tmp_path: Path) -> None:
    line = error_line(run(tmp_path, "watch", "--exec", "no-such-program-here --flag"), 2)
    assert "no-such-program-here" in line
    assert "needs a command" in error_line(run(tmp_path, "watch", "--exec", "  "), 2)
