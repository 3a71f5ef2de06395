"""Whole-directory maintenance of the file store: export, import, doctor.

These work on session *directories*, with every file other Maestro parts
keep there, not only on records, so they belong to the file store rather
than to the store-agnostic manager.  All of them go through directory
descriptors and refuse to follow symlinks, like the store itself.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import secrets
import shutil
import stat
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from maestro.errors import (
    CorruptSessionError,
    SessionError,
    SessionNotFoundError,
    SessionValidationError,
    StorageError,
    UnsafePathError,
)
from maestro.ids import is_session_id
from maestro.models import Session, format_timestamp, utcnow
from maestro.stores.files import (
    LOCK,
    MAX_RECORD_BYTES,
    METADATA,
    TEMP_PREFIX,
    TEMP_SUFFIX,
    TRASH_PREFIX,
    FileSessionStore,
    decode_record,
    replace_file,
)
from maestro.stores.index import IndexUnavailable, Signature, row_content

__all__ = [
    "DoctorReport",
    "ExportResult",
    "ImportResult",
    "Progress",
    "doctor",
    "export_sessions",
    "import_sessions",
]

log = logging.getLogger("maestro")

#: ``progress(done, total)`` after each session; ``total`` may be 0 when unknown.
Progress = Callable[[int, int], None]

MANIFEST = "maestro-export.json"
EXPORT_FORMAT = 1
IMPORT_PREFIX = ".import-"
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _noop(done: int, total: int) -> None:
    return None


def _is_ours(name: str) -> bool:
    """Files of the store itself, which never travel in an export."""
    return name == LOCK or (name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX))


def _walk(dir_fd: int, prefix: str = "") -> Iterator[tuple[str, bytes, os.stat_result]]:
    """Every regular file below ``dir_fd``: (relative path, contents, stat). No symlinks."""
    with os.scandir(dir_fd) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        if not prefix and _is_ours(name):
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


# ---------------------------------------------------------------- export


@dataclass(frozen=True)
class ExportResult:
    sessions: int
    files: int
    bytes: int
    path: Path


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


@dataclass
class ImportResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _member_path(name: str) -> tuple[str, str] | None:
    """(session id, relative path) of an archive member; ``None`` for the manifest."""
    if name.rstrip("/") == MANIFEST:
        return None
    if "\\" in name or "\x00" in name or name.startswith("/"):
        raise SessionValidationError(f"archive member {name[:80]!r} has an unsafe name")
    parts = PurePosixPath(name).parts
    if not parts or any(part in ("", ".", "..") for part in parts):
        raise SessionValidationError(f"archive member {name[:80]!r} has an unsafe name")
    if not is_session_id(parts[0]):
        raise SessionValidationError(
            f"archive member {name[:80]!r} is not inside a session directory"
        )
    if len(parts) > 1 and _is_ours(parts[1]) and len(parts) == 2:
        raise SessionValidationError(f"archive member {name[:80]!r} is a store-internal file")
    return parts[0], "/".join(parts[1:])


def _check_archive(source: Path) -> dict[str, Session]:
    """Read and check the whole archive; the sessions it holds, by id."""
    records: dict[str, Session] = {}
    seen: set[str] = set()
    holders: set[str] = set()
    try:
        with tarfile.open(source, "r:gz") as archive:
            for member in archive:
                placed = _member_path(member.name)
                if placed is None:
                    continue
                sid, relative = placed
                holders.add(sid)
                if member.isdir():
                    continue
                if not member.isfile():
                    raise SessionValidationError(
                        f"archive member {member.name[:80]!r} is not a regular file "
                        "(links and devices are refused)"
                    )
                key = f"{sid}/{relative}"
                if key in seen:
                    raise SessionValidationError(f"archive holds {key!r} twice")
                seen.add(key)
                if relative == METADATA:
                    if member.size > MAX_RECORD_BYTES:
                        raise SessionValidationError(f"session {sid}: metadata.json is too large")
                    handle = archive.extractfile(member)
                    assert handle is not None
                    try:
                        records[sid] = decode_record(sid, handle.read())
                    except CorruptSessionError as error:
                        raise SessionValidationError(
                            f"archive holds an invalid record: {error}"
                        ) from None
    except (tarfile.TarError, EOFError, OSError) as error:
        if isinstance(error, SessionError):
            raise
        raise SessionValidationError(f"{source.name} is not a readable .tar.gz ({error})") from None
    missing = sorted(holders - set(records))
    if missing:
        raise SessionValidationError(
            f"archive directory {missing[0]} has no metadata.json; nothing was imported"
        )
    return records


def _write_file(dir_fd: int, relative: str, data: bytes, durable: bool) -> None:
    """Put ``data`` at ``relative`` below ``dir_fd`` atomically, making subdirectories."""
    *folders, name = relative.split("/")
    fds: list[int] = []
    try:
        current = dir_fd
        for folder in folders:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o777, dir_fd=current)
            current = os.open(folder, _DIR_FLAGS, dir_fd=current)
            fds.append(current)
        temp = f".{name}.{secrets.token_hex(4)}.import.tmp"
        replace_file(current, name, data, temp=temp, durable=durable)
    finally:
        for fd in reversed(fds):
            os.close(fd)


def import_sessions(
    store: FileSessionStore,
    source: str | os.PathLike[str],
    *,
    progress: Progress = _noop,
) -> ImportResult:
    """Bring the sessions of an export into the store.

    Everything is read and checked before anything is written: unsafe member
    names, links, devices, directories without a valid ``metadata.json``
    refuse the whole archive with a ``SessionValidationError``.  A session
    that is not here yet is created; one that is here is replaced only by a
    higher revision (its other files are put in place first, the record
    last).  Importing the same archive twice changes nothing the second time.
    """
    path = Path(source)
    records = _check_archive(path)
    result = ImportResult()
    wanted: dict[str, Session] = {}
    for sid, incoming in records.items():
        try:
            local: Session | None = store.load(sid)
        except (SessionNotFoundError, CorruptSessionError):
            local = None  # a readable copy beats an unreadable one
        if local is not None and local.revision >= incoming.revision:
            result.unchanged.append(sid)
        else:
            wanted[sid] = incoming
    root_fd = store._open_root(create=True)
    assert root_fd is not None
    staged: dict[str, str] = {}
    try:
        try:
            _stage(store, root_fd, path, wanted, staged)
        except OSError as error:
            raise StorageError(None, f"unpacking {path.name}", error) from error
        for number, (sid, incoming) in enumerate(wanted.items(), 1):
            staging = staged.get(sid) or _new_staging(root_fd, sid, staged)
            if _place_new(store, root_fd, staging, sid, incoming):
                result.created.append(sid)
            elif _place_update(store, root_fd, staging, sid, incoming):
                result.updated.append(sid)
            else:
                result.unchanged.append(sid)
            progress(number, len(wanted))
    finally:
        for staging in staged.values():
            shutil.rmtree(store.sessions_dir / staging, ignore_errors=True)
        os.close(root_fd)
    return result


def _new_staging(root_fd: int, sid: str, staged: dict[str, str]) -> str:
    name = f"{IMPORT_PREFIX}{sid}-{secrets.token_hex(4)}"
    os.mkdir(name, 0o777, dir_fd=root_fd)
    staged[sid] = name
    return name


def _stage(
    store: FileSessionStore,
    root_fd: int,
    source: Path,
    wanted: dict[str, Session],
    staged: dict[str, str],
) -> None:
    """One pass over the archive: each wanted session's files into its staging dir."""
    with tarfile.open(source, "r:gz") as archive:
        for member in archive:
            placed = _member_path(member.name)
            if placed is None or not member.isfile() or placed[0] not in wanted:
                continue
            sid, relative = placed
            if relative == METADATA:
                continue  # written last, from the checked record
            staging = staged.get(sid) or _new_staging(root_fd, sid, staged)
            handle = archive.extractfile(member)
            assert handle is not None
            stage_fd = os.open(staging, _DIR_FLAGS, dir_fd=root_fd)
            try:
                _write_file(stage_fd, relative, handle.read(), store.durable)
            finally:
                os.close(stage_fd)


def _place_new(
    store: FileSessionStore, root_fd: int, staging: str, sid: str, incoming: Session
) -> bool:
    """Rename a complete staging directory into place; ``False`` if the id is taken."""
    try:
        os.stat(sid, dir_fd=root_fd, follow_symlinks=False)
        return False
    except FileNotFoundError:
        pass
    stage_fd = os.open(staging, _DIR_FLAGS, dir_fd=root_fd)
    try:
        store._index_begin(sid)
        signature = store._write(stage_fd, incoming)
    finally:
        os.close(stage_fd)
    try:
        os.rename(staging, sid, src_dir_fd=root_fd, dst_dir_fd=root_fd)
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False  # created meanwhile: update it instead
        raise StorageError(sid, "importing the session", error) from error
    if store.durable:
        os.fsync(root_fd)
    store._index_commit(incoming, signature)
    return True


def _place_update(
    store: FileSessionStore, root_fd: int, staging: str, sid: str, incoming: Session
) -> bool:
    """Move the staged files into the existing directory, then the record; under the lock."""
    with store._locked(sid) as (_, sess_fd):
        try:
            current: Session | None = store._load_at(sess_fd, sid)
        except (SessionNotFoundError, CorruptSessionError):
            current = None
        if current is not None and current.revision >= incoming.revision:
            return False  # someone got there first
        stage_fd = os.open(staging, _DIR_FLAGS, dir_fd=root_fd)
        try:
            _move_tree(stage_fd, sess_fd, store.durable)
        except OSError as error:
            raise StorageError(sid, "importing the session's files", error) from error
        finally:
            os.close(stage_fd)
        store._index_begin(sid)
        signature = store._write(sess_fd, incoming)
    store._index_commit(incoming, signature)
    return True


def _move_tree(source_fd: int, target_fd: int, durable: bool) -> None:
    """Rename every file below ``source_fd`` to the same place below ``target_fd``."""
    for name in sorted(os.listdir(source_fd)):
        info = os.stat(name, dir_fd=source_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=target_fd)
            inner_source = os.open(name, _DIR_FLAGS, dir_fd=source_fd)
            inner_target = os.open(name, _DIR_FLAGS, dir_fd=target_fd)
            try:
                _move_tree(inner_source, inner_target, durable)
            finally:
                os.close(inner_source)
                os.close(inner_target)
        else:
            os.replace(name, name, src_dir_fd=source_fd, dst_dir_fd=target_fd)
    if durable:
        os.fsync(target_fd)


# ---------------------------------------------------------------- doctor


@dataclass
class DoctorReport:
    """What :func:`doctor` found (and, with ``fix``, did)."""

    sessions: int = 0
    corrupt: dict[str, str] = field(default_factory=dict)
    unsafe: dict[str, str] = field(default_factory=dict)
    without_metadata: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    index: str = "ok"
    #: Sessions whose index row differs from their file, or that have none.
    stale_rows: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    #: The problems above that ``fix`` resolved (ids, temp file paths, leftover names).
    resolved: set[str] = field(default_factory=set)

    @property
    def healthy(self) -> bool:
        """No problem left unresolved (sessions without metadata.json are normal)."""
        found = [*self.corrupt, *self.unsafe, *self.temp_files, *self.leftovers]
        return all(item in self.resolved for item in found) and self.index in (
            "ok",
            "off",
            "rebuilt",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "sessions": self.sessions,
            "corrupt": self.corrupt,
            "unsafe": self.unsafe,
            "without_metadata": self.without_metadata,
            "temp_files": self.temp_files,
            "leftovers": self.leftovers,
            "index": self.index,
            "stale_rows": self.stale_rows,
            "fixed": self.fixed,
            "resolved": sorted(self.resolved),
        }


def doctor(
    store: FileSessionStore,
    *,
    fix: bool = False,
    reindex: bool = False,
    progress: Progress = _noop,
) -> DoctorReport:
    """Check every session directory and the index; with ``fix``, repair.

    Corrupt or unsafe sessions are moved to ``.flow/maestro/quarantine/``
    (never deleted), temp files of killed writers and half-finished deletes
    or imports are removed, and the index is rebuilt.  Directories that only
    hold other components' files (no ``metadata.json``) are listed, never
    touched.
    """
    report = DoctorReport()
    root_fd = store._open_root(create=False)
    if root_fd is None:
        report.index = "off" if store.index is None else "ok"
        return report
    try:
        names = sorted(os.listdir(root_fd))
        report.leftovers = [n for n in names if n.startswith((TRASH_PREFIX, IMPORT_PREFIX))]
        ids = [n for n in names if is_session_id(n)]
        signatures: dict[str, Signature] = {}
        for number, sid in enumerate(ids, 1):
            _examine(store, root_fd, sid, report, signatures)
            progress(number, len(ids))
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
    except SessionError:
        return
    try:
        report.temp_files.extend(
            f"{sid}/{name}"
            for name in os.listdir(sess_fd)
            if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)
        )
        try:
            _, signature = store._load_signed(sess_fd, sid)
        except SessionNotFoundError:
            report.without_metadata.append(sid)
            return
        except UnsafePathError as error:
            report.unsafe[sid] = str(error)
            return
        except SessionError as error:
            report.corrupt[sid] = str(error)
            return
        report.sessions += 1
        signatures[sid] = signature
    finally:
        os.close(sess_fd)


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
    if pending:
        problems.append(f"{len(pending)} interrupted write(s)")
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
    for sid in [*report.corrupt, *report.unsafe]:
        quarantine.mkdir(parents=True, exist_ok=True)
        target = quarantine / f"{sid}-{stamp}"
        try:
            if sid in report.unsafe:
                os.rename(sid, target, src_dir_fd=root_fd)  # moves the link, not its target
            else:
                with store._locked(sid):
                    os.rename(sid, target, src_dir_fd=root_fd)
        except (OSError, SessionError) as error:
            log.warning("could not quarantine %s: %s", sid, error)
            continue
        report.fixed.append(f"quarantined {sid} to {target.relative_to(store.sessions_dir.parent)}")
        report.resolved.add(sid)
    for relative in report.temp_files:
        sid, name = relative.split("/", 1)
        try:
            with store._locked(sid) as (_, sess_fd):
                os.unlink(name, dir_fd=sess_fd)
        except (OSError, SessionError):
            continue
        report.fixed.append(f"removed {relative}")
        report.resolved.add(relative)
    for name in report.leftovers:
        shutil.rmtree(store.sessions_dir / name, ignore_errors=True)
        if not (store.sessions_dir / name).exists():
            report.fixed.append(f"removed {name}")
            report.resolved.add(name)
