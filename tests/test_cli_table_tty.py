"""``maestro list`` on a real pseudo-terminal: the table without Rich, the same bytes.

Each command runs in a fresh interpreter whose stdout is a pseudo-terminal
of a set width, and reports at exit whether Rich was ever imported.  The
same command with ``TTY_COMPATIBLE=1`` (a terminal to Rich, so the table
is drawn by Rich as before) is the reference: the plain case must print
the very same bytes without importing Rich, with colours or ``NO_COLOR``,
at a width that fits the table whole and at one that squeezes it, and in
an ASCII-only encoding.  A request Rich alone can lay out (accented, wide
characters) still prints, through Rich.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from maestro import GitContext, SessionManager
from tests.ptykit import read_terminal

#: Runs the command line as the console script does, and says at exit whether
#: Rich was loaded (in a file: stdout is the terminal under test).
PROBE = (
    "import atexit, sys\n"
    "report = sys.argv[1]\n"
    "atexit.register(lambda: open(report, 'w').write(str('rich' in sys.modules)))\n"
    "from maestro.cli import main\n"
    "main(sys.argv[2:])\n"
)

#: What would make a pipe a terminal, or set the width: the tests set their own.
UNSET = (
    "MAESTRO_FORCE_TTY",
    "FORCE_COLOR",
    "TTY_COMPATIBLE",
    "TTY_INTERACTIVE",
    "NO_COLOR",
    "COLUMNS",
    "LINES",
    "PYTHONIOENCODING",
)


def on_a_terminal(root: Path, *args: str, columns: int = 120, **environ: str) -> tuple[bytes, bool]:
    """What ``maestro ARGS`` writes to a terminal ``columns`` wide, and whether it
    loaded Rich."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in UNSET}
    env.update({"TERM": "xterm-256color", "MAESTRO_ROOT": str(root), **environ})
    report = root / "rich-loaded"
    report.unlink(missing_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE, str(report), *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env,
    )
    os.close(follower)
    try:
        written = read_terminal(leader)
    finally:
        assert process.stderr is not None
        errors = process.stderr.read()
        process.stderr.close()
        assert process.wait(timeout=60) == 0, errors
    assert errors == b""
    return written, report.read_text() == "True"


def store(root: Path, *requests: str) -> Path:
    manager = SessionManager(root, durable=False)
    git = GitContext("main", "0" * 40, str(root))
    for request in requests:
        manager.create_session(request, git_context=git)
    detached = GitContext("HEAD", "3f01b54" + "0" * 33, str(root), True, "feature-wt")
    manager.create_session("on a detached worktree", git_context=detached)
    manager.query_sessions(limit=1)  # the index made, as a store in use has it
    return root


def table_lines(text: str) -> list[str]:
    """The lines of the table (not the footer), without their colour codes."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", text).split("\r\n")
    return [line for line in lines if line and not line.endswith("sessions")]


PLAIN = (
    "Add a login page",
    "A long request that a terminal of any usual width has to cut " * 3,
    "[b]Text[/b] \x1b]0;ow\x07",
)


@pytest.mark.parametrize("columns", [120, 64])
@pytest.mark.parametrize("no_color", [False, True])
def test_list_draws_without_rich_what_rich_draws(
    tmp_path: Path, columns: int, no_color: bool
) -> None:
    root = store(tmp_path, *PLAIN)
    colours = {"NO_COLOR": "1"} if no_color else {}
    fast, fast_loaded_rich = on_a_terminal(root, "list", columns=columns, **colours)
    drawn, rich_loaded = on_a_terminal(root, "list", columns=columns, TTY_COMPATIBLE="1", **colours)
    assert rich_loaded and not fast_loaded_rich
    assert fast == drawn
    text = fast.decode("utf-8")
    assert text.startswith("\x1b[1mid      \x1b[0m")  # Rich keeps bold under NO_COLOR
    assert ("\x1b[36minitializing\x1b[0m" in text) is not no_color
    assert "4 sessions\r\n" in text
    if columns > 100:
        assert "(detached at 3f01b54)" in text and "feature-wt" in text
        assert "[b]Text[/b] \\x1b]0;ow\\x07 " in text  # brackets and escapes are text
    table = table_lines(text)
    assert len(table) == 2 + 4 and len({len(line) for line in table}) == 1
    assert len(table[0]) <= columns


def test_an_ascii_terminal_gets_rich_s_ascii_table(tmp_path: Path) -> None:
    root = store(tmp_path, *PLAIN)
    fast, fast_loaded_rich = on_a_terminal(root, "list", PYTHONIOENCODING="ascii")
    drawn, _ = on_a_terminal(root, "list", PYTHONIOENCODING="ascii", TTY_COMPATIBLE="1")
    assert not fast_loaded_rich
    assert fast == drawn
    assert fast.isascii() and b"-+-" in fast and b" |" in fast


def test_text_beyond_ascii_is_drawn_by_rich(tmp_path: Path) -> None:
    root = store(tmp_path, "Café menu for the 中文 site", *PLAIN[:1])
    out, rich_loaded = on_a_terminal(root, "list", columns=160)
    reference, _ = on_a_terminal(root, "list", columns=160, TTY_COMPATIBLE="1")
    assert rich_loaded
    assert out == reference
    text = out.decode("utf-8")
    # Sized by characters (as before), cut by cells: the wide ones take two.
    assert "Café menu for the 中文 s…" in text
    # A wide character takes two cells: on screen the rows are as wide as the rule.
    from rich.cells import cell_len

    assert len({cell_len(line) for line in table_lines(text)}) == 1


@pytest.mark.parametrize(
    "environ",
    [
        {"FORCE_COLOR": "1"},
        {"TTY_INTERACTIVE": "1"},
        {"TERM": "dumb"},
        {"MAESTRO_FORCE_TTY": "100"},
    ],
    ids=lambda environ: next(iter(environ)),
)
def test_an_environment_rich_reads_its_own_way_is_left_to_rich(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    root = store(tmp_path, *PLAIN[:1])
    out, rich_loaded = on_a_terminal(root, "list", **environ)
    assert rich_loaded
    assert b"Add a" in out


def test_wide_is_left_to_rich(tmp_path: Path) -> None:
    root = store(tmp_path, *PLAIN)
    out, rich_loaded = on_a_terminal(root, "list", "--wide", columns=80)
    assert rich_loaded
    assert " ".join(PLAIN[1].split()).encode() in out  # whole, past the terminal's width


@pytest.mark.parametrize("columns", ["90", "0"])
def test_columns_sets_the_width_as_for_rich(tmp_path: Path, columns: str) -> None:
    root = store(tmp_path, *PLAIN)
    fast, fast_loaded_rich = on_a_terminal(root, "list", columns=120, COLUMNS=columns)
    drawn, _ = on_a_terminal(root, "list", columns=120, COLUMNS=columns, TTY_COMPATIBLE="1")
    assert fast == drawn
    assert fast_loaded_rich is (columns == "0")  # no room at all: Rich makes what it can of it
    if columns == "90":
        assert {len(line) for line in table_lines(fast.decode("utf-8"))} == {90}
