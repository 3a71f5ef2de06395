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
* Every git file is opened non-blocking and must be a regular file of a
  bounded size: a ``.git``, ``HEAD``, ``commondir`` or ref that is a FIFO, a
  device, a directory or absurdly large makes the whole context ``unknown``
  at once.  No git process is asked then, since it could block on the same
  file.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from maestro.models import GitContext

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess

__all__ = [
    "DETACHED",
    "UNKNOWN",
    "capture_git_context",
    "describe_branch",
    "find_repository_root",
    "find_toplevel",
    "linked_worktrees",
]

UNKNOWN = "unknown"
DETACHED = "HEAD"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_MAX_SYMREF_DEPTH = 5
_GIT_TIMEOUT = 10.0
#: ``.git`` files, ``HEAD``, ``commondir`` and loose refs hold one short line.
_MAX_SMALL_FILE = 4096
#: ``packed-refs`` grows with the number of refs; far above any real one.
_MAX_PACKED_REFS = 256 * 1024 * 1024
# O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOCTTY: opening a
# terminal device must not make it ours.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class _Unreadable(Exception):
    """The repository cannot be read directly; ask git instead."""


class _OddFile(Exception):
    """A git file is not a regular file of a sane size; the context is unknown."""


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


def describe_branch(git: GitContext) -> str:
    """Where a session was made, for people: the branch, as ``git status`` words it.

    A detached HEAD reads ``(detached at <short commit>)`` and a branch
    without commits ``<branch> (no commits)``; the record itself keeps the
    prototype's strings (``HEAD``, ``unknown``).  Unknown stays ``unknown``.
    """
    if git.branch == DETACHED and git.commit != UNKNOWN:
        return f"(detached at {git.commit[:7]})"
    if git.branch == DETACHED:
        return "(detached)"
    if git.commit == UNKNOWN and git.branch != UNKNOWN:
        return f"{git.branch} (no commits)"
    return git.branch


def find_repository_root(start: Path) -> Path | None:
    """The directory that holds the repository of ``start``: one per repository.

    The main checkout (the worktree whose ``.git`` is the common git
    directory) from any linked worktree or subdirectory; for a bare
    repository, the directory that holds it.  ``None`` outside a repository.
    A layout this reader cannot follow (a separate git directory, an odd
    file) gives the checkout ``start`` is in, as before.
    """
    here = Path(os.path.realpath(start))
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            try:
                _, common, _ = _locate(candidate)
                holder = _common_holder(common.resolve())
            except (_Unreadable, _OddFile, OSError, UnicodeDecodeError, ValueError):
                return candidate
            return holder if holder is not None and holder.is_dir() else candidate
        if _is_bare(candidate):
            return candidate.parent
    return None


def linked_worktrees(checkout: Path) -> list[Path]:
    """The linked worktrees of the repository whose checkout is ``checkout``.

    Read from ``<common git dir>/worktrees/<name>/gitdir``, which names each
    worktree's ``.git`` file; worktrees whose directory is gone are left out.
    """
    try:
        _, common, _ = _locate(checkout)
        admin = sorted((common / "worktrees").iterdir())
    except (_Unreadable, _OddFile, OSError, UnicodeDecodeError, ValueError):
        return []
    found = []
    for entry in admin:
        try:
            text = _read_optional(entry / "gitdir")
        except (_OddFile, OSError, UnicodeDecodeError):
            continue
        if not text:
            continue
        dotgit = Path(text)
        if not dotgit.is_absolute():
            dotgit = entry / dotgit
        if dotgit.parent.is_dir():
            found.append(dotgit.parent)
    return found


def _common_holder(common: Path) -> Path | None:
    """The directory sessions of the repository whose common git dir is ``common`` live in."""
    if common.name == ".git":
        return common.parent
    if _is_bare(common):
        return common.parent
    return None


def _is_bare(directory: Path) -> bool:
    """Whether ``directory`` is a bare repository (``core.bare = true`` in its config)."""
    if not (directory / "HEAD").is_file() or not (directory / "objects").is_dir():
        return False
    try:
        config = _read_bytes(directory / "config", _MAX_SMALL_FILE * 16).decode("utf-8")
    except (_OddFile, OSError, UnicodeDecodeError):
        return False
    section = ""
    for raw in config.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]").strip().lower()
        elif section == "core":
            key, _, value = line.partition("=")
            if key.strip().lower() == "bare":
                return value.strip().lower() in ("true", "yes", "on", "1")
    return False


def _read_bytes(path: Path, limit: int) -> bytes:
    """The contents of a regular file of at most ``limit`` bytes, never blocking.

    ``FileNotFoundError`` when it does not exist; ``_OddFile`` when it is
    anything but a regular file (checked on the open descriptor, so a swap
    after a ``stat`` cannot slip a FIFO in) or larger than ``limit``.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise _OddFile
        chunks: list[bytes] = []
        size = 0
        # Read one byte past the limit: a file that grew since fstat is odd too.
        while chunk := os.read(fd, limit + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _OddFile
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_text(path: Path) -> str:
    return _read_bytes(path, _MAX_SMALL_FILE).decode("utf-8").strip()


def _read_optional(path: Path) -> str | None:
    """The text of ``path``, or ``None`` when it does not exist."""
    try:
        return _read_text(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


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
    commondir = _read_optional(gitdir / "commondir")
    if commondir is None:
        return gitdir, gitdir, None  # a submodule or a separate git dir, not a worktree
    common = Path(commondir)
    if not common.is_absolute():
        common = gitdir / common
    return gitdir, common, gitdir.name


def _resolve_ref(ref: str, gitdir: Path, common: Path) -> str | None:
    """The commit a ref points to, or ``None`` when the ref does not exist yet."""
    for _ in range(_MAX_SYMREF_DEPTH):
        value: str | None = None
        for base in (gitdir, common):
            value = _read_optional(base / ref)
            if value is not None:
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
    try:
        text = _read_bytes(common / "packed-refs", _MAX_PACKED_REFS).decode("utf-8")
    except FileNotFoundError:
        return None
    for line in text.split("\n"):
        if line.startswith(("#", "^")):
            continue
        sha, _, name = line.partition(" ")
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
    """Run git; a timeout or another failure to run it is an ``OSError``."""
    import subprocess  # only when git is asked: reading sessions never does

    try:
        return subprocess.run(
            ["git", *args],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except subprocess.SubprocessError as error:
        raise OSError(f"git {args[0]}: {error}") from error


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
    except OSError:  # git missing or refused, or timed out (see _run_git)
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
    except _OddFile:
        return _unknown(where)
    except (_Unreadable, OSError, UnicodeDecodeError, ValueError):
        if method == "files":
            return _unknown(where)
        return _ask_git(where) or _unknown(where)
