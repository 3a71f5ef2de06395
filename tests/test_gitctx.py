"""Git context against real repositories: both readers, and the manager on top.

Every repository here is made by the ``git`` command line in a temporary
directory, with the user's and the system's git configuration switched off, so
the tests do not depend on how git is set up on the machine.  Each layout is
read with ``method="files"``, ``method="process"``, ``method="auto"`` and the
default, which must all agree with each other and with what git itself says.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from maestro import GitContext, SessionManager
from maestro.gitctx import DETACHED, UNKNOWN, capture_git_context, find_toplevel
from maestro.manager import resolve_root

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

HEX40 = re.compile(r"[0-9a-f]{40}")
HEX64 = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No inherited ``GIT_*`` variable, no user or system config, a fixed identity."""
    for name in list(os.environ):
        if name.startswith("GIT_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("MAESTRO_ROOT", raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Test Person")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "test@example.invalid")


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout.strip()


def git_version() -> tuple[int, int]:
    match = re.search(r"(\d+)\.(\d+)", git(Path.cwd(), "--version"))
    assert match is not None
    return int(match.group(1)), int(match.group(2))


def init_repo(path: Path, branch: str = "main", *init_args: str) -> Path:
    """An empty repository at ``path`` whose HEAD names ``branch``."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", *init_args)
    git(path, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    return path


def commit(repo: Path, message: str = "change") -> str:
    """Make a commit on whatever HEAD is and return its full hash."""
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    sha = git(repo, "rev-parse", "HEAD")
    assert HEX40.fullmatch(sha) or HEX64.fullmatch(sha)
    return sha


def make_repo(path: Path, branch: str = "main") -> tuple[Path, str]:
    repo = init_repo(path, branch)
    return repo, commit(repo, "first")


def context(root: Path, branch: str, sha: str, worktree_name: str | None = None) -> GitContext:
    return GitContext(
        branch=branch,
        commit=sha,
        repo_root=str(root),
        is_worktree=worktree_name is not None,
        worktree_name=worktree_name,
    )


def unknown(path: Path) -> GitContext:
    return GitContext(branch=UNKNOWN, commit=UNKNOWN, repo_root=str(path), is_worktree=False)


def capture_all(path: Path) -> GitContext:
    """The context from every method, asserted to be the same."""
    default = capture_git_context(path)
    for method in ("files", "process", "auto"):
        result = capture_git_context(path, method=method)
        assert result == default, f"method={method!r} gave {result}, the default gave {default}"
    return default


def worktree_admin_name(main: Path, worktree: Path) -> str:
    """The directory under ``.git/worktrees`` that git made for ``worktree``."""
    names = [
        admin.name
        for admin in (main / ".git" / "worktrees").iterdir()
        if Path((admin / "gitdir").read_text().strip()) == worktree / ".git"
    ]
    assert len(names) == 1, names
    return names[0]


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory in no repository, for the file reader and for git alike."""
    enclosing = find_toplevel(tmp_path)
    if enclosing is not None:
        pytest.skip(f"the temporary directory lies inside the git checkout {enclosing}")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    directory = tmp_path / "plain" / "dir"
    directory.mkdir(parents=True)
    return directory


# ---------------------------------------------------------------- ordinary checkouts


def test_branch_commit_and_top_level(tmp_path: Path) -> None:
    repo, first = make_repo(tmp_path / "repo")
    sub = repo / "src" / "pkg"
    sub.mkdir(parents=True)
    assert HEX40.fullmatch(first)

    for where in (repo, sub):
        assert capture_all(where) == context(repo, "main", first)
    assert git(sub, "rev-parse", "--show-toplevel") == str(repo)

    second = commit(repo, "second")
    assert second != first
    assert capture_all(sub) == context(repo, "main", second)


@pytest.mark.parametrize("branch", ["feature/login", "team/alice/fix-1"])
def test_branch_name_with_slashes(tmp_path: Path, branch: str) -> None:
    repo, _ = make_repo(tmp_path / "repo")
    git(repo, "checkout", "-q", "-b", branch)
    sha = commit(repo, "on the branch")

    assert capture_all(repo) == context(repo, branch, sha)
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == branch


def test_refs_only_in_packed_refs(tmp_path: Path) -> None:
    repo, first = make_repo(tmp_path / "repo")
    git(repo, "tag", "-a", "-m", "release", "v1")
    git(repo, "branch", "feature/x")
    git(repo, "pack-refs", "--all")
    packed = (repo / ".git" / "packed-refs").read_text()
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert f"{first} refs/heads/main" in packed
    assert f"{first} refs/heads/feature/x" in packed

    assert capture_all(repo) == context(repo, "main", first)

    git(repo, "checkout", "-q", "feature/x")
    assert capture_all(repo) == context(repo, "feature/x", first)

    # A new commit writes a loose ref; the stale packed entry must lose to it.
    newer = commit(repo, "after packing")
    assert f"{first} refs/heads/feature/x" in (repo / ".git" / "packed-refs").read_text()
    assert capture_all(repo) == context(repo, "feature/x", newer)


def test_detached_head(tmp_path: Path) -> None:
    repo, first = make_repo(tmp_path / "repo")
    second = commit(repo, "second")

    git(repo, "checkout", "-q", "--detach")
    assert capture_all(repo) == context(repo, DETACHED, second)
    assert DETACHED == "HEAD"

    git(repo, "checkout", "-q", first)
    assert capture_all(repo / ".") == context(repo, DETACHED, first)


@pytest.mark.parametrize("branch", ["trunk", "topic/first"])
def test_repository_without_commits(tmp_path: Path, branch: str) -> None:
    repo = init_repo(tmp_path / "fresh", branch)
    sub = repo / "docs"
    sub.mkdir()

    for where in (repo, sub):
        assert capture_all(where) == context(repo, branch, UNKNOWN)
    assert UNKNOWN == "unknown"


def test_sha256_repository(tmp_path: Path) -> None:
    if git_version() < (2, 29):
        pytest.skip("git older than 2.29 cannot make SHA-256 repositories")
    repo = init_repo(tmp_path / "repo", "main", "--object-format=sha256")
    sha = commit(repo)
    assert HEX64.fullmatch(sha)

    assert capture_all(repo) == context(repo, "main", sha)


# ---------------------------------------------------------------- worktrees


def test_linked_worktrees(tmp_path: Path) -> None:
    main, base = make_repo(tmp_path / "main")
    first = tmp_path / "trees" / "wt"
    second = tmp_path / "more" / "wt"  # same base name: git gives it another admin name
    git(main, "worktree", "add", "-q", "-b", "one", str(first))
    git(main, "worktree", "add", "-q", "-b", "two/2", str(second))
    first_sha = commit(first, "in the first worktree")

    first_name = worktree_admin_name(main, first)
    second_name = worktree_admin_name(main, second)
    assert first_name != second_name

    (first / "deep" / "er").mkdir(parents=True)
    for where in (first, first / "deep" / "er"):
        assert capture_all(where) == context(first, "one", first_sha, first_name)
    assert capture_all(second) == context(second, "two/2", base, second_name)
    assert git(first / "deep", "rev-parse", "--show-toplevel") == str(first)

    # The main checkout is not a worktree, and its HEAD is its own.
    assert capture_all(main) == context(main, "main", base)


def test_detached_worktree(tmp_path: Path) -> None:
    main, base = make_repo(tmp_path / "main")
    commit(main, "second")
    tree = tmp_path / "detached"
    git(main, "worktree", "add", "-q", "--detach", str(tree), base)

    assert capture_all(tree) == context(tree, DETACHED, base, worktree_admin_name(main, tree))


def test_worktree_branch_in_packed_refs(tmp_path: Path) -> None:
    main, _ = make_repo(tmp_path / "main")
    tree = tmp_path / "tree"
    git(main, "worktree", "add", "-q", "-b", "side/work", str(tree))
    sha = commit(tree, "side work")
    git(main, "pack-refs", "--all")
    assert not (main / ".git" / "refs" / "heads" / "side" / "work").exists()

    assert capture_all(tree) == context(tree, "side/work", sha, worktree_admin_name(main, tree))


def test_worktree_with_relative_gitdir_file(tmp_path: Path) -> None:
    main, base = make_repo(tmp_path / "main")
    tree = tmp_path / "tree"
    git(main, "worktree", "add", "-q", "-b", "rel", str(tree))
    name = worktree_admin_name(main, tree)
    (tree / ".git").write_text(f"gitdir: ../main/.git/worktrees/{name}\n")

    assert capture_all(tree) == context(tree, "rel", base, name)


# ---------------------------------------------------------------- .git files that are not worktrees


def test_separate_git_dir_is_not_a_worktree(tmp_path: Path) -> None:
    work = tmp_path / "work"
    store = tmp_path / "store.git"
    work.mkdir()
    git(work, "init", "-q", f"--separate-git-dir={store}")
    git(work, "symbolic-ref", "HEAD", "refs/heads/main")
    sha = commit(work)
    assert (work / ".git").is_file()
    assert not (store / "commondir").exists()

    assert capture_all(work) == context(work, "main", sha)


def test_submodule_is_not_a_worktree(tmp_path: Path) -> None:
    library, library_sha = make_repo(tmp_path / "library")
    parent, _ = make_repo(tmp_path / "parent", "trunk")
    git(parent, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library), "sub")
    sub = parent / "sub"
    assert (sub / ".git").is_file()
    branch = git(sub, "rev-parse", "--abbrev-ref", "HEAD")

    assert capture_all(sub) == context(sub, branch, library_sha)
    assert capture_all(parent).repo_root == str(parent)


# ---------------------------------------------------------------- outside a repository


def test_outside_any_repository_with_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The ceiling keeps git from looking above tmp_path, wherever that is.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    plain = tmp_path / "plain"
    plain.mkdir()

    assert capture_git_context(plain, method="process") == unknown(plain)


def test_outside_any_repository(outside: Path) -> None:
    assert find_toplevel(outside) is None
    assert capture_all(outside) == unknown(outside)


# ---------------------------------------------------------------- unusual paths


def test_path_to_a_file_or_a_directory_not_made_yet(tmp_path: Path) -> None:
    repo, sha = make_repo(tmp_path / "repo")
    readme = repo / "README.md"
    readme.write_text("hello\n")

    assert capture_all(readme) == context(repo, "main", sha)
    assert capture_all(repo / "not" / "made" / "yet") == context(repo, "main", sha)


def test_symlink_to_the_top_level_reports_the_real_path(tmp_path: Path) -> None:
    repo, sha = make_repo(tmp_path / "repo")
    link = tmp_path / "link"
    link.symlink_to(repo, target_is_directory=True)

    assert capture_all(link) == context(repo, "main", sha)
    assert git(link, "rev-parse", "--show-toplevel") == str(repo)


def test_symlink_from_one_repository_into_another(tmp_path: Path) -> None:
    # Git looks for the repository from the physical directory, so a link in
    # ``first`` pointing into ``second`` belongs to ``second``.
    first, _ = make_repo(tmp_path / "first")
    second, second_sha = make_repo(tmp_path / "second", "other")
    (second / "pkg").mkdir()
    (first / "vendor").symlink_to(second / "pkg", target_is_directory=True)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "into").symlink_to(second / "pkg", target_is_directory=True)

    expected = context(second, "other", second_sha)
    assert capture_all(first / "vendor") == expected
    assert capture_all(tmp_path / "plain" / "into") == expected
    assert find_toplevel(first / "vendor") == second


# ---------------------------------------------------------------- reftable


def test_reftable_repository(tmp_path: Path) -> None:
    if git_version() < (2, 45):
        pytest.skip("git older than 2.45 cannot make reftable repositories")
    repo = init_repo(tmp_path / "repo", "main", "--ref-format=reftable")
    commit(repo)
    git(repo, "checkout", "-q", "-b", "feature/table")
    sha = commit(repo, "on the branch")
    assert (repo / ".git" / "reftable").is_dir()
    expected = context(repo, "feature/table", sha)

    # The file reader does not read reftable: it may give up, never guess.
    assert capture_git_context(repo, method="files") in (expected, unknown(repo))
    assert capture_git_context(repo, method="process") == expected
    assert capture_git_context(repo, method="auto") == expected
    assert capture_git_context(repo) == expected


def test_reftable_marker_makes_the_file_reader_give_way(tmp_path: Path) -> None:
    repo, sha = make_repo(tmp_path / "repo")
    (repo / ".git" / "reftable").mkdir()

    assert capture_git_context(repo, method="files") == unknown(repo)
    assert capture_git_context(repo, method="auto") == context(repo, "main", sha)
    assert capture_git_context(repo) == context(repo, "main", sha)


def test_git_dir_in_the_environment_is_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, target_sha = make_repo(tmp_path / "target", "target-branch")
    elsewhere, _ = make_repo(tmp_path / "elsewhere")
    monkeypatch.setenv("GIT_DIR", str(target / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(target))

    expected = context(target, "target-branch", target_sha)
    assert capture_git_context(elsewhere) == expected
    assert capture_git_context(elsewhere, method="process") == expected


# ---------------------------------------------------------------- the manager


def test_create_session_in_a_worktree(tmp_path: Path) -> None:
    main, _ = make_repo(tmp_path / "main")
    tree = tmp_path / "tree"
    git(main, "worktree", "add", "-q", "-b", "session/branch", str(tree))
    sha = commit(tree, "work")
    expected = context(tree, "session/branch", sha, worktree_admin_name(main, tree))

    manager = SessionManager(tree, durable=False)
    session = manager.create_session("add login")
    assert session.git_context == expected
    assert manager.get_session(session.session_id).git_context == expected
    assert (tree / ".flow" / "maestro" / "sessions" / session.session_id).is_dir()


def test_create_session_from_inside_a_worktree_without_a_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    main, base = make_repo(tmp_path / "main")
    tree = tmp_path / "tree"
    git(main, "worktree", "add", "-q", "-b", "cwd-branch", str(tree))
    (tree / "sub").mkdir()
    monkeypatch.chdir(tree / "sub")

    manager = SessionManager(durable=False)
    assert manager.repo_root == main  # one store per repository
    session = manager.create_session("from a subdirectory")
    assert session.git_context == context(tree, "cwd-branch", base, worktree_admin_name(main, tree))
    assert (main / ".flow" / "maestro" / "sessions" / session.session_id).is_dir()


def test_create_session_outside_git(outside: Path) -> None:
    manager = SessionManager(outside, durable=False)
    session = manager.create_session("no repository here")
    assert session.git_context == unknown(outside)
    assert manager.get_session(session.session_id).git_context == unknown(outside)


# ---------------------------------------------------------------- resolve_root


def test_resolve_root_explicit_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, _ = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    monkeypatch.setenv("MAESTRO_ROOT", str(tmp_path / "from-env"))

    assert resolve_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_root("relative") == repo / "sub" / "relative"


def test_resolve_root_environment_comes_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = make_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")

    monkeypatch.setenv("MAESTRO_ROOT", str(tmp_path / "from-env"))
    assert resolve_root() == tmp_path / "from-env"

    monkeypatch.setenv("MAESTRO_ROOT", "")
    assert resolve_root() == repo


def test_resolve_root_git_top_level_of_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, _ = make_repo(tmp_path / "repo")
    deep = repo / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)

    assert resolve_root() == repo
    assert resolve_root() == Path(git(deep, "rev-parse", "--show-toplevel"))


def test_resolve_root_falls_back_to_cwd(outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(outside)
    assert resolve_root() == outside
