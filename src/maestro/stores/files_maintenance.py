"""Whole-directory maintenance of the file store: ``doctor`` and adoption.

These work on session *directories*, with every file other Maestro parts
keep there, not only on records, so they belong to the file store rather
than to the store-agnostic manager: :class:`FileSessionStore` offers them
as its ``doctor`` and ``adopt_sessions`` methods and imports this module
only when one is called.  Export and import, which share this module's
names and locks, are :mod:`~maestro.stores.files_transfer`.  All of them go
through directory descriptors and refuse to follow symlinks, like the store
itself.

Everything that writes holds a lock ``doctor`` can test without waiting: a
session's writers hold its ``.lock`` (``create`` too), an import holds the
``.lock`` of its staging directory.  ``doctor`` removes a temp file or a
staging directory only when it can take that lock at once: a file whose
writer is alive is never touched, however old it is.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from maestro.errors import (
    CorruptSessionError,
    SessionError,
    SessionNotFoundError,
    StorageError,
    UnsafePathError,
)
from maestro.ids import is_session_id
from maestro.lazylog import LazyLogger
from maestro.models import utcnow
from maestro.reports import DoctorReport, Progress
from maestro.stores.files import (
    LOCK,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    TRASH_PREFIX,
    FileSessionStore,
)
from maestro.stores.index import IndexUnavailable, Signature, row_content

__all__ = ["adopt", "doctor", "find_strays"]

log = LazyLogger("maestro")

#: An import's staging directory, under the sessions directory (``.import-<hex>``).
IMPORT_PREFIX = ".import-"
#: The temp files of earlier importers (``.<name>.<hex>.import.tmp``).
IMPORT_TEMP_SUFFIX = ".import.tmp"
#: Passes at removing an abandoned staging directory (see ``_remove_leftover``).
_REMOVE_ATTEMPTS = 5

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def _noop(done: int, total: int) -> None:
    return None


def _is_temp(name: str) -> bool:
    """A temp file of the record's atomic replace."""
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


@contextlib.contextmanager
def _unless_busy(dir_fd: int, *, create: bool) -> Iterator[bool]:
    """Try the ``.lock`` of a directory without waiting; hold it while the block runs.

    Yields ``False`` when another process holds it (a live writer), ``True``
    when this process now holds it, or when there is no lock file and
    ``create`` is false (no writer can hold a lock that does not exist).
    """
    flags = _LOCK_FLAGS if create else _LOCK_FLAGS & ~os.O_CREAT
    try:
        fd = os.open(LOCK, flags, 0o666, dir_fd=dir_fd)
    except FileNotFoundError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------------- doctor


def doctor(
    store: FileSessionStore,
    *,
    fix: bool = False,
    reindex: bool = False,
    progress: Progress = _noop,
) -> DoctorReport:
    """Check every session directory and the index; with ``fix``, repair.

    Corrupt or unsafe sessions are moved to ``.flow/maestro/quarantine/``
    (never deleted) after a second look under the session's lock; a record
    that cannot be *read* (permissions, I/O errors) is reported and left in
    place.  Temp files, trash and staging directories are removed only when
    the lock their writer holds is free (the writer is gone); store-internal
    names of the wrong kind (a ``.lock`` directory) go to the quarantine too.
    The index is rebuilt.  Directories that only hold other components'
    files (no ``metadata.json``) are listed, never touched.
    """
    report = DoctorReport()
    root_fd = store._open_root(create=False)
    if root_fd is None:
        report.index = "off" if store.index is None else "ok"
        return report
    try:
        try:
            names = sorted(os.listdir(root_fd))
            report.leftovers = [
                n
                for n in names
                if n.startswith((TRASH_PREFIX, IMPORT_PREFIX)) and not _busy(root_fd, n)
            ]
            ids = [n for n in names if is_session_id(n)]
            signatures: dict[str, Signature] = {}
            for number, sid in enumerate(ids, 1):
                _examine(store, root_fd, sid, report, signatures)
                progress(number, len(ids))
        except OSError as error:
            if isinstance(error, SessionError):
                raise
            raise StorageError(None, "checking the sessions", error) from error
        report.index = _index_health(store, root_fd, signatures, report)
        if fix:
            _repair(store, root_fd, report)
            _reindex_stale(store, report)
        if store.index is not None and (fix or reindex):
            store.rebuild_index()
            report.index = "rebuilt"
            report.fixed.append("rebuilt the index")
    finally:
        os.close(root_fd)
    return report


def _busy(root_fd: int, name: str) -> bool:
    """Is the trash or staging directory ``name`` still in a live writer's hands?"""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
    except OSError:
        return False  # gone, or not a directory: nobody's
    try:
        with _unless_busy(fd, create=False) as free:
            return not free
    except OSError:
        return False
    finally:
        os.close(fd)


def _examine(
    store: FileSessionStore,
    root_fd: int,
    sid: str,
    report: DoctorReport,
    signatures: dict[str, Signature],
) -> None:
    try:
        sess_fd = store._open_session(root_fd, sid)
    except UnsafePathError as error:
        report.unsafe[sid] = str(error)
        return
    except SessionNotFoundError:
        return  # gone meanwhile, or a file with a session's name
    except SessionError as error:
        report.unreadable[sid] = str(error)
        return
    try:
        try:
            with os.scandir(sess_fd) as entries:
                kinds = {e.name: e.is_file(follow_symlinks=False) for e in entries}
        except OSError as error:
            report.unreadable[sid] = str(StorageError(sid, "listing the session", error))
            return
        report.misplaced.extend(
            f"{sid}/{name}"
            for name, regular in sorted(kinds.items())
            if (name == LOCK or _is_temp(name)) and not regular
        )
        if any(_is_temp(name) and regular for name, regular in kinds.items()):
            report.temp_files.extend(f"{sid}/{name}" for name in _dead_temp_files(sess_fd))
        try:
            _, signature = store._load_signed(sess_fd, sid)
        except SessionNotFoundError:
            report.without_metadata.append(sid)
            return
        except UnsafePathError as error:
            report.unsafe[sid] = str(error)
            return
        except CorruptSessionError as error:
            report.corrupt[sid] = str(error)
            return
        except SessionError as error:
            # Unreadable is not corrupt: a permission or a failing disk says
            # nothing about the record, which must stay where it is.
            report.unreadable[sid] = str(error)
            return
        report.sessions += 1
        signatures[sid] = signature
    finally:
        os.close(sess_fd)


def _dead_temp_files(sess_fd: int, *, create: bool = False) -> list[str]:
    """The temp files in a session whose writer is gone: listed under its lock, if free.

    Every writer of a session (``create`` included) opens its lock before it
    makes a temp file and holds it while the file exists, so a lock taken
    without waiting proves the files dead; a busy lock means a live writer,
    whose files are none of our business.  Only ``create`` makes a missing
    lock file (to keep a new writer out while files are removed).
    """
    try:
        with _unless_busy(sess_fd, create=create) as free:
            if not free:
                return []
            with os.scandir(sess_fd) as entries:
                return sorted(
                    e.name for e in entries if _is_temp(e.name) and e.is_file(follow_symlinks=False)
                )
    except OSError:
        return []  # the lock cannot be opened: reported as misplaced, if it is ours to say


def _index_health(
    store: FileSessionStore, root_fd: int, signatures: dict[str, Signature], report: DoctorReport
) -> str:
    """Compare every row of the index with its file: signature and content.

    A row whose signature matches can still be stale (a record edited in
    place within one mtime tick, or its mtime put back), so each file is read
    again and the row's columns compared with what the record gives.  A
    session being written meanwhile (pending, or its file changed since it
    was read) is not counted.  The stale sessions are listed in
    ``report.stale_rows``.
    """
    index = store.index
    if index is None:
        return "off"
    if not index.path.exists():
        return "missing (built by the next query)"
    try:
        pending = set(index.pending())
        compared: dict[str, Signature | None] = {}
        extra = 0
        seen: set[str] = set()
        for sid, signature, content in index.contents():
            seen.add(sid)
            if sid not in signatures:
                extra += 1
            elif sid not in pending and not _row_matches(store, root_fd, sid, signature, content):
                compared[sid] = signature
        compared.update((sid, None) for sid in signatures if sid not in seen)
        if compared:
            # A row a writer stored since it was compared is not stale.
            now = index.known()
            pending = set(index.pending())
            for sid in list(compared):
                row = now.get(sid)
                if sid in pending or (row.signature if row else None) != compared[sid]:
                    del compared[sid]
        stale = list(compared)
        search_ok = index.search_consistent()
    except IndexUnavailable as error:
        return f"unavailable ({error})"
    report.stale_rows = sorted(stale)
    problems = []
    if stale:
        shown = ", ".join(report.stale_rows[:5]) + (", ..." if len(stale) > 5 else "")
        problems.append(f"{len(stale)} session(s) missing or outdated ({shown})")
    if extra:
        problems.append(f"{extra} row(s) without a readable session")
    # A pending mark whose writer still holds the lock is a write in flight.
    interrupted = [sid for sid in pending if not _busy(root_fd, sid)]
    if interrupted:
        problems.append(f"{len(interrupted)} interrupted write(s)")
    if not search_ok:
        problems.append("the full-text index disagrees with the rows")
    if (store.sessions_dir.parent / "index.stale").exists():
        problems.append("marked stale")
    return "stale: " + "; ".join(problems) if problems else "ok"


def _row_matches(
    store: FileSessionStore,
    root_fd: int,
    sid: str,
    signature: Signature,
    content: tuple[object, ...],
) -> bool:
    """Whether an index row is the one its file gives (or the file is being replaced)."""
    outcome = store._read_for_index(root_fd, sid)
    if not isinstance(outcome, tuple):
        return True  # gone or unreadable since examined: counted elsewhere
    session, on_disk = outcome
    if on_disk == signature and row_content(session) == content:
        return True
    # A writer may have replaced the file since the row was fetched: only a
    # file that stayed as read makes the row stale.
    return store._current(root_fd)(sid) != on_disk


def _reindex_stale(store: FileSessionStore, report: DoctorReport) -> None:
    """Re-read the files of the stale rows into the index."""
    if store.index is None or not report.stale_rows:
        return
    try:
        store.reindex(report.stale_rows)
    except (IndexUnavailable, SessionError) as error:
        log.warning("could not reindex the stale rows: %s", error)
        return
    report.fixed.append(f"reindexed {len(report.stale_rows)} stale row(s)")
    report.resolved.update(report.stale_rows)


def _repair(store: FileSessionStore, root_fd: int, report: DoctorReport) -> None:
    quarantine = store.sessions_dir.parent / "quarantine"
    if (report.corrupt or report.unsafe) and quarantine.is_symlink():
        # Moving sessions into a link would move them wherever it points.
        raise UnsafePathError(None, f"{quarantine} is a symlink; nothing was quarantined")
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")

    def make_quarantine() -> Path:
        try:
            quarantine.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(None, "creating the quarantine directory", error) from error
        return quarantine

    # The lock first: with a ``.lock`` directory nothing else can be locked.
    for relative in sorted(report.misplaced, key=lambda r: not r.endswith(f"/{LOCK}")):
        outcome = _set_aside(store, root_fd, relative, make_quarantine, stamp)
        if outcome is not None:
            report.fixed.append(outcome)
            report.resolved.add(relative)
    for sid in [*report.corrupt, *report.unsafe]:
        outcome = _quarantine(store, root_fd, sid, sid in report.unsafe, make_quarantine, stamp)
        if outcome is None:
            continue
        if outcome.startswith("unreadable: "):
            report.unreadable[sid] = outcome.removeprefix("unreadable: ")
            continue
        report.fixed.append(outcome)
        report.resolved.add(sid)
    for relative in report.temp_files:
        sid, name = relative.split("/", 1)
        try:
            sess_fd = store._open_session(root_fd, sid)
        except SessionError:
            continue
        try:
            with _unless_busy(sess_fd, create=True) as free:
                if not free:
                    continue  # a writer took the lock since: its files are its own
                with contextlib.suppress(FileNotFoundError):
                    info = os.stat(name, dir_fd=sess_fd, follow_symlinks=False)
                    if not stat.S_ISREG(info.st_mode):
                        continue
                    os.unlink(name, dir_fd=sess_fd)
        except OSError as error:
            log.warning("could not remove %s: %s", relative, error)
            continue
        finally:
            os.close(sess_fd)
        report.fixed.append(f"removed {relative}")
        report.resolved.add(relative)
    live = []
    for name in report.leftovers:
        removed = _remove_leftover(store, root_fd, name)
        if removed is None:
            live.append(name)
        elif removed:
            report.fixed.append(f"removed {name}")
            report.resolved.add(name)
    report.leftovers = [name for name in report.leftovers if name not in live]


def _quarantine(
    store: FileSessionStore,
    root_fd: int,
    sid: str,
    unsafe: bool,
    make_quarantine: Callable[[], Path],
    stamp: str,
) -> str | None:
    """Move a corrupt or unsafe session aside, after looking again under its lock.

    What was found may have changed since (a session repaired by an import,
    a record that cannot be *read* rather than a bad one): only what is
    still corrupt or unsafe now moves.  Returns what was done, ``None`` when
    nothing could be, or "unreadable: why" for a record that could not be read.
    """
    try:
        entry = os.stat(sid, dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        return f"{sid} is gone"
    except OSError as error:
        log.warning("could not quarantine %s: %s", sid, error)
        return None
    target = make_quarantine() / f"{sid}-{stamp}"
    moved = f"quarantined {sid} to {target.relative_to(store.sessions_dir.parent)}"
    if stat.S_ISLNK(entry.st_mode):
        try:
            os.rename(sid, target, src_dir_fd=root_fd)  # moves the link, not its target
        except OSError as error:
            log.warning("could not quarantine %s: %s", sid, error)
            return None
        return moved
    try:
        with store._locked(sid) as (_, sess_fd):
            try:
                store._load_at(sess_fd, sid)
                return f"{sid} is readable again; left in place"
            except (CorruptSessionError, UnsafePathError):
                pass  # still what it was: move it
            except SessionNotFoundError:
                if unsafe:
                    return f"{sid} has no record any more; left in place"
                pass  # the record became a non-file, or went: corrupt still
            except SessionError as error:
                return f"unreadable: {error}"
            try:
                os.rename(sid, target, src_dir_fd=root_fd)
            except OSError as error:
                log.warning("could not quarantine %s: %s", sid, error)
                return None
            return moved
    except UnsafePathError:
        # the lock itself is a link (found as misplaced, set aside first when it was)
        log.warning("could not quarantine %s: its lock is unsafe", sid)
        return None
    except SessionNotFoundError:
        return f"{sid} is gone"
    except (OSError, SessionError) as error:
        log.warning("could not quarantine %s: %s", sid, error)
        return None


def _set_aside(
    store: FileSessionStore,
    root_fd: int,
    relative: str,
    make_quarantine: Callable[[], Path],
    stamp: str,
) -> str | None:
    """Move a store-internal name of the wrong kind out of a session, into the quarantine."""
    sid, name = relative.split("/", 1)
    try:
        sess_fd = store._open_session(root_fd, sid)
    except SessionError as error:
        log.warning("could not set %s aside: %s", relative, error)
        return None
    try:
        target = make_quarantine() / f"{sid}-{stamp}{name}"

        def move() -> str | None:
            try:
                info = os.stat(name, dir_fd=sess_fd, follow_symlinks=False)
            except FileNotFoundError:
                return f"{relative} is gone"
            if stat.S_ISREG(info.st_mode):
                return f"{relative} is a plain file again; left in place"
            os.rename(name, target, src_dir_fd=sess_fd)
            return f"moved {relative} to {target.relative_to(store.sessions_dir.parent)}"

        if name == LOCK:
            # Nobody can hold a lock that is not a file, and the next writer
            # makes a new one once this is gone.
            return move()
        with store._locked(sid):
            return move()
    except (OSError, SessionError) as error:
        if isinstance(error, StorageError) and error.session_id is None:
            raise  # the quarantine cannot be made
        log.warning("could not set %s aside: %s", relative, error)
        return None
    finally:
        os.close(sess_fd)


def _remove_leftover(store: FileSessionStore, root_fd: int, name: str) -> bool | None:
    """Remove a trash or staging directory whose writer is gone; ``True`` once it is.

    ``None`` when a writer holds its lock after all (an import caught between
    its ``mkdir`` and its lock when the check ran): it is no leftover.
    """
    try:
        info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    except OSError as error:
        log.warning("could not remove %s: %s", name, error)
        return False
    if not stat.S_ISDIR(info.st_mode):
        try:
            os.unlink(name, dir_fd=root_fd)  # a link or a file with our prefix: never followed
        except OSError as error:
            log.warning("could not remove %s: %s", name, error)
            return False
        return True
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
    except OSError as error:
        log.warning("could not remove %s: %s", name, error)
        return False
    try:
        # A staging directory's lock is made if missing, so that an import
        # still between its mkdir and its lock finds it taken and starts over.
        with _unless_busy(fd, create=name.startswith(IMPORT_PREFIX)) as free:
            if not free:
                return None  # its writer is alive
            doomed = name
            if name.startswith(IMPORT_PREFIX):
                # Out of the importer's name first: one that took the lock
                # just before us sees its directory gone and starts over.
                doomed = f"{TRASH_PREFIX}{name.removeprefix('.')}-{secrets.token_hex(4)}"
                os.rename(name, doomed, src_dir_fd=root_fd, dst_dir_fd=root_fd)
            # An importer that opened the directory before the rename may
            # still make its lock file in it once, before it sees the rename
            # and starts over elsewhere: a second pass removes that.
            for _ in range(_REMOVE_ATTEMPTS):
                shutil.rmtree(store.sessions_dir / doomed, ignore_errors=True)
                if not (store.sessions_dir / doomed).exists():
                    return True
                time.sleep(0.01)
            return False
    except OSError as error:
        log.warning("could not remove %s: %s", name, error)
        return False
    finally:
        os.close(fd)


# ---------------------------------------------------------------- sessions of another store


@dataclass
class Stray:
    """A session directory found in another file store (a linked worktree's own)."""

    session_id: str
    path: Path
    #: The same id is in this store too: reported, never overwritten.
    duplicate: bool


def find_strays(store: FileSessionStore, sessions_dir: Path) -> list[Stray]:
    """The session directories of ``sessions_dir``, a store other than ``store``.

    Links are not followed: a ``.flow``, ``.flow/maestro``, ``sessions`` or
    session directory that is one is left out, as the store would refuse it.
    """
    for path in (sessions_dir.parent.parent, sessions_dir.parent, sessions_dir):
        if path.is_symlink():
            return []
    try:
        names = sorted(os.listdir(sessions_dir))
    except OSError:
        return []
    strays = []
    for name in names:
        path = sessions_dir / name
        if not is_session_id(name) or path.is_symlink() or not path.is_dir():
            continue
        duplicate = os.path.lexists(store.sessions_dir / name)
        strays.append(Stray(name, path, duplicate))
    return strays


def adopt(store: FileSessionStore, stray: Stray) -> bool:
    """Move a stray session directory, whole, into ``store``; ``True`` once moved.

    The session's lock in its old place is held while it moves, so a writer
    there finishes first or finds it gone; a session whose lock is taken is
    left for the next run.  Across file systems it is copied into a staging
    directory (which ``doctor`` clears if this is interrupted) and renamed
    into place before the original is removed: at every moment one whole
    copy exists.  The index learns it from the ``doctor`` run that follows.
    """
    if stray.duplicate:
        return False
    target = store.sessions_dir / stray.session_id
    root_fd = store._open_root(create=True)  # made as a create makes it, links refused
    if root_fd is not None:
        os.close(root_fd)
    try:
        lock_fd = os.open(
            stray.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
        )
    except OSError:
        return False
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a writer has it now
        if os.path.lexists(target):
            return False
        try:
            os.rename(stray.path, target)
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            staging = store.sessions_dir / f"{IMPORT_PREFIX}adopt-{secrets.token_hex(6)}"
            try:
                shutil.copytree(stray.path, staging, symlinks=True)
                os.rename(staging, target)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            shutil.rmtree(stray.path)
        if store.durable:
            for directory in (store.sessions_dir, stray.path.parent):
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return True
    finally:
        os.close(lock_fd)
