"""The command line, driven in-process: every command, its output, its errors.

Sessions are often prepared with the library (with a clock set in the past,
so ages are days, not milliseconds) and then looked at with the command
line, the way a person would after an orchestrator ran.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import maestro.cli.changes as cli_module
from maestro import GitContext, Session, SessionManager, SessionStatus
from maestro.cli import cli, parse_age, parse_assignments
from maestro.models import utcnow

from .conftest import Clock

S = SessionStatus
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def runner() -> CliRunner:
    # Click 8.2 keeps stderr apart by default; older versions need asking.
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


#: A plain, 80-column, colourless environment whatever the caller's shell says.
PLAIN_ENV = {
    "COLUMNS": "80",
    "LINES": "50",
    "NO_COLOR": None,
    "FORCE_COLOR": None,
    "MAESTRO_FORCE_TTY": None,
}
#: Tables as a terminal gets them (stdout is a pipe under the test runner).
TTY = {"MAESTRO_FORCE_TTY": "1"}


def run(root: Path, *args: str, input: str | None = None, **env: str | None) -> Result:
    return runner().invoke(
        cli,
        ["--root", str(root), *args],
        input=input,
        env={**PLAIN_ENV, "MAESTRO_ROOT": None, **env},
        catch_exceptions=False,
    )


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def error_line(result: Result, code: int) -> str:
    """The one line an expected error prints, after checking it is one line."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def usage_error(result: Result) -> str:
    """Usage errors: exit 2, one ``error:`` line naming the problem and the help to read."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return result.stderr


def as_json(result: Result) -> object:
    return json.loads(ok(result))


def widest_line(text: str) -> int:
    return max((len(line.rstrip()) for line in text.splitlines()), default=0)


@pytest.fixture
def old_clock() -> Clock:
    """A clock ten days in the past: what it stamps is ten days old for the CLI."""
    return Clock(utcnow() - timedelta(days=10))


@pytest.fixture
def old(tmp_path: Path, old_clock: Clock) -> SessionManager:
    """A manager on the CLI's root whose sessions happened in the past."""
    return SessionManager(tmp_path, clock=old_clock)


@pytest.fixture
def lib(tmp_path: Path) -> SessionManager:
    """A manager on the CLI's root, to check what the commands did."""
    return SessionManager(tmp_path)


def walk(manager: SessionManager, sid: str, *states: SessionStatus) -> Session:
    session = manager.get_session(sid)
    for state in states:
        session = manager.transition_state(sid, state)
    return session


def new(root: Path, *args: str) -> str:
    result = run(root, "create", "--quiet", *args)
    return ok(result).strip()


TO_REPORT = (S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING, S.VALIDATING, S.GENERATING_REPORT)


# ---------------------------------------------------------------- the existing basics


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
    record = json.loads(result.stdout)
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
    example = result.output.split("Example", 1)[1]
    assert "maestro " in example
    lines = [line.strip() for line in example.split("Options:", 1)[0].splitlines()[1:]]
    assert lines and [line for line in lines if line and not line.startswith("maestro ")] == []


def test_help_documents_exit_codes_and_completion() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "Exit codes" in result.output and "3 session not found" in result.output
    assert "4 invalid transition" in result.output and "5 revision conflict" in result.output
    assert "_MAESTRO_COMPLETE=bash_source maestro" in result.output
    assert "zsh_source" in result.output and "fish_source" in result.output


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


# ---------------------------------------------------------------- create


def test_create_prints_the_new_id_and_stores_the_options(
    tmp_path: Path, lib: SessionManager
) -> None:
    out = ok(
        run(
            tmp_path,
            "create",
            "Add OAuth login",
            "--max-iterations",
            "5",
            "--timeout-minutes",
            "30",
            "--no-auto-checkpoint",
            "--prd",
            "docs/prd-oauth.md",
        )
    )
    match = re.fullmatch(r"created session (\S+) on branch (\S+)\n", out)
    assert match is not None, out
    session = lib.get_session(match.group(1))
    assert session.feature_request == "Add OAuth login"
    assert session.status is S.INITIALIZING
    assert session.configuration.max_iterations == 5
    assert session.configuration.timeout_minutes == 30
    assert session.configuration.auto_checkpoint is False
    assert session.prd_reference is not None
    assert session.prd_reference.filename == "prd-oauth.md"
    assert session.prd_reference.path == "docs/prd-oauth.md"


def test_create_quiet_prints_only_the_id(tmp_path: Path, lib: SessionManager) -> None:
    out = ok(run(tmp_path, "create", "-q", "Fix the flaky test"))
    assert UUID.match(out.strip()) and out == out.strip() + "\n"
    assert lib.get_session(out.strip()).configuration.auto_checkpoint is True


def test_create_json_prints_the_record(tmp_path: Path) -> None:
    record = as_json(run(tmp_path, "--json", "create", "Add OAuth"))
    assert isinstance(record, dict)
    assert record["status"] == "initializing" and UUID.match(record["session_id"])
    assert record["created_at"].endswith("Z") and "T" in record["created_at"]


def test_create_refuses_bad_values(tmp_path: Path, lib: SessionManager) -> None:
    assert "--max-iterations" in usage_error(run(tmp_path, "create", "x", "--max-iterations", "0"))
    line = error_line(run(tmp_path, "create", "   "), 1)
    assert "feature_request must not be empty" in line
    assert lib.query_sessions() == []


# ---------------------------------------------------------------- show and ids


def lived(manager: SessionManager, clock: Clock, request: str = "Add OAuth login") -> str:
    """A finished session with 10-minute stays, a 20-minute pause and a loop."""
    sid = manager.create_session(request).session_id
    steps: list[tuple[SessionStatus, str | None]] = [
        (S.PLANNING, None),
        (S.GENERATING_TASKS, None),
        (S.IMPLEMENTING, None),
    ]
    for state, reason in steps:
        clock.advance(600)
        manager.transition_state(sid, state, reason=reason)
    clock.advance(1800)
    manager.pause_session(sid, reason="waiting for review")
    clock.advance(1200)
    manager.resume_session(sid)
    for state in (S.VALIDATING, S.GENERATING_REPORT, S.COMPLETED):
        clock.advance(600)
        manager.transition_state(sid, state)
    return sid


def test_show_draws_a_proportional_timeline(
    tmp_path: Path, old: SessionManager, old_clock: Clock
) -> None:
    sid = lived(old, old_clock)
    out = ok(run(tmp_path, "show", sid[:8]))
    assert sid in out and "Add OAuth login" in out
    assert widest_line(out) <= 80
    rows = {
        line.split()[0]: line
        for line in out.splitlines()
        if line.startswith("  ") and line.split() and line.split()[0] in {s.value for s in S}
    }
    # 110 minutes of life on a 44-cell track: 2.5 minutes per cell
    assert rows["planning"].count("█") == 4
    assert rows["generating_tasks"].count("█") == 4
    assert rows["implementing"].count("█") == 16  # 30 + 10 minutes, in two stretches
    assert rows["paused"].count("░") == 8 and "█" not in rows["paused"]
    assert "40m 00s" in rows["implementing"] and "36%" in rows["implementing"]
    assert "20m 00s" in rows["paused"]
    # the chart keeps the order: the pause comes after the first stretch of work
    assert rows["paused"].index("░") > rows["implementing"].index("█")
    assert rows["validating"].index("█") > rows["paused"].rindex("░")
    assert "completed" in rows and "◆" in rows["completed"]
    assert "1h 50m (20m 00s paused)" in out
    assert "statistics" in out and "history" in out and "waiting for" in out
    assert "working" in out and "1h 30m" in out


def test_show_json_has_the_record_the_timeline_and_the_time_per_state(
    tmp_path: Path, old: SessionManager, old_clock: Clock
) -> None:
    sid = lived(old, old_clock)
    data = as_json(run(tmp_path, "--json", "show", sid[:6]))
    assert isinstance(data, dict)
    assert data["session"]["session_id"] == sid and data["session"]["status"] == "completed"
    assert [piece["state"] for piece in data["timeline"]] == [
        "initializing",
        "planning",
        "generating_tasks",
        "implementing",
        "paused",
        "implementing",
        "validating",
        "generating_report",
    ]
    assert all(p["start"].endswith("Z") and p["end"].endswith("Z") for p in data["timeline"])
    assert data["seconds_in_state"]["implementing"] == 2400
    assert data["paused_seconds"] == 1200 and data["active_seconds"] == 5400


def test_show_of_a_running_session_runs_up_to_now(tmp_path: Path, old: SessionManager) -> None:
    sid = old.create_session("still going").session_id
    out = ok(run(tmp_path, "show", sid))
    assert "10d 00h so far (no state changes recorded)" in out and "10 days ago" in out
    assert "completed  -" in out
    assert widest_line(out) <= 80


def test_show_prints_user_text_as_it_is(tmp_path: Path) -> None:
    sid = new(tmp_path, "Escape [bold]brackets[/bold] and [/] in names")
    out = ok(run(tmp_path, "show", sid))
    assert "Escape [bold]brackets[/bold] and [/] in names" in out
    assert "[bold]" in ok(run(tmp_path, "list"))


def test_ascii_only_output_when_the_terminal_cannot_draw_blocks(
    tmp_path: Path, old: SessionManager, old_clock: Clock
) -> None:
    sid = lived(old, old_clock, "A " + "very " * 30 + "long request")

    def ascii_run(*args: str) -> str:
        result = CliRunner(charset="ascii").invoke(
            cli, ["--root", str(tmp_path), *args], env={**PLAIN_ENV, **TTY}
        )
        assert result.exit_code == 0, result.stderr
        return result.stdout

    shown = ascii_run("show", sid)
    assert "#" in shown and "█" not in shown and "->" in shown
    listed = ascii_run("list")
    assert "long request" not in listed and widest_line(listed) <= 80  # cropped to fit
    assert ascii_run("stats").count("#") > 10
    assert "initializing -> failed" in ascii_run("fail", new(tmp_path, "x"), "--reason", "r")


def fixed_session(manager: SessionManager, sid: str) -> None:
    git = GitContext(branch="main", commit="0" * 40, repo_root="/repo")
    manager.store.create(
        Session(
            session_id=sid,
            feature_request=f"session {sid[-1]}",
            status=S.INITIALIZING,
            created_at=utcnow(),
            git_context=git,
        )
    )


def test_ids_may_be_unique_prefixes(tmp_path: Path, lib: SessionManager) -> None:
    fixed_session(lib, "abcdef01-0000-4000-8000-000000000001")
    fixed_session(lib, "abcdef01-0000-4000-8000-000000000002")
    fixed_session(lib, "abcdee00-0000-4000-8000-000000000003")
    assert "session 3" in ok(run(tmp_path, "show", "abcdee"))
    assert "session 3" in ok(run(tmp_path, "show", "ABCDEE"))  # pasted in capitals
    line = error_line(run(tmp_path, "show", "abcdef01"), 2)
    assert "ambiguous" in line and "give more characters" in line
    line = error_line(run(tmp_path, "show", "abc"), 2)
    assert "invalid session id" in line and "6+ characters" in line
    line = error_line(run(tmp_path, "show", "fedcba"), 3)
    assert "not found" in line and str(tmp_path) in line
    line = error_line(run(tmp_path, "show", "abcdef01-0000-4000-8000-000000000009"), 3)
    assert "not found" in line


def test_show_of_a_corrupt_session_points_to_doctor(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    (lib.sessions_dir / sid / "metadata.json").write_text("{oops")
    line = error_line(run(tmp_path, "show", sid), 1)
    assert "unreadable" in line and "maestro doctor --fix" in line


# ---------------------------------------------------------------- list and search


def test_list_shows_a_table_newest_first(
    tmp_path: Path, old: SessionManager, old_clock: Clock
) -> None:
    first = old.create_session("The oldest request").session_id
    old_clock.advance(86400 * 7)  # three days ago
    second = old.create_session("A " + "very " * 30 + "long request").session_id
    walk(old, second, S.PLANNING)
    third = new(tmp_path, "The newest request")
    out = ok(run(tmp_path, "list", **TTY))
    lines = out.splitlines()
    assert lines[0].split() == ["id", "status", "phase", "branch", "age", "request"]
    body = [line for line in lines[2:] if line.strip()]
    assert [line[:8] for line in body[:3]] == [third[:8], second[:8], first[:8]]
    assert "just now" in body[0] and "3 days ago" in body[1] and "10 days ago" in body[2]
    assert "planning" in body[1] and "plan" in body[1]
    assert body[1].rstrip().endswith("…")  # the long request is cut to the width
    assert body[-1] == "3 sessions"
    assert widest_line(out) <= 80


def test_list_filters(tmp_path: Path, old: SessionManager, old_clock: Clock) -> None:
    feature = GitContext(branch="feature/x", commit="1" * 40, repo_root=str(tmp_path))
    done = old.create_session("done").session_id
    walk(old, done, *TO_REPORT, S.COMPLETED)
    old_clock.advance(86400 * 9)  # one day ago
    planning = old.create_session("planning", git_context=feature).session_id
    walk(old, planning, S.PLANNING)
    fresh = new(tmp_path, "fresh")

    def listed(*args: str) -> set[str]:
        data = as_json(run(tmp_path, "--json", "list", *args))
        assert isinstance(data, list)
        return {record["session_id"] for record in data}

    assert listed() == {done, planning, fresh}
    assert listed("--status", "completed") == {done}
    assert listed("--status", "completed", "--status", "planning") == {done, planning}
    assert listed("--active") == {planning, fresh}
    assert listed("--phase", "plan") == {planning}
    assert listed("--branch", "feature/x") == {planning}
    assert listed("--since", "2d") == {planning, fresh}
    assert listed("--since", "2h") == {fresh}
    assert listed("--until", "2d") == {done}
    day_before = (utcnow() - timedelta(days=5)).date().isoformat()
    assert listed("--until", day_before) == {done}
    assert listed("--since", day_before) == {planning, fresh}
    assert listed("--since", "1w", "--until", "12h") == {planning}
    data = as_json(run(tmp_path, "--json", "list", "--limit", "1"))
    assert isinstance(data, list) and [r["session_id"] for r in data] == [fresh]
    assert (
        ok(run(tmp_path, "list", "--limit", "2", **TTY))
        .splitlines()[-1]
        .startswith("2 of 3 sessions; 1 more: --limit 3, or the next page: --cursor ")
    )
    assert ok(run(tmp_path, "list", "--branch", "nowhere")) == "no sessions match\n"


def test_list_refuses_bad_filters(tmp_path: Path) -> None:
    assert "'yesterdayish' is neither an age" in usage_error(
        run(tmp_path, "list", "--since", "yesterdayish")
    )
    assert "--until" in usage_error(run(tmp_path, "list", "--until", "2026-13-45"))
    assert "--status" in usage_error(run(tmp_path, "list", "--status", "sleeping"))
    assert "before year 1" in usage_error(run(tmp_path, "list", "--since", "999999w"))
    assert "cannot be combined" in usage_error(
        run(tmp_path, "list", "--active", "--status", "failed")
    )
    assert "--limit" in usage_error(run(tmp_path, "list", "--limit", "0"))


def test_list_warns_about_unreadable_sessions_and_shows_the_rest(
    tmp_path: Path, lib: SessionManager
) -> None:
    good = new(tmp_path, "good")
    bad = new(tmp_path, "bad")
    (lib.sessions_dir / bad / "metadata.json").write_text("{oops")
    result = run(tmp_path, "list", **TTY)
    assert result.exit_code == 0
    assert good[:8] in result.stdout and bad[:8] not in result.stdout
    assert result.stderr.startswith("warning: ") and bad in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_search_ranks_like_the_library(tmp_path: Path, lib: SessionManager) -> None:
    ids = {
        "oauth": new(tmp_path, "Add OAuth login"),
        "both": new(tmp_path, "OAuth: refresh OAuth tokens for the OAuth login"),
        "authn": new(tmp_path, "Authentication audit"),
        "other": new(tmp_path, "Dark mode"),
    }
    expected = [s.session_id for s in lib.query_sessions(text="oauth")]
    data = as_json(run(tmp_path, "--json", "search", "oauth"))
    assert isinstance(data, list)
    assert [r["session_id"] for r in data] == expected
    assert set(expected) == {ids["oauth"], ids["both"]}
    out = ok(run(tmp_path, "search", "oauth", "login"))
    assert ids["oauth"][:8] in out and ids["other"][:8] not in out
    found = as_json(run(tmp_path, "--json", "search", "auth*"))
    assert isinstance(found, list) and [r["session_id"] for r in found] == [ids["authn"]]
    assert ok(run(tmp_path, "search", "kubernetes")) == "no sessions match\n"
    line = error_line(run(tmp_path, "search", "***"), 1)
    assert "at least one word" in line and "maestro search --help" in line
    usage_error(run(tmp_path, "search"))


# ---------------------------------------------------------------- the state machine


def test_transition_moves_and_records_the_reason(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    out = ok(run(tmp_path, "transition", sid[:6], "planning", "--reason", "go"))
    assert out == f"{sid[:8]}  initializing → planning  phase plan  (go)\n"
    record = as_json(run(tmp_path, "--json", "transition", sid, "generating_tasks"))
    assert isinstance(record, dict)
    assert record["status"] == "generating_tasks" and record["current_phase"] == "generate_tasks"
    session = lib.get_session(sid)
    assert [(h.to_status, h.reason) for h in session.history] == [
        (S.PLANNING, "go"),
        (S.GENERATING_TASKS, None),
    ]


def test_invalid_transition_exits_4(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    result = run(tmp_path, "transition", sid, "completed")
    line = error_line(result, 4)
    assert "initializing -> completed" in line and "planning, failed, paused" in line
    assert result.stdout == ""
    assert lib.get_session(sid).status is S.INITIALIZING
    assert "'sleeping'" in usage_error(run(tmp_path, "transition", sid, "sleeping"))


def test_a_stale_expected_revision_is_a_conflict(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    line = error_line(run(tmp_path, "transition", sid, "planning", "--expected-revision", "7"), 5)
    assert "revision conflict" in line and "retry" in line
    assert lib.get_session(sid).status is S.INITIALIZING
    revision = lib.get_session(sid).revision
    ok(run(tmp_path, "transition", sid, "planning", "--expected-revision", str(revision)))
    stale = ["--expected-revision", str(revision)]
    error_line(run(tmp_path, "update", sid, "--set", "feature_request=y", *stale), 5)
    error_line(run(tmp_path, "delete", sid, "--yes", "--expected-revision", "1"), 5)
    assert lib.get_session(sid).feature_request == "x"


def test_pause_and_resume(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    walk(lib, sid, S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING)
    out = ok(run(tmp_path, "pause", sid, "--reason", "lunch"))
    assert "implementing → paused" in out and "(lunch)" in out
    assert lib.get_session(sid).paused_from is S.IMPLEMENTING
    record = as_json(run(tmp_path, "--json", "resume", sid))
    assert isinstance(record, dict) and record["status"] == "implementing"
    line = error_line(run(tmp_path, "resume", sid), 4)
    assert "only a paused session can be resumed" in line
    record = as_json(run(tmp_path, "--json", "pause", sid))
    assert isinstance(record, dict) and record["status"] == "paused"


def test_fail_needs_a_reason(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    assert "--reason" in usage_error(run(tmp_path, "fail", sid))
    assert "must not be empty" in usage_error(run(tmp_path, "fail", sid, "--reason", " "))
    out = ok(run(tmp_path, "fail", sid, "--reason", "the build is broken"))
    assert "initializing → failed" in out
    session = lib.get_session(sid)
    assert session.status is S.FAILED and session.history[-1].reason == "the build is broken"
    assert "none (terminal state)" in error_line(run(tmp_path, "fail", sid, "--reason", "x"), 4)
    other = new(tmp_path, "y")
    record = as_json(run(tmp_path, "--json", "fail", other, "--reason", "no"))
    assert isinstance(record, dict) and record["completed_at"].endswith("Z")


def test_complete_only_after_the_report(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    walk(lib, sid, S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING)
    assert "implementing -> completed" in error_line(run(tmp_path, "complete", sid), 4)
    walk(lib, sid, S.VALIDATING, S.GENERATING_REPORT)
    assert "generating_report → completed" in ok(run(tmp_path, "complete", sid))
    assert lib.get_session(sid).status is S.COMPLETED
    other = new(tmp_path, "y")
    walk(lib, other, *TO_REPORT)
    record = as_json(run(tmp_path, "--json", "complete", other))
    assert isinstance(record, dict) and record["status"] == "completed"


# ---------------------------------------------------------------- update, increment, heartbeat


def test_parse_assignments() -> None:
    assert parse_assignments(
        [
            "statistics.total_tasks=10",
            "configuration.auto_checkpoint=false",
            "configuration.max_iterations=5",
            "feature_request=Add SAML = single sign-on",
            'prd_reference.version="2"',
            "current_phase=null",
        ]
    ) == {
        "statistics": {"total_tasks": 10},
        "configuration": {"auto_checkpoint": False, "max_iterations": 5},
        "feature_request": "Add SAML = single sign-on",
        "prd_reference": {"version": "2"},
        "current_phase": None,
    }
    assert parse_assignments(["feature_request=NaN"]) == {"feature_request": "NaN"}
    assert parse_assignments(['x={"a": [1]}']) == {"x": {"a": [1]}}
    for bad, message in [
        (["statistics"], "not KEY=VALUE"),
        (["=1"], "empty key"),
        (["statistics..total_tasks=1"], "empty key"),
        (["statistics=1", "statistics.total_tasks=2"], "set twice"),
        (["statistics.total_tasks=1", "statistics.total_tasks=2"], "set twice"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_assignments(bad)


def test_update_sets_nested_fields(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x", "--prd", "old.md")
    out = ok(
        run(
            tmp_path,
            "update",
            sid[:7],
            "--set",
            "statistics.total_tasks=10",
            "--set",
            "configuration.max_iterations=5",
            "--set",
            "configuration.auto_checkpoint=false",
        )
    )
    assert out.startswith(f"{sid[:8]}  updated ")
    assert "statistics.total_tasks" in out and "configuration.max_iterations" in out
    session = lib.get_session(sid)
    assert session.statistics.total_tasks == 10 and session.statistics.completed_tasks == 0
    assert session.configuration.max_iterations == 5
    assert session.configuration.auto_checkpoint is False
    assert session.configuration.timeout_minutes == 120  # merged, not replaced
    record = as_json(run(tmp_path, "--json", "update", sid, "--prd", "docs/prd-v2.md"))
    assert isinstance(record, dict)
    assert record["prd_reference"] == {"filename": "prd-v2.md", "path": "docs/prd-v2.md"}
    ok(run(tmp_path, "update", sid, "--set", "prd_reference=null"))
    assert lib.get_session(sid).prd_reference is None
    ok(run(tmp_path, "update", sid, "--set", 'feature_request="42"'))
    assert lib.get_session(sid).feature_request == "42"


def test_update_changes_the_state_through_the_state_machine(
    tmp_path: Path, lib: SessionManager
) -> None:
    sid = new(tmp_path, "x")
    ok(run(tmp_path, "update", sid, "--set", "status=planning", "--reason", "kick-off"))
    session = lib.get_session(sid)
    assert session.status is S.PLANNING and session.history[-1].reason == "kick-off"
    error_line(run(tmp_path, "update", sid, "--set", "status=completed"), 4)


def test_update_errors(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    assert "not KEY=VALUE" in usage_error(run(tmp_path, "update", sid, "--set", "total_tasks"))
    assert "set twice" in usage_error(
        run(tmp_path, "update", sid, "--set", "statistics=1", "--set", "statistics.x=2")
    )
    assert "nothing to change" in usage_error(run(tmp_path, "update", sid))
    assert "not both" in usage_error(
        run(tmp_path, "update", sid, "--prd", "a.md", "--set", "prd_reference.path=b")
    )
    line = error_line(run(tmp_path, "update", sid, "--set", "colour=blue"), 1)
    assert "unknown field 'colour'" in line and "maestro update --help" in line
    assert "read-only" in error_line(run(tmp_path, "update", sid, "--set", "revision=3"), 1)
    line = error_line(run(tmp_path, "update", sid, "--set", "statistics.total_tasks=many"), 1)
    assert "statistics.total_tasks must be a whole number" in line
    assert "unknown field" in error_line(
        run(tmp_path, "update", sid, "--set", "statistics.bogus=1"), 1
    )
    assert lib.get_session(sid).revision == 1  # nothing was written


def test_increment_counters(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    assert ok(run(tmp_path, "increment", sid, "completed_tasks")) == (
        f"{sid[:8]}  completed_tasks 1 (+1)\n"
    )
    assert ok(run(tmp_path, "increment", sid, "completed_tasks", "3")).endswith(" 4 (+3)\n")
    assert ok(run(tmp_path, "increment", sid, "completed_tasks", "-2")).endswith(" 2 (-2)\n")
    record = as_json(run(tmp_path, "--json", "increment", sid, "decisions_made"))
    assert isinstance(record, dict) and record["statistics"]["decisions_made"] == 1
    line = error_line(run(tmp_path, "increment", sid, "failed_tasks", "-1"), 1)
    assert "failed_tasks is 0; subtracting 1 would make it negative" in line
    assert "'bogus'" in usage_error(run(tmp_path, "increment", sid, "bogus"))
    assert "'two'" in usage_error(run(tmp_path, "increment", sid, "failed_tasks", "two"))
    assert lib.get_session(sid).statistics.completed_tasks == 2


def test_heartbeat(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    out = ok(run(tmp_path, "heartbeat", sid))
    assert out.startswith(f"{sid[:8]}  heartbeat at ") and out.endswith(" UTC\n")
    beat = lib.get_session(sid).heartbeat_at
    assert beat is not None
    record = as_json(run(tmp_path, "--json", "heartbeat", sid))
    assert isinstance(record, dict) and record["heartbeat_at"].endswith("Z")
    ok(run(tmp_path, "fail", sid, "--reason", "stop"))
    assert "nothing to keep alive" in error_line(run(tmp_path, "heartbeat", sid), 1)


# ---------------------------------------------------------------- delete


def test_delete_without_yes_on_a_pipe_refuses(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    line = error_line(run(tmp_path, "delete", sid), 2)
    assert "not a terminal" in line and "--yes" in line
    assert lib.get_session(sid).session_id == sid
    assert ok(run(tmp_path, "delete", sid[:8], "--yes")) == f"deleted session {sid}\n"
    assert lib.query_sessions() == []
    error_line(run(tmp_path, "delete", sid, "--yes"), 3)


def test_delete_asks_on_a_terminal(
    tmp_path: Path, lib: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_module, "_stdin_is_tty", lambda: True)
    sid = new(tmp_path, "Add OAuth login")
    result = run(tmp_path, "delete", sid, input="n\n")
    assert result.exit_code == 1
    prompt, error = result.stderr.strip().splitlines()
    assert prompt.startswith(f"delete session {sid} (initializing, 'Add OAuth login')")
    assert error == "error: not confirmed; nothing was deleted"
    assert lib.get_session(sid).session_id == sid
    result = run(tmp_path, "delete", sid, input="y\n")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("delete session") and "[y/N]" in result.stderr
    assert lib.query_sessions() == []


def test_delete_json(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    assert as_json(run(tmp_path, "--json", "delete", sid, "--yes")) == {"deleted": sid}


# ---------------------------------------------------------------- stats


def test_stats(tmp_path: Path, old: SessionManager, old_clock: Clock) -> None:
    feature = GitContext(branch="feature/x", commit="1" * 40, repo_root=str(tmp_path))
    for number in range(3):
        sid = old.create_session(f"done {number}").session_id
        for state in (*TO_REPORT, S.COMPLETED):
            old_clock.advance(60 * (number + 1))
            old.transition_state(sid, state)
    failed = old.create_session("failed", git_context=feature).session_id
    old.transition_state(failed, S.FAILED)
    running = old.create_session("running").session_id
    walk(old, running, S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING)

    out = ok(run(tmp_path, "stats"))
    assert out.startswith("5 sessions  success rate 75%  (3 of 4 finished)")
    assert re.search(r"completed\s+█+\s+3\n", out)
    assert re.search(r"failed\s+█+▌?\s+1\n", out)
    assert re.search(r"unknown\s+█+\s+4\n", out)  # the root is not a git checkout
    assert re.search(r"feature/x\s+█+▌?\s+1\n", out)
    # planning took 1, 2 and 3 minutes in the finished sessions, no time in the running one
    planning = next(line for line in out.splitlines() if line.startswith("planning"))
    assert re.match(r"planning\s+4\s+1m 30s\s+2m 42s\s+6m 00s$", planning), planning
    assert widest_line(out) <= 80

    data = as_json(run(tmp_path, "--json", "stats"))
    assert isinstance(data, dict)
    assert data["total"] == 5 and data["success_rate"] == 0.75
    assert data["by_status"] == {"implementing": 1, "completed": 3, "failed": 1}
    assert data["by_branch"] == {"unknown": 4, "feature/x": 1}
    assert data["durations"]["planning"]["median_seconds"] == 90.0
    narrowed = as_json(run(tmp_path, "--json", "stats", "--branch", "feature/x"))
    assert isinstance(narrowed, dict) and narrowed["total"] == 1
    assert narrowed["success_rate"] == 0.0
    assert ok(run(tmp_path, "stats", "--branch", "nowhere")) == "no sessions match\n"


# ---------------------------------------------------------------- stale and gc


def test_parse_age() -> None:
    assert parse_age("30m") == timedelta(minutes=30)
    assert parse_age("2h") == timedelta(hours=2)
    assert parse_age("2d") == timedelta(days=2)
    assert parse_age("1w") == timedelta(weeks=1)
    assert parse_age(" 1d12h ") == timedelta(hours=36)
    assert parse_age("90S") == timedelta(seconds=90)
    for bad in ["", "m", "2", "2x", "2026-01-07", "-2d", "2 days", "9" * 30 + "w"]:
        assert parse_age(bad) is None, bad


def test_stale_finds_and_reaps(tmp_path: Path, old: SessionManager, lib: SessionManager) -> None:
    idle = old.create_session("idle worker", {"timeout_minutes": 60}).session_id
    walk(old, idle, S.PLANNING)
    paused = old.create_session("paused on purpose").session_id
    old.pause_session(paused)
    fresh = new(tmp_path, "fresh", "--timeout-minutes", "1")

    out = ok(run(tmp_path, "stale", **TTY))
    assert idle[:8] in out and paused[:8] not in out and fresh[:8] not in out
    assert "10d 00h ago" in out and "60 min" in out
    assert "1 session stale" in out
    data = as_json(run(tmp_path, "--json", "stale", "--older-than", "1d"))
    assert isinstance(data, list) and [r["session_id"] for r in data] == [idle]
    assert lib.get_session(idle).status is S.PLANNING  # looking changes nothing

    out = ok(run(tmp_path, "stale", "--reap", **TTY))
    assert idle[:8] in out and "1 session failed (timed out)" in out
    session = lib.get_session(idle)
    assert session.status is S.FAILED and session.history[-1].reason == "timed out"
    assert ok(run(tmp_path, "stale")) == "no stale sessions\n"
    assert as_json(run(tmp_path, "--json", "stale", "--reap")) == []


def test_stale_refuses_bad_ages(tmp_path: Path) -> None:
    assert "'soon' is not an age" in usage_error(run(tmp_path, "stale", "--older-than", "soon"))
    assert "longer than zero" in usage_error(run(tmp_path, "stale", "--older-than", "0m"))


def test_gc_removes_old_finished_sessions(
    tmp_path: Path, old: SessionManager, lib: SessionManager
) -> None:
    done = old.create_session("old and done").session_id
    walk(old, done, *TO_REPORT, S.COMPLETED)
    failed = old.create_session("old and failed").session_id
    old.transition_state(failed, S.FAILED)
    running = old.create_session("old but running").session_id
    recent = new(tmp_path, "recent and failed")
    ok(run(tmp_path, "fail", recent, "--reason", "x"))

    out = ok(run(tmp_path, "gc", "--older-than", "5d", "--dry-run", **TTY))
    assert done[:8] in out and failed[:8] in out and running[:8] not in out
    assert recent[:8] not in out and "would remove 2 sessions (dry run)" in out
    assert len(lib.query_sessions()) == 4

    data = as_json(run(tmp_path, "--json", "gc", "--older-than", "5d", "--status", "failed"))
    assert isinstance(data, dict) and data["dry_run"] is False
    assert [r["session_id"] for r in data["removed"]] == [failed]
    out = ok(run(tmp_path, "gc", "--older-than", "5d", **TTY))
    assert done[:8] in out and out.endswith("removed 1 session\n")
    assert {s.session_id for s in lib.query_sessions()} == {running, recent}
    assert ok(run(tmp_path, "gc", "--older-than", "5d")) == "nothing to remove\n"
    assert "--older-than" in usage_error(run(tmp_path, "gc"))


# ---------------------------------------------------------------- export and import


def test_export_and_import_round_trip(tmp_path: Path, lib: SessionManager) -> None:
    home = tmp_path / "home"
    away = tmp_path / "away"
    home.mkdir()
    away.mkdir()  # a root must exist
    one = new(home, "one")
    two = new(home, "two")
    ok(run(home, "fail", two, "--reason", "x"))
    (SessionManager(home).sessions_dir / one / "checkpoints.json").write_text("{}")
    archive = tmp_path / "sessions.tar.gz"

    result = run(home, "export", "-o", str(archive))
    assert ok(result).startswith("exported 2 sessions (3 files, ")
    assert result.stdout.endswith(f" bytes) to {archive}\n")
    assert result.stderr == ""  # no progress bar when stderr is not a terminal

    result = run(away, "import", str(archive))
    assert ok(result) == "imported sessions.tar.gz: 2 created, 0 updated, 0 unchanged\n"
    assert result.stderr == ""
    there = SessionManager(away)
    assert {s.session_id for s in there.query_sessions()} == {one, two}
    assert (there.sessions_dir / one / "checkpoints.json").read_text() == "{}"
    data = as_json(run(away, "--json", "import", str(archive)))  # again: idempotent
    assert isinstance(data, dict) and data["created"] == [] and data["updated"] == []
    assert sorted(data["unchanged"]) == sorted([one, two])

    failed_only = tmp_path / "failed.tar.gz"
    data = as_json(run(home, "--json", "export", "--status", "failed", "-o", str(failed_only)))
    assert isinstance(data, dict)
    assert data["sessions"] == 1 and data["files"] == 1 and data["path"] == str(failed_only)
    with tarfile.open(failed_only) as opened:
        assert f"{two}/metadata.json" in opened.getnames()
        assert not any(name.startswith(one) for name in opened.getnames())


def test_import_refuses_bad_archives_and_writes_nothing(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"this is not a tarball")
    line = error_line(run(tmp_path, "import", str(garbage)), 1)
    assert "garbage.tar.gz is not a readable .tar.gz" in line

    hostile = tmp_path / "hostile.tar.gz"
    with tarfile.open(hostile, "w:gz") as archive:
        data = b"{}"
        info = tarfile.TarInfo("../../escape.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    assert "unsafe name" in error_line(run(tmp_path, "import", str(hostile)), 1)

    half = tmp_path / "half.tar.gz"
    with tarfile.open(half, "w:gz") as archive:
        data = b"{}"
        info = tarfile.TarInfo("3f01b541-5cc9-47a7-9f8b-d884159c705f/checkpoints.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    assert "has no metadata.json" in error_line(run(tmp_path, "import", str(half)), 1)
    assert not (tmp_path / ".flow" / "maestro" / "sessions").exists() or not any(
        (tmp_path / ".flow" / "maestro" / "sessions").iterdir()
    )
    assert not (tmp_path.parent / "escape.json").exists()
    assert "does not exist" in usage_error(run(tmp_path, "import", str(tmp_path / "no.tar.gz")))


def test_export_into_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    new(tmp_path, "x")
    line = error_line(run(tmp_path, "export", "-o", str(tmp_path / "no" / "x.tar.gz")), 1)
    assert "x.tar.gz" in line


#: What a terminal looks like to Rich: FORCE_COLOR is how users force it too.
TERMINAL = {"FORCE_COLOR": "1", "TERM": "xterm-256color"}


def test_long_operations_show_progress_on_a_terminal(tmp_path: Path, old: SessionManager) -> None:
    for number in range(3):
        old.transition_state(old.create_session(f"s{number}").session_id, S.FAILED)
    archive = tmp_path / "all.tar.gz"
    result = run(tmp_path, "export", "-o", str(archive), **TERMINAL)
    assert result.exit_code == 0
    assert "exporting" in result.stderr and "3/3" in result.stderr
    (tmp_path / "elsewhere").mkdir()
    result = run(tmp_path / "elsewhere", "import", str(archive), **TERMINAL)
    assert "importing" in result.stderr and "3/3" in result.stderr
    result = run(tmp_path, "doctor", **TERMINAL)
    assert "checking sessions" in result.stderr and "3/3" in result.stderr
    result = run(tmp_path, "gc", "--older-than", "1d", **TERMINAL)
    assert "removing sessions" in result.stderr and "3/3" in result.stderr
    assert "removed 3 sessions" in result.stdout


# ---------------------------------------------------------------- doctor


def test_doctor_on_a_healthy_store(tmp_path: Path) -> None:
    new(tmp_path, "x")
    out = ok(run(tmp_path, "doctor"))
    assert out.splitlines()[0] == "1 readable session" and out.endswith("healthy\n")
    data = as_json(run(tmp_path, "--json", "doctor"))
    assert isinstance(data, dict) and data["healthy"] is True and data["remaining"] is None


def test_doctor_finds_and_fixes_corruption(tmp_path: Path, lib: SessionManager) -> None:
    good = new(tmp_path, "good")
    bad = new(tmp_path, "bad")
    (lib.sessions_dir / bad / "metadata.json").write_text("{oops")
    (lib.sessions_dir / good / ".metadata.json.abcdef.tmp").write_text("half")

    result = run(tmp_path, "doctor")
    assert "problems remain" in error_line(result, 1)
    assert "maestro doctor --fix" in result.stderr
    assert "corrupt (1):" in result.stdout and bad in result.stdout
    assert f"{good}/.metadata.json.abcdef.tmp" in result.stdout
    assert (lib.sessions_dir / bad).exists()

    result = run(tmp_path, "--json", "doctor")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["healthy"] is False and list(data["corrupt"]) == [bad]

    result = run(tmp_path, "doctor", "--fix")
    out = ok(result)
    assert "quarantined" in out and "removed" in out and out.endswith("healthy\n")
    quarantined = list((lib.sessions_dir.parent / "quarantine").iterdir())
    assert [p.name[:36] for p in quarantined] == [bad]
    assert (quarantined[0] / "metadata.json").read_text() == "{oops"  # kept, never deleted
    assert [s.session_id for s in lib.query_sessions()] == [good]
    data = as_json(run(tmp_path, "--json", "doctor", "--fix"))
    assert isinstance(data, dict) and data["healthy"] is True
    assert data["remaining"]["corrupt"] == {}


def test_doctor_reindexes_after_hand_edits(tmp_path: Path, lib: SessionManager) -> None:
    sid = new(tmp_path, "x")
    path = lib.sessions_dir / sid / "metadata.json"
    record = json.loads(path.read_text())
    record["feature_request"] = "edited by hand"
    path.write_text(json.dumps(record))
    result = run(tmp_path, "doctor")
    assert "index: stale" in result.stdout and result.exit_code == 1
    out = ok(run(tmp_path, "doctor", "--reindex"))
    assert "index: rebuilt" in out and "rebuilt the index" in out
    assert "index: ok" in ok(run(tmp_path, "doctor"))


# ---------------------------------------------------------------- every command, as JSON


def prepare(root: Path) -> dict[str, list[str]]:
    """For each command, arguments that succeed on the store prepared here."""
    manager = SessionManager(root)
    start = manager.changes_cursor()
    sid = manager.create_session("Add OAuth login").session_id
    walk(manager, sid, S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING)
    paused = manager.create_session("paused").session_id
    manager.pause_session(paused)
    report = manager.create_session("reporting").session_id
    walk(manager, report, *TO_REPORT)
    doomed = manager.create_session("doomed").session_id
    archive = root / "out.tar.gz"
    return {
        "create": ["create", "x"],
        "show": ["show", sid],
        "list": ["list"],
        "search": ["search", "oauth"],
        "transition": ["transition", sid, "validating"],
        "pause": ["pause", sid],
        "resume": ["resume", paused],
        "fail": ["fail", doomed, "--reason", "x"],
        "complete": ["complete", report],
        "rerun": ["rerun", report],  # after "complete": a finished session
        "path": ["path", sid],
        "update": ["update", sid, "--set", "statistics.total_tasks=3"],
        "increment": ["increment", sid, "completed_tasks"],
        "heartbeat": ["heartbeat", sid],
        "delete": ["delete", doomed, "--yes"],
        "stats": ["stats"],
        "stale": ["stale"],
        "gc": ["gc", "--older-than", "30d"],
        "export": ["export", "-o", str(archive)],
        "import": ["import", str(archive)],
        "doctor": ["doctor"],
        "db": ["db", "upgrade"],
        "demo": ["demo"],
        # after "complete": replays that session's changes, then exits 0
        "watch": ["watch", report, "--since", start],
    }


#: Commands that run a server until stopped: no record to print (tests/test_server*.py).
SERVERS = {"serve", "mcp"}


def test_every_command_prints_json(tmp_path: Path) -> None:
    calls = prepare(tmp_path)
    # ``mcp`` speaks a protocol on stdout (tests/test_mcp_stdio.py) and ``serve``
    # runs until stopped (tests/test_server*.py): neither prints a result.
    assert set(calls) | SERVERS == set(cli.commands), "a command without a --json check"
    for name, args in calls.items():  # in order: fail before delete, export before import
        result = run(tmp_path, "--json", *args)
        assert result.exit_code == 0, (name, result.stderr)
        if name == "watch":  # a stream: one JSON object per line
            lines = result.stdout.splitlines()
            assert lines and all(isinstance(json.loads(line), dict) for line in lines)
        else:
            payload = json.loads(result.stdout)
            assert isinstance(payload, dict | list), name
        text = result.stdout
        for stamp in re.findall(r'"\w+_at": "([^"]+)"', text):
            assert stamp.endswith("Z") and "T" in stamp, (name, stamp)


# ---------------------------------------------------------------- colour, completion, root


def test_colours_only_on_a_terminal_and_never_with_no_color(tmp_path: Path) -> None:
    sid = new(tmp_path, "x")
    assert "\x1b[" not in ok(run(tmp_path, "list"))  # not a terminal
    assert "\x1b[" not in run(tmp_path, "show", "ffffff").stderr
    coloured = ok(run(tmp_path, "list", **TERMINAL))
    assert "\x1b[36minitializing" in coloured
    assert "\x1b[1;31merror:" in run(tmp_path, "show", "ffffff", **TERMINAL).stderr
    plain = ok(run(tmp_path, "list", NO_COLOR="1", **TERMINAL))
    assert not re.search(r"\x1b\[[0-9;]*3\dm", plain) and "initializing" in plain
    assert sid[:8] in plain
    error = run(tmp_path, "show", "ffffff", NO_COLOR="1", **TERMINAL)
    assert error.exit_code == 3 and not re.search(r"\x1b\[[0-9;]*3\dm", error.stderr)


def complete(args: str, **env: str) -> list[str]:
    words = f"maestro {args}"
    result = runner().invoke(
        cli,
        [],
        prog_name="maestro",
        env={
            "_MAESTRO_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            **env,
        },
    )
    assert result.exit_code == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_shell_completion_offers_session_ids(tmp_path: Path) -> None:
    ids = sorted(new(tmp_path, f"r{n}") for n in range(3))
    assert complete("show ", MAESTRO_ROOT=str(tmp_path)) == ids
    assert complete(f"show {ids[1][:4]}", MAESTRO_ROOT=str(tmp_path)) == [
        i for i in ids if i.startswith(ids[1][:4])
    ]
    assert complete(f"--root {tmp_path} transition ") == ids
    assert "planning" in complete(f"--root {tmp_path} transition {ids[0]} pl")
    assert complete("tran") == ["transition"]
    assert complete("show ", MAESTRO_ROOT=str(tmp_path / "empty")) == []


def test_the_root_comes_from_the_environment(tmp_path: Path) -> None:
    sid = new(tmp_path, "x")
    result = runner().invoke(cli, ["list"], env={**PLAIN_ENV, "MAESTRO_ROOT": str(tmp_path)})
    assert sid[:8] in result.stdout


# ---------------------------------------------------------------- --request-id


def test_every_write_command_takes_a_request_id() -> None:
    writes = {
        "create", "transition", "pause", "resume", "fail", "complete",
        "update", "increment", "heartbeat", "delete",
    }  # fmt: skip
    for name in writes:
        command = cli.commands[name]
        assert any("--request-id" in p.opts for p in command.params), name


def test_request_id_retries_change_nothing_on_the_command_line(tmp_path: Path) -> None:
    sid = ok(run(tmp_path, "create", "-q", "--request-id", "job-1", "Add OAuth")).strip()
    assert ok(run(tmp_path, "create", "-q", "--request-id", "job-1", "Add OAuth")).strip() == sid
    steps = [
        ("transition", sid, "planning", "--request-id", "t-1"),
        ("increment", sid, "completed_tasks", "--request-id", "i-1"),
        ("update", sid, "--set", "statistics.total_tasks=4", "--request-id", "u-1"),
        ("heartbeat", sid, "--request-id", "h-1"),
        ("pause", sid, "--request-id", "p-1"),
        ("resume", sid, "--request-id", "r-1"),
    ]
    for step in steps:
        ok(run(tmp_path, *step))
    stored = json.loads(ok(run(tmp_path, "--json", "show", sid)))["session"]
    for step in steps:  # every one retried, in any order, after the others
        retried = json.loads(ok(run(tmp_path, "--json", *step)))
        assert retried["revision"] == stored["revision"]
    assert json.loads(ok(run(tmp_path, "--json", "show", sid)))["session"] == stored
    assert stored["statistics"]["completed_tasks"] == 1

    conflict = run(tmp_path, "increment", sid, "completed_tasks", "2", "--request-id", "i-1")
    line = error_line(conflict, 5)
    assert sid in line and "'i-1'" in line and "other arguments" in line
    assert error_line(run(tmp_path, "create", "--request-id", "job-1", "Other"), 5)

    ok(run(tmp_path, "fail", sid, "--reason", "broken", "--request-id", "f-1"))
    ok(run(tmp_path, "fail", sid, "--reason", "broken", "--request-id", "f-1"))
    assert "deleted session" in ok(run(tmp_path, "delete", sid, "--yes", "--request-id", "d-1"))
    assert "deleted session" in ok(run(tmp_path, "delete", sid, "--yes", "--request-id", "d-1"))
    error_line(run(tmp_path, "delete", sid, "--yes"), 3)  # without an id, gone is an error


def test_a_bad_request_id_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, "create", "--request-id", " x", "Add OAuth")
    assert "request_id must be printable text" in error_line(result, 1)
    assert SessionManager(tmp_path).count_sessions() == 0
