"""The installed ``maestro`` executable, used the way a person uses it.

One test drives a whole lifecycle through separate processes in a real git
repository; another runs the command in an 80-column tmux pane and reads
the screen back, to see that tables and the timeline fit a real terminal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from datetime import timedelta
from pathlib import Path

import pytest

from maestro import SessionManager, SessionStatus
from maestro.models import utcnow

from .conftest import Clock

S = SessionStatus
MAESTRO = Path(sys.executable).parent / "maestro"


def git_env(home: Path) -> dict[str, str]:
    """An environment in which git reads no configuration but ours."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_", "MAESTRO_")) and key not in ("NO_COLOR", "FORCE_COLOR")
    }
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / "gitconfig"),
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Author",
        GIT_COMMITTER_EMAIL="author@example.com",
        COLUMNS="80",
    )
    return env


def make_repository(path: Path, env: dict[str, str]) -> str:
    """A git checkout on branch main with one commit; returns the commit."""
    path.mkdir(parents=True)
    (path / "src").mkdir()
    (path / "README.md").write_text("app\n")

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=path, env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    git("init", "-q")
    git("symbolic-ref", "HEAD", "refs/heads/main")
    git("add", "README.md")
    git("commit", "-q", "-m", "initial")
    return git("rev-parse", "HEAD")


class Shell:
    """Runs the installed ``maestro`` in one directory and checks each run."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env

    def run(self, *args: str, code: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(MAESTRO), *args],
            cwd=self.cwd,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        assert "\x1b[" not in done.stdout  # a pipe gets no colours
        if code:
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert done.stderr.startswith("error: ")
        return done

    def out(self, *args: str) -> str:
        return self.run(*args).stdout


def test_a_whole_lifecycle_through_the_installed_command(tmp_path: Path) -> None:
    assert MAESTRO.exists(), f"the console script is not installed next to {sys.executable}"
    home = tmp_path / "home"
    home.mkdir()
    env = git_env(home)
    repo = tmp_path / "app"
    commit = make_repository(repo, env)
    sh = Shell(repo / "src", env)  # inside the checkout, below its top

    sid = sh.out("create", "--quiet", "Add OAuth login", "--prd", "docs/prd-oauth.md").strip()
    assert len(sid) == 36
    assert (repo / ".flow" / "maestro" / "sessions" / sid / "metadata.json").is_file()
    assert not (repo / "src" / ".flow").exists()  # the root is the git top level
    record = json.loads(sh.out("--json", "show", sid[:6]))["session"]
    assert record["git_context"]["branch"] == "main"
    assert record["git_context"]["commit"] == commit
    assert record["prd_reference"] == {"filename": "prd-oauth.md", "path": "docs/prd-oauth.md"}

    assert "initializing → planning" in sh.out("transition", sid[:8], "planning")
    sh.out("transition", sid, "generating_tasks")
    assert "updated statistics.total_tasks, configuration.max_iterations" in sh.out(
        "update",
        sid,
        "--set",
        "statistics.total_tasks=3",
        "--set",
        "configuration.max_iterations=4",
    )
    sh.out("transition", sid, "implementing")
    assert "completed_tasks 2 (+2)" in sh.out("increment", sid, "completed_tasks", "2")
    assert "(waiting for review)" in sh.out("pause", sid, "--reason", "waiting for review")
    assert "paused → implementing" in sh.out("resume", sid)
    sh.out("increment", sid, "completed_tasks")
    sh.out("transition", sid, "validating")
    sh.out("transition", sid, "implementing", "--reason", "1 test failed")
    sh.out("transition", sid, "validating")
    sh.out("transition", sid, "generating_report")
    assert "heartbeat at" in sh.out("heartbeat", sid)

    shown = sh.out("show", sid[:10])
    for expected in ("Add OAuth login", "main @ " + commit[:12], "timeline", "paused", "history"):
        assert expected in shown
    assert "1 test failed" in shown and "3/3 done" in shown
    listed = sh.run("list")
    # A pipe gets plain tab-separated rows; the count goes to stderr.
    assert listed.stdout.split("\t")[:2] == [sid, "generating_report"]
    assert listed.stderr == "1 session\n"
    assert sid[:8] in sh.out("search", "oauth")
    assert sh.out("search", "kubernetes") == "no sessions match\n"
    assert sh.out("stats").startswith("1 session")

    assert "generating_report → completed" in sh.out("complete", sid)
    assert "none (terminal state)" in sh.run("transition", sid, "planning", code=4).stderr
    assert "not found" in sh.run("show", "ffffff", code=3).stderr
    assert "invalid session id 'abc'" in sh.run("show", "abc", code=2).stderr

    archive = tmp_path / "backup.tar.gz"
    assert "exported 1 session" in sh.out("export", "-o", str(archive))
    with tarfile.open(archive) as opened:
        assert f"{sid}/metadata.json" in opened.getnames()
    assert "--yes" in sh.run("delete", sid, code=2).stderr  # stdin is not a terminal
    assert sh.out("delete", sid, "--yes") == f"deleted session {sid}\n"
    sh.run("show", sid, code=3)

    assert "1 created" in sh.out("import", str(archive))
    assert "1 unchanged" in sh.out("import", str(archive))
    restored = json.loads(sh.out("--json", "list"))
    assert [(r["session_id"], r["status"]) for r in restored] == [(sid, "completed")]
    assert sh.out("doctor").endswith("healthy\n")

    script = sh.run(_MAESTRO_COMPLETE="bash_source").stdout
    assert "_MAESTRO_COMPLETE=bash_complete" in script and "complete " in script
    offered = sh.run(
        _MAESTRO_COMPLETE="bash_complete", COMP_WORDS=f"maestro show {sid[:3]}", COMP_CWORD="2"
    ).stdout
    assert offered.split() == [f"plain,{sid}"]


# ---------------------------------------------------------------- tmux


def tmux_session(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The tmux command (private server) and environment for a test."""
    env = {
        "PATH": f"{MAESTRO.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "TMUX_TMPDIR": str(tmp_path),
        "PS1": "$ ",
    }
    return ["tmux", "-u", "-f", "/dev/null", "-L", f"maestro-{os.getpid()}"], env


def seed(root: Path) -> dict[str, str]:
    """A few sessions with some history, made days ago."""
    clock = Clock(utcnow() - timedelta(days=3))
    manager = SessionManager(root, clock=clock)
    sid = manager.create_session("Add OAuth login to the settings page").session_id

    def stay(minutes: int, state: SessionStatus, reason: str | None = None) -> None:
        clock.advance(minutes * 60)
        manager.transition_state(sid, state, reason=reason)

    stay(2, S.PLANNING)
    stay(12, S.GENERATING_TASKS)
    stay(8, S.IMPLEMENTING)
    stay(40, S.PAUSED, "waiting for a design review")
    stay(25, S.IMPLEMENTING, "review approved")
    stay(30, S.VALIDATING)
    stay(6, S.IMPLEMENTING, "2 tests failed")
    stay(15, S.VALIDATING)
    stay(5, S.GENERATING_REPORT)
    stay(4, S.COMPLETED)
    clock.advance(86400)
    other = manager.create_session(
        "Migrate the billing service to the new payment provider, keeping the old "
        "webhooks alive until every customer has moved"
    ).session_id
    manager.transition_state(other, S.PLANNING)
    return {"done": sid, "long": other}


def test_list_and_show_fit_an_80_column_terminal(tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not on PATH (apt-get install -y tmux)")
    root = tmp_path / "app"
    made = seed(root)
    tmux, env = tmux_session(tmp_path)
    env["MAESTRO_ROOT"] = str(root)

    def call(*args: str) -> str:
        done = subprocess.run(
            [*tmux, *args], env=env, capture_output=True, text=True, timeout=30, check=True
        )
        return done.stdout

    def screen(colours: bool = False, pane: str = "t") -> str:
        return call("capture-pane", "-p", "-J", "-S", "-", *(["-e"] if colours else []), "-t", pane)

    def type_and_wait(command: str, number: int, pane: str = "t") -> None:
        # the marker is computed by the shell, so the typed line never matches it
        call("send-keys", "-t", pane, f"{command}; echo __done_$((1000+{number}))__", "Enter")
        deadline = time.monotonic() + 30
        while f"__done_{1000 + number}__" not in screen(pane=pane):
            assert time.monotonic() < deadline, screen(pane=pane)
            time.sleep(0.05)

    call("new-session", "-d", "-s", "t", "-x", "80", "-y", "40", "bash --norc --noprofile")
    try:
        assert call("display-message", "-p", "-t", "t", "#{pane_width}").strip() == "80"
        type_and_wait("maestro list", 1)
        type_and_wait(f"maestro show {made['done'][:8]}", 2)
        type_and_wait("maestro list | cat", 3)
        text = screen()
        coloured = screen(colours=True)
        call("new-session", "-d", "-s", "n", "-x", "60", "-y", "40", "bash --norc --noprofile")
        assert call("display-message", "-p", "-t", "n", "#{pane_width}").strip() == "60"
        type_and_wait("maestro list", 4, pane="n")
        narrow = screen(pane="n")
    finally:
        subprocess.run([*tmux, "kill-server"], env=env, capture_output=True, check=False)

    assert "Traceback" not in text and "error:" not in text
    lines = text.split("__done_1002__")[0].splitlines()  # a pipe's rows are not cut
    too_wide = [line for line in lines if len(line.rstrip()) > 80]
    assert too_wide == [], too_wide
    listing = text.split("__done_1001__")[0]
    assert ["id", "status", "phase", "branch", "age", "request"] in [
        line.split() for line in listing.splitlines()
    ]
    rows = [line for line in listing.splitlines() if line.startswith(made["long"][:8])]
    assert len(rows) == 1 and "planning" in rows[0] and rows[0].rstrip().endswith("…")
    assert any(line.startswith(made["done"][:8]) and "completed" in line for line in lines)
    shown = text.split("__done_1001__")[1].split("__done_1002__")[0]
    piped = text.split("__done_1002__")[1].split("__done_1003__")[0]
    piped_rows = [line for line in piped.splitlines() if line.startswith(made["long"][:8])]
    # Plain rows: the whole id and the whole request, no header, no rule.
    assert len(piped_rows) == 1 and made["long"] in piped_rows[0]
    assert "every customer has moved" in piped_rows[0]
    assert "request" not in piped and "─" not in piped and "2 sessions" in piped
    narrow_listing = narrow.split("__done_1004__")[0]
    narrow_rows = [line for line in narrow_listing.splitlines() if line[:8] in made["long"]]
    assert len(narrow_rows) == 1 and narrow_rows[0].rstrip().endswith("…")
    assert max(len(line.rstrip()) for line in narrow.splitlines()) <= 60
    assert made["done"] in shown and "timeline" in shown
    for state in ("planning", "implementing", "validating", "generating_report"):
        assert any(line.startswith(f"  {state} ") and "█" in line for line in lines), state
    paused = next(line for line in shown.splitlines() if line.startswith("  paused "))
    assert "░" in paused and "25m 00s" in paused
    assert "◆" in shown and "statistics" in shown and "history" in shown
    assert "\x1b[" in coloured  # Rich saw a terminal and coloured it


def test_library_warnings_reach_stderr_once_logging_is_first_used(tmp_path: Path) -> None:
    """The command loads :mod:`logging` only when the library has something to say;
    what it says is still one ``warning:`` line on stderr, never on stdout."""
    manager = SessionManager(tmp_path)
    good = manager.create_session("Add OAuth login").session_id
    broken = tmp_path / ".flow" / "maestro" / "sessions" / "01234567-89ab-4def-8123-456789abcdef"
    broken.mkdir()
    (broken / "metadata.json").write_text("{bad")
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("MAESTRO_FORCE_TTY", None)
    done = subprocess.run(
        [str(MAESTRO), "--root", str(tmp_path), "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [line.split("\t")[0] for line in done.stdout.splitlines()] == [good]
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and broken.name in warnings[0], done.stderr
    # A command with nothing to report never loads the logging machinery.
    probe = (
        "import sys; from maestro.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('logging' in sys.modules, file=sys.stderr)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe, "--root", str(tmp_path), "--json", "show", good],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert json.loads(shown.stdout)["session"]["session_id"] == good
    assert shown.stderr.strip().splitlines()[-1] == "False", shown.stderr
