"""Stored text is shown as data: escape sequences in it never reach the terminal.

The sessions here come in through an imported archive, the untrusted way in,
and carry terminal commands in every free-text field: OSC 52 (sets the
clipboard), OSC 0 (the window title), CSI 2J (clears the screen), the same in
their C1 forms, DEL, NEL and a bidi override (RLO).  Every command that prints
stored text is run on them, piped and on a real terminal; human output must
hold no control or bidi character but its line breaks (and, on a terminal,
the colour codes Rich writes itself), and ``--json`` must parse back to the
exact strings while holding no DEL, C1 or bidi control raw.
"""

from __future__ import annotations

import inspect
import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import maestro.cli.changes as cli_module
from maestro import GitContext, SessionManager
from maestro.cli import cli
from tests.ptykit import read_terminal

from .conftest import Clock

MAESTRO = Path(sys.executable).parent / "maestro"

OSC52 = "\x1b]52;c;cm0gLXJmIH4=\x07"
OSC0 = "\x1b]0;owned\x1b\\"
CLEAR = "\x1b[2J\x1b[H"
C1 = "\x9b2J\x9d0;owned\x9c"
RLO = "\u202e"
HOSTILE = f"{OSC52}{OSC0}{CLEAR}{C1}\x7f\x85{RLO}gnp.exe"
#: Every character that must never be written raw to a terminal.
RAW = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]"
)
#: What JSON must not hold raw (C0 controls are escaped by any JSON encoder).
RAW_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
#: The colour and style codes Rich writes on a terminal, and nothing else.
SGR = re.compile(r"\x1b\[[0-9;]*m")


def runner() -> CliRunner:
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


def run(root: Path, *args: str, input: str | None = None, tty: bool = False) -> Result:
    return runner().invoke(
        cli,
        ["--root", str(root), *args],
        input=input,
        env={
            "COLUMNS": "200",
            "LINES": "50",
            "NO_COLOR": None,
            "FORCE_COLOR": None,
            "MAESTRO_FORCE_TTY": "1" if tty else None,
        },
        catch_exceptions=False,
    )


def assert_inert(text: str, *, separators: str = "") -> None:
    found = sorted({f"U+{ord(c):04X}" for c in RAW.findall(text) if c not in separators})
    assert not found, f"raw control characters reached the output: {found}"


@dataclass
class Hostile:
    root: Path
    paused: str  #: paused, with a hostile branch, worktree, commit, PRD and reasons
    running: str  #: planning for days: stale
    failed: str  #: failed days ago: what gc removes


@pytest.fixture
def hostile(tmp_path: Path) -> Hostile:
    """Sessions made elsewhere, exported, and imported here with ``maestro import``."""
    source = SessionManager(tmp_path / "elsewhere", clock=Clock())
    git = GitContext(
        branch=f"feature/{HOSTILE}",
        commit=f"{HOSTILE}",
        repo_root=f"/src/{HOSTILE}",
        is_worktree=True,
        worktree_name=f"wt{HOSTILE}",
    )
    request = f"hostile request {HOSTILE}"
    paused = source.create_session(
        request, git_context=git, prd_reference={"filename": HOSTILE, "path": f"docs/{HOSTILE}"}
    ).session_id
    source.transition_state(paused, "planning", reason=f"why {HOSTILE}")
    source.pause_session(paused, reason=f"pause {HOSTILE}")
    running = source.create_session(request, git_context=git).session_id
    source.transition_state(running, "planning", reason=f"why {HOSTILE}")
    failed = source.create_session(request, git_context=git).session_id
    source.transition_state(failed, "failed", reason=f"broke {HOSTILE}")
    archive = tmp_path / "sessions.tar.gz"
    source.export_sessions(archive)
    root = tmp_path / "here"
    root.mkdir()
    result = run(root, "import", str(archive))
    assert result.exit_code == 0, result.stderr
    assert_inert(result.stdout + result.stderr)
    return Hostile(root, paused, running, failed)


def commands(h: Hostile) -> Iterator[tuple[str, list[str]]]:
    yield "list", ["list"]
    yield "list-filtered", ["list", "--status", "paused", "--branch", f"feature/{HOSTILE}"]
    yield "search", ["search", "hostile"]
    yield "show-paused", ["show", h.paused]
    yield "show-running", ["show", h.running]
    yield "show-failed", ["show", h.failed]
    yield "stats", ["stats"]
    yield "stale", ["stale"]
    yield "stale-reap", ["stale", "--reap"]
    yield "gc", ["gc", "--older-than", "1d", "--dry-run"]
    yield "transition", ["transition", h.running, "generating_tasks", "--reason", HOSTILE]
    yield "pause", ["pause", h.running, "--reason", HOSTILE]
    yield "resume", ["resume", h.paused]
    yield "fail", ["fail", h.running, "--reason", HOSTILE]
    yield "update", ["update", h.running, "--set", f"feature_request={HOSTILE}"]
    yield "heartbeat", ["heartbeat", h.running]


COMMANDS = [name for name, _ in commands(Hostile(Path(), "", "", ""))]


@pytest.mark.parametrize("command", COMMANDS)
def test_human_output_shows_stored_text_as_escapes(hostile: Hostile, command: str) -> None:
    args = dict(commands(hostile))[command]
    result = run(hostile.root, *args)
    assert result.exit_code == 0, result.stderr
    # Piped, tables are tab-separated rows: the tabs are the separators, and
    # stored text adds none (every row of a table has as many).
    assert_inert(result.stdout, separators="\t")
    assert_inert(result.stderr)
    assert len({line.count("\t") for line in result.stdout.splitlines() if "\t" in line}) <= 1


@pytest.mark.parametrize("command", ["list", "list-filtered", "search", "stale"])
def test_tables_on_a_terminal_show_stored_text_as_escapes(hostile: Hostile, command: str) -> None:
    result = run(hostile.root, *dict(commands(hostile))[command], tty=True)
    assert result.exit_code == 0, result.stderr
    assert_inert(result.stdout)
    assert_inert(result.stderr)


@pytest.mark.parametrize("command", ["show-paused", "list", "search", "stats"])
def test_escapes_are_visible(hostile: Hostile, command: str) -> None:
    """Not dropped: a reader sees that the text holds an escape sequence."""
    out = run(hostile.root, *dict(commands(hostile))[command], tty=True).stdout
    assert "\\x1b]52;c;" in out
    if command == "show-paused":
        assert "\\u202egnp.exe" in out and "\\x9b2J" in out and "\\x7f" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_json_output_is_exact_and_inert(hostile: Hostile, command: str) -> None:
    args = dict(commands(hostile))[command]
    result = run(hostile.root, "--json", *args)
    assert result.exit_code == 0, result.stderr
    found = sorted({f"U+{ord(c):04X}" for c in RAW_IN_JSON.findall(result.stdout)})
    assert not found, f"raw characters in JSON: {found}"
    assert_inert(result.stdout)
    payload = json.loads(result.stdout)
    text = json.dumps(payload)  # every stored string round-trips exactly
    assert json.dumps(HOSTILE)[1:-1] in text


def test_json_keeps_the_exact_strings(hostile: Hostile) -> None:
    record = json.loads(run(hostile.root, "--json", "show", hostile.paused).stdout)["session"]
    assert record["feature_request"] == f"hostile request {HOSTILE}"
    assert record["git_context"]["branch"] == f"feature/{HOSTILE}"
    assert record["history"][-1]["reason"] == f"pause {HOSTILE}"
    assert record["prd_reference"]["path"] == f"docs/{HOSTILE}"


def test_delete_prompt(hostile: Hostile, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_module, "_stdin_is_tty", lambda: True)
    result = run(hostile.root, "delete", hostile.failed, input="n\n")
    assert result.exit_code == 1
    assert "\\x1b]52" in result.stderr
    assert_inert(result.stdout + result.stderr)


def test_doctor_lists_hostile_file_names_as_escapes(hostile: Hostile) -> None:
    sessions = hostile.root / ".flow" / "maestro" / "sessions"
    (sessions / hostile.paused / f".metadata.json.{OSC0}{RLO}.tmp").write_text("x")
    (sessions / f".trash-{OSC52}").mkdir()
    for args in (["doctor"], ["doctor", "--fix"]):
        result = run(hostile.root, *args)
        assert "\\x1b]0;owned" in result.stdout, result.stdout
        assert_inert(result.stdout + result.stderr)
        assert_inert(run(hostile.root, "--json", *args).stdout)


def test_export_and_import_messages(hostile: Hostile, tmp_path: Path) -> None:
    archive = tmp_path / f"out{OSC0}.tar.gz"
    result = run(hostile.root, "export", "-o", str(archive))
    assert result.exit_code == 0, result.stderr
    assert_inert(result.stdout + result.stderr)
    (tmp_path / "third").mkdir()
    result = run(tmp_path / "third", "import", str(archive))
    assert result.exit_code == 0, result.stderr
    assert "\\x1b]0;owned" in result.stdout
    assert_inert(result.stdout + result.stderr)


def test_create_in_a_checkout_whose_head_names_a_hostile_branch(tmp_path: Path) -> None:
    """The branch is read from ``.git/HEAD`` and echoed by ``create``."""
    checkout = tmp_path / "checkout"
    (checkout / ".git" / "refs" / "heads").mkdir(parents=True)
    (checkout / ".git" / "HEAD").write_text(f"ref: refs/heads/x{OSC0}{RLO}\n")
    result = run(checkout, "create", "a request")
    assert result.exit_code == 0, result.stderr
    assert "\\x1b]0;owned" in result.stdout
    assert_inert(result.stdout + result.stderr)


def test_error_messages_are_inert(tmp_path: Path) -> None:
    for args in (["show", f"abc{OSC52}"], ["show", f"{RLO}0123456789"]):
        result = run(tmp_path, *args)
        assert result.exit_code != 0
        assert_inert(result.stdout + result.stderr)


def on_a_terminal(*args: str) -> str:
    """What the installed command writes to a pseudo-terminal (colours on)."""
    main, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "MAESTRO_ROOT")}
    env.update(TERM="xterm-256color", COLUMNS="200", LINES="50", FORCE_COLOR="1")
    process = subprocess.Popen(
        [str(MAESTRO), *args], stdin=subprocess.DEVNULL, stdout=child, stderr=child, env=env
    )
    os.close(child)
    try:
        written = read_terminal(main)
    finally:
        code = process.wait(timeout=60)
    assert code == 0, written
    return written.decode("utf-8").replace("\r\n", "\n")


@pytest.mark.parametrize("command", ["list", "show-paused", "stats", "stale"])
def test_on_a_terminal(hostile: Hostile, command: str) -> None:
    args = dict(commands(hostile))[command]
    out = on_a_terminal("--root", str(hostile.root), *args)
    assert SGR.search(out), "expected colours on a terminal"
    assert "\\x1b]" in out
    assert_inert(SGR.sub("", out))
