"""One store per repository: where the root is, what it ignores, how git states read.

Real repositories are made with ``git`` (init, commit, ``worktree add``); the
command line runs in-process with the working directory moved into them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maestro import SessionManager
from maestro.cli import cli
from maestro.gitctx import find_repository_root
from maestro.manager import resolve_root

from .test_cli import error_line, ok, runner
from .test_gitctx import commit, git, isolated_git, make_repo

__all__ = ["isolated_git"]  # the fixture: no inherited git settings, a fixed identity

#: Commands that each would open (and maybe create) a store under the root.
COMMANDS = [
    ["create", "a request"],
    ["list"],
    ["search", "oauth"],
    ["show", "0123456789ab"],
    ["stale"],
    ["stats"],
    ["doctor"],
    ["gc", "--dry-run"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: args[0])
def test_a_root_that_does_not_exist_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "no-such-dir"
    result = runner().invoke(cli, ["--root", str(missing), *args], env={"MAESTRO_ROOT": None})
    assert "--root" in error_line(result, 2)
    assert "no such directory" in result.stderr
    assert not missing.exists()  # nothing was created on the way


@pytest.mark.parametrize("args", COMMANDS[:3], ids=lambda args: args[0])
def test_maestro_root_that_does_not_exist_is_a_usage_error(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "typo"
    result = runner().invoke(cli, args, env={"MAESTRO_ROOT": str(missing), "MAESTRO_STORE": None})
    assert "MAESTRO_ROOT" in error_line(result, 2)
    assert not missing.exists()


def test_an_existing_root_still_works_and_a_store_url_wins(tmp_path: Path) -> None:
    assert ok(runner().invoke(cli, ["--root", str(tmp_path), "list"])).strip() == (
        "no sessions match"
    )
    result = runner().invoke(
        cli, ["--store", "memory:", "list"], env={"MAESTRO_ROOT": str(tmp_path / "unused")}
    )
    assert ok(result).strip() == "no sessions match"


# ---------------------------------------------------------------- the root of a repository


def here(monkeypatch: pytest.MonkeyPatch, where: Path, *args: str) -> str:
    """``maestro ARGS`` run from ``where`` with the root left to find."""
    monkeypatch.chdir(where)
    env = {"MAESTRO_ROOT": None, "MAESTRO_STORE": None, "COLUMNS": "200", "NO_COLOR": "1"}
    return ok(runner().invoke(cli, list(args), env=env))


@pytest.fixture
def repo_with_worktree(tmp_path: Path) -> tuple[Path, Path]:
    """A repository ``main/`` and a linked worktree ``wt-login`` on ``feature/login``."""
    main, _ = make_repo(tmp_path / "main")
    git(main, "worktree", "add", "-q", "-b", "feature/login", str(tmp_path / "wt-login"))
    return main, tmp_path / "wt-login"


def test_a_session_made_in_a_linked_worktree_is_seen_from_the_main_checkout(
    repo_with_worktree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    main, worktree = repo_with_worktree
    (worktree / "src" / "deep").mkdir(parents=True)
    created = json.loads(
        here(monkeypatch, worktree / "src" / "deep", "--json", "create", "Add OAuth login")
    )
    sid = created["session_id"]
    # Recorded as the worktree it was made in, stored at the main checkout.
    assert created["git_context"]["branch"] == "feature/login"
    assert created["git_context"]["worktree_name"] == "wt-login"
    assert created["git_context"]["repo_root"] == str(worktree.resolve())
    assert (main / ".flow" / "maestro" / "sessions" / sid / "metadata.json").is_file()
    assert not (worktree / ".flow").exists()

    shown = json.loads(here(monkeypatch, main, "--json", "show", sid))
    assert shown["session"]["session_id"] == sid
    listed = json.loads(here(monkeypatch, main, "--json", "list", "--branch", "feature/login"))
    assert [s["session_id"] for s in listed] == [sid]
    # And from a subdirectory of the main checkout, by a prefix, in human output.
    (main / "docs").mkdir()
    assert "feature/login" in here(monkeypatch, main / "docs", "show", sid[:8])


def test_a_session_made_in_the_main_checkout_is_seen_from_the_worktree(
    repo_with_worktree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    main, worktree = repo_with_worktree
    sid = here(monkeypatch, main, "create", "--quiet", "Fix the flaky test").strip()
    listed = json.loads(here(monkeypatch, worktree, "--json", "list", "--branch", "main"))
    assert [s["session_id"] for s in listed] == [sid]
    assert listed[0]["git_context"]["is_worktree"] is False


def test_root_and_environment_still_override_in_a_worktree(
    repo_with_worktree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    main, worktree = repo_with_worktree
    monkeypatch.chdir(worktree)
    assert resolve_root() == main.resolve()
    assert resolve_root(worktree) == worktree
    monkeypatch.setenv("MAESTRO_ROOT", str(worktree))
    assert resolve_root() == worktree
    monkeypatch.delenv("MAESTRO_ROOT")

    # An explicit root elsewhere records the git context of that root, not the cwd's.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    session = SessionManager(elsewhere).create_session("x")
    assert session.git_context.branch == "unknown"
    # The main checkout named explicitly from the worktree still records the worktree.
    session = SessionManager(main).create_session("y")
    assert session.git_context.worktree_name == "wt-login"


def test_the_root_of_a_bare_repository_is_the_directory_holding_it(tmp_path: Path) -> None:
    seed, _ = make_repo(tmp_path / "seed")
    bare = tmp_path / "hold" / "app.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    git(bare, "worktree", "add", "-q", str(tmp_path / "hold" / "wt"), "main")
    (tmp_path / "hold" / "wt" / "sub").mkdir()
    assert find_repository_root(tmp_path / "hold" / "wt" / "sub") == (tmp_path / "hold").resolve()
    assert find_repository_root(bare / "refs") == (tmp_path / "hold").resolve()


def test_plain_checkouts_and_submodule_like_git_files_keep_their_top_level(
    tmp_path: Path,
) -> None:
    repo, _ = make_repo(tmp_path / "repo")
    (repo / "a" / "b").mkdir(parents=True)
    assert find_repository_root(repo / "a" / "b") == repo.resolve()
    outside = tmp_path / "outside"
    outside.mkdir()
    assert find_repository_root(outside) is None
    # A separate git directory (as a submodule has): the checkout itself.
    separate = tmp_path / "sep"
    separate.mkdir()
    git(separate, "init", "-q", "--separate-git-dir", str(tmp_path / "sep-git"))
    commit(separate)
    assert find_repository_root(separate) == separate.resolve()


# ---------------------------------------------------------------- list by worktree


def test_list_filters_by_worktree_and_shows_the_column_when_there_are_several(
    repo_with_worktree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    main, worktree = repo_with_worktree
    in_tree = here(monkeypatch, worktree, "create", "-q", "Add OAuth login").strip()
    in_main = here(monkeypatch, main, "create", "-q", "Fix the flaky test").strip()

    listed = json.loads(here(monkeypatch, main, "--json", "list", "--worktree", "wt-login"))
    assert [s["session_id"] for s in listed] == [in_tree]
    assert here(monkeypatch, main, "list", "--worktree", "nowhere").strip() == "no sessions match"

    monkeypatch.setenv("MAESTRO_FORCE_TTY", "160")  # the table a terminal gets
    table = here(monkeypatch, main, "list").splitlines()
    assert table[0].split() == ["id", "status", "phase", "branch", "worktree", "age", "request"]
    rows = {line.split()[0]: line.split() for line in table[2:-1]}
    assert rows[in_tree[:8]][3:5] == ["feature/login", "wt-login"]
    assert rows[in_main[:8]][3:5] == ["main", "-"]

    # One worktree among the rows: no column.
    alone = here(monkeypatch, main, "list", "--worktree", "wt-login").splitlines()
    assert alone[0].split() == ["id", "status", "phase", "branch", "age", "request"]
    alone = here(monkeypatch, main, "list", "--branch", "main").splitlines()
    assert "worktree" not in alone[0]


# ---------------------------------------------------------------- .gitignore


def untracked(repo: Path) -> list[str]:
    return sorted(
        line.removeprefix("?? ")
        for line in git(repo, "status", "--porcelain", "--untracked-files=all").splitlines()
    )


def test_git_status_shows_only_session_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = make_repo(tmp_path / "repo")
    first = here(monkeypatch, repo, "create", "-q", "--request-id", "job-1", "one").strip()
    second = here(monkeypatch, repo, "create", "-q", "two").strip()
    third = here(monkeypatch, repo, "create", "-q", "three").strip()
    here(monkeypatch, repo, "transition", first, "planning")
    here(monkeypatch, repo, "delete", "--yes", third)
    store = repo / ".flow" / "maestro"
    (store / "sessions" / second / "metadata.json").write_text("{ broken")
    here(monkeypatch, repo, "doctor", "--fix")
    # What the commands above left: the index, locks, a reservation, quarantine.
    assert (store / "index.sqlite3").is_file()
    assert (store / "sessions" / first / ".lock").is_file()
    assert list((store / "requests").iterdir())
    assert list((store / "quarantine").iterdir())
    for name in ("index.sqlite3-wal", "index.sqlite3-shm", "index.stale", "trash.pending"):
        (store / name).touch()  # never truncated: SQLite may have the -shm mapped
    (store / "sessions" / first / ".metadata.json.1234.tmp").write_text("")
    (store / "sessions" / ".trash-x").mkdir()
    (store / "sessions" / ".trash-x" / "metadata.json").write_text("{}")
    (store / "sessions" / ".import-y").mkdir()
    (store / "sessions" / ".import-y" / ".lock").write_text("")

    assert untracked(repo) == [f".flow/maestro/sessions/{first}/metadata.json"]
    # The user's other files in a session directory are theirs to commit.
    (store / "sessions" / first / "checkpoints.json").write_text("{}")
    assert f".flow/maestro/sessions/{first}/checkpoints.json" in untracked(repo)


def test_the_gitignore_is_written_once_and_never_overwritten(tmp_path: Path) -> None:
    store = tmp_path / ".flow" / "maestro"
    manager = SessionManager(tmp_path, durable=False)
    assert not store.exists()  # opening a store writes nothing
    manager.create_session("first")
    written = (store / ".gitignore").read_text()
    assert "/index.sqlite3" in written and "metadata.json" not in written.replace(
        "(sessions/*/metadata.json)", ""
    )
    assert [p.name for p in store.iterdir() if p.name.endswith(".tmp")] == []

    (store / ".gitignore").write_text("# mine\n")
    manager.create_session("second")
    import shutil

    shutil.rmtree(store / "sessions")  # made again on the next create
    SessionManager(tmp_path, durable=False).create_session("third")
    assert (store / ".gitignore").read_text() == "# mine\n"

    # A store made where a .gitignore already waits keeps it too.
    other = tmp_path / "other"
    (other / ".flow" / "maestro").mkdir(parents=True)
    (other / ".flow" / "maestro" / ".gitignore").write_text("*\n")
    SessionManager(other).create_session("x")
    assert (other / ".flow" / "maestro" / ".gitignore").read_text() == "*\n"


def test_a_store_outside_the_repository_layout_writes_no_gitignore(tmp_path: Path) -> None:
    from maestro.stores.files import FileSessionStore

    manager = SessionManager(store=FileSessionStore(tmp_path / "plain" / "sessions"))
    manager.create_session("x")
    assert not (tmp_path / "plain" / ".gitignore").exists()


# ---------------------------------------------------------------- detached HEAD, no commits


def test_a_detached_head_and_a_repository_without_commits_read_as_git_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, sha = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "--detach")
    message = here(monkeypatch, repo, "create", "Add OAuth login")
    assert message.endswith(f" (detached at {sha[:7]})\n")
    assert "on branch" not in message and "HEAD" not in message
    sid = message.split()[2]
    record = json.loads((repo / ".flow/maestro/sessions" / sid / "metadata.json").read_text())
    assert record["git_context"]["branch"] == "HEAD"  # as the prototype wrote it
    assert record["git_context"]["commit"] == sha
    assert f"(detached at {sha[:7]})" in here(monkeypatch, repo, "show", sid)
    assert f"(detached at {sha[:7]})" in here(monkeypatch, repo, "list")
    listed = json.loads(here(monkeypatch, repo, "--json", "list", "--branch", "HEAD"))
    assert [s["session_id"] for s in listed] == [sid]

    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "trunk")
    message = here(monkeypatch, empty, "create", "First steps")
    assert message.endswith(" on branch trunk (no commits)\n")
    sid = message.split()[2]
    record = json.loads((empty / ".flow/maestro/sessions" / sid / "metadata.json").read_text())
    assert (record["git_context"]["branch"], record["git_context"]["commit"]) == (
        "trunk",
        "unknown",
    )
    shown = here(monkeypatch, empty, "show", sid)
    assert "trunk (no commits)" in shown and "unknown" not in shown
    assert "trunk (no commits)" in here(monkeypatch, empty, "list")


def test_outside_a_repository_the_branch_stays_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert here(monkeypatch, tmp_path, "create", "x").endswith(" on branch unknown\n")


# ---------------------------------------------------------------- sessions left in a worktree


def test_doctor_finds_sessions_in_a_worktree_store_and_fix_moves_them_whole(
    repo_with_worktree: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl
    import os
    import shutil

    main, worktree = repo_with_worktree
    monkeypatch.chdir(worktree)
    # Made as before one store served the repository: under the worktree's own .flow.
    old = SessionManager(worktree)
    kept = old.create_session("Add OAuth login").session_id
    old.transition_state(kept, "planning", reason="start")
    (old.sessions_dir / kept / "checkpoints.json").write_text('{"n": 1}')
    busy = old.create_session("Held by a writer").session_id
    mine = SessionManager(main).create_session("Fix the flaky test").session_id
    shutil.copytree(SessionManager(main).sessions_dir / mine, old.sessions_dir / mine)
    env = {"MAESTRO_ROOT": None, "MAESTRO_STORE": None, "COLUMNS": "200", "NO_COLOR": "1"}

    def doctor(*options: str, as_json: bool = False) -> tuple[int, str]:
        head = ["--json"] if as_json else []
        result = runner().invoke(cli, [*head, "doctor", *options], env=env)
        return result.exit_code, result.stdout

    code, out = doctor()
    assert code == 1
    assert "in a linked worktree's own store (--fix moves them here) (3):" in out
    assert f"{kept}: {worktree}" in out and f"{busy}: {worktree}" in out
    assert f"also stored here (never overwritten; keep one copy) (1):\n  {mine}" in out
    code, out = doctor(as_json=True)
    report = json.loads(out)
    assert set(report["in_worktrees"]) == {kept, busy, mine}
    assert report["duplicates"] == {mine: str(worktree)}
    assert (old.sessions_dir / kept / "metadata.json").is_file()  # looking moves nothing

    lock = os.open(old.sessions_dir / busy / ".lock", os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, out = doctor("--fix")
    finally:
        os.close(lock)
    assert code == 1  # the duplicate and the busy session remain
    assert f"moved {kept} here from {worktree}" in out
    store = main / ".flow" / "maestro" / "sessions"
    assert (store / kept / "checkpoints.json").read_text() == '{"n": 1}'
    assert not (old.sessions_dir / kept).exists()
    assert (old.sessions_dir / mine).is_dir() and (store / mine).is_dir()  # both kept

    monkeypatch.chdir(main)
    shown = json.loads(here(monkeypatch, main, "--json", "show", kept[:8]))
    assert shown["session"]["status"] == "planning"
    assert shown["session"]["history"][-1]["reason"] == "start"
    listed = json.loads(here(monkeypatch, main, "--json", "list", "--worktree", "wt-login"))
    assert kept in {s["session_id"] for s in listed}

    code, out = doctor("--fix")  # the writer is gone now
    assert f"moved {busy} here from {worktree}" in out
    shutil.rmtree(old.sessions_dir / mine)  # the user keeps one copy
    code, out = doctor()
    assert code == 0, out
    assert out.rstrip().endswith("healthy")
    assert {s["session_id"] for s in json.loads(here(monkeypatch, main, "--json", "list"))} == {
        kept,
        busy,
        mine,
    }
