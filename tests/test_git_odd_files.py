"""Odd git files never hang ``maestro create``: its git context is ``unknown``.

A checkout can hold anything where git expects a small text file: a FIFO
(opening it for reading waits for a writer forever), a directory, a file far
larger than any git writes.  Each case runs the installed command in its own
process with a generous timeout, so a hang fails the test instead of the run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from maestro import SessionManager
from maestro.gitctx import UNKNOWN, capture_git_context

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

MAESTRO = Path(sys.executable).parent / "maestro"
#: Far beyond the second or so ``create`` takes on a loaded machine.
TIMEOUT = 30.0


@pytest.fixture
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """No inherited git or maestro settings; git reads no configuration of the machine."""
    home = tmp_path_factory.mktemp("home")
    clean = {
        key: value for key, value in os.environ.items() if not key.startswith(("GIT_", "MAESTRO_"))
    }
    clean.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="Test Person",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="Test Person",
        GIT_COMMITTER_EMAIL="test@example.invalid",
    )
    return clean


def git(cwd: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=True, timeout=60)


def make_repo(path: Path, env: dict[str, str]) -> Path:
    path.mkdir()
    git(path, env, "init", "-q", "-b", "main")
    (path / "README").write_text("x\n")
    git(path, env, "add", "README")
    git(path, env, "commit", "-q", "-m", "first")
    return path


def fifo(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    os.mkfifo(path)


def dot_git_is_a_fifo(tmp_path: Path, env: dict[str, str]) -> Path:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    fifo(checkout / ".git")
    return checkout


def head_is_a_fifo(tmp_path: Path, env: dict[str, str]) -> Path:
    repo = make_repo(tmp_path / "repo", env)
    fifo(repo / ".git" / "HEAD")
    return repo


def commondir_is_a_fifo(tmp_path: Path, env: dict[str, str]) -> Path:
    repo = make_repo(tmp_path / "repo", env)
    git(repo, env, "worktree", "add", "-q", "-b", "side", str(tmp_path / "linked"))
    (admin,) = (repo / ".git" / "worktrees").iterdir()
    fifo(admin / "commondir")
    return tmp_path / "linked"


def gitdir_file_names_a_fifo_head(tmp_path: Path, env: dict[str, str]) -> Path:
    """A ``.git`` file pointing to a git dir whose ``HEAD`` is a FIFO."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fifo(elsewhere / "HEAD")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".git").write_text(f"gitdir: {elsewhere}\n")
    return checkout


def branch_ref_is_a_fifo(tmp_path: Path, env: dict[str, str]) -> Path:
    repo = make_repo(tmp_path / "repo", env)
    fifo(repo / ".git" / "refs" / "heads" / "main")
    return repo


def head_is_a_directory(tmp_path: Path, env: dict[str, str]) -> Path:
    repo = make_repo(tmp_path / "repo", env)
    (repo / ".git" / "HEAD").unlink()
    (repo / ".git" / "HEAD").mkdir()
    return repo


LAYOUTS: list[Callable[[Path, dict[str, str]], Path]] = [
    dot_git_is_a_fifo,
    head_is_a_fifo,
    commondir_is_a_fifo,
    gitdir_file_names_a_fifo_head,
    branch_ref_is_a_fifo,
    head_is_a_directory,
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__)
def test_create_with_an_odd_git_file_never_hangs(
    layout: Callable[[Path, dict[str, str]], Path], tmp_path: Path, env: dict[str, str]
) -> None:
    checkout = layout(tmp_path, env)
    try:
        done = subprocess.run(
            [str(MAESTRO), "--root", str(checkout), "--json", "create", "a request"],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"maestro create hung for {TIMEOUT:g} s on {layout.__name__}")
    assert done.returncode == 0, done.stderr
    git_context = json.loads(done.stdout)["git_context"]
    assert (git_context["branch"], git_context["commit"]) == (UNKNOWN, UNKNOWN)
    assert git_context["is_worktree"] is False


def test_create_in_a_checkout_whose_dot_git_is_a_fifo(tmp_path: Path, env: dict[str, str]) -> None:
    """The root found from the working directory is that checkout's top level."""
    checkout = dot_git_is_a_fifo(tmp_path, env)
    try:
        done = subprocess.run(
            [str(MAESTRO), "create", "--quiet", "a request"],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"maestro create hung for {TIMEOUT:g} s")
    assert done.returncode == 0, done.stderr
    session = SessionManager(checkout).get_session(done.stdout.strip())
    assert session.git_context is not None
    assert session.git_context.branch == UNKNOWN


def test_oversized_packed_refs_is_not_read(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sparse ``packed-refs`` of 257 MiB (no disk used) is refused by its size, unread."""
    for key in [k for k in os.environ if k.startswith("GIT_")]:
        monkeypatch.delenv(key)
    repo = make_repo(tmp_path / "repo", env)
    (repo / ".git" / "refs" / "heads" / "main").unlink()  # only packed-refs could name it
    with (repo / ".git" / "packed-refs").open("wb") as handle:
        handle.truncate(257 << 20)
    context = capture_git_context(repo)
    assert (context.branch, context.commit) == (UNKNOWN, UNKNOWN)
