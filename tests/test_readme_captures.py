"""The README's transcripts, replayed: every capture must be what the commands print today.

Each fenced block of README.md that shows a shell transcript (lines starting
with a prompt, ``$ `` or ``~/dir$ ``) is run again, command by command, with
the installed ``maestro`` through a shell, in a sandbox of its own: ``~`` is
a fresh home, ``$`` prompts run in ``~/src/app``, another ``~/NAME`` prompt
in a git repository made on first use.  The output of each command is
compared with the README's after normalising what differs on every run:

* ids (UUIDs, 6+ hex digits: session ids, commits, feed histories) and page
  cursors are bound to the real ones where they first appear, and a later
  command of the README that uses one (``show 2106ab``) is run with the real
  one's prefix;
* times, ages and durations become placeholders, ``$HOME`` becomes ``~``,
  runs of spaces and table rules compare by presence, not length.

Everything else must be equal, line for line, and the exit status must say
what the capture says (an ``error:`` line, or none).  A block that needs
state the README does not build names a setup function here with
``<!-- replay: setup=NAME -->`` just before it (for ``maestro watch``, the
setup also makes the writes another process would, once the watcher reads
the feed, and a ``^C`` line is Ctrl-C); a block that cannot be replayed says
why with ``<!-- replay: skip (why) -->`` and is named in ``SKIPPED``.
Python examples run too, and their "prints" blocks are compared the same way.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import pytest

from maestro import GitContext, SessionManager, SessionStatus
from maestro.models import utcnow

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = Path(sys.executable).parent
S = SessionStatus

#: Blocks that are not replayed, by name (their first command); keep this short.
SKIPPED = {
    "from maestro import SessionManager, SessionStatus as S",  # examples/orchestrator.py's outline
    'python examples/orchestrator.py --repo kill-repo "Add a greeting module"',
}

# ------------------------------------------------------------------ parsing

FENCE = re.compile(r"^(`{3,})(\S*)\s*$")
MARKER = re.compile(r"^<!--\s*replay:\s*(.*?)\s*-->$")
PROMPT = re.compile(r"^(~[\w./-]*)?\$ (.*)$")


@dataclass
class Block:
    line: int
    info: str
    body: list[str]
    marker: str | None
    after: str  # the prose up to the next block

    @property
    def is_transcript(self) -> bool:
        return self.info in ("text", "console") and any(PROMPT.match(b) for b in self.body)

    @property
    def name(self) -> str:
        for line in self.body:
            match = PROMPT.match(line)
            if match:
                return match.group(2)
        return next((line for line in self.body if line.strip()), f"line {self.line}")

    @property
    def setup(self) -> str | None:
        if self.marker and self.marker.startswith("setup="):
            return self.marker.removeprefix("setup=")
        return None

    @property
    def skip(self) -> str | None:
        if self.marker and self.marker.startswith("skip"):
            return self.marker.removeprefix("skip").strip(" ()") or "no reason given"
        return None


def read_blocks(text: str) -> list[Block]:
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info, start = match.group(1), match.group(2), i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].rstrip() != fence:
            inner = FENCE.match(lines[i])
            assert not (inner and inner.group(2)), (
                f"README.md:{i + 1}: a fence opens inside the block of line {start + 1}"
            )
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"README.md:{start + 1}: the block is never closed"
        before = [line for line in lines[:start] if line.strip()]
        marker = MARKER.match(before[-1].strip()) if before else None
        rest = lines[i + 1 :]
        after = []
        for line in rest:
            if FENCE.match(line):
                break
            after.append(line)
        blocks.append(
            Block(start + 1, info, body, marker.group(1) if marker else None, "\n".join(after))
        )
        i += 1
    return blocks


BLOCKS = read_blocks(README.read_text(encoding="utf-8"))


@dataclass
class Step:
    where: str | None  # the prompt's directory, None for "$"
    command: str
    expected: list[str]


def steps_of(block: Block) -> list[Step]:
    steps: list[Step] = []
    for line in block.body:
        match = PROMPT.match(line)
        if match:
            steps.append(Step(match.group(1), match.group(2), []))
        else:
            assert steps, f"README.md:{block.line}: output before the first prompt"
            steps[-1].expected.append(line)
    return steps


# ------------------------------------------------------------ normalising

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CURSOR = r"eyJ[A-Za-z0-9_-]{16,}"
HEX = r"(?<![0-9A-Za-z_-])[0-9a-f]{6,40}(?![0-9A-Za-z_])"
TOKEN = re.compile(f"(?P<uuid>{UUID})|(?P<cursor>{CURSOR})|(?P<hex>{HEX})")

DURATION = r"(?:\d+d \d\dh|\d+h \d\dm|\d+m \d\ds|\d+(?:\.\d)?s)"
NORMS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\S*maestro-demo-[A-Za-z0-9_]+"), "<DEMO-STORE>"),
    (
        re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d| UTC)?"),
        "<TIME>",
    ),
    (re.compile(r"\b\d\d-\d\d \d\d:\d\d:\d\d\b"), "<TIME>"),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<TIME>"),
    (re.compile(r"\b\d\d:\d\d\b(?!:)"), "<TIME>"),
    (re.compile(r"([\"']\w*seconds\w*[\"']: )-?\d+(?:\.\d+)?(?:e-?\d+)?"), r"\1<SECONDS>"),
    (re.compile(r"\bjust now\b|\b\d+ (?:min|h|days) ago\b"), "<AGE>"),
    (re.compile(rf"(?<![\w.]){DURATION}(?![\w])"), "<DURATION>"),
    (re.compile(r"─{2,}"), "──"),
    (re.compile(r"(?<=\S) {2,}"), "  "),
]


def is_id(token: re.Match[str]) -> bool:
    text = token.group(0)
    if token.lastgroup != "hex":
        return True
    # A hex run is an id if it holds a letter (all-digit ids of 8 are rare but real).
    return bool(re.search(r"[a-f]", text)) or len(text) == 8


def normalise(line: str) -> str:
    for pattern, replacement in NORMS:
        line = pattern.sub(replacement, line)
    return line.rstrip()


@dataclass
class Ids:
    """The README's ids and cursors, bound to the real ones as they appear."""

    pairs: list[tuple[str, str]] = field(default_factory=list)

    def bind(self, readme: str, real: str, where: str) -> None:
        for known, value in self.pairs:
            if known.startswith(readme) or readme.startswith(known):
                n = min(len(known), len(readme))
                assert value[:n] == real[:n], (
                    f"{where}: the README's {readme} is {value} here, not {real}"
                )
            elif value.startswith("eyJ") or real.startswith("eyJ"):
                assert value != real, f"{where}: the README's {known} and {readme} are one here"
            elif value[:8] == real[:8] and min(len(value), len(real)) >= 6:
                raise AssertionError(
                    f"{where}: the README's {known} and {readme} are one id here ({real})"
                )
        if (readme, real) not in self.pairs:
            self.pairs.append((readme, real))

    def real(self, readme: str) -> str | None:
        for known, value in self.pairs:
            if known.startswith(readme):
                return value[: len(readme)]
        return None

    def substitute(self, command: str) -> str:
        def swap(match: re.Match[str]) -> str:
            if not is_id(match):
                return match.group(0)
            return self.real(match.group(0)) or match.group(0)

        return TOKEN.sub(swap, command)

    def bind_in_order(self, readme_text: str, reals: list[str]) -> None:
        """Bind ``reals`` to the README's first ids in ``readme_text``, in order."""
        seen: list[str] = []
        for match in TOKEN.finditer(readme_text):
            token = match.group(0)
            if is_id(match) and not any(s.startswith(token) or token.startswith(s) for s in seen):
                seen.append(token)
        assert len(seen) >= len(reals), "the setup made more ids than the block shows"
        for token, real in zip(seen, reals, strict=False):
            self.bind(token, real[: len(token)] if len(real) > len(token) else real, "setup")


def line_pattern(expected: str) -> tuple[re.Pattern[str], list[str]]:
    parts: list[str] = []
    tokens: list[str] = []
    at = 0
    for match in TOKEN.finditer(expected):
        if not is_id(match):
            continue
        parts.append(re.escape(expected[at : match.start()]))
        kind = match.lastgroup
        if kind == "uuid":
            parts.append(f"({UUID})")
        elif kind == "cursor":
            parts.append(r"(eyJ[A-Za-z0-9_-]+)")
        else:
            parts.append(f"([0-9a-f]{{{len(match.group(0))}}})")
        tokens.append(match.group(0))
        at = match.end()
    parts.append(re.escape(expected[at:]))
    return re.compile("".join(parts)), tokens


def compare(expected: list[str], actual: list[str], ids: Ids, where: str) -> None:
    want = [normalise(line) for line in expected]
    got = [normalise(line) for line in actual]
    while want and not want[-1]:
        want.pop()
    while got and not got[-1]:
        got.pop()
    if "..." in want:
        # "..." stands for the lines the README leaves out.
        cut = want.index("...")
        missing = len(got) - (len(want) - 1)
        assert missing >= 0, f"{where}: fewer lines than the README shows"
        want = want[:cut] + want[cut + 1 :]
        got = got[:cut] + got[cut + missing :]
    report = (
        f"{where}: the output differs from the README's\n--- README\n"
        + "\n".join(want)
        + "\n--- now\n"
        + "\n".join(got)
    )
    assert len(want) == len(got), report
    for expected_line, actual_line in zip(want, got, strict=True):
        pattern, tokens = line_pattern(expected_line)
        match = pattern.fullmatch(actual_line)
        assert match, report + f"\n--- first differing line\n{expected_line}\n{actual_line}"
        for token, real in zip(tokens, match.groups(), strict=True):
            ids.bind(token, real, where)


# ---------------------------------------------------------------- sandbox


class Sandbox:
    """A home of its own, git configured, the installed maestro on the PATH.

    Its directory has a short name, as a home has: output that wraps at 80
    columns (doctor's paths) then wraps where the README's does."""

    def __init__(self, tmp: Path) -> None:
        self.home = tmp
        self.app = self.home / "src" / "app"
        self.app.mkdir(parents=True)
        (tmp / "tmp").mkdir()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("GIT_", "MAESTRO_", "FORCE_COLOR", "COLUMNS"))
        }
        env.update(
            HOME=str(self.home),
            TMPDIR=str(tmp / "tmp"),
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            NO_COLOR="1",
            PYTHONUNBUFFERED="1",
            PYTHONIOENCODING="utf-8",
            LC_ALL="C.UTF-8",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=str(self.home / ".gitconfig"),
            GIT_AUTHOR_NAME="Test Author",
            GIT_AUTHOR_EMAIL="author@example.com",
            GIT_COMMITTER_NAME="Test Author",
            GIT_COMMITTER_EMAIL="author@example.com",
        )
        self.env = env

    def path(self, where: str | None) -> Path:
        if where is None:
            return self.app
        return self.home / where.removeprefix("~").lstrip("/")

    def git(self, cwd: Path, *args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def repository(self, path: Path, *, commit: bool = True) -> Path:
        """A git checkout on branch main, with one commit unless told otherwise."""
        path.mkdir(parents=True, exist_ok=True)
        self.git(path, "init", "-q")
        self.git(path, "symbolic-ref", "HEAD", "refs/heads/main")
        if commit:
            (path / "README.md").write_text("app\n")
            self.git(path, "add", "README.md")
            self.git(path, "commit", "-q", "-m", "initial")
        return path

    def shell(
        self, command: str, cwd: Path, *, status: int = 0, tty: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if tty:
            env["MAESTRO_FORCE_TTY"] = "80"
        return subprocess.run(
            ["bash", "-c", f"(exit {status}); {command}"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def maestro(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(
            [str(BIN / "maestro"), *args],
            cwd=cwd or self.app,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()


class Clock:
    def __init__(self, start: Any) -> None:
        self.now = start

    def __call__(self) -> Any:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


# ----------------------------------------------------------------- setups
#
# A setup builds what a block shows without building it, and returns the real
# ids it made: they are bound, in order, to the README's first ids in the block.

Setup = Callable[[Sandbox], list[str]]
SETUPS: dict[str, Setup] = {}


def setup(name: str) -> Callable[[Setup], Setup]:
    def register(function: Setup) -> Setup:
        SETUPS[name] = function
        return function

    return register


@setup("linked-worktree")
def _linked_worktree(box: Sandbox) -> list[str]:
    """~/app, a repository, with ~/wt-login a linked worktree of it."""
    app = box.repository(box.home / "app")
    box.git(app, "worktree", "add", "-q", "-b", "feature/login", str(box.home / "wt-login"))
    return []


@setup("detached-and-unborn")
def _detached_and_unborn(box: Sandbox) -> list[str]:
    """~/det on a detached HEAD, ~/nc a repository without commits."""
    det = box.repository(box.home / "det")
    box.git(det, "checkout", "-q", "--detach")
    box.repository(box.home / "nc", commit=False)
    return []


@setup("one-session")
def _one_session(box: Sandbox) -> list[str]:
    """One session, "Add OAuth login", in ~/src/app (no repository)."""
    return [box.maestro("create", "-q", "Add OAuth login")]


@setup("thirty-four-sessions")
def _thirty_four(box: Sandbox) -> list[str]:
    """ "Add OAuth login", then "Request number 1" to "Request number 33"."""
    manager = SessionManager(box.app, durable=False)
    manager.create_session("Add OAuth login")
    for n in range(1, 34):
        manager.create_session(f"Request number {n}")
    return []


@setup("request-file")
def _request_file(box: Sandbox) -> list[str]:
    """A ten-line request in ~/src/app/request.md."""
    (box.app / "request.md").write_text(
        textwrap.dedent(
            """\
            Add OAuth login

            Providers:
            - Google
            - GitHub
            - GitLab

            Keep the password login as it is.
            Store the tokens encrypted.
            Test each provider.
            """
        )
    )
    return []


def _walk(manager: SessionManager, clock: Clock, sid: str, steps: list[tuple[Any, float]]) -> None:
    """Each step: a state (or "pause"/"resume") entered after so many minutes."""
    for target, minutes in steps:
        clock.advance(minutes)
        if target == "count":
            manager.update_session(sid, {"statistics": {"total_tasks": 6}})
            manager.increment_statistics(sid, completed_tasks=3)
            manager.increment_statistics(sid, completed_tasks=3)
            manager.increment_statistics(sid, decisions_made=2)
            manager.increment_statistics(sid, checkpoints_created=2)
            manager.increment_statistics(sid, error_recovery_count=1)
        elif target == "pause":
            manager.pause_session(sid, reason="waiting for a design review")
        elif target == "resume":
            manager.resume_session(sid, reason="review approved")
        elif target is S.IMPLEMENTING and manager.get_session(sid).status is S.VALIDATING:
            manager.transition_state(sid, target, reason="2 tests failed")
        else:
            manager.transition_state(sid, target)


@setup("five-sessions")
def _five_sessions(box: Sandbox) -> list[str]:
    """The five sessions of the 80-column example, newest first, one of them
    walked through its whole life three days ago."""
    now = utcnow()
    clock = Clock(now - timedelta(days=3, minutes=147))
    manager = SessionManager(box.app, durable=False, clock=clock)

    def git(branch: str) -> GitContext:
        return GitContext(branch=branch, commit="63e14e08fc41" + "0" * 28, repo_root=str(box.app))

    done = manager.create_session(
        "Add OAuth login to the settings page",
        {"max_iterations": 5},
        prd_reference=".flow/maestro/prd-oauth-login.md",
        git_context=git("main"),
    )
    sid = done.session_id
    _walk(
        manager,
        clock,
        sid,
        [
            (S.PLANNING, 2),
            (S.GENERATING_TASKS, 12),
            (S.IMPLEMENTING, 8),
            ("pause", 40),
            ("resume", 25),
            (S.VALIDATING, 30),
            ("count", 0),
            (S.IMPLEMENTING, 6),
            (S.VALIDATING, 15),
            (S.GENERATING_REPORT, 5),
            (S.COMPLETED, 4),
        ],
    )
    clock.now = now - timedelta(days=2)
    orm = manager.create_session("Upgrade the ORM to version 2", git_context=git("feature/orm-2"))
    for state in (S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING):
        manager.transition_state(orm.session_id, state)
    manager.transition_state(orm.session_id, S.FAILED, reason="the migration lost data")
    clock.now = now - timedelta(hours=5)
    billing = manager.create_session(
        "Migrate the billing service to the new API", git_context=git("feature/billing")
    )
    for state in (S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING):
        manager.transition_state(billing.session_id, state)
    clock.now = now - timedelta(minutes=40)
    dark = manager.create_session("Dark mode for the settings page", git_context=git("main"))
    manager.transition_state(dark.session_id, S.PLANNING)
    manager.pause_session(dark.session_id, reason="lunch")
    clock.now = now
    flaky = manager.create_session("Fix the flaky login test", git_context=git("main"))
    return [
        flaky.session_id,
        dark.session_id,
        billing.session_id,
        orm.session_id,
        sid,
    ]


def _feed_history(manager: SessionManager) -> str:
    return manager.changes_cursor().split(":")[0]


@setup("watched-session")
def _watched_session(box: Sandbox) -> list[str]:
    """The changes `maestro watch` shows: a session through several kinds of
    write, another created, failed and deleted."""
    manager = SessionManager(box.app, durable=False)
    sid = manager.create_session("Add OAuth login").session_id
    manager.transition_state(sid, S.PLANNING)
    manager.update_session(sid, {"statistics": {"total_tasks": 4}})
    manager.pause_session(sid)
    manager.resume_session(sid)
    manager.heartbeat(sid)
    manager.increment_statistics(sid, completed_tasks=1)
    other = manager.create_session("Try a shortcut").session_id
    manager.transition_state(other, S.FAILED, reason="not worth it")
    manager.delete_session(other)
    return [_feed_history(manager), sid]


@setup("heartbeats")
def _heartbeats(box: Sandbox) -> list[str]:
    """Eighteen changes, the last a session's first heartbeat."""
    manager = SessionManager(box.app, durable=False)
    for n in range(15):
        manager.create_session(f"Request number {n + 1}")
    sid = manager.create_session("Fix the flaky login test").session_id
    manager.transition_state(sid, S.PLANNING)
    manager.heartbeat(sid)
    return [sid, _feed_history(manager)]


# A live setup also names what another process does while the block's
# `maestro watch` runs: it starts once the watcher reads the feed.

Live = Callable[[Sandbox, list[str]], None]
LIVE: dict[str, Live] = {}


def _drive(box: Sandbox, sid: str, steps: list[str]) -> None:
    manager = SessionManager(box.app, durable=False)
    for step in steps:
        if step == "update":
            manager.update_session(sid, {"statistics": {"total_tasks": 4}})
        elif step in ("pause", "resume"):
            getattr(manager, f"{step}_session")(sid)
        elif step == "heartbeat":
            manager.heartbeat(sid)
        elif step == "increment":
            manager.increment_statistics(sid, completed_tasks=1)
        else:
            manager.transition_state(sid, step)


@setup("live-feed")
def _live_feed(box: Sandbox) -> list[str]:
    """A new session; while `maestro watch` runs, the writes it shows."""
    return [SessionManager(box.app, durable=False).create_session("Add OAuth login").session_id]


def _live_feed_writes(box: Sandbox, made: list[str]) -> None:
    _drive(box, made[0], ["planning", "update", "pause", "resume", "heartbeat", "increment"])
    manager = SessionManager(box.app, durable=False)
    other = manager.create_session("Try a shortcut").session_id
    manager.transition_state(other, S.FAILED, reason="not worth it")
    manager.delete_session(other)


LIVE["live-feed"] = _live_feed_writes


@setup("live-session")
def _live_session(box: Sandbox) -> list[str]:
    """A session generating its tasks; while `maestro watch ID` runs, it finishes."""
    sid = SessionManager(box.app, durable=False).create_session("Add OAuth login").session_id
    steps = ["planning", "update", "pause", "resume", "heartbeat", "increment"]
    _drive(box, sid, [*steps, "generating_tasks"])
    return [sid]


LIVE["live-session"] = lambda box, made: _drive(
    box, made[0], ["implementing", "validating", "generating_report", "completed"]
)


def _watching(leader: int, feed: str) -> bool:
    """Whether a process of the session ``leader`` has the feed's index open
    (without /proc to look in: after two seconds)."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        time.sleep(2)
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) != leader:
                continue
            if any(os.readlink(fd).startswith(feed) for fd in (entry / "fd").iterdir()):
                return True
        except OSError:
            continue
    return False


def run_live(
    box: Sandbox, command: str, cwd: Path, expected: list[str], writes: Callable[[], None]
) -> tuple[str, int]:
    """Run a `maestro watch` command while ``writes`` runs in this process; a
    "^C" line of the README is Ctrl-C, sent once the lines before it came."""
    out_path = box.home / ".watch-output"
    feed = str((box.app / ".flow" / "maestro" / "index.sqlite3").resolve())
    with out_path.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}" if "&&" not in command else command],
            cwd=cwd,
            env=box.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not _watching(process.pid, feed):
                assert process.poll() is None, out_path.read_text()
                assert time.monotonic() < deadline, "the watcher never read the feed"
                time.sleep(0.05)
            time.sleep(0.5)  # it has the index open; let it take its cursor
            writes()
            if "^C" in expected:
                wanted = expected.index("^C")
                while len(out_path.read_text().splitlines()) < wanted:
                    assert time.monotonic() < deadline, out_path.read_text()
                    time.sleep(0.05)
                os.killpg(process.pid, signal.SIGINT)
            status = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return out_path.read_text(), status


# ------------------------------------------------------------- transcripts


def expects_error(lines: list[str]) -> bool:
    return any(line.startswith(("error:", '{"error"')) for line in lines)


def draws_table(step: Step, command: str) -> bool:
    """A capture of a table (its rule shown, or rows elided with "...") was
    taken on an 80-column terminal; plain tab-separated rows in a pipe."""
    shown = any("──" in line or line == "..." for line in step.expected)
    return shown and "|" not in command and not any("\t" in line for line in step.expected)


def replay(block: Block, box: Sandbox) -> None:
    ids = Ids()
    made: list[str] = []
    if block.setup:
        assert block.setup in SETUPS, f"README.md:{block.line}: no setup named {block.setup}"
        made = SETUPS[block.setup](box)
        ids.bind_in_order("\n".join(block.body), made)
    status = 0
    for n, step in enumerate(steps_of(block), 1):
        where = f"README.md:{block.line} command {n} `{step.command}`"
        cwd = box.path(step.where)
        if not cwd.exists():
            box.repository(cwd)
        command = ids.substitute(step.command)
        expected = step.expected
        if block.setup in LIVE and command.startswith("maestro watch"):
            writes = functools.partial(LIVE[block.setup], box, made)
            out, code = run_live(box, command, cwd, expected, writes)
            expected = [line for line in expected if line != "^C"]
        else:
            done = box.shell(command, cwd, status=status, tty=draws_table(step, command))
            # stdout, then stderr: in a pipe the footer's order is the terminal's.
            out, code = done.stdout + done.stderr, done.returncode
        out = out.replace(str(box.home), "~")
        compare(expected, out.split("\n"), ids, where)
        if expects_error(expected):
            assert code != 0, f"{where}: exit 0, yet the README shows an error"
        elif not step.command.startswith("echo $?"):
            assert code == 0, f"{where}: exit {code}\n{out}"
        status = code


TRANSCRIPTS = [b for b in BLOCKS if b.is_transcript]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A new temporary directory with a short path (``tmp_path``'s is long)."""
    path = Path(tempfile.mkdtemp(prefix="rd"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    "block", [b for b in TRANSCRIPTS if not b.skip], ids=lambda b: f"L{b.line}:{b.name[:40]}"
)
def test_transcript_matches_the_commands(block: Block, short_tmp: Path) -> None:
    replay(block, Sandbox(short_tmp))


# ------------------------------------------------------------------ python


@dataclass
class PythonExample:
    block: Block
    expected: list[str] | None  # what it prints, if the README says


def python_examples() -> list[PythonExample]:
    examples: list[PythonExample] = []
    for i, block in enumerate(BLOCKS):
        if block.info != "python":
            continue
        expected = None
        inline = re.match(r"\s*prints `([^`]*)`", block.after)
        if inline:
            expected = [inline.group(1)]
        elif block.after.strip() == "prints" and i + 1 < len(BLOCKS):
            expected = BLOCKS[i + 1].body
        examples.append(PythonExample(block, expected))
    return examples


PYTHON = python_examples()


def python_context(name: str | None, root: Path) -> tuple[dict[str, Any], list[str]]:
    """The names an example uses without defining them, and the ids they hold."""
    if name is None:
        return {}, []
    manager = SessionManager(root)
    if name == "python-manager":
        for request in ("Add OAuth login", "Fix the OAuth login redirect"):
            manager.create_session(request)
        return {"manager": manager}, []
    if name == "python-session":
        sid = manager.create_session("Add OAuth login").session_id
        return {"manager": manager, "sid": sid}, [sid]
    raise AssertionError(f"no Python context named {name}")


@contextlib.contextmanager
def inside(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_python(example: PythonExample, root: Path) -> tuple[list[str], Ids]:
    namespace, made = python_context(example.block.setup, root)
    ids = Ids()
    ids.bind_in_order("\n".join(example.block.body), made)
    out = io.StringIO()
    with inside(root), contextlib.redirect_stdout(out):
        if any(line.startswith(">>> ") for line in example.block.body):
            expected: list[str] = []
            for line in example.block.body:
                if not line.startswith(">>> "):
                    expected.append(line)
                    continue
                try:
                    result = eval(line[4:], namespace)  # noqa: S307  (the README's own code)
                except Exception as error:
                    print(f"{type(error).__name__}: {error}")
                else:
                    if result is not None:
                        print(repr(result))
            example = PythonExample(example.block, expected)
        else:
            exec("\n".join(example.block.body), namespace)  # noqa: S102  (the README's own code)
            for key, value in list(namespace.items()):
                if key.startswith("test_") and callable(value):
                    value()
    if example.expected is not None:
        compare(
            example.expected,
            out.getvalue().split("\n"),
            ids,
            f"README.md:{example.block.line} (Python)",
        )
    return out.getvalue().split("\n"), ids


@pytest.mark.parametrize(
    "example",
    [e for e in PYTHON if not e.block.skip],
    ids=lambda e: f"L{e.block.line}",
)
def test_python_example_runs_and_prints_what_the_readme_says(
    example: PythonExample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("MAESTRO_"):
            monkeypatch.delenv(key)
    run_python(example, tmp_path)


# ------------------------------------------------------------- accounting


def test_every_capture_is_replayed_but_the_few_named() -> None:
    skipped = {b.name: b.skip for b in TRANSCRIPTS + [e.block for e in PYTHON] if b.skip}
    assert set(skipped) == SKIPPED, skipped
    replayed = [b for b in TRANSCRIPTS if not b.skip]
    commands = sum(len(steps_of(b)) for b in replayed)
    print(
        f"{len(replayed)} README transcripts replayed ({commands} commands), "
        f"{len(PYTHON) - len([e for e in PYTHON if e.block.skip])} Python examples run, "
        f"{len(skipped)} skipped: {sorted(skipped)}"
    )
    assert len(replayed) >= 20
    for block in BLOCKS:
        if block.marker is not None:
            assert block.setup in SETUPS or block.skip or block.info == "python", (
                f"README.md:{block.line}: unknown marker {block.marker!r}"
            )


def test_the_comparison_catches_a_changed_word(short_tmp: Path) -> None:
    """The normalising leaves words, counts and columns to compare."""
    block = next(b for b in TRANSCRIPTS if b.name.startswith("maestro create --quiet --request"))
    altered = Block(
        block.line,
        block.info,
        [line.replace("completed_tasks 1 (+1)", "completed_tasks 2 (+1)") for line in block.body],
        block.marker,
        block.after,
    )
    with pytest.raises(AssertionError, match="differs"):
        replay(altered, Sandbox(short_tmp))


# ---------------------------------------------------------- command table

#: Options every command has, described in the prose around the table.
COMMON = {"--root", "--store", "--json", "--help", "-h", "--expected-revision", "--request-id"}
#: What "[filters]" stands for: the filters list, search, stats and export share.
FILTERS = {"--status", "--phase", "--branch", "--since", "--until", "--active"}


def command_table() -> dict[str, set[str]]:
    text = README.read_text(encoding="utf-8")
    start = text.index("| command | what it does |")
    rows: dict[str, set[str]] = {}
    for line in text[start:].split("\n")[2:]:
        if not line.startswith("|"):
            break
        cell = line.split(" | ")[0].lstrip("| ")
        for span in re.findall(r"`([^`]+)`", cell):
            name = span.split()[0]
            options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", span))
            if "[filters]" in span:
                options |= FILTERS
            rows.setdefault(name, set()).update(options)
    return rows


def test_the_command_table_lists_every_command_and_option() -> None:
    from maestro.cli import cli

    table = command_table()
    group = cli
    assert isinstance(group, click.Group)
    assert set(table) == set(group.commands), (
        "the README's command table and the commands differ: "
        f"only in the table {sorted(set(table) - set(group.commands))}, "
        f"only as commands {sorted(set(group.commands) - set(table))}"
    )
    problems = []
    for name, listed in sorted(table.items()):
        command = group.commands[name]
        params = [
            {opt for opt in param.opts + param.secondary_opts if opt.startswith("-")}
            for param in command.params
        ]
        real = set().union(*params)
        if listed - real:
            problems.append(f"`{name}`: the table lists {sorted(listed - real)}, not options")
        left_out = [sorted(opts) for opts in params if opts and not opts & (listed | COMMON)]
        if left_out:
            problems.append(f"`{name}`: the table leaves out {left_out}")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------- method table

#: Parameters every write method takes, described below the table.
WRITE_OPTIONS = {"expected_revision", "request_id"}


#: The table's short names of parameters.
SHORT = {"id": "session_id", "key": "run_key"}


def method_table() -> list[tuple[str, str]]:
    """The calls of the method table, and the ``manager.`` rows of the helpers'."""
    text = README.read_text(encoding="utf-8")
    spans: list[tuple[str, str]] = []
    for header, prefix in (("| method | what it does |", ""), ("| helper |", "manager.")):
        start = text.index(header)
        for line in text[start:].split("\n")[2:]:
            if not line.startswith("|"):
                break
            cell = line.split(" | ")[0].lstrip("| ")
            for span in re.findall(r"`([^`]+)`", cell):
                if not span.startswith(prefix):
                    continue
                match = re.fullmatch(r"([\w.]+)\((.*)\)", span.removeprefix(prefix))
                assert match, f"the method table's {span!r} is not a call"
                spans.append((match.group(1), match.group(2)))
    return spans


def test_the_method_table_matches_the_signatures() -> None:
    """Every method the table names exists with the parameters it lists, all of
    them unless the row elides some with "..."; every public method is there."""
    import inspect

    problems = []
    named = set()
    for name, arguments in method_table():
        named.add(name)
        if name.startswith("store."):
            continue  # a store's method, described with the stores
        function = SessionManager.__init__ if name == "SessionManager" else None
        function = function or getattr(SessionManager, name, None)
        if function is None:
            problems.append(f"{name}: no such method")
            continue
        real = {p.name for p in inspect.signature(function).parameters.values() if p.name != "self"}
        flat = re.sub(r"\([^()]*\)", "", arguments)  # status=(completed, failed)
        listed = set()
        for argument in flat.split(","):
            argument = argument.strip().lstrip("*")
            if argument in ("", "..."):
                continue
            word = argument.split("=")[0].strip()
            listed.add(SHORT.get(word, word))
        if listed - real:
            problems.append(f"{name}: lists {sorted(listed - real)}, not parameters")
        if "..." not in arguments and real - listed - WRITE_OPTIONS:
            problems.append(f"{name}: leaves out {sorted(real - listed - WRITE_OPTIONS)}")
    public = {n for n, v in vars(SessionManager).items() if not n.startswith("_") and callable(v)}
    if public - named:
        problems.append(f"methods missing from the table: {sorted(public - named)}")
    assert not problems, "\n".join(problems)
