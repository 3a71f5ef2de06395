"""A small but real orchestrator: one feature request, one session, a git repository.

It drives a session through plan → generate tasks → implement ⇄ validate →
report with the public helpers of ``maestro`` only: ``manager.phase(...)``
for each phase, ``p.progress(...)`` for the statistics, ``resume_run`` to
pick up a run a crashed worker left, and an ``on_transition`` hook that
prints each step.  Its "agent" is scripted (it knows how to write one small
greeting module), but everything it does is real: it writes files, makes a
git commit per task, runs a real test command, sees it fail once, commits a
fix and sees it pass.

    python examples/orchestrator.py --repo /tmp/demo-repo "Add a greeting module"

Run it again after killing it (even with ``kill -9``): it finds its session
by the run key (``--run-key``, by default made from the request), pauses it
as "worker lost" once it is stale (``--stale-after``, by default the
session's timeout), resumes it and goes on from the state it was in.  Tasks
already committed are not done again, and the statistics are set from what
the repository holds, so each task counts once.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from maestro import (
    ChangeKind,
    Session,
    SessionManager,
    SessionStatus,
    StateChange,
    Terminated,
    WorkerAliveError,
)

S = SessionStatus

#: The agent's plan: (title, file, contents).  Its first greet() forgets the
#: "!" the tests ask for; the fix after the first validation puts it back.
TASKS = [
    (
        "add greeting.greet",
        "greeting.py",
        'def greet(name: str) -> str:\n    return f"Hello, {name.strip()}"\n',
    ),
    (
        "add greeting.farewell",
        "greeting.py",
        'def greet(name: str) -> str:\n    return f"Hello, {name.strip()}"\n\n\n'
        'def farewell(name: str) -> str:\n    return f"Goodbye, {name.strip()}."\n',
    ),
    (
        "test the greetings",
        "test_greeting.py",
        "import unittest\n\nfrom greeting import farewell, greet\n\n\n"
        "class GreetingTest(unittest.TestCase):\n"
        "    def test_greet_ends_with_an_exclamation(self) -> None:\n"
        '        self.assertEqual(greet("Ada"), "Hello, Ada!")\n\n'
        "    def test_greet_strips_the_name(self) -> None:\n"
        '        self.assertTrue(greet("  Ada ").startswith("Hello, Ada"))\n\n'
        "    def test_farewell(self) -> None:\n"
        '        self.assertEqual(farewell("Ada"), "Goodbye, Ada.")\n',
    ),
]
FIX = (
    "fix: greet ends with an exclamation mark",
    "greeting.py",
    'def greet(name: str) -> str:\n    return f"Hello, {name.strip()}!"\n\n\n'
    'def farewell(name: str) -> str:\n    return f"Goodbye, {name.strip()}."\n',
)


class ValidationFailed(Exception):
    """The test command failed: validation sends the run back to implementing."""


# ---------------------------------------------------------------- the repository


class Repository:
    """A git repository the agent works in."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str) -> str:
        identity = ["-c", "user.name=Example Agent", "-c", "user.email=agent@example.invalid"]
        done = subprocess.run(
            ["git", *identity, *args], cwd=self.path, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def prepare(self) -> None:
        """A repository with one commit; the session store kept out of it."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / ".git").exists():
            self.git("init", "-q", "-b", "main")
            (self.path / "README.md").write_text("# greeting\n")
            self.git("add", "README.md")
            self.git("commit", "-q", "-m", "initial commit")
        exclude = self.path / ".git" / "info" / "exclude"
        exclude.parent.mkdir(exist_ok=True)
        known = exclude.read_text(errors="replace") if exclude.exists() else ""
        if ".flow/" not in known.splitlines():
            with exclude.open("a") as out:
                out.write(".flow/\n__pycache__/\n")

    def recover(self) -> None:
        """After a crash: a commit cut short by the kill leaves its lock behind."""
        lock = self.path / ".git" / "index.lock"
        if lock.exists():
            lock.unlink()

    def subjects(self) -> list[str]:
        return self.git("log", "--format=%s").splitlines()

    def commit(self, message: str, name: str, contents: str) -> str:
        (self.path / name).write_text(contents)
        self.git("add", name)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "--short", "HEAD")

    def run_tests(self) -> tuple[bool, str]:
        done = subprocess.run(
            [sys.executable, "-m", "unittest", "-q"],
            cwd=self.path,
            capture_output=True,
            text=True,
            check=False,
        )
        ran = re.search(r"Ran (\d+) tests?", done.stderr)
        failed = re.findall(r"^(?:FAIL|ERROR): (\w+)", done.stderr, re.MULTILINE)
        total = ran.group(1) if ran else "?"
        if done.returncode == 0:
            return True, f"{total} tests passed"
        return False, f"{len(failed)} of {total} tests failed ({', '.join(failed)})"


def task_done(subjects: list[str], number: int) -> bool:
    return any(subject.startswith(f"task {number}:") for subject in subjects)


# ---------------------------------------------------------------- the orchestrator


def say(text: str) -> None:
    print(f"    {text}", flush=True)


def orchestrate(args: argparse.Namespace) -> int:
    repo = Repository(Path(args.repo).absolute())
    repo.prepare()
    manager = SessionManager(repo.path)
    key = args.run_key or "example-" + re.sub(r"[^a-z0-9]+", "-", args.request.lower()).strip("-")
    args.run_key = key

    writes: Counter[ChangeKind] = Counter()
    manager.on_change(lambda kind, session: writes.update([kind]))
    manager.on_transition(lambda session, change: show(change))

    print(f"run {key} in {args.repo}")
    try:
        run = manager.resume_run(key, older_than=args.stale_after)
    except WorkerAliveError as error:
        print(f"not resuming: {error} (--stale-after)", file=sys.stderr)
        return 1
    if run is not None:
        print(f"session {run.session_id[:8]} resumed in {run.status}, phase {run.phase}")
        if run.worker_lost:
            repo.recover()
        session = run.session
    else:
        session = manager.create_session(
            args.request,
            {"timeout_minutes": args.timeout_minutes},
            request_id=key,
        )
        if session.is_terminal:
            print(f"session {session.session_id[:8]} has already {session.status}")
            return 0 if session.status is S.COMPLETED else 1
        print(f"session {session.session_id[:8]} created")

    sid = session.session_id
    started = time.perf_counter()
    while not session.is_terminal:
        step = STEPS[session.status]
        session = step(manager, repo, sid, args)
    elapsed = time.perf_counter() - started
    stats = session.statistics
    print(
        f"done: {session.status}, {stats.completed_tasks}/{stats.total_tasks} tasks, "
        f"{stats.error_recovery_count} error recovery, {len(repo.subjects()) - 1} commits"
    )
    heartbeats = writes[ChangeKind.HEARTBEAT]
    print(
        f"record: {sum(writes.values())} writes in {elapsed:.2f} s "
        f"({sum(writes.values()) - heartbeats} steps, {heartbeats} heartbeats)"
    )
    return 0 if session.status is S.COMPLETED else 1


def show(change: StateChange) -> None:
    """The on_transition hook: one line per state change, as it is committed."""
    mark = "‖" if change.to_status is S.PAUSED else "▶" if change.from_status is S.PAUSED else "→"
    reason = f"  ({change.reason})" if change.reason else ""
    print(f"{mark} {change.to_status.value}{reason}", flush=True)


def plan(manager: SessionManager, repo: Repository, sid: str, args: argparse.Namespace) -> Session:
    with manager.phase(sid, S.PLANNING, next=S.GENERATING_TASKS, heartbeat_every=args.heartbeat):
        lines = [f"# PRD: {args.request}", "", "Tasks:"] + [f"- {t[0]}" for t in TASKS]
        commit = repo.commit("plan: write the PRD", "PRD.md", "\n".join(lines) + "\n")
        manager.update_session(
            sid, {"prd_reference": "PRD.md"}, request_id=f"{args.run_key}:prd-reference"
        )
        say(f"PRD.md (commit {commit})")
    return manager.get_session(sid)


def generate_tasks(
    manager: SessionManager, repo: Repository, sid: str, args: argparse.Namespace
) -> Session:
    phase = manager.phase(
        sid, S.GENERATING_TASKS, next=S.IMPLEMENTING, heartbeat_every=args.heartbeat
    )
    with phase as p:
        say(f"{len(TASKS)} tasks")
        p.progress(total_tasks=len(TASKS))
    return phase.session


def implement(
    manager: SessionManager, repo: Repository, sid: str, args: argparse.Namespace
) -> Session:
    phase = manager.phase(sid, S.IMPLEMENTING, next=S.VALIDATING, heartbeat_every=args.heartbeat)
    with phase as p:
        session = p.session
        subjects = repo.subjects()
        for number, (title, name, contents) in enumerate(TASKS, 1):
            if task_done(subjects, number):
                continue  # committed before a crash: done once, counted once
            commit = repo.commit(f"task {number}: {title}", name, contents)
            done = sum(task_done(repo.subjects(), n) for n in range(1, len(TASKS) + 1))
            p.progress(completed_tasks=done)
            say(f"task {number}/{len(TASKS)} {title} (commit {commit})")
            time.sleep(args.task_delay)
        done = sum(task_done(repo.subjects(), n) for n in range(1, len(TASKS) + 1))
        if p.session.statistics.completed_tasks != done:
            p.progress(completed_tasks=done)
        retried = any(
            h.from_status is S.VALIDATING and h.to_status is S.IMPLEMENTING for h in session.history
        )
        if retried and FIX[0] not in repo.subjects():
            commit = repo.commit(*FIX)
            say(f"{FIX[0]} (commit {commit})")
    return phase.session


def validate(
    manager: SessionManager, repo: Repository, sid: str, args: argparse.Namespace
) -> Session:
    phase = manager.phase(
        sid,
        S.VALIDATING,
        next=S.GENERATING_REPORT,
        fallback=S.IMPLEMENTING,
        heartbeat_every=args.heartbeat,
    )
    try:
        with phase:
            passed, summary = repo.run_tests()
            say(summary)
            if not passed:
                raise ValidationFailed(summary)
    except ValidationFailed:
        pass  # recorded by the phase: back to implementing for the fix
    return phase.session


def report(
    manager: SessionManager, repo: Repository, sid: str, args: argparse.Namespace
) -> Session:
    phase = manager.phase(
        sid, S.GENERATING_REPORT, next=S.COMPLETED, heartbeat_every=args.heartbeat
    )
    with phase as p:
        stats = p.session.statistics
        text = (
            f"# Report\n\n{p.session.feature_request}\n\n"
            f"- tasks: {stats.completed_tasks}/{stats.total_tasks}\n"
            f"- validation retries: {stats.error_recovery_count}\n\n"
            "Commits:\n\n" + "".join(f"- {s}\n" for s in reversed(repo.subjects()))
        )
        commit = repo.commit("report: summarise the run", "REPORT.md", text)
        say(f"REPORT.md (commit {commit})")
    return phase.session


def paused(
    manager: SessionManager, repo: Repository, sid: str, args: argparse.Namespace
) -> Session:
    raise SystemExit(f"session {sid[:8]} is paused; run again to resume it")


STEPS = {
    S.INITIALIZING: plan,
    S.PLANNING: plan,
    S.GENERATING_TASKS: generate_tasks,
    S.IMPLEMENTING: implement,
    S.VALIDATING: validate,
    S.GENERATING_REPORT: report,
    S.PAUSED: paused,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("request", help="the feature request")
    parser.add_argument("--repo", required=True, help="the git repository (made if missing)")
    parser.add_argument("--run-key", help="the run's key (default: made from the request)")
    parser.add_argument(
        "--stale-after",
        help="a running session idle this long was left by a lost worker "
        "(an age such as 30s or 10m; default: the session's timeout)",
    )
    parser.add_argument("--timeout-minutes", type=int, default=120)
    parser.add_argument(
        "--heartbeat", type=float, help="seconds between heartbeats (default: timeout / 4)"
    )
    parser.add_argument(
        "--task-delay", type=float, default=0.0, help="seconds the agent thinks after each task"
    )
    args = parser.parse_args(argv)
    try:
        return orchestrate(args)
    except (KeyboardInterrupt, Terminated) as stop:
        print("interrupted: the session is paused; run again to resume it", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
