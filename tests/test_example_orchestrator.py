"""The example orchestrator, end to end in a real git repository, killed and restarted.

It runs as its users run it, in its own process; the tests read the session
it leaves through the library and the repository through git.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maestro import Session, SessionManager, SessionStatus

S = SessionStatus
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "orchestrator.py"
REQUEST = "Add a greeting module"
KEY = "greeting-run"
#: git without the machine's or the user's settings (signing, hooks, templates).
GIT_ENV = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

#: The story of an uninterrupted run.
STORY = [
    (S.INITIALIZING, S.PLANNING, None),
    (S.PLANNING, S.GENERATING_TASKS, None),
    (S.GENERATING_TASKS, S.IMPLEMENTING, None),
    (S.IMPLEMENTING, S.VALIDATING, None),
    (
        S.VALIDATING,
        S.IMPLEMENTING,
        "ValidationFailed: 1 of 3 tests failed (test_greet_ends_with_an_exclamation)",
    ),
    (S.IMPLEMENTING, S.VALIDATING, None),
    (S.VALIDATING, S.GENERATING_REPORT, None),
    (S.GENERATING_REPORT, S.COMPLETED, None),
]
COMMITS = [
    "initial commit",
    "plan: write the PRD",
    "task 1: add greeting.greet",
    "task 2: add greeting.farewell",
    "task 3: test the greetings",
    "fix: greet ends with an exclamation mark",
    "report: summarise the run",
]


def command(repo: Path, *extra: str) -> list[str]:
    return [sys.executable, str(EXAMPLE), "--repo", str(repo), "--run-key", KEY, *extra, REQUEST]


def orchestrate(repo: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(repo, *extra), capture_output=True, text=True, env=GIT_ENV, timeout=300
    )


def the_session(repo: Path) -> Session:
    (session,) = SessionManager(repo).query_sessions()
    return session


def story(session: Session) -> list[tuple[SessionStatus, SessionStatus, str | None]]:
    return [(h.from_status, h.to_status, h.reason) for h in session.history]


def commits(repo: Path) -> list[str]:
    log = subprocess.run(
        ["git", "log", "--reverse", "--format=%s"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env=GIT_ENV,
    )
    return log.stdout.splitlines()


def check_the_work(repo: Path) -> None:
    """One commit per task, the fix once, and the repository's tests pass now."""
    assert commits(repo) == COMMITS
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "-q"], cwd=repo, capture_output=True, text=True
    )
    assert tests.returncode == 0, tests.stderr
    assert "Ran 3 tests" in tests.stderr


def start_and_stop_in_implementing(repo: Path, how: signal.Signals) -> int:
    """Start a run whose agent thinks a long time after each task; once the first
    task is recorded, send ``how``; its exit status."""
    worker = subprocess.Popen(
        command(repo, "--task-delay", "600"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=GIT_ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the first task was never recorded"
            sessions = SessionManager(repo).query_sessions() if (repo / ".flow").exists() else []
            if sessions and sessions[0].statistics.completed_tasks == 1:
                break
            time.sleep(0.02)
        assert sessions[0].status is S.IMPLEMENTING
        worker.send_signal(how)
        worker.communicate(timeout=60)
        return worker.returncode
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()


def test_a_run_goes_from_request_to_report(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    done = orchestrate(repo)
    assert done.returncode == 0, done.stderr
    session = the_session(repo)
    assert session.status is S.COMPLETED
    assert story(session) == STORY
    stats = session.statistics
    assert (stats.total_tasks, stats.completed_tasks, stats.failed_tasks) == (3, 3, 0)
    assert stats.error_recovery_count == 1
    assert session.prd_reference is not None and session.prd_reference.path == "PRD.md"
    assert all(entry.request_id.startswith(KEY) for entry in session.requests)
    check_the_work(repo)
    assert "→ implementing  (ValidationFailed: 1 of 3 tests failed" in done.stdout
    assert "done: completed, 3/3 tasks, 1 error recovery, 6 commits" in done.stdout
    # Run again: the finished run is found by its key, nothing is done twice.
    again = orchestrate(repo)
    assert again.returncode == 0 and "has already completed" in again.stdout
    assert commits(repo) == COMMITS


def test_a_run_killed_while_implementing_resumes_where_it_was(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert start_and_stop_in_implementing(repo, signal.SIGKILL) == -signal.SIGKILL
    killed = the_session(repo)
    assert killed.status is S.IMPLEMENTING  # nobody could record anything
    assert commits(repo)[-1] == "task 1: add greeting.greet"

    # The default staleness (the session's timeout) sees a worker that may be alive.
    early = orchestrate(repo)
    assert early.returncode == 1 and "another worker may still drive it" in early.stderr

    resumed = orchestrate(repo, "--stale-after", "0")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed in implementing, phase implement" in resumed.stdout
    session = the_session(repo)
    assert session.session_id == killed.session_id
    assert story(session) == [
        *STORY[:3],
        (S.IMPLEMENTING, S.PAUSED, "worker lost"),
        (S.PAUSED, S.IMPLEMENTING, "run resumed"),
        *STORY[3:],
    ]
    stats = session.statistics
    assert (stats.total_tasks, stats.completed_tasks, stats.error_recovery_count) == (3, 3, 1)
    check_the_work(repo)


@pytest.mark.parametrize(
    ("how", "code", "reason"),
    [
        (signal.SIGTERM, 143, "interrupted (SIGTERM)"),
        (signal.SIGINT, 130, "interrupted (KeyboardInterrupt)"),
    ],
)
def test_an_interrupted_run_pauses_and_resumes_without_a_lost_worker(
    tmp_path: Path, how: signal.Signals, code: int, reason: str
) -> None:
    repo = tmp_path / "repo"
    assert start_and_stop_in_implementing(repo, how) == code
    paused = the_session(repo)
    assert paused.status is S.PAUSED and paused.history[-1].reason == reason
    assert paused.statistics.error_recovery_count == 0  # interrupted, not failed

    resumed = orchestrate(repo)  # paused: no staleness to wait for
    assert resumed.returncode == 0, resumed.stderr
    session = the_session(repo)
    assert story(session) == [
        *STORY[:3],
        (S.IMPLEMENTING, S.PAUSED, reason),
        (S.PAUSED, S.IMPLEMENTING, "run resumed"),
        *STORY[3:],
    ]
    assert session.statistics.completed_tasks == 3
    check_the_work(repo)
