"""``maestro watch``: lines and JSON lines of the change feed, exit codes, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from maestro import SessionManager, SessionStatus
from tests.conftest import GIT
from tests.test_cli import run

S = SessionStatus
REPO = Path(__file__).resolve().parents[1]


def _walk_to_report(manager: SessionManager, sid: str) -> None:
    for state in (S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING, S.VALIDATING):
        manager.transition_state(sid, state)
    manager.transition_state(sid, S.GENERATING_REPORT)


def test_watching_a_session_that_already_ended_exits_at_once_with_its_outcome(
    tmp_path: Path,
) -> None:
    manager = SessionManager(tmp_path)
    done = manager.create_session("done", git_context=GIT).session_id
    _walk_to_report(manager, done)
    manager.transition_state(done, S.COMPLETED)
    failed = manager.create_session("failed", git_context=GIT).session_id
    manager.transition_state(failed, S.FAILED)

    finished = run(tmp_path, "watch", done[:8])
    assert (finished.exit_code, finished.stdout) == (0, "")
    broken = run(tmp_path, "watch", failed)
    assert (broken.exit_code, broken.stdout) == (1, "")


def test_watch_since_a_cursor_shows_each_change_and_exits_with_the_outcome(
    tmp_path: Path,
) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    other = manager.create_session("y", git_context=GIT).session_id
    cursor = manager.changes_cursor()
    manager.transition_state(sid, S.PLANNING)
    manager.heartbeat(other)  # another session: not shown
    manager.pause_session(sid)
    manager.resume_session(sid)
    manager.transition_state(sid, S.FAILED, reason="tests failed")

    result = run(tmp_path, "watch", sid[:8], "--since", cursor)
    assert result.exit_code == 1
    lines = result.stdout.replace("\u2192", "->").splitlines()  # the arrow of the terminal
    assert [line.split()[1:] for line in lines] == [
        ["transitioned", sid[:8], "initializing", "->", "planning", "rev", "2"],
        ["paused", sid[:8], "planning", "->", "paused", "rev", "3"],
        ["resumed", sid[:8], "paused", "->", "planning", "rev", "4"],
        ["transitioned", sid[:8], "planning", "->", "failed", "rev", "5"],
    ]


def test_watch_follows_a_session_until_it_completes(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    _walk_to_report(manager, sid)
    # Whether it completes before the watch starts or while it waits, exit 0.
    closer = threading.Timer(0.3, manager.transition_state, args=(sid, S.COMPLETED))
    closer.start()
    try:
        result = run(tmp_path, "watch", sid, "--timeout", "60")
    finally:
        closer.join()
    assert result.exit_code == 0, result.stderr


def test_watch_json_lines_with_a_status_filter_until_its_timeout(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    cursor = manager.changes_cursor()
    a = manager.create_session("a", git_context=GIT).session_id
    b = manager.create_session("b", git_context=GIT).session_id
    manager.transition_state(a, S.PLANNING)
    manager.transition_state(b, S.FAILED)

    everything = run(tmp_path, "watch", "--json", "--since", cursor, "--timeout", "0.2")
    assert everything.exit_code == 0
    events = [json.loads(line) for line in everything.stdout.splitlines()]
    assert [(e["kind"], e["session_id"], e["to_status"]) for e in events] == [
        ("created", a, "initializing"),
        ("created", b, "initializing"),
        ("transitioned", a, "planning"),
        ("transitioned", b, "failed"),
    ]
    assert set(events[0]) == {
        "cursor",
        "kind",
        "session_id",
        "revision",
        "from_status",
        "to_status",
        "at",
        "request_id",
    }
    # Going on from a printed cursor.
    later = run(tmp_path, "--json", "watch", "--since", events[1]["cursor"], "--timeout", "0")
    assert [json.loads(line)["kind"] for line in later.stdout.splitlines()] == [
        "transitioned",
        "transitioned",
    ]
    failed = run(
        tmp_path, "watch", "--json", "--since", cursor, "--status", "failed", "--timeout", "0"
    )
    assert [json.loads(line)["session_id"] for line in failed.stdout.splitlines()] == [b]


def test_watch_keeps_the_changes_of_sessions_on_a_branch_or_in_a_phase(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    other = GIT.__class__(branch="feature/x", commit="1" * 40, repo_root="/repo", is_worktree=False)
    cursor = manager.changes_cursor()
    a = manager.create_session("a", git_context=GIT).session_id
    b = manager.create_session("b", git_context=other).session_id
    manager.transition_state(a, S.PLANNING)
    manager.transition_state(b, S.PLANNING)
    manager.transition_state(b, S.GENERATING_TASKS)

    def seen(*options: str) -> list[tuple[str, str]]:
        result = run(tmp_path, "watch", "--json", "--since", cursor, "--timeout", "0", *options)
        assert result.exit_code == 0, result.output
        events = [json.loads(line) for line in result.stdout.splitlines()]
        return [(e["session_id"], e["kind"]) for e in events]

    assert seen("--branch", "feature/x") == [
        (b, "created"),
        (b, "transitioned"),
        (b, "transitioned"),
    ]
    # Judged as each session is now: a is planning, b has moved on to tasks.
    assert seen("--phase", "plan") == [(a, "created"), (a, "transitioned")]
    assert seen("--phase", "plan", "--phase", "generate_tasks", "--branch", "main") == [
        (a, "created"),
        (a, "transitioned"),
    ]
    assert run(tmp_path, "watch", "--phase", "nowhere", "--timeout", "0").exit_code == 2


def test_watch_refuses_a_bad_cursor_and_an_unknown_session(tmp_path: Path) -> None:
    SessionManager(tmp_path).create_session("a", git_context=GIT)
    bad = run(tmp_path, "watch", "--since", "nonsense", "--timeout", "0")
    assert bad.exit_code == 1 and "cursor" in bad.stderr
    missing = run(tmp_path, "watch", "0123456789ab", "--timeout", "0")
    assert missing.exit_code == 3


def test_ctrl_c_ends_a_watch_with_exit_0(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    cursor = manager.changes_cursor()
    sid = manager.create_session("x", git_context=GIT).session_id
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "MAESTRO_ROOT": str(tmp_path)}
    command = [sys.executable, "-c", "from maestro.cli import main; main()"]
    watcher = subprocess.Popen(
        [*command, "watch", "--json", "--since", cursor],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())  # it is following now
        assert (first["kind"], first["session_id"]) == ("created", sid)
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    assert watcher.returncode == 0, err
    assert "Traceback" not in err and "Aborted" not in err
