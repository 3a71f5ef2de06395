"""Capture the git context of a session: branch, commit, repo root, worktree.

The repository is read directly (``.git``, ``HEAD``, loose refs and
``packed-refs``), which costs a few file reads instead of a process.  When the
repository uses a format this reader does not handle (the reftable ref
backend), or the environment redirects git (``GIT_DIR``), it falls back to a
single ``git rev-parse`` process.

* A linked worktree (``git worktree add``) has a ``.git`` *file* pointing to
  ``<main>/.git/worktrees/<name>``, which holds a ``commondir`` file; its
  ``worktree_name`` is that ``<name>``.  The main checkout is not a worktree,
  and neither is a submodule (its ``.git`` file has no ``commondir``).
* A detached HEAD gives the branch ``HEAD`` (what ``git rev-parse --abbrev-ref
  HEAD`` prints); a branch without commits yet gives the commit ``unknown``.
* Outside a repository, or when git cannot be read, every field is
  ``unknown`` except ``repo_root``, which is the directory asked about.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from maestro.models import GitContext

__all__ = ["DETACHED", "UNKNOWN", "capture_git_context", "find_toplevel"]

UNKNOWN = "unknown"
DETACHED = "HEAD"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_MAX_SYMREF_DEPTH = 5
_GIT_TIMEOUT = 10.0


class _Unreadable(Exception):
    """The repository cannot be read directly; ask git instead."""


def find_toplevel(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` that holds a ``.git`` entry.

    Symbolic links are resolved first, as git looks for the repository from
    the physical directory: a link into another checkout belongs to that one.
    """
    here = Path(os.path.realpath(start))
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def _read_text(path: Path) -> str:
    with path.open("r", encoding="utf-8") as handle:
        return handle.read(4096).strip()


def _locate(toplevel: Path) -> tuple[Path, Path, str | None]:
    """(git dir, common dir, worktree name) for the checkout at ``toplevel``."""
    dotgit = toplevel / ".git"
    if dotgit.is_dir():
        return dotgit, dotgit, None
    text = _read_text(dotgit)
    if not text.startswith("gitdir:"):
        raise _Unreadable
    gitdir = Path(text[len("gitdir:") :].strip())
    if not gitdir.is_absolute():
        gitdir = toplevel / gitdir
    commondir_file = gitdir / "commondir"
    if not commondir_file.exists():
        return gitdir, gitdir, None  # a submodule or a separate git dir, not a worktree
    common = Path(_read_text(commondir_file))
    if not common.is_absolute():
        common = gitdir / common
    return gitdir, common, gitdir.name


def _resolve_ref(ref: str, gitdir: Path, common: Path) -> str | None:
    """The commit a ref points to, or ``None`` when the ref does not exist yet."""
    for _ in range(_MAX_SYMREF_DEPTH):
        value: str | None = None
        for base in (gitdir, common):
            loose = base / ref
            if loose.is_file():
                value = _read_text(loose)
                break
        if value is None:
            value = _packed_ref(ref, common)
        if value is None:
            return None
        if value.startswith("ref:"):
            ref = value[len("ref:") :].strip()
            continue
        if not _SHA.match(value):
            raise _Unreadable
        return value
    raise _Unreadable


def _packed_ref(ref: str, common: Path) -> str | None:
    packed = common / "packed-refs"
    if not packed.is_file():
        return None
    with packed.open("r", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(("#", "^")):
                continue
            sha, _, name = line.rstrip("\n").partition(" ")
            if name == ref:
                return sha
    return None


def _read_directly(toplevel: Path) -> GitContext:
    gitdir, common, worktree = _locate(toplevel)
    if (common / "reftable").exists():
        raise _Unreadable
    head = _read_text(gitdir / "HEAD")
    if head.startswith("ref:"):
        ref = head[len("ref:") :].strip()
        branch = ref.removeprefix("refs/heads/")
        commit = _resolve_ref(ref, gitdir, common) or UNKNOWN
    elif _SHA.match(head):
        branch, commit = DETACHED, head
    else:
        raise _Unreadable
    return GitContext(
        branch=branch or UNKNOWN,
        commit=commit,
        repo_root=str(toplevel),
        is_worktree=worktree is not None,
        worktree_name=worktree,
    )


def _run_git(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT,
        check=False,
    )


def _ask_git(path: Path) -> GitContext | None:
    """One ``git rev-parse`` for everything; ``None`` outside a repository.

    A branch without commits makes ``rev-parse HEAD`` fail after the paths are
    printed; only then a second call asks for the branch name.  Git runs in
    the nearest existing directory, so a file or a directory not made yet is
    placed as the file reader places it.
    """
    try:
        cwd = next((candidate for candidate in (path, *path.parents) if candidate.is_dir()), path)
        result = _run_git(
            cwd,
            "rev-parse",
            "--show-toplevel",
            "--absolute-git-dir",
            "--git-common-dir",
            "HEAD",
            "--symbolic-full-name",
            "HEAD",
        )
        lines = result.stdout.splitlines()
        if len(lines) < 3:
            return None
        toplevel, gitdir_text, common_text = lines[:3]
        if result.returncode == 0 and len(lines) >= 5:
            commit, symbolic = lines[3], lines[4]
        else:
            unborn = _run_git(cwd, "symbolic-ref", "-q", "HEAD")
            commit, symbolic = UNKNOWN, unborn.stdout.strip() or UNKNOWN
    except (OSError, subprocess.SubprocessError):
        return None
    gitdir = Path(gitdir_text)
    common = Path(common_text)
    if not common.is_absolute():
        common = cwd / common  # relative to the directory git ran in
    is_worktree = gitdir.resolve() != common.resolve() and (gitdir / "commondir").exists()
    branch = DETACHED if symbolic == "HEAD" else symbolic.removeprefix("refs/heads/")
    return GitContext(
        branch=branch or UNKNOWN,
        commit=commit or UNKNOWN,
        repo_root=toplevel,
        is_worktree=is_worktree,
        worktree_name=gitdir.name if is_worktree else None,
    )


def _unknown(path: Path) -> GitContext:
    return GitContext(branch=UNKNOWN, commit=UNKNOWN, repo_root=str(path), is_worktree=False)


def capture_git_context(path: str | os.PathLike[str], *, method: str = "auto") -> GitContext:
    """The git context of the checkout containing ``path``.

    ``method`` is ``"auto"`` (read files, fall back to git), ``"files"`` or
    ``"process"`` (always run git); the last two exist for tests.
    """
    where = Path(path).absolute()
    redirected = "GIT_DIR" in os.environ or "GIT_WORK_TREE" in os.environ
    if method == "process" or (method == "auto" and redirected):
        return _ask_git(where) or _unknown(where)
    toplevel = find_toplevel(where)
    if toplevel is None:
        return _unknown(where)
    try:
        return _read_directly(toplevel)
    except (_Unreadable, OSError, UnicodeDecodeError, ValueError):
        if method == "files":
            return _unknown(where)
        return _ask_git(where) or _unknown(where)
