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
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

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
)
from maestro.ids import check_session_id, is_session_id
from maestro.models import SCHEMA_VERSION, Session
from maestro.schema import migrate, validate_record
from maestro.stores.base import ScanEntry, SessionQuery, Transform

__all__ = ["METADATA", "FileSessionStore", "decode_record", "encode_record"]

log = logging.getLogger("maestro")

METADATA = "metadata.json"
LOCK = ".lock"
TEMP_PREFIX = f".{METADATA}."
TEMP_SUFFIX = ".tmp"
TRASH_PREFIX = ".trash-"
MAX_RECORD_BYTES = 64 * 1024 * 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR = _DIR_FLAGS | os.O_NOFOLLOW
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


_UTF8_BOM = b"\xef\xbb\xbf"


def encode_record(session: Session) -> bytes:
    """The bytes of ``metadata.json`` for ``session``, after schema validation.

    Pretty JSON (two-space indent, UTF-8, trailing newline), the layout of the
    prototype's ``json.dump(..., indent=2)``.  orjson writes it some forty
    times faster than the standard library's pure-Python indenting encoder,
    which dominated the CPU cost of a write with a long history.
    """
    record = session.to_dict()
    validate_record(record, session_id=session.session_id)
    try:
        return orjson.dumps(record, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError as error:  # only reachable through ``extra``
        raise SessionValidationError(
            f"the record holds a value JSON cannot store ({error})", session_id=session.session_id
        ) from None


def decode_record(session_id: str, raw: bytes) -> Session:
    """Parse and check stored bytes; any problem is a ``CorruptSessionError``."""
    try:
        # Strictly UTF-8 (no guessing of UTF-16/32 from the first bytes); a
        # UTF-8 byte order mark, which some editors add, is tolerated.
        record = orjson.loads(raw[3:] if raw.startswith(_UTF8_BOM) else raw)
    except orjson.JSONDecodeError as error:
        raise CorruptSessionError(
            session_id,
            f"invalid JSON ({error.msg} at line {error.lineno}, column {error.colno})",
            lineno=error.lineno,
            colno=error.colno,
        ) from None
    if not isinstance(record, dict):
        raise CorruptSessionError(session_id, "the top level is not a JSON object")
    # The models check every field as strictly as the schema does (types,
    # ranges, enum values, unknown nested keys), and anything they accept
    # serialises to a schema-valid record, so reads skip the schema pass; the
    # writer validates against it before every write.
    try:
        session = Session.from_dict(migrate(record, session_id=session_id))
    except SessionValidationError as error:
        detail = str(error).removeprefix(f"session {session_id}: ")
        raise CorruptSessionError(session_id, detail) from None
    if session.session_id != session_id:
        raise CorruptSessionError(session_id, "the record names a different session id")
    return session


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _same_file(first: os.stat_result, second: os.stat_result) -> bool:
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


class FileSessionStore:
    """Sessions as ``<sessions_dir>/<id>/metadata.json`` (see the module docstring).

    ``lock_timeout`` bounds how long a writer waits for another one;
    ``durable=False`` skips the fsyncs (tests and throw-away stores only).
    """

    def __init__(
        self,
        sessions_dir: str | os.PathLike[str],
        *,
        lock_timeout: float = 10.0,
        durable: bool = True,
    ) -> None:
        self.sessions_dir = Path(sessions_dir).absolute()
        self.lock_timeout = lock_timeout
        self.durable = durable

    def __repr__(self) -> str:
        return f"FileSessionStore({str(self.sessions_dir)!r})"

    # ------------------------------------------------------------ descriptors

    def _open_root(self, *, create: bool) -> int | None:
        """A descriptor of ``sessions/``; ``None`` if it does not exist and not ``create``."""
        try:
            return os.open(self.sessions_dir, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                return None
        try:
            missing = [p for p in (self.sessions_dir, *self.sessions_dir.parents) if not p.exists()]
            self.sessions_dir.mkdir(parents=True, exist_ok=True)
            if self.durable and missing:
                self._fsync_path(missing[-1].parent)
            return os.open(self.sessions_dir, _DIR_FLAGS)
        except OSError as error:
            raise StorageError(None, f"creating {self.sessions_dir}", error) from error

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

    def _read(self, sess_fd: int, session_id: str) -> bytes:
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
                raise CorruptSessionError(session_id, "the file is larger than 64 MiB")
            chunks = []
            while chunk := os.read(fd, max(info.st_size + 1, 65536)):
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as error:
            if isinstance(error, SessionError):
                raise
            raise StorageError(session_id, f"reading {METADATA}", error) from error
        finally:
            _close(fd)

    def _load_at(self, sess_fd: int, session_id: str) -> Session:
        return decode_record(session_id, self._read(sess_fd, session_id))

    def _write(self, sess_fd: int, session: Session) -> None:
        """Atomically replace ``metadata.json``: temp, fsync, rename, fsync dir."""
        data = encode_record(session)
        session_id = session.session_id
        temp = f"{TEMP_PREFIX}{secrets.token_hex(6)}{TEMP_SUFFIX}"
        replaced = False
        try:
            fd = os.open(temp, _TEMP_FLAGS, 0o666, dir_fd=sess_fd)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self.durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, METADATA, src_dir_fd=sess_fd, dst_dir_fd=sess_fd)
            replaced = True
            if self.durable:
                os.fsync(sess_fd)
        except OSError as error:
            if not replaced:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=sess_fd)
                raise StorageError(session_id, "writing the record", error) from error
            raise StorageError(
                session_id,
                "syncing the directory after the new record was put in place",
                error,
                committed=True,
            ) from error

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
    def _locked(self, session_id: str) -> Iterator[tuple[int, int]]:
        """Hold the session's lock; yields (root fd, session dir fd)."""
        root_fd = self._open_root(create=False)
        if root_fd is None:
            raise SessionNotFoundError(session_id)
        try:
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

    def create(self, session: Session) -> Session:
        session_id = check_session_id(session.session_id)
        stored = _with_revision(session, 1)
        encode_record(stored)  # refuse an invalid record before creating anything
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
                # No lock needed: nobody can address the session before its
                # metadata.json appears, and it appears whole.  The lock file
                # is made by the first writer that needs it.
                sess_fd = os.open(session_id, _NOFOLLOW_DIR, dir_fd=root_fd)
                try:
                    self._write(sess_fd, stored)
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
        self, session_id: str, change: Transform, *, expected_revision: int | None = None
    ) -> Session:
        check_session_id(session_id)
        with self._locked(session_id) as (_, sess_fd):
            current = self._load_at(sess_fd, session_id)
            if expected_revision is not None and expected_revision != current.revision:
                raise ConflictError(session_id, expected_revision, current.revision)
            # ``current`` was read for this call alone, so the result of
            # ``change`` (often a modified ``current``) can be stamped in place.
            updated = change(current)
            updated.revision = current.revision + 1
            updated.schema_version = SCHEMA_VERSION
            if updated.session_id != session_id:
                raise SessionValidationError("session_id is read-only", session_id=session_id)
            self._sweep_temp_files(sess_fd)
            self._write(sess_fd, updated)
            return updated

    def delete(self, session_id: str, *, expected_revision: int | None = None) -> None:
        check_session_id(session_id)
        trash = f"{TRASH_PREFIX}{session_id}-{secrets.token_hex(4)}"
        with self._locked(session_id) as (root_fd, sess_fd):
            try:
                current: Session | None = self._load_at(sess_fd, session_id)
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
            try:
                os.rename(session_id, trash, src_dir_fd=root_fd, dst_dir_fd=root_fd)
            except OSError as error:
                raise StorageError(session_id, "deleting the session", error) from error
            try:
                if self.durable:
                    os.fsync(root_fd)
            except OSError as error:
                self._purge(trash)
                raise StorageError(
                    session_id, "syncing the directory after the delete", error, committed=True
                ) from error
        self._purge(trash)

    def _purge(self, name: str) -> None:
        """Remove a renamed-away session directory (symlinks inside are not followed)."""
        try:
            shutil.rmtree(self.sessions_dir / name)
        except OSError as error:
            log.warning("could not remove %s: %s (doctor removes it later)", name, error)

    def scan(self) -> Iterator[ScanEntry]:
        root_fd = self._open_root(create=False)
        if root_fd is None:
            return
        try:
            with os.scandir(root_fd) as entries:
                names = [e.name for e in entries if is_session_id(e.name)]
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
        return query.apply(self._readable())

    def _readable(self) -> Iterator[Session]:
        for entry in self.scan():
            if entry.session is not None:
                yield entry.session
            elif not isinstance(entry.error, SessionNotFoundError):
                log.warning("skipping session %s: %s", entry.session_id, entry.error)


def _with_revision(session: Session, revision: int) -> Session:
    return dataclasses.replace(session, revision=revision, schema_version=SCHEMA_VERSION)
