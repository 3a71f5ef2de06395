"""Moving whole session directories between stores: export and import.

An export is a gzipped tar of session directories, every file other
Maestro parts keep there included, with a manifest; an import checks the
whole archive first (names, sizes, links, clashes), stages what it brings
in a directory of its own under the sessions root, then puts each session
in place, keeping what it replaced until the import succeeds.
:class:`~maestro.stores.files.FileSessionStore` offers them as its
``export_sessions`` and ``import_sessions`` methods and imports this module
only when one is called (``tarfile`` stays unloaded).  The locks and names
they share with ``doctor`` are in :mod:`~maestro.stores.files_maintenance`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import io
import os
import secrets
import shutil
import stat
import tarfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

import orjson

from maestro.errors import (
    CorruptSessionError,
    SessionError,
    SessionNotFoundError,
    SessionValidationError,
    StorageError,
)
from maestro.ids import is_session_id
from maestro.models import Session, format_timestamp, utcnow
from maestro.reports import ExportResult, ImportResult, Progress
from maestro.stores.files import (
    LOCK,
    MAX_RECORD_BYTES,
    METADATA,
    TRASH_PREFIX,
    FileSessionStore,
    decode_record,
)
from maestro.stores.files_maintenance import (
    _DIR_FLAGS,
    _LOCK_FLAGS,
    IMPORT_PREFIX,
    IMPORT_TEMP_SUFFIX,
    _is_temp,
    _noop,
    log,
)

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["MAX_FILE_BYTES", "MAX_IMPORT_BYTES", "export_sessions", "import_sessions"]

MANIFEST = "maestro-export.json"
EXPORT_FORMAT = 1
#: Default bounds of one import: the declared size of each archive member, and
#: the archive's whole uncompressed size (every member plus tar's headers).
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_IMPORT_BYTES = 1024 * 1024 * 1024
#: tarfile reads long names and pax headers whole into memory before any
#: member is seen; real ones are a few hundred bytes.
_MAX_HEADER_BYTES = 1024 * 1024
_BLOCK = tarfile.BLOCKSIZE
_CHUNK = 1024 * 1024
_STAGING_ATTEMPTS = 100
#: Inside a staging directory: files an import replaced, kept until it succeeds.
BACKUP = ".backup"
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _is_internal(name: str) -> bool:
    """Names the store reserves for itself: never exported, refused in an import.

    The lock, the record's temp files, staging and trash directories and the
    temp files of earlier importers.  Anything else under a session is the
    business of other Maestro parts and travels unchanged.
    """
    return (
        name == LOCK
        or _is_temp(name)
        or name.startswith((IMPORT_PREFIX, TRASH_PREFIX))
        or (name.startswith(".") and name.endswith(IMPORT_TEMP_SUFFIX))
    )


def _walk(dir_fd: int, prefix: str = "") -> Iterator[tuple[str, bytes, os.stat_result]]:
    """Every regular file below ``dir_fd``: (relative path, contents, stat). No symlinks."""
    with os.scandir(dir_fd) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        if _is_internal(name):
            if prefix:  # the store's own files at the top are expected; deeper they are not
                log.warning("not exported: %s%s is a name the store reserves", prefix, name)
            continue
        relative = f"{prefix}{name}"
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            sub_fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                yield from _walk(sub_fd, f"{relative}/")
            finally:
                os.close(sub_fd)
        elif stat.S_ISREG(info.st_mode):
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            try:
                with os.fdopen(os.dup(fd), "rb") as handle:
                    yield relative, handle.read(), info
            finally:
                os.close(fd)
        else:
            log.warning("not exported: %s is not a regular file or directory", relative)


def _same_entry(dir_fd: int, name: str, fd: int) -> bool:
    """Is ``name`` in ``dir_fd`` still the file open as ``fd``?"""
    try:
        on_disk = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


# ---------------------------------------------------------------- export


def export_sessions(
    store: FileSessionStore,
    sessions: Iterable[Session],
    target: str | os.PathLike[str],
    *,
    progress: Progress = _noop,
) -> ExportResult:
    """Write the directories of ``sessions`` (every file in them) to a ``.tar.gz``.

    The archive appears whole or not at all (written to a temp file, then
    renamed).  Each session's files are read under its lock.
    """
    chosen = list(sessions)
    destination = Path(target)
    temp = destination.with_name(f".{destination.name}.{secrets.token_hex(4)}.tmp")
    files = size = 0
    try:
        with tarfile.open(temp, "w:gz") as archive:
            manifest = {
                "format": EXPORT_FORMAT,
                "exported_at": format_timestamp(utcnow()),
                "sessions": {s.session_id: s.revision for s in chosen},
            }
            _add(archive, MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2), time.time())
            for number, session in enumerate(chosen, 1):
                sid = session.session_id
                try:
                    with store._locked(sid) as (_, sess_fd):
                        for relative, data, info in _walk(sess_fd):
                            _add(archive, f"{sid}/{relative}", data, info.st_mtime)
                            files += 1
                            size += len(data)
                except SessionNotFoundError:
                    log.warning("session %s disappeared before it was exported", sid)
                progress(number, len(chosen))
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, destination)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(error, SessionError):
            raise
        raise StorageError(None, f"writing {destination.name}", error) from error
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return ExportResult(len(chosen), files, size, destination)


def _add(archive: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


# ---------------------------------------------------------------- import


@dataclass(frozen=True)
class _Limits:
    file_bytes: int
    total_bytes: int


@dataclass
class _Plan:
    """What the archive holds, as its headers declare it."""

    revisions: dict[str, int] = field(default_factory=dict)
    #: Per session: relative path of each file -> declared size.
    files: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Per session: every directory the files need (and those listed as members).
    folders: dict[str, set[str]] = field(default_factory=dict)


def _refuse(name: str, why: str) -> SessionValidationError:
    return SessionValidationError(f"archive member {name[:80]!r} {why}")


def _member_path(name: str) -> tuple[str, str] | None:
    """(session id, relative path) of an archive member; ``None`` for the manifest."""
    if name.rstrip("/") == MANIFEST:
        return None
    if "\\" in name or "\x00" in name or name.startswith("/"):
        raise _refuse(name, "has an unsafe name")
    parts = PurePosixPath(name).parts
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise _refuse(name, "has an unsafe name")
    if not is_session_id(parts[0]):
        raise _refuse(name, "is not inside a session directory")
    # At any depth: a ``.lock`` directory, or a directory named like a temp
    # file, would break the session the moment it is put in place.
    if any(_is_internal(part) for part in parts[1:]):
        raise _refuse(name, "uses a name the store reserves for itself (a store-internal file)")
    return parts[0], "/".join(parts[1:])


class _BoundedTarInfo(tarfile.TarInfo):
    """A header that refuses what tarfile would otherwise read whole into memory."""

    # Overrides of tarfile's (undocumented, long-stable) per-header hooks.
    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_TYPES and self.size > _MAX_HEADER_BYTES:
            raise SessionValidationError(
                f"archive holds an extended header of {self.size} bytes; refused"
            )
        if self.type == tarfile.GNUTYPE_SPARSE:
            # Its map is read block after block with no bound on their number.
            raise _refuse(self.name, "is a sparse file; refused")
        return super()._proc_member(archive)  # type: ignore[misc,no-any-return]

    def _proc_gnusparse_10(self, *args: object) -> None:
        # The map of a pax 1.0 sparse file is read from the data area with no
        # bound on its length; sparse members are refused anyway.
        raise _refuse(self.name, "is a sparse file; refused")


_EXTENDED_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


class _Capped(io.RawIOBase):
    """The uncompressed stream of an archive, refused once it passes ``limit`` bytes."""

    def __init__(self, source: gzip.GzipFile, limit: int) -> None:
        self._source = source
        self._limit = limit
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        count = self._source.readinto(buffer)
        self._count += count
        if self._count > self._limit:
            raise SessionValidationError(
                f"the archive is larger than {self._limit} bytes uncompressed, "
                "the limit of one import"
            )
        return count


@contextlib.contextmanager
def _members(
    source: Path, limits: _Limits
) -> Iterator[tuple[tarfile.TarFile, Iterator[tarfile.TarInfo]]]:
    """The members of a ``.tar.gz``, read as a stream, one at a time.

    The stream is cut off past the import limit (plus room for the end
    blocks), and tarfile is not let keep every header it has seen.
    """
    with gzip.open(source, "rb") as unzipped:
        capped = _Capped(unzipped, limits.total_bytes + _MAX_HEADER_BYTES)
        with tarfile.open(
            fileobj=capped, mode="r|", tarinfo=_BoundedTarInfo, errorlevel=2
        ) as archive:

            def each() -> Iterator[tarfile.TarInfo]:
                while (member := archive.next()) is not None:
                    # A stream is read once; the list tarfile keeps of past
                    # headers would grow with the number of members.
                    archive.members.clear()  # type: ignore[attr-defined]
                    yield member

            yield archive, each()


def _archive_error(source: Path, error: BaseException) -> SessionError:
    if isinstance(error, SessionError):
        return error
    return SessionValidationError(f"{source.name} is not a readable .tar.gz ({error})")


_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
_READ_ERRORS = (*_ARCHIVE_ERRORS, OSError)


def _round(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _check_archive(source: Path, limits: _Limits) -> _Plan:
    """Read and check the whole archive before anything is written; what it holds."""
    plan = _Plan()
    declared = 0
    try:
        with _members(source, limits) as (archive, members):
            for member in members:
                # Sizes as the headers declare them, checked before the data is read.
                if member.size > limits.file_bytes:
                    raise _refuse(
                        member.name,
                        f"declares {member.size} bytes, more than the limit of "
                        f"{limits.file_bytes} per file",
                    )
                declared += _BLOCK + _round(member.size)
                if declared > limits.total_bytes:
                    raise SessionValidationError(
                        f"{source.name} declares more than {limits.total_bytes} bytes, "
                        "the limit of one import; nothing was imported"
                    )
                placed = _member_path(member.name)
                if placed is None:
                    continue
                sid, relative = placed
                files = plan.files.setdefault(sid, {})
                folders = plan.folders.setdefault(sid, set())
                if member.isdir():
                    if relative:
                        folders.add(relative)
                    continue
                if not member.isfile() or member.issparse():
                    raise _refuse(
                        member.name, "is not a regular file (links and devices are refused)"
                    )
                if not relative:
                    raise _refuse(member.name, "is not inside a session directory")
                if relative in files:
                    raise SessionValidationError(f"archive holds {sid}/{relative!r} twice")
                files[relative] = member.size
                parts = relative.split("/")
                folders.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
                if relative == METADATA:
                    if member.size > MAX_RECORD_BYTES:
                        raise SessionValidationError(f"session {sid}: metadata.json is too large")
                    plan.revisions[sid] = _read_record(archive, member, sid).revision
    except _READ_ERRORS as error:
        raise _archive_error(source, error) from None
    for sid in sorted(plan.files):
        if sid not in plan.revisions:
            raise SessionValidationError(
                f"archive directory {sid} has no metadata.json; nothing was imported"
            )
        clash = sorted(plan.files[sid].keys() & plan.folders[sid])
        if clash:
            raise SessionValidationError(
                f"archive holds {sid}/{clash[0]!r} both as a file and as a directory"
            )
    return plan


def _read_record(archive: tarfile.TarFile, member: tarfile.TarInfo, sid: str) -> Session:
    handle = archive.extractfile(member)
    assert handle is not None
    try:
        return decode_record(sid, handle.read(), where=METADATA)
    except CorruptSessionError as error:
        raise SessionValidationError(f"archive holds an invalid record: {error}") from None


class _Tree:
    """Descriptors of the folders below one directory, opened level by level.

    Every level is opened with ``O_NOFOLLOW``: a folder swapped for a symlink
    is refused, never followed out of the store.
    """

    def __init__(self, top_fd: int) -> None:
        self._fds: dict[str, int] = {"": top_fd}
        #: Folders this tree created, parents first.
        self.made: list[str] = []

    def folder(self, path: str, *, create: bool) -> int:
        fd = self._fds.get(path)
        if fd is not None:
            return fd
        parent, _, name = path.rpartition("/")
        parent_fd = self.folder(parent, create=create)
        if create:
            try:
                os.mkdir(name, 0o777, dir_fd=parent_fd)
                self.made.append(path)
            except FileExistsError:
                pass
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        self._fds[path] = fd
        return fd

    def sync(self) -> None:
        for fd in self._fds.values():
            os.fsync(fd)

    def remove_made(self) -> None:
        """Remove the folders this tree created (only if empty), deepest first."""
        for path in reversed(self.made):
            parent, _, name = path.rpartition("/")
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=self._fds[parent])

    def close(self) -> None:
        """Close every folder's descriptor but the top's, also when one fails to close."""
        opened, self._fds = self._fds, {"": self._fds[""]}
        failed: OSError | None = None
        for path, fd in opened.items():
            if path:
                try:
                    os.close(fd)
                except OSError as error:
                    failed = failed or error
        if failed is not None:
            raise failed


def _clashes(sess_fd: int, files: Iterable[str]) -> str | None:
    """The first archive path that cannot be put in place in this session directory.

    A folder the archive needs must be a directory here (or missing), and a
    file it brings must be a regular file here (or missing): a file where a
    folder is needed, a folder where a file goes, or a link anywhere on the
    way would make the import fail halfway.
    """
    kinds: dict[str, int | None] = {}

    def kind(path: str) -> int | None:
        if path not in kinds:
            try:
                kinds[path] = stat.S_IFMT(
                    os.stat(path, dir_fd=sess_fd, follow_symlinks=False).st_mode
                )
            except FileNotFoundError:
                kinds[path] = None
            except NotADirectoryError:
                kinds[path] = stat.S_IFREG  # a parent is not a directory: reported there
        return kinds[path]

    for relative in sorted(files):
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if kind(folder) not in (None, stat.S_IFDIR):
                return folder
        if kind(relative) not in (None, stat.S_IFREG):
            return relative
    return None


def _refuse_clash(sid: str, path: str) -> SessionValidationError:
    return SessionValidationError(
        f"the archive's {path!r} clashes with what the session holds "
        "(a file where a directory is needed, or the other way round); nothing was changed",
        session_id=sid,
    )


def _limit(value: int | None, default: int, what: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SessionValidationError(f"{what} must be a positive number of bytes")
    return value


def import_sessions(
    store: FileSessionStore,
    source: str | os.PathLike[str],
    *,
    max_file_bytes: int | None = None,
    max_total_bytes: int | None = None,
    progress: Progress = _noop,
) -> ImportResult:
    """Bring the sessions of an export into the store.

    Everything is read and checked before anything is written: unsafe member
    names, names the store reserves (at any depth), links, devices, sparse
    files, directories without a valid ``metadata.json``, a member declaring
    more than ``max_file_bytes`` (default 64 MiB), an archive larger than
    ``max_total_bytes`` uncompressed (default 1 GiB), a path that clashes
    with what a local session holds, not enough free space: each refuses the
    whole archive with a ``SessionValidationError`` (a ``StorageError`` for
    the disk).  Members are streamed to disk, never held in memory.

    A session that is not here yet is created; one that is here is replaced
    only by a higher revision, whole: its other files are put in place first
    (the ones they replace kept aside), the record last, and a failure on
    the way puts every file back.  Importing the same archive twice changes
    nothing the second time.
    """
    path = Path(source)
    limits = _Limits(
        _limit(max_file_bytes, MAX_FILE_BYTES, "max_file_bytes"),
        _limit(max_total_bytes, MAX_IMPORT_BYTES, "max_total_bytes"),
    )
    plan = _check_archive(path, limits)
    # A store reached through a link is refused even when nothing would be written.
    checked_fd = store._open_root(create=False)
    if checked_fd is not None:
        os.close(checked_fd)
    result = ImportResult()
    wanted: list[str] = []
    for sid, revision in plan.revisions.items():
        try:
            local: Session | None = store.load(sid)
        except (SessionNotFoundError, CorruptSessionError):
            local = None  # a readable copy beats an unreadable one
        if local is not None and local.revision >= revision:
            result.unchanged.append(sid)
        else:
            wanted.append(sid)
    if not wanted:
        return result
    root_fd = store._open_root(create=True)
    assert root_fd is not None
    try:
        for sid in wanted:
            _check_local(store, root_fd, sid, plan.files[sid])
        _check_space(
            root_fd,
            path,
            sum(_round(plan.files[sid][r]) for sid in wanted for r in plan.files[sid]),
        )
        staging, stage_fd, lock_fd = _open_staging(root_fd)
        try:
            try:
                _stage(store, stage_fd, path, plan, wanted, limits)
                os.mkdir(BACKUP, 0o777, dir_fd=stage_fd)
            except OSError as error:
                if isinstance(error, SessionError):
                    raise
                raise StorageError(None, f"unpacking {path.name}", error) from error
            for number, sid in enumerate(wanted, 1):
                try:
                    incoming = _staged_record(store, stage_fd, sid, plan.revisions[sid], path)
                    if _place_new(store, root_fd, stage_fd, sid, incoming):
                        result.created.append(sid)
                    elif _place_update(store, stage_fd, sid, incoming, plan.files[sid]):
                        result.updated.append(sid)
                    else:
                        result.unchanged.append(sid)
                except OSError as error:
                    if isinstance(error, SessionError):
                        raise
                    raise StorageError(sid, "importing the session", error) from error
                progress(number, len(wanted))
        finally:
            shutil.rmtree(store.sessions_dir / staging, ignore_errors=True)
            os.close(stage_fd)
            os.close(lock_fd)
    finally:
        os.close(root_fd)
    return result


def _check_local(store: FileSessionStore, root_fd: int, sid: str, files: Iterable[str]) -> None:
    """Refuse, before writing anything, an archive a local session cannot take whole."""
    try:
        sess_fd = store._open_session(root_fd, sid)
    except SessionNotFoundError:
        return
    try:
        clash = _clashes(sess_fd, (r for r in files if r != METADATA))
    except OSError as error:
        raise StorageError(sid, "checking the session's files", error) from error
    finally:
        os.close(sess_fd)
    if clash is not None:
        raise _refuse_clash(sid, clash)


def _check_space(root_fd: int, source: Path, needed: int) -> None:
    try:
        info = os.statvfs(root_fd)
    except OSError:
        return  # unknown: the writes themselves will tell
    if info.f_bavail * info.f_frsize < needed:
        raise StorageError(
            None,
            f"unpacking {source.name} ({needed} bytes)",
            OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
        )


def _open_staging(root_fd: int) -> tuple[str, int, int]:
    """A new staging directory, its lock held: (name, directory fd, lock fd).

    ``doctor`` removes a staging directory whose lock it can take; one it
    took between our ``mkdir`` and our lock is gone or going, so start over.
    """
    for _ in range(_STAGING_ATTEMPTS):
        name = f"{IMPORT_PREFIX}{secrets.token_hex(8)}"
        try:
            os.mkdir(name, 0o777, dir_fd=root_fd)
            stage_fd = os.open(name, _DIR_FLAGS, dir_fd=root_fd)
        except FileNotFoundError:
            continue  # removed by ``doctor`` before we could lock it: start over
        except OSError as error:
            raise StorageError(None, "creating the import's staging directory", error) from error
        try:
            lock_fd = os.open(LOCK, _LOCK_FLAGS, 0o666, dir_fd=stage_fd)
        except OSError as error:
            os.close(stage_fd)
            if error.errno == errno.ENOENT:
                continue
            raise StorageError(None, "creating the import's staging directory", error) from error
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _same_entry(root_fd, name, stage_fd) and _same_entry(stage_fd, LOCK, lock_fd):
                return name, stage_fd, lock_fd
        except BlockingIOError:
            pass
        os.close(lock_fd)
        os.close(stage_fd)
    raise StorageError(
        None,
        "creating the import's staging directory",
        OSError(errno.EBUSY, "removed again and again while being created"),
    )


def _stage(
    store: FileSessionStore,
    stage_fd: int,
    source: Path,
    plan: _Plan,
    wanted: list[str],
    limits: _Limits,
) -> None:
    """One pass over the archive: each wanted session's files below ``<staging>/<id>/``.

    Streamed in chunks; the record too (it is read back and checked again
    before it is placed).  A member that differs from the first pass means
    the archive changed meanwhile: refused.
    """
    for sid in wanted:
        os.mkdir(sid, 0o777, dir_fd=stage_fd)
    tree: _Tree | None = None
    tree_of = ""
    try:
        with _members(source, limits) as (archive, members):
            for member in members:
                placed = _member_path(member.name)
                if placed is None or member.isdir():
                    continue
                sid, relative = placed
                if plan.files.get(sid, {}).get(relative) != member.size or not member.isfile():
                    raise SessionValidationError(f"{source.name} changed while it was imported")
                if sid not in wanted:
                    continue
                if tree is None or tree_of != sid:
                    if tree is not None:
                        # Forgotten before it is closed: should what follows fail,
                        # the ``finally`` must not close its descriptors again (by
                        # then their numbers may be another file's).
                        done, tree = tree, None
                        _close_tree(done, store.durable)
                    tree = _Tree(os.open(sid, _DIR_FLAGS, dir_fd=stage_fd))
                    tree_of = sid
                folder, _, name = relative.rpartition("/")
                handle = archive.extractfile(member)
                assert handle is not None
                _copy(handle, tree.folder(folder, create=True), name, member.size, store.durable)
    except _ARCHIVE_ERRORS as error:
        # Only the archive's own faults; an OSError of a write of ours
        # reaches the caller, which reports it as a StorageError.
        raise _archive_error(source, error) from None
    finally:
        if tree is not None:
            _close_tree(tree, store.durable)


def _close_tree(tree: _Tree, durable: bool) -> None:
    try:
        if durable:
            tree.sync()
    finally:
        top = tree.folder("", create=False)
        try:
            tree.close()
        finally:
            os.close(top)


def _copy(handle: IO[bytes], dir_fd: int, name: str, size: int, durable: bool) -> None:
    """Write at most ``size`` bytes of ``handle`` to a new file ``name``."""
    fd = os.open(name, _NEW_FILE_FLAGS, 0o666, dir_fd=dir_fd)
    try:
        left = size
        while left > 0:
            chunk = handle.read(min(_CHUNK, left))
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            left -= len(chunk)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def _staged_record(
    store: FileSessionStore, stage_fd: int, sid: str, revision: int, source: Path
) -> Session:
    sess_fd = os.open(sid, _DIR_FLAGS, dir_fd=stage_fd)
    try:
        incoming = store._load_at(sess_fd, sid)
    except CorruptSessionError:
        incoming = None
    finally:
        os.close(sess_fd)
    if incoming is None or incoming.revision != revision:
        raise SessionValidationError(f"{source.name} changed while it was imported")
    return incoming


def _place_new(
    store: FileSessionStore, root_fd: int, stage_fd: int, sid: str, incoming: Session
) -> bool:
    """Rename a complete staged session into place; ``False`` if the id is taken."""
    try:
        os.stat(sid, dir_fd=root_fd, follow_symlinks=False)
        return False
    except FileNotFoundError:
        pass
    sess_fd = os.open(sid, _DIR_FLAGS, dir_fd=stage_fd)
    try:
        store._index_begin(sid)
        signature = store._write(sess_fd, incoming)  # the checked record, re-encoded
    finally:
        os.close(sess_fd)
    try:
        os.rename(sid, sid, src_dir_fd=stage_fd, dst_dir_fd=root_fd)
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False  # created meanwhile: update it instead
        raise StorageError(sid, "importing the session", error) from error
    if store.durable:
        try:
            os.fsync(root_fd)
        except OSError as error:
            raise StorageError(
                sid, "syncing the directory after the import", error, committed=True
            ) from error
    store._index_commit(incoming, signature)
    return True


@dataclass
class _Moved:
    """One file of an update, for putting things back."""

    folder: str
    name: str
    backup: str | None = None
    placed: bool = False


def _place_update(
    store: FileSessionStore, stage_fd: int, sid: str, incoming: Session, files: Iterable[str]
) -> bool:
    """Put the staged files into the existing session, then the record; all under its lock.

    Either every file and the record are in place, or (a clash found under
    the lock, an I/O error on the way) the session is left as it was.
    """
    with store._locked(sid) as (_, sess_fd):
        try:
            current: Session | None = store._load_at(sess_fd, sid)
        except (SessionNotFoundError, CorruptSessionError):
            current = None
        if current is not None and current.revision >= incoming.revision:
            return False  # someone got there first
        moving = sorted(r for r in files if r != METADATA)
        try:
            clash = _clashes(sess_fd, moving)
        except OSError as error:
            raise StorageError(sid, "checking the session's files", error) from error
        if clash is not None:
            raise _refuse_clash(sid, clash)
        # Every descriptor opened here is closed on the way out, also when an
        # open or a close fails (callbacks run last opened first, each one).
        held = contextlib.ExitStack()
        with held:
            staged_fd = os.open(sid, _DIR_FLAGS, dir_fd=stage_fd)
            held.callback(os.close, staged_fd)
            backup_fd = os.open(BACKUP, _DIR_FLAGS, dir_fd=stage_fd)
            held.callback(os.close, backup_fd)
            source, target = _Tree(staged_fd), _Tree(sess_fd)
            held.callback(target.close)
            held.callback(source.close)
            journal: list[_Moved] = []
            try:
                try:
                    for number, relative in enumerate(moving):
                        folder, _, name = relative.rpartition("/")
                        into = target.folder(folder, create=True)
                        entry = _Moved(folder, name)
                        journal.append(entry)
                        with contextlib.suppress(FileNotFoundError):
                            backup = f"{sid}-{number}"
                            os.rename(name, backup, src_dir_fd=into, dst_dir_fd=backup_fd)
                            entry.backup = backup
                        os.rename(
                            name,
                            name,
                            src_dir_fd=source.folder(folder, create=False),
                            dst_dir_fd=into,
                        )
                        entry.placed = True
                    if store.durable:
                        target.sync()
                except OSError as error:
                    raise StorageError(sid, "importing the session's files", error) from error
                store._index_begin(sid)
                signature = store._write(sess_fd, incoming)
            except BaseException as error:
                if not (isinstance(error, StorageError) and error.committed):
                    _put_back(journal, source, target, backup_fd)
                raise
        store._index_commit(incoming, signature)
    return True


def _put_back(journal: list[_Moved], source: _Tree, target: _Tree, backup_fd: int) -> None:
    """Undo a partial update: each new file back to staging, each replaced one back home."""
    for entry in reversed(journal):
        try:
            into = target.folder(entry.folder, create=False)
            if entry.placed:
                os.rename(
                    entry.name,
                    entry.name,
                    src_dir_fd=into,
                    dst_dir_fd=source.folder(entry.folder, create=False),
                )
            if entry.backup is not None:
                os.rename(entry.backup, entry.name, src_dir_fd=backup_fd, dst_dir_fd=into)
        except OSError as error:
            log.warning("could not put back %s/%s: %s", entry.folder, entry.name, error)
    target.remove_made()
