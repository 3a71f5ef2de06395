"""``show`` and ``list`` without Click print what they print through Click.

Each command line of the table runs twice in a fresh process: through the
console entry (:func:`maestro.cli.main`, which offers it to
:mod:`maestro.cli.direct` first) and through the Click group alone
(:func:`maestro.cli.group.main`).  Standard output, standard error and the
exit code must be the same bytes and the same number, and the table says
whether the direct path is expected to run the command itself (Click not
even imported) or to leave it to Click.  Both processes see the same frozen
clock, so relative times and the timeline of a running session agree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from maestro import GitContext, SessionManager, SessionStatus
from maestro.cli.direct import parse

from .conftest import Clock

#: The moment both processes take for now.
NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)

PROBE = """
import atexit, os, sys
from datetime import UTC, datetime

import maestro.models

FROZEN = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
maestro.models.utcnow = lambda: FROZEN
report = os.environ["PROBE_REPORT"]
atexit.register(lambda: open(report, "w").write("click" if "click" in sys.modules else "-"))
side = sys.argv.pop(1)
sys.argv[0] = "maestro"
if side == "click":
    from maestro.cli.group import main
else:
    from maestro.cli import main
    if os.environ.get("PROBE_SABOTAGE"):  # a parser that forgets --limit: the test must see it
        import maestro.cli.direct as direct

        original = direct._list_argument

        def forgetful(words, index, into):
            following = original(words, index, into)
            into.pop("limit", None)
            return following

        direct._list_argument = forgetful
main()
"""


@dataclass
class Store:
    root: Path
    ids: dict[str, str] = field(default_factory=dict)
    broken: Path | None = None
    empty: Path | None = None
    a_file: Path | None = None


@dataclass(frozen=True)
class Outcome:
    stdout: bytes
    stderr: bytes
    code: int
    click_loaded: bool


def _env(store: Store, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MAESTRO_", "_MAESTRO"))
        and key not in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")
    }
    env["MAESTRO_ROOT"] = str(store.root)
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_side(side: str, args: list[str], env: dict[str, str]) -> Outcome:
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report"
        done = subprocess.run(
            [sys.executable, "-c", PROBE, side, *args],
            capture_output=True,
            timeout=60,
            env={**env, "PROBE_REPORT": str(report)},
            stdin=subprocess.DEVNULL,
        )
        loaded = report.read_text() == "click"
    return Outcome(done.stdout, done.stderr, done.returncode, loaded)


def compare(args: list[str], env: dict[str, str], *, direct: bool) -> Outcome:
    """Run ``args`` both ways; the outcomes must be equal, and the direct side must
    have run without Click exactly when ``direct`` says so."""
    mine = run_side("direct", args, env)
    theirs = run_side("click", args, env)
    assert theirs.click_loaded
    assert (mine.stdout, mine.stderr, mine.code) == (theirs.stdout, theirs.stderr, theirs.code)
    assert mine.click_loaded is not direct, "ran without Click" if mine.click_loaded else "Click"
    return mine


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    base = tmp_path_factory.mktemp("direct")
    root = base / "root"
    root.mkdir()
    clock = Clock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
    manager = SessionManager(root, durable=False, clock=clock)
    made = Store(root)

    def make(name: str, request: str, branch: str = "main", worktree: str | None = None) -> str:
        clock.advance(600)
        git = GitContext(
            branch, "1" * 40, str(root), is_worktree=worktree is not None, worktree_name=worktree
        )
        sid = manager.create_session(request, git_context=git).session_id
        made.ids[name] = sid
        return sid

    for n in range(4):
        make(f"plain{n}", f"plain session {n}")
    make("feature", "Add OAuth login", branch="feature/oauth")
    make("worktree", "made in a worktree", worktree="wt-a")
    make("long", "A long request that folds on a terminal. " * 12 + "\nand a second line")
    make("odd", "escapes \x1b[31mred\x1b[0m, a \u202ebidi override\u202c and a\ttab")
    done = make("done", "finished work")
    for status in (
        SessionStatus.PLANNING,
        SessionStatus.GENERATING_TASKS,
        SessionStatus.IMPLEMENTING,
        SessionStatus.VALIDATING,
        SessionStatus.GENERATING_REPORT,
        SessionStatus.COMPLETED,
    ):
        clock.advance(300)
        manager.transition_state(done, status)
    failed = make("failed", "did not work")
    clock.advance(120)
    manager.transition_state(failed, SessionStatus.PLANNING)
    clock.advance(120)
    manager.transition_state(failed, SessionStatus.FAILED, reason="tests failed")
    running = make("running", "still implementing")
    for status in (
        SessionStatus.PLANNING,
        SessionStatus.GENERATING_TASKS,
        SessionStatus.IMPLEMENTING,
    ):
        clock.advance(200)
        manager.transition_state(running, status)
    clock.advance(60)
    made.ids["rerun"] = manager.rerun_session(done).session_id
    # A copy of a session under an id sharing its first 14 characters: a
    # prefix of them is ambiguous.
    original = made.ids["plain0"]
    twin = original[:14] + "4000-8000-000000000000"
    shutil.copytree(manager.sessions_dir / original, manager.sessions_dir / twin)
    record = json.loads((manager.sessions_dir / twin / "metadata.json").read_text())
    record["session_id"] = twin
    (manager.sessions_dir / twin / "metadata.json").write_text(json.dumps(record, indent=2))
    made.ids["twin"] = twin

    # A store holding an unreadable session beside a good one: a warning.
    made.broken = base / "broken"
    made.broken.mkdir()
    other = SessionManager(made.broken, durable=False, clock=Clock())
    other.create_session("fine", git_context=GitContext("main", "2" * 40, "/r"))
    bad = other.create_session("soon broken", git_context=GitContext("main", "3" * 40, "/r"))
    (other.sessions_dir / bad.session_id / "metadata.json").write_text("{not json")
    made.empty = base / "empty"
    made.empty.mkdir()
    made.a_file = base / "a-file"
    made.a_file.write_text("not a directory")
    # Every store indexed once, as a store in use is, before the comparisons.
    for where in (root, made.broken, made.empty):
        subprocess.run(
            [sys.executable, "-c", "from maestro.cli import main; main()", "list"],
            capture_output=True,
            env=_env(made, {"MAESTRO_ROOT": str(where)}),
            timeout=60,
        )
    return made


# ---------------------------------------------------------------- the table

#: (argv, extra environment, whether the direct path runs it).  ``{name}`` in an
#: argument is a session id of the store, ``{name:8}`` its first 8 characters,
#: ``{root}``, ``{broken}``, ``{empty}`` and ``{a_file}`` the places.
FORMS: list[tuple[list[str], dict[str, str | None], bool]] = [
    # show
    (["--json", "show", "{done}"], {}, True),
    (["--json", "show", "{running}"], {}, True),
    (["show", "{running}", "--json"], {}, True),
    (["show", "{done}"], {}, True),
    (["show", "{odd}"], {}, True),
    (["--json", "show", "{odd}"], {}, True),
    (["show", "{long}"], {}, True),
    (["show", "{long}", "--full"], {}, True),
    (["show", "--full", "{long:8}"], {}, True),
    (["show", "{feature:6}"], {}, True),
    (["show", "  {FEATURE}  "], {}, True),
    (["--root", "{root}", "show", "{worktree}"], {"MAESTRO_ROOT": None}, True),
    (["--root={root}", "--json", "show", "{rerun}"], {"MAESTRO_ROOT": None}, True),
    (["show", "{failed}", "--root", "{root}"], {"MAESTRO_ROOT": "{empty}"}, True),
    (["--store", "{root}", "show", "{plain1}"], {"MAESTRO_ROOT": None}, True),
    (["--json", "--store=file:{root}", "show", "{plain2}"], {}, True),
    (["show", "{plain3}"], {"MAESTRO_STORE": "{root}", "MAESTRO_ROOT": "{empty}"}, True),
    (["--all-projects", "show", "{plain1}"], {}, True),
    (["show", "{plain1}"], {"MAESTRO_ALL_PROJECTS": "yes"}, True),
    # show on a terminal, with and without colours
    (["show", "{done}"], {"MAESTRO_FORCE_TTY": "120", "NO_COLOR": "1"}, True),
    (["show", "{running}"], {"MAESTRO_FORCE_TTY": "100", "FORCE_COLOR": "1"}, True),
    (["show", "{long}", "--full"], {"MAESTRO_FORCE_TTY": "1", "COLUMNS": "90"}, True),
    (["show", "{odd}"], {"MAESTRO_FORCE_TTY": "120"}, True),
    # show's errors
    (["show", "ffffffff"], {}, True),
    (["--json", "show", "ffffffff"], {}, True),
    (["show", "{plain0:13}"], {}, True),
    (["--json", "show", "{plain0:10}"], {}, True),
    (["show", "123"], {}, True),
    (["--json", "show", "not-an-id"], {}, True),
    (["show", "{plain1}"], {"MAESTRO_ROOT": "{empty}"}, True),
    (["--store", "memory:", "show", "{plain1}"], {}, True),
    (["show", "{plain1}"], {"MAESTRO_FORCE_TTY": "120", "MAESTRO_ROOT": "{empty}"}, True),
    (["show", "{plain1}", "--root", "{root}/nowhere"], {}, False),
    (["show", "{plain1}"], {"MAESTRO_ROOT": "{root}/nowhere"}, False),
    (["--root", "{a_file}", "show", "{plain1}"], {}, False),
    (["show"], {}, False),
    (["show", "{plain1}", "{plain2}"], {}, False),
    (["show", "{plain1}", "--all-projects"], {}, False),
    (["show", "{plain1}"], {"MAESTRO_ALL_PROJECTS": "maybe"}, False),
    # forms left to Click
    (["show", "{plain1}", "--help"], {}, False),
    (["--json=id,status", "show", "{plain1}"], {}, False),
    (["show", "{plain1}", "--json=id"], {}, False),
    (["--root", "", "show", "{plain1}"], {}, False),
    (["--version"], {}, False),
    (["path", "{plain1}"], {}, False),
    (
        ["list"],
        {"_MAESTRO_COMPLETE": "bash_complete", "COMP_WORDS": "maestro li", "COMP_CWORD": "1"},
        False,
    ),
    # list, piped
    (["list"], {}, True),
    (["--json", "list"], {}, True),
    (["list", "--json"], {}, True),
    (["list", "--limit", "3"], {}, True),
    (["list", "--limit=3", "--offset", "2"], {}, True),
    (["list", "--offset=12"], {}, True),
    (["--json", "list", "--limit", "2", "--offset", "1"], {}, True),
    (["list", "--limit", "007"], {}, True),
    (["list", "--active"], {}, True),
    (["list", "--status", "completed", "--status", "failed"], {}, True),
    (["list", "--phase", "implement"], {}, True),
    (["list", "--branch", "feature/oauth"], {}, True),
    (["list", "--worktree", "wt-a"], {}, True),
    (["list", "--sort", "updated", "--limit", "4"], {}, True),
    (["list", "--wide"], {}, True),
    (["list", "--status", "paused"], {}, True),
    (["--root", "{broken}", "list"], {}, True),
    (["--json", "--root", "{broken}", "list"], {}, True),
    (["list", "--root", "{empty}"], {}, True),
    (["--store", "memory:", "list"], {}, True),
    (["--all-projects", "list", "--store", "{root}"], {}, True),
    (["list"], {"MAESTRO_ALL_PROJECTS": " Off "}, True),
    # list on a terminal
    (["list"], {"MAESTRO_FORCE_TTY": "120", "NO_COLOR": "1"}, True),
    (["list", "--limit", "3"], {"MAESTRO_FORCE_TTY": "100"}, True),
    (["list", "--wide"], {"MAESTRO_FORCE_TTY": "60"}, True),
    (["list", "--active"], {"MAESTRO_FORCE_TTY": "1", "FORCE_COLOR": "1", "COLUMNS": "70"}, True),
    (["--root", "{broken}", "list"], {"MAESTRO_FORCE_TTY": "120"}, True),
    # list's errors and forms left to Click
    (["list", "--active", "--status", "failed"], {}, False),
    (["list", "--limit", "0"], {}, False),
    (["list", "--limit", "+3"], {}, False),
    (["list", "--status", "nope"], {}, False),
    (["list", "--sort", "oldest"], {}, False),
    (["list", "--since", "2d"], {}, False),
    (["list", "--cursor", ""], {}, False),
    (["list", "extra"], {}, False),
    (["list", "--branch"], {}, False),
    (["list", "--branch", "--json"], {}, False),
    (["list", "--wide=yes"], {}, False),
    (["list", "-h"], {}, False),
    (["list", "--", "--json"], {}, False),
    (["list"], {"MAESTRO_ROOT": "{a_file}"}, False),
    (["--json", "list"], {"MAESTRO_ROOT": "{root}/nowhere"}, False),
]


def _fill(text: str, store: Store) -> str:
    places = {
        "root": str(store.root),
        "broken": str(store.broken),
        "empty": str(store.empty),
        "a_file": str(store.a_file),
    }
    for name, sid in store.ids.items():
        for width in (6, 8, 10, 13):
            text = text.replace(f"{{{name}:{width}}}", sid[:width])
        text = text.replace(f"{{{name.upper()}}}", sid.upper())
        text = text.replace(f"{{{name}}}", sid)
    for name, place in places.items():
        text = text.replace(f"{{{name}}}", place)
    assert "{" not in text, text
    return text


def _case_id(form: tuple[list[str], dict[str, str | None], bool]) -> str:
    args, extra, _ = form
    env = ",".join(f"{k}={v}" for k, v in extra.items())
    return " ".join(args) + (f" [{env}]" if env else "")


@pytest.mark.parametrize("form", FORMS, ids=[_case_id(f) for f in FORMS])
def test_the_same_bytes_both_ways(
    store: Store, form: tuple[list[str], dict[str, str | None], bool]
) -> None:
    args, extra, direct = form
    env = _env(store, {k: None if v is None else _fill(v, store) for k, v in extra.items()})
    compare([_fill(arg, store) for arg in args], env, direct=direct)


def test_the_table_means_what_it_says(store: Store) -> None:
    """A few forms checked on their own: each error is the one meant, and the
    parser alone takes every form the table says runs directly."""
    expected = {
        ("show", "{plain0:13}"): (2, b"is ambiguous"),
        ("show", "ffffffff"): (3, b"not found"),
        ("show", "123"): (2, b"invalid session id"),
        ("--json", "show", "not-an-id"): (2, b'"InvalidSessionIdError"'),
        ("--root", "{broken}", "list"): (0, b"warning: skipping session"),
    }
    for args, (code, message) in expected.items():
        outcome = run_side("direct", [_fill(a, store) for a in args], _env(store))
        assert (outcome.code, outcome.click_loaded) == (code, False), args
        assert message in outcome.stderr, (args, outcome.stderr)
    for args, extra, direct in FORMS:
        env = _env(store, {k: None if v is None else _fill(v, store) for k, v in extra.items()})
        parsed = parse([_fill(a, store) for a in args], env)
        if direct:
            assert parsed is not None, args


def test_a_difference_is_caught(store: Store) -> None:
    """A direct path that forgot --limit prints other rows: the comparison fails."""
    env = _env(store, {"PROBE_SABOTAGE": "1"})
    with pytest.raises(AssertionError):
        compare(["list", "--limit", "3"], env, direct=True)
    # And one that ran through Click where the table says it runs directly.
    with pytest.raises(AssertionError, match="Click"):
        compare(["list", "--since", "2d"], _env(store), direct=True)


def test_a_reader_gone_away_ends_both_quietly(store: Store) -> None:
    """``maestro --json list | head -c0``: no traceback, no message, exit 1, both ways."""
    outcomes = []
    for side in ("direct", "click"):
        with tempfile.TemporaryDirectory() as scratch:
            env = {**_env(store), "PROBE_REPORT": str(Path(scratch) / "report")}
            process = subprocess.Popen(
                [sys.executable, "-c", PROBE, side, "--json", "list"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                env=env,
            )
            assert process.stdout is not None and process.stderr is not None
            process.stdout.close()  # before the command writes anything
            stderr = process.stderr.read()
            outcomes.append((process.wait(timeout=60), stderr))
    assert outcomes[0] == outcomes[1] == (1, b"")


def test_the_parser_reads_the_group_and_the_command_options() -> None:
    call = parse(
        ["--json", "--root", "/", "list", "--status", "failed", "--limit=5", "--store", "memory:"],
        {},
    )
    assert call is not None
    assert call.command == "list"
    assert call.context.as_json and call.context.root == Path("/")
    assert call.context.store == "memory:"
    assert call.arguments == {"statuses": ("failed",), "limit": 5}
    call = parse(["show", "abcdef", "--full"], {"MAESTRO_STORE": "memory:x"})
    assert call is not None and call.arguments == {"session_id": "abcdef", "full": True}
    assert call.context.store == "memory:x" and call.context.command == "maestro show"
    for refused in (["show", "a", "--json=id"], ["stats"], ["--json"], ["list", "--root"]):
        assert parse(refused, {}) is None, refused
