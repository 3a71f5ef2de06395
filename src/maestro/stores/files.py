"""The embedded default store: one JSON file per session.

Layout::

    <root>/.flow/maestro/sessions/
        <session-id>/
            metadata.json       the record (pretty JSON), replaced atomically
            .lock               the session's inter-process lock (flock)
            checkpoints.json    ... files of other Maestro parts, never touched

Durability: every record is written to a temp file in the session directory,
flushed and fsynced, renamed over ``metadata.json`` and followed by an fsync of
the directory (without it a rename can vanish after power loss; Pillai et al.,
OSDI 2014).  A new session directory is followed by an fsync of
``sessions/``.  Temp files start with a dot, so they are never taken for
sessions, and a failed write removes its own.

Concurrency: every read-modify-write holds an exclusive ``flock`` on the
session's ``.lock`` file and re-reads the record after taking it.  ``flock``
(not ``fcntl`` record locks, which drop when *any* descriptor of the file is
closed) belongs to the open file description, so it works between threads as
well as processes.  The lock file is never unlinked while the session exists;
``delete`` renames the directory away under the lock, and a waiter that then
gets the lock checks that the directory it locked is still the session's and
starts over if not.

Safety: ids are canonical UUIDs before they reach the filesystem, and all
access below ``sessions/`` goes through directory descriptors with
``O_NOFOLLOW``: a session directory or ``metadata.json`` that is a symlink is
refused, never followed, and a name can never resolve outside the root.
Above it, no directory between the store's base (for a manager, the root
holding ``.flow``) and ``sessions/`` may be a symlink: a ``.flow``,
``.flow/maestro`` or ``sessions`` that is one (a cloned repository can commit
one) is refused before anything is read or made through it, unless
``allow_symlinked_root`` or ``$MAESTRO_ALLOW_SYMLINKED_ROOT=1`` says to
follow it.

The store's modules, by concern: this one (layout, locks, the contract's
reads and writes), :mod:`~maestro.stores.files_freshness` (how the derived
index answers and stays in step with the files), :mod:`~maestro.stores.index`
(the SQLite side of that index), :mod:`~maestro.stores.files_fill` (filling
an empty index on every core), :mod:`~maestro.stores.files_transfer` (export
and import) and :mod:`~maestro.stores.files_maintenance` (adoption and
``doctor``).
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from maestro.codec import (
    FEW_RECORDS,
    decode_record,
    encode_record,
    encode_record_and_dict,
    expect_many,
    loads,
)
from maestro.errors import (
    ConflictError,
    CorruptSessionError,
    LockTimeoutError,
    SessionError,
    SessionExistsError,
    SessionNotFoundError,
    SessionValidationError,
    StorageError,
    UnsafePathError,
    UnsupportedOperationError,
)
from maestro.ids import check_session_id, is_session_id
from maestro.lazylog import LazyLogger
from maestro.models import SCHEMA_VERSION, Session, session_from_owned_record
from maestro.records import replace
from maestro.stores.files_freshness import IndexedAnswers
from maestro.stores.files_layout import METADATA, _close
from maestro.stores.kinds import (
    Capability,
    ChangeKind,
    Transform,
    apply_change,
    check_request_id_type,
)
from maestro.stores.signatures import (
    DEFAULT_RETENTION,
    IndexUnavailable,
    Signature,
)

#: Set by type checkers only: :mod:`typing` is not loaded to start a command.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from maestro.reports import AdoptResult, DoctorReport, ExportResult, ImportResult, Progress
    from maestro.stores.base import ChangeEvent, ScanEntry, SessionQuery
    from maestro.stores.index import SessionIndex


def boot_id() -> str:
    """The running boot's id (:func:`maestro.stores.index.boot_id`), asked only with the index."""
    from maestro.stores import index

    return index.boot_id()


__all__ = [
    "ALLOW_SYMLINKED_ROOT",
    "FEED_RETENTION",
    "METADATA",
    "PENDING_WAIT",
    "FileSessionStore",
    "decode_record",
    "encode_record",
]

log = LazyLogger("maestro")

LOCK = ".lock"
TEMP_PREFIX = f".{METADATA}."
TEMP_SUFFIX = ".tmp"
#: The temp file of a record write.  One name is enough, as writes to a
#: session hold its lock; a file of that name found by a writer was left by
#: a writer that was killed, and is removed then (and by ``doctor``).
WRITE_TEMP = f"{TEMP_PREFIX}write{TEMP_SUFFIX}"
TRASH_PREFIX = ".trash-"
INDEX_FILE = "index.sqlite3"
#: Beside ``sessions/``: one reservation file per create key (see ``create``).
REQUESTS_DIR = "requests"
STALE_MARKER = "index.stale"
TRASH_MARKER = "trash.pending"
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: Beside ``sessions/``: keeps what the store derives or holds only while it
#: works out of ``git status``.  Session records are not listed: whether to
#: commit them is the user's choice.
GITIGNORE = ".gitignore"
GITIGNORE_TEXT = """\
# Written once by maestro (edit freely; it is never overwritten).
# Derived or transient files of the session store.  Session records
# (sessions/*/metadata.json) are not listed: commit them or not, as you choose.
/.gitignore
/index.sqlite3
/index.sqlite3-*
/index.stale
/trash.pending
/requests/
/quarantine/
/sessions/*/.lock
/sessions/.trash-*/
/sessions/.import-*/
.*.tmp
*.import.tmp
"""
#: Set to ``1`` to let a store be reached through symlinked directories.
ALLOW_SYMLINKED_ROOT = "MAESTRO_ALLOW_SYMLINKED_ROOT"
#: The longest a query waits, in total, for the locks of sessions whose
#: writers have not finished (seconds).  A session still locked after that
#: is answered from its index row, its last committed state, with a warning.
PENDING_WAIT = 1.0
#: How many of the newest change events to keep, when ``feed_retention`` is
#: not given (default :data:`~maestro.stores.index.DEFAULT_RETENTION`); 0
#: turns the change feed off.
FEED_RETENTION = "MAESTRO_FEED_RETENTION"
#: How often a reader of the change feed looks for news (seconds): soon
#: after a change, then less often while nothing happens, so that a reader
#: of a busy store hears of a write within milliseconds and an idle one
#: costs well under 1 % of a core.
FEED_POLL = (0.01, 0.05)
#: How often it also looks for what makes no commit: a killed writer's
#: pending mark, an index that fell behind (seconds).
FEED_RECHECK = 0.25

#: Held while a store makes its index object (once per store).
_INDEX_MADE = _thread.allocate_lock()  # threading.Lock, without loading threading

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR = _DIR_FLAGS | os.O_NOFOLLOW
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def write_gitignore(directory: Path, *, durable: bool = True) -> bool:
    """Write ``directory/.gitignore`` unless a file of that name exists; ``True`` if written.

    Atomic and never clobbering: the text goes to a temp file that is then
    hard-linked to the name, which fails if the name exists (a user's edited
    file, or another process that was first).  It is a convenience, so a
    failure to write it is not an error.
    """
    temp = directory / f".{GITIGNORE}.{os.urandom(6).hex()}{TEMP_SUFFIX}"
    try:
        if os.path.lexists(directory / GITIGNORE):
            return False
        with open(temp, "x", encoding="utf-8") as handle:
            handle.write(GITIGNORE_TEXT)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        try:
            os.link(temp, directory / GITIGNORE, follow_symlinks=False)
        except FileExistsError:
            return False
        if durable:
            dir_fd = os.open(directory, _DIR_FLAGS)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return True
    except OSError as error:
        log.debug("could not write %s: %s", directory / GITIGNORE, error)
        return False
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()


class NotDurableError(OSError):
    """The new file is in place, but the directory fsync after the rename failed."""


def replace_file(
    dir_fd: int, name: str, data: bytes, *, temp: str, durable: bool
) -> os.stat_result:
    """Put ``data`` at ``name`` in ``dir_fd`` atomically; the new file's ``stat``.

    Temp file in the same directory, written in full, fsynced, renamed over
    ``name``, then the directory fsynced (without it the rename itself can be
    lost in a power cut).  An ``OSError`` means nothing changed and the temp
    file is gone; :class:`NotDurableError` means the new file is in place but
    its rename was not confirmed durable.
    """
    try:
        fd = os.open(temp, _TEMP_FLAGS, 0o666, dir_fd=dir_fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
            info = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    if durable:
        try:
            os.fsync(dir_fd)
        except OSError as error:
            raise NotDurableError(error.errno, error.strerror) from error
    return info


def _same_file(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


class FileSessionStore(IndexedAnswers):
    """Sessions as ``<sessions_dir>/<id>/metadata.json`` (see the module docstring).

    ``lock_timeout`` bounds how long a writer waits for another one;
    ``durable=False`` skips the fsyncs (tests and throw-away stores only);
    ``index=False`` answers every query by reading all the files instead of
    keeping the SQLite index beside them (see :mod:`maestro.stores.index`);
    ``pending_wait`` bounds the time a query waits, in total, for writers
    still holding the locks of sessions it must bring up to date
    (:data:`PENDING_WAIT`, one second).
    ``feed_retention`` is how many of the newest change events the index
    keeps (default ``$MAESTRO_FEED_RETENTION``, else 100,000; 0 keeps none
    and turns the change feed off); without the index there is no feed.

    ``base`` is a directory above ``sessions_dir`` (default: its parent): no
    directory from there down to ``sessions_dir`` may be a symlink, unless
    ``allow_symlinked_root`` is true (default: ``$MAESTRO_ALLOW_SYMLINKED_ROOT``
    is ``1``).  ``base`` itself may be one: it is where the caller chose to be.
    """

    def __init__(
        self,
        sessions_dir: str | os.PathLike[str],
        *,
        lock_timeout: float = 10.0,
        durable: bool = True,
        index: bool = True,
        base: str | os.PathLike[str] | None = None,
        allow_symlinked_root: bool | None = None,
        pending_wait: float = PENDING_WAIT,
        feed_retention: int | None = None,
    ) -> None:
        self.sessions_dir = Path(sessions_dir).absolute()
        retention = _retention(feed_retention)
        self.base = Path(base).absolute() if base is not None else self.sessions_dir.parent
        try:
            self._below_base = self.sessions_dir.relative_to(self.base).parts
        except ValueError:
            raise SessionValidationError(f"{self.sessions_dir} is not below {self.base}") from None
        # As strings, made once: every open of ``sessions/`` checks them.
        self._sessions_path = str(self.sessions_dir)
        self._guarded_paths = [
            str(self.base.joinpath(*self._below_base[: depth + 1]))
            for depth in range(len(self._below_base))
        ]
        if allow_symlinked_root is None:
            allow_symlinked_root = os.environ.get(ALLOW_SYMLINKED_ROOT) == "1"
        self.allow_symlinked_root = allow_symlinked_root
        self.lock_timeout = lock_timeout
        self.durable = durable
        self.pending_wait = pending_wait
        self._index_retention = retention if index else None
        self._index: SessionIndex | None = None
        self._fallback_warned = False
        #: The bytes this object last wrote for each of a few sessions: a
        #: file still holding them was checked when encoded, so reading it
        #: back under the lock skips the second check (see ``_load_signed``).
        self._written: dict[str, bytes] = {}
        self._trash_left = False
        self._made_sessions_dir = False
        # The index's generation and the directory key at which a refresh last
        # found the index in step with nothing to repair (see _refresh).
        self._in_step: tuple[int, str] | None = None
        self._stale_path = str(self.sessions_dir.parent / STALE_MARKER)
        offered = {
            Capability.PREFIX_LOOKUP,
            Capability.DOCTOR,
            Capability.DIRECTORY_EXPORT,
            Capability.MULTI_PROCESS,
        }
        if index:
            offered |= {Capability.REINDEX, Capability.STAMPED_QUERIES}
            if retention > 0:
                offered |= {Capability.CHANGES}
        self.capabilities: frozenset[Capability] = frozenset(offered)

    display_name = "file store"

    @property
    def index(self) -> SessionIndex | None:
        """The derived SQLite index (``None`` with ``index=False``).

        Made at its first use, so that reading one session never loads
        :mod:`sqlite3`.
        """
        if self._index is None and self._index_retention is not None:
            with _INDEX_MADE:
                if self._index is None:
                    from maestro.stores.index import SessionIndex

                    self._index = SessionIndex(
                        self.sessions_dir.parent / INDEX_FILE,
                        timeout=self.lock_timeout,
                        sessions_dir=self.sessions_dir,
                        retention=self._index_retention,
                    )
        return self._index

    def __repr__(self) -> str:
        return f"FileSessionStore({str(self.sessions_dir)!r})"

    # ------------------------------------------------------------ descriptors

    def _open_root(self, *, create: bool) -> int | None:
        """A descriptor of ``sessions/``; ``None`` if it does not exist and not ``create``.

        Unless symlinks are allowed, every directory below ``base`` is checked
        not to be a symlink before anything is made, ``sessions/`` is opened
        with ``O_NOFOLLOW``, and the check is repeated after the open, which
        must have reached the very directory now found without links.
        """
        guarded = not self.allow_symlinked_root and bool(self._below_base)
        flags = _NOFOLLOW_DIR if guarded else _DIR_FLAGS
        # Only a create needs the check before the open, as it may make
        # directories (through a link, they would be made elsewhere); any
        # other descriptor is checked below before it is used.
        fd = self._open_sessions_dir(flags, create=create, guarded=guarded)
        if fd is not None and guarded:
            try:
                self._refuse_symlinks()
                on_disk = os.stat(self._sessions_path, follow_symlinks=False)
                if not _same_file(on_disk, os.fstat(fd)):
                    raise UnsafePathError(None, f"{self.sessions_dir} changed while it was opened")
            except FileNotFoundError as error:
                os.close(fd)
                raise StorageError(None, f"opening {self.sessions_dir}", error) from error
            except BaseException:
                os.close(fd)
                raise
        return fd

    def _refuse_symlinks(self) -> None:
        """Raise ``UnsafePathError`` naming the first symlink between ``base`` and ``sessions/``."""
        for path in self._guarded_paths:
            try:
                info = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                return  # nothing below exists yet
            except OSError as error:
                raise StorageError(None, f"opening {path}", error) from error
            if stat.S_ISLNK(info.st_mode):
                raise UnsafePathError(
                    None,
                    f"{path} is a symlink; the store is not reached through links "
                    f"(set {ALLOW_SYMLINKED_ROOT}=1 to follow them)",
                )

    def _open_sessions_dir(self, flags: int, *, create: bool, guarded: bool) -> int | None:
        try:
            return os.open(self._sessions_path, flags)
        except FileNotFoundError:
            if guarded:  # a dangling link is refused, not taken for an empty store
                self._refuse_symlinks()
            if not create:
                return None
        except OSError as error:
            if guarded or error.errno == errno.ELOOP:
                self._refuse_symlinks()  # ELOOP, or ENOTDIR for a link to a file
            raise StorageError(None, f"opening {self.sessions_dir}", error) from error
        try:
            missing = [p for p in (self.sessions_dir, *self.sessions_dir.parents) if not p.exists()]
            self.sessions_dir.mkdir(parents=True, exist_ok=True)
            if self.durable and missing:
                self._fsync_path(missing[-1].parent)
            fd = os.open(self.sessions_dir, flags)
        except OSError as error:
            raise StorageError(None, f"creating {self.sessions_dir}", error) from error
        if self._in_repository_layout():
            self._made_sessions_dir = True  # the next create writes the .gitignore
        return fd

    def _in_repository_layout(self) -> bool:
        """Whether ``sessions/`` is ``<root>/.flow/maestro/sessions``, where git may look."""
        return self._below_base == (".flow", "maestro", "sessions")

    def _fsync_path(self, directory: Path) -> None:
        fd = os.open(directory, _DIR_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _open_session(self, root_fd: int, session_id: str) -> int:
        """A descriptor of the session's directory, refusing symlinks."""
        try:
            return os.open(session_id, _NOFOLLOW_DIR, dir_fd=root_fd)
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                try:
                    info = os.stat(session_id, dir_fd=root_fd, follow_symlinks=False)
                except FileNotFoundError:
                    raise SessionNotFoundError(session_id) from None
                if stat.S_ISLNK(info.st_mode):
                    raise UnsafePathError(
                        session_id, "the session directory is a symlink"
                    ) from None
                raise SessionNotFoundError(session_id, "not a directory") from None
            raise StorageError(session_id, "opening the session directory", error) from error

    def _read(self, sess_fd: int, session_id: str) -> tuple[bytes, os.stat_result]:
        try:
            fd = os.open(METADATA, _READ_FLAGS, dir_fd=sess_fd)
        except FileNotFoundError:
            raise SessionNotFoundError(session_id, f"no {METADATA}") from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafePathError(session_id, f"{METADATA} is a symlink") from None
            raise StorageError(session_id, f"opening {METADATA}", error) from error
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UnsafePathError(session_id, f"{METADATA} is not a regular file")
            if info.st_size > MAX_RECORD_BYTES:
                raise CorruptSessionError(
                    session_id, where=METADATA, detail="the file is larger than 64 MiB"
                )
            # One read of the size fstat gave (plus one byte, to see a file
            # that grew meanwhile) instead of a large fixed buffer per call.
            data = os.read(fd, info.st_size + 1)
            if len(data) <= info.st_size:
                return data, info
            chunks = [data]
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks), info
        except OSError as error:
            if isinstance(error, SessionError):
                raise
            raise StorageError(session_id, f"reading {METADATA}", error) from error
        finally:
            _close(fd)

    def _load_at(self, sess_fd: int, session_id: str) -> Session:
        return decode_record(session_id, self._read(sess_fd, session_id)[0], where=METADATA)

    def _load_signed(self, sess_fd: int, session_id: str) -> tuple[Session, Signature]:
        raw, info = self._read(sess_fd, session_id)
        if raw == self._written.get(session_id):
            # Byte for byte the record this object encoded, after validating
            # it against the schema: the same session, built without checks.
            return session_from_owned_record(loads(raw)), Signature.of(info)
        return decode_record(session_id, raw, where=METADATA), Signature.of(info)

    def _remember(self, session_id: str, data: bytes) -> None:
        written = self._written
        written.pop(session_id, None)
        if len(written) >= _WRITTEN_KEPT:
            with contextlib.suppress(StopIteration, KeyError, RuntimeError):
                del written[next(iter(written))]  # the oldest
        written[session_id] = data

    def _write(self, sess_fd: int, session: Session) -> Signature:
        """Atomically replace ``metadata.json``: temp, fsync, rename, fsync dir.

        Returns the signature of the new file, for the index.
        """
        return self._write_record(sess_fd, session)[0]

    def _write_record(self, sess_fd: int, session: Session) -> tuple[Signature, dict[str, Any]]:
        """:meth:`_write`, also returning the record written (``session.to_dict()``)."""
        data, record = encode_record_and_dict(session)
        session_id = session.session_id
        self._written.pop(session_id, None)
        try:
            try:
                info = replace_file(sess_fd, METADATA, data, temp=WRITE_TEMP, durable=self.durable)
            except FileExistsError:
                # A writer killed between its temp file and the rename (the
                # lock is ours, so no live writer): its file is gone now
                # (``replace_file`` removes its temp on any error); sweep any
                # other leftovers and write again.
                self._sweep_temp_files(sess_fd)
                info = replace_file(sess_fd, METADATA, data, temp=WRITE_TEMP, durable=self.durable)
        except NotDurableError as error:
            raise StorageError(
                session_id,
                "syncing the directory after the new record was put in place",
                error,
                committed=True,
            ) from error
        except OSError as error:
            raise StorageError(session_id, "writing the record", error) from error
        self._remember(session_id, data)
        return Signature.of(info), record

    def _sweep_temp_files(self, sess_fd: int) -> None:
        """Remove temp files a killed writer left; only called under the lock."""
        try:
            with os.scandir(sess_fd) as entries:
                stale = [
                    e.name
                    for e in entries
                    if e.name.startswith(TEMP_PREFIX) and e.name.endswith(TEMP_SUFFIX)
                ]
        except OSError:
            return
        for name in stale:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=sess_fd)

    # ------------------------------------------------------------ locking

    @contextlib.contextmanager
    def _locked(
        self, session_id: str, *, deadline: float | None = None
    ) -> Iterator[tuple[int, int]]:
        """Hold the session's lock; yields (root fd, session dir fd).

        Waits until ``deadline`` (``time.monotonic()``), by default
        ``lock_timeout`` from now, then raises ``LockTimeoutError``.
        """
        root_fd = self._open_root(create=False)
        if root_fd is None:
            raise SessionNotFoundError(session_id)
        try:
            if deadline is None:
                deadline = time.monotonic() + self.lock_timeout
            while True:
                sess_fd = self._open_session(root_fd, session_id)
                try:
                    lock_fd = os.open(LOCK, _LOCK_FLAGS, 0o666, dir_fd=sess_fd)
                except OSError as error:
                    _close(sess_fd)
                    if error.errno == errno.ELOOP:
                        raise UnsafePathError(session_id, f"{LOCK} is a symlink") from None
                    raise StorageError(session_id, "opening the lock", error) from error
                try:
                    self._acquire(lock_fd, session_id, deadline)
                    if self._still_current(root_fd, sess_fd, lock_fd, session_id):
                        try:
                            yield root_fd, sess_fd
                        finally:
                            fcntl.flock(lock_fd, fcntl.LOCK_UN)
                        return
                finally:
                    _close(lock_fd)
                    _close(sess_fd)
        finally:
            _close(root_fd)

    def _acquire(self, lock_fd: int, session_id: str, deadline: float) -> None:
        pause = 0.0005
        while True:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            except OSError as error:
                raise StorageError(session_id, "taking the lock", error) from error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeoutError(session_id, self.lock_timeout)
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.02)

    def _still_current(self, root_fd: int, sess_fd: int, lock_fd: int, session_id: str) -> bool:
        """After locking: is this still the session's directory and lock file?"""
        try:
            on_disk = os.stat(session_id, dir_fd=root_fd, follow_symlinks=False)
            lock_on_disk = os.stat(LOCK, dir_fd=sess_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise SessionNotFoundError(session_id) from None
        return _same_file(on_disk, os.fstat(sess_fd)) and _same_file(
            lock_on_disk, os.fstat(lock_fd)
        )

    # ------------------------------------------------------------ the contract

    def load(self, session_id: str) -> Session:
        check_session_id(session_id)
        root_fd = self._open_root(create=False)
        if root_fd is None:
            raise SessionNotFoundError(session_id)
        try:
            sess_fd = self._open_session(root_fd, session_id)
            try:
                return self._load_at(sess_fd, session_id)
            finally:
                _close(sess_fd)
        finally:
            _close(root_fd)

    def create(self, session: Session, *, request_id: str | None = None) -> Session:
        check_session_id(session.session_id)
        check_request_id_type(request_id)
        stored = _with_revision(session, 1)
        encode_record(stored)  # refuse an invalid record before creating anything
        if request_id is not None:
            created = self._create_reserved(stored, request_id)
        else:
            created = self._create(stored, request_id=None)
        if self._made_sessions_dir:
            # After the record: a create that fails in a new root leaves no file.
            self._made_sessions_dir = False
            write_gitignore(self.sessions_dir.parent, durable=self.durable)
        return created

    def _create_reserved(self, stored: Session, request_id: str) -> Session:
        """Create ``stored`` under a create key, or return the session already made under it.

        The key is reserved by a file in ``requests/`` named by its hash and
        holding the id of the session made under it.  Whoever decides about
        a key holds an ``flock`` on that file from reading it until its own
        session is written, so two creators racing with one key are
        serialised: the loser waits for the winner's record, then finds it.
        The reservation is written (and made durable) before the session
        directory, so it is never missing for a session that exists.

        A reservation is dead when the session it names does not exist: its
        creator died before writing the record, failed, or the session was
        deleted.  A dead one is taken over under its lock: nobody else can
        be deciding about it then, and a creator that died released its
        lock with its process.  A torn write of the reservation itself
        names no session and is dead too.
        """
        session_id = stored.session_id
        name = _reservation_name(request_id)
        deadline = time.monotonic() + self.lock_timeout
        root_fd = self._open_root(create=True)
        assert root_fd is not None
        try:
            requests_fd = self._open_requests(root_fd)
        finally:
            _close(root_fd)
        try:
            while True:
                fd = self._open_reservation(requests_fd, name, create=True, session_id=session_id)
                assert fd is not None
                try:
                    self._acquire(fd, session_id, deadline)
                    if not self._reservation_current(requests_fd, name, fd):
                        continue  # unlinked by a delete meanwhile: start over
                    try:
                        holder = _read_small(fd)
                    except OSError as error:
                        raise StorageError(
                            session_id, "reading the request reservation", error
                        ) from error
                    if is_session_id(holder):
                        try:
                            return self.load(holder)
                        except SessionNotFoundError:
                            pass  # dead: take it over
                    self._reserve(requests_fd, fd, session_id)
                    try:
                        return self._create(stored, request_id=request_id)
                    except BaseException:
                        with contextlib.suppress(OSError):
                            os.ftruncate(fd, 0)  # the key is free again
                        raise
                finally:
                    os.close(fd)  # releases the lock
        finally:
            _close(requests_fd)

    def _open_requests(self, root_fd: int) -> int:
        """A descriptor of ``requests/`` beside ``sessions/``, made if missing."""
        try:
            parent_fd = os.open("..", _NOFOLLOW_DIR, dir_fd=root_fd)
        except OSError as error:
            raise StorageError(None, "opening the store directory", error) from error
        try:
            try:
                return os.open(REQUESTS_DIR, _NOFOLLOW_DIR, dir_fd=parent_fd)
            except FileNotFoundError:
                pass
            with contextlib.suppress(FileExistsError):
                os.mkdir(REQUESTS_DIR, 0o777, dir_fd=parent_fd)
                if self.durable:
                    os.fsync(parent_fd)
            return os.open(REQUESTS_DIR, _NOFOLLOW_DIR, dir_fd=parent_fd)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePathError(None, f"{REQUESTS_DIR}/ is not a plain directory") from None
            raise StorageError(None, f"opening {REQUESTS_DIR}/", error) from error
        finally:
            _close(parent_fd)

    def _open_reservation(
        self, requests_fd: int, name: str, *, create: bool, session_id: str
    ) -> int | None:
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            return os.open(name, flags, 0o666, dir_fd=requests_fd)
        except FileNotFoundError:
            if create:
                raise StorageError(
                    session_id, "opening the request reservation", FileNotFoundError()
                ) from None
            return None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise UnsafePathError(session_id, "a request reservation is a symlink") from None
            raise StorageError(session_id, "opening the request reservation", error) from error

    def _reservation_current(self, requests_fd: int, name: str, fd: int) -> bool:
        try:
            on_disk = os.stat(name, dir_fd=requests_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return _same_file(on_disk, os.fstat(fd))

    def _reserve(self, requests_fd: int, fd: int, session_id: str) -> None:
        """Write ``session_id`` into the locked reservation, durably, before the session."""
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{session_id}\n".encode(), 0)
            if self.durable:
                os.fsync(fd)
                os.fsync(requests_fd)  # the reservation's own name, when it is new
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            raise StorageError(session_id, "reserving the request id", error) from error

    def _release_key(self, session: Session) -> None:
        """After a delete: remove the reservation of the session's create key, if it holds one."""
        keys = [entry.request_id for entry in session.requests if entry.operation == "create"]
        if not keys:
            return
        name = _reservation_name(keys[0])
        try:
            root_fd = self._open_root(create=False)
            if root_fd is None:
                return
            try:
                requests_fd = self._open_requests(root_fd)
            finally:
                _close(root_fd)
            try:
                fd = self._open_reservation(
                    requests_fd, name, create=False, session_id=session.session_id
                )
                if fd is None:
                    return
                try:
                    self._acquire(fd, session.session_id, time.monotonic() + self.lock_timeout)
                    if (
                        self._reservation_current(requests_fd, name, fd)
                        and _read_small(fd) == session.session_id
                    ):
                        os.unlink(name, dir_fd=requests_fd)
                finally:
                    os.close(fd)
            finally:
                _close(requests_fd)
        except (OSError, SessionError) as error:
            # A reservation left behind names a missing session: it is dead,
            # and the next create with that key takes it over.
            log.warning(
                "session %s: request reservation not removed (%s)", session.session_id, error
            )

    def _create(self, stored: Session, *, request_id: str | None) -> Session:
        session_id = stored.session_id
        root_fd = self._open_root(create=True)
        assert root_fd is not None
        try:
            try:
                os.mkdir(session_id, 0o777, dir_fd=root_fd)
            except FileExistsError:
                raise SessionExistsError(session_id) from None
            except OSError as error:
                raise StorageError(session_id, "creating the session directory", error) from error
            try:
                if self.durable:
                    os.fsync(root_fd)
                # Nobody else can address the session before its metadata.json
                # appears, and it appears whole; the lock is taken anyway so
                # that ``doctor`` can tell this writer's temp file (its lock
                # held) from one a killed writer left (its lock free).
                sess_fd = os.open(session_id, _NOFOLLOW_DIR, dir_fd=root_fd)
                try:
                    lock_fd = os.open(LOCK, _LOCK_FLAGS, 0o666, dir_fd=sess_fd)
                    try:
                        self._acquire(lock_fd, session_id, time.monotonic() + self.lock_timeout)
                        self._index_begin(
                            session_id, kind=ChangeKind.CREATED, request_id=request_id
                        )
                        signature, record = self._write_record(sess_fd, stored)
                        self._index_commit(
                            stored,
                            signature,
                            kind=ChangeKind.CREATED,
                            request_id=request_id,
                            record=record,
                        )
                    except BaseException:
                        # leave the directory empty, for _remove_empty
                        with contextlib.suppress(OSError):
                            os.unlink(LOCK, dir_fd=sess_fd)
                        raise
                    finally:
                        os.close(lock_fd)  # releases the lock
                finally:
                    os.close(sess_fd)
            except BaseException:
                self._remove_empty(root_fd, session_id)
                raise
        except OSError as error:
            if isinstance(error, SessionError):
                raise
            raise StorageError(session_id, "creating the session", error) from error
        finally:
            _close(root_fd)
        return stored

    def _remove_empty(self, root_fd: int, session_id: str) -> None:
        """Undo a failed create: remove the directory if only our files are in it."""
        with contextlib.suppress(OSError):
            # The failed write removed its temp file, so the directory is
            # normally empty, and removing it needs no descriptor.
            os.rmdir(session_id, dir_fd=root_fd)
            return
        with contextlib.suppress(OSError):
            sess_fd = os.open(session_id, _NOFOLLOW_DIR, dir_fd=root_fd)
            try:
                names = os.listdir(sess_fd)
                if any(n != LOCK and not n.startswith(TEMP_PREFIX) for n in names):
                    return
                for name in names:
                    os.unlink(name, dir_fd=sess_fd)
            finally:
                os.close(sess_fd)
            os.rmdir(session_id, dir_fd=root_fd)

    def modify(
        self,
        session_id: str,
        change: Transform,
        *,
        expected_revision: int | None = None,
        kind: ChangeKind = ChangeKind.UPDATED,
        request_id: str | None = None,
    ) -> Session:
        check_session_id(session_id)
        check_request_id_type(request_id)
        with self._locked(session_id) as (_, sess_fd):
            current, signature = self._load_signed(sess_fd, session_id)
            previous = (current.revision, signature)
            # ``current`` was read for this call alone, so the result of
            # ``change`` (often a modified ``current``) can be stamped in place.
            updated = apply_change(session_id, current, change, expected_revision)
            if updated is None:
                return current
            self._index_begin(
                session_id, kind=kind, request_id=request_id, previous=previous, sess_fd=sess_fd
            )
            written, record = self._write_record(sess_fd, updated)
            self._index_commit(updated, written, kind=kind, request_id=request_id, record=record)
            return updated

    def delete(
        self,
        session_id: str,
        *,
        expected_revision: int | None = None,
        request_id: str | None = None,
    ) -> None:
        check_session_id(session_id)
        check_request_id_type(request_id)
        trash = f"{TRASH_PREFIX}{session_id}-{os.urandom(4).hex()}"
        with self._locked(session_id) as (root_fd, sess_fd):
            previous: tuple[int, Signature] | None = None
            try:
                current, signature = self._load_signed(sess_fd, session_id)
                previous = (current.revision, signature)
            except CorruptSessionError:
                if expected_revision is not None:
                    raise
                current = None  # an unreadable record can still be deleted
            if (
                current is not None
                and expected_revision is not None
                and expected_revision != current.revision
            ):
                raise ConflictError(session_id, expected_revision, current.revision)
            self._index_begin(
                session_id,
                kind=ChangeKind.DELETED,
                request_id=request_id,
                previous=previous,
                sess_fd=sess_fd,
            )
            try:
                os.rename(session_id, trash, src_dir_fd=root_fd, dst_dir_fd=root_fd)
            except OSError as error:
                raise StorageError(session_id, "deleting the session", error) from error
            self._index_forget(session_id, request_id=request_id)
            try:
                if self.durable:
                    os.fsync(root_fd)
            except OSError as error:
                self._purge(trash)
                raise StorageError(
                    session_id, "syncing the directory after the delete", error, committed=True
                ) from error
        self._purge(trash)
        self._sweep_trash()
        if current is not None and current.requests:
            self._release_key(current)

    def _purge(self, name: str) -> None:
        """Remove a renamed-away session directory (symlinks inside are not followed).

        If that fails, a marker makes the next delete sweep every leftover
        (``maestro doctor --fix`` removes them too): checking for the marker
        costs a delete one ``stat``, where listing ``sessions/`` every time
        would cost a scan of every session name.
        """
        try:
            import shutil

            shutil.rmtree(self.sessions_dir / name)
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("could not remove %s: %s (the next delete retries)", name, error)
            self._trash_left = True  # in case the marker cannot be made either
            with contextlib.suppress(OSError):
                flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                os.close(os.open(self._trash_marker(), flags, 0o666))

    def _trash_marker(self) -> Path:
        return self.sessions_dir.parent / TRASH_MARKER

    def _sweep_trash(self) -> None:
        """After a delete: remove leftovers of earlier deletes, if any were left."""
        marker = self._trash_marker()
        if not (self._trash_left or marker.exists()):
            return
        self._trash_left = False
        with contextlib.suppress(OSError):
            os.unlink(marker)
        try:
            names = [n for n in os.listdir(self.sessions_dir) if n.startswith(TRASH_PREFIX)]
        except OSError:
            return
        for name in names:
            self._purge(name)

    def session_ids(self, prefix: str = "") -> list[str]:
        """Names of the session directories (canonical ids) starting with ``prefix``."""
        root_fd = self._open_root(create=False)
        if root_fd is None:
            return []
        try:
            names = os.listdir(root_fd)
        except OSError as error:
            raise StorageError(None, "listing the sessions", error) from error
        finally:
            _close(root_fd)
        return sorted(n for n in names if n.startswith(prefix) and is_session_id(n))

    def scan(self) -> Iterator[ScanEntry]:
        from maestro.stores.base import ScanEntry

        root_fd = self._open_root(create=False)
        if root_fd is None:
            return
        try:
            with os.scandir(root_fd) as entries:
                names = [e.name for e in entries if is_session_id(e.name)]
            if len(names) > FEW_RECORDS:
                expect_many()  # orjson reads them
            for name in names:
                try:
                    sess_fd = self._open_session(root_fd, name)
                except SessionError as error:
                    yield ScanEntry(name, None, error)
                    continue
                try:
                    yield ScanEntry(name, self._load_at(sess_fd, name), None)
                except SessionError as error:
                    yield ScanEntry(name, None, error)
                finally:
                    _close(sess_fd)
        finally:
            _close(root_fd)

    def query(self, query: SessionQuery) -> list[Session]:
        if self.index is not None:
            try:
                return self._query_indexed(self.index, query)
            except IndexUnavailable as error:
                self._warn_fallback(error)
        return query.apply(self._readable())

    def count(self, query: SessionQuery) -> int:
        """How many sessions match ``query`` (its window ignored), from the index."""
        query = replace(query, limit=None, offset=0)
        if self.index is not None:
            try:
                root_fd = self._open_root(create=False)
                if root_fd is None:
                    return 0
                try:
                    self._refresh(self.index, root_fd)
                finally:
                    _close(root_fd)
                return self.index.count(query, query.text)
            except IndexUnavailable as error:
                self._warn_fallback(error)
        return sum(1 for s in self._readable() if query.matches(s))

    # ------------------------------------------------------------ the index

    def _warn_fallback(self, error: Exception) -> None:
        if not self._fallback_warned:
            self._fallback_warned = True
            log.warning("session index unavailable (%s); scanning the session files", error)

    def _stale_marker(self) -> Path:
        return self.sessions_dir.parent / STALE_MARKER

    def _stale(self) -> bool:
        """Whether the stale marker exists (a write could not update the index)."""
        try:
            os.stat(self._stale_path)
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: take the careful way
        return True

    def _index_begin(
        self,
        session_id: str,
        *,
        kind: ChangeKind = ChangeKind.REPLACED,
        request_id: str | None = None,
        previous: tuple[int, Signature] | None = None,
        sess_fd: int | None = None,
    ) -> None:
        """Before a write: mark the session pending, or the whole index stale.

        ``kind`` is how the change will be reported; whole directories put
        in place by maintenance are ``replaced``.  ``previous`` (the revision
        and signature of the record read under the lock in ``sess_fd``) lets
        the index report first a change it missed (see ``mark_pending``).
        """
        if self.index is None:
            return
        try:
            marked = self.index.mark_pending(
                session_id, kind=kind, request_id=request_id, previous=previous
            )
            if not marked and sess_fd is not None:
                # The record on disk is still the one read under the lock.
                self.index.store([self._load_signed(sess_fd, session_id)])
                self.index.mark_pending(session_id, kind=kind, request_id=request_id)
        except IndexUnavailable as error:
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(self._stale_marker(), flags, 0o666)
                os.close(fd)
            except OSError as marker_error:
                raise StorageError(
                    session_id,
                    f"the index cannot be kept in step ({error}); marking it stale",
                    marker_error,
                ) from marker_error

    def _index_commit(
        self,
        session: Session,
        signature: Signature,
        *,
        kind: ChangeKind = ChangeKind.REPLACED,
        request_id: str | None = None,
        record: dict[str, Any] | None = None,
    ) -> None:
        """After a write: store the session's row and its event, and clear its pending mark.

        ``record`` is the ``to_dict()`` of ``session`` the write encoded, if at hand.
        """
        if self.index is None:
            return
        try:
            self.index.store(
                [(session, signature)], kind=kind, request_id=request_id, record=record
            )
        except IndexUnavailable as error:
            log.warning(
                "session %s: index not updated (%s); repaired on the next query",
                session.session_id,
                error,
            )

    def _index_forget(self, session_id: str, *, request_id: str | None = None) -> None:
        if self.index is None:
            return
        try:
            self.index.remove([session_id], request_id=request_id)
        except IndexUnavailable as error:
            log.warning(
                "session %s: index not updated (%s); repaired on the next query", session_id, error
            )

    def rebuild_index(self) -> int:
        """Re-read every session file into the index; returns the sessions indexed."""
        if self.index is None:
            raise UnsupportedOperationError(
                "rebuilding the index", self.display_name, needs="index=True"
            )
        root_fd = self._open_root(create=False)
        try:
            if root_fd is None:
                if not self.index.path.parent.is_dir():
                    return 0  # a store nobody wrote to yet: nothing to index or forget
                self.index.rotate_epoch()
                self.index.remove(self.index.known())
                return 0
            # Rebuilt means "the rows may have been wrong": the feed's readers
            # start over (a reset) rather than trust the history before it.
            self.index.rotate_epoch()
            return self._reconcile(self.index, root_fd, reread=True)
        except OSError as error:
            # Here the index itself was asked for: no scan can stand in for it.
            if isinstance(error, SessionError) and not isinstance(error, IndexUnavailable):
                raise
            raise StorageError(None, "rebuilding the session index", error) from error
        finally:
            if root_fd is not None:
                _close(root_fd)

    def reindex(self, session_ids: list[str]) -> int:
        """Re-read these sessions' files into the index; returns the rows written."""
        if self.index is None:
            raise UnsupportedOperationError("reindexing", self.display_name, needs="index=True")
        root_fd = self._open_root(create=False)
        if root_fd is None:
            self.index.remove(session_ids)
            return 0
        try:
            return self._reconcile(self.index, root_fd, only=set(session_ids))
        finally:
            _close(root_fd)

    # ------------------------------------------------------------ whole directories

    def session_directory(self, session_id: str) -> Path:
        return self.sessions_dir / check_session_id(session_id)

    def export_sessions(
        self,
        sessions: Iterable[Session],
        target: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> ExportResult:
        """Write these sessions' directories, every file in them, to a ``.tar.gz``."""
        from maestro.stores import files_transfer  # tarfile only when asked

        return files_transfer.export_sessions(self, sessions, target, progress=progress or _quiet)

    def import_sessions(
        self,
        source: str | os.PathLike[str],
        *,
        max_file_bytes: int | None = None,
        max_total_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Bring in an export, checked whole first (see :mod:`.files_transfer`)."""
        from maestro.stores import files_transfer

        return files_transfer.import_sessions(
            self,
            source,
            max_file_bytes=max_file_bytes,
            max_total_bytes=max_total_bytes,
            progress=progress or _quiet,
        )

    def adopt_sessions(self, sessions_dir: str | os.PathLike[str], *, move: bool) -> AdoptResult:
        """Session directories of another file store; with ``move``, moved here whole."""
        from maestro.reports import AdoptResult
        from maestro.stores import files_maintenance

        result = AdoptResult()
        for stray in files_maintenance.find_strays(self, Path(sessions_dir).absolute()):
            result.found.append(stray.session_id)
            if stray.duplicate:
                result.duplicates.append(stray.session_id)
            elif move:
                try:
                    moved = files_maintenance.adopt(self, stray)
                except SessionError:
                    raise
                except OSError as error:
                    raise StorageError(
                        stray.session_id, f"moving the session from {stray.path.parent}", error
                    ) from error
                if moved:
                    result.moved.append(stray.session_id)
        if self._made_sessions_dir:
            self._made_sessions_dir = False
            write_gitignore(self.sessions_dir.parent, durable=self.durable)
        if result.moved and self.index is not None:
            # A record the index cannot take now is caught by the next doctor.
            with contextlib.suppress(OSError):
                self.reindex(result.moved)
        return result

    def doctor(
        self, *, fix: bool = False, reindex: bool = False, progress: Progress | None = None
    ) -> DoctorReport:
        """Check every session directory and the index; with ``fix``, repair."""
        from maestro.stores import files_maintenance

        return files_maintenance.doctor(self, fix=fix, reindex=reindex, progress=progress or _quiet)

    # ------------------------------------------------------------ the change feed

    def _feed(self, operation: str) -> SessionIndex:
        if self.index is None or self.index.retention <= 0:
            raise UnsupportedOperationError(
                operation, self.display_name, needs="index=True and feed_retention > 0"
            )
        return self.index

    def _feed_refresh(self, index: SessionIndex) -> None:
        """Before reading the feed: what a query would notice that makes history.

        An index of another root is emptied (a new epoch); one that fell
        behind, or a reboot, is brought in step (also a new epoch); pending
        marks whose writers died are repaired into the feed.  A mark whose
        lock is held belongs to a live writer, whose own commit reports it:
        the reader never waits for it.  Sessions changed behind the
        library's back are noticed by the next query, not here.
        """
        root_fd = self._open_root(create=True)
        assert root_fd is not None
        try:
            index.claim(os.fstat(root_fd))
            if self._stale_marker().exists() or index.get_meta("boot") != boot_id():
                self._refresh(index, root_fd)
                return
            if index.has_pending():
                now = time.monotonic()
                for session_id in index.pending():
                    self._repair(index, session_id, now, quiet=True)
        except StorageError as error:
            if isinstance(error, IndexUnavailable):
                raise
            raise StorageError(None, "reading the change feed", error) from error
        finally:
            _close(root_fd)

    def changes_after(self, cursor: str | None, *, limit: int = 1000) -> list[ChangeEvent]:
        """Up to ``limit`` events after ``cursor``, oldest first (see :class:`ChangeFeed`)."""
        index = self._feed("reading the change feed")
        self._feed_refresh(index)
        return index.changes_after(cursor, limit)

    def feed_end(self) -> str:
        index = self._feed("reading the change feed")
        self._feed_refresh(index)
        return index.feed_end()

    def wait_for_change(self, cursor: str, timeout: float) -> bool:
        """Block until an event after ``cursor`` may exist, or ``timeout`` seconds pass.

        Polls SQLite's ``PRAGMA data_version`` every 10 to 50 ms
        (:data:`FEED_POLL`): it moves when another connection commits, at the
        cost of reading shared memory.  Every :data:`FEED_RECHECK` seconds it also
        looks for what commits nothing: a pending mark a killed writer left
        (the next read repairs it) or an index marked stale.
        """
        index = self._feed("waiting for changes")
        deadline = time.monotonic() + max(0.0, timeout)
        if index.has_after(cursor):
            return True
        version = index.data_version()
        recheck = time.monotonic() + FEED_RECHECK
        pause, longest = FEED_POLL
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(pause, remaining))
            pause = min(pause * 1.25, longest)
            if index.data_version() != version:
                return True
            if time.monotonic() >= recheck:
                recheck = time.monotonic() + FEED_RECHECK
                if index.has_pending() or self._stale_marker().exists():
                    return True

    def _readable(self) -> Iterator[Session]:
        for entry in self.scan():
            if entry.session is not None:
                yield entry.session
            elif not isinstance(entry.error, SessionNotFoundError):
                log.warning("skipping %s", entry.error)


#: How many sessions' last written bytes a store object keeps (see ``_load_signed``).
_WRITTEN_KEPT = 64


def _quiet(done: int, total: int) -> None:
    return None


def _read_small(fd: int) -> str:
    """The text of a reservation file: a session id and a newline, or anything when torn."""
    return os.pread(fd, 128, 0).decode("ascii", "replace").strip()


def _reservation_name(request_id: str) -> str:
    """The file in ``requests/`` that reserves a create key: its key's hash."""
    import hashlib

    return hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).hexdigest()


def _retention(given: int | None) -> int:
    """``feed_retention``, else ``$MAESTRO_FEED_RETENTION``, else the default."""
    if given is None:
        text = os.environ.get(FEED_RETENTION, "").strip()
        if not text:
            return DEFAULT_RETENTION
        if not text.isdigit():
            raise SessionValidationError(f"{FEED_RETENTION} must be a non-negative integer")
        return int(text)
    if isinstance(given, bool) or not isinstance(given, int) or given < 0:
        raise SessionValidationError("feed_retention must be a non-negative integer")
    return given


def _with_revision(session: Session, revision: int) -> Session:
    return replace(session, revision=revision, schema_version=SCHEMA_VERSION)
