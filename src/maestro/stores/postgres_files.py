"""The files of PostgreSQL sessions on this host, and moving sessions in and out.

A session's record lives in the database; its other files (checkpoints,
reports) live in a directory on the local disk of the host that works on
it, under the store's ``local_root``.  :class:`LocalFiles`, mixed into
:class:`~maestro.stores.postgres.PostgresStore`, makes and removes those
directories, exports records with whatever files this host has, imports an
export (records into the database, files into local directories) and adopts
the session directories a file store left in a linked worktree.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maestro.codec import decode_record, encode_record
from maestro.errors import SessionValidationError, StorageError, UnsafePathError
from maestro.ids import check_session_id
from maestro.models import Session
from maestro.reports import AdoptResult, ExportResult, ImportResult, Progress
from maestro.stores.base import ChangeKind
from maestro.stores.postgres_shared import _COLUMNS, _create_key, _lock

if TYPE_CHECKING:
    from maestro.stores.postgres_shared import StoreParts as _Parts
else:
    _Parts = object


class LocalFiles(_Parts):
    """Local session directories, export, import and adoption (a mixin)."""

    def _sessions_dir(self) -> Path | None:
        if self.local_root is None:
            return None
        return self.local_root / ".flow" / "maestro" / "sessions"

    def session_directory(self, session_id: str) -> Path:
        """The session's directory on this host's disk (whether it exists or not)."""
        check_session_id(session_id)
        base = self._sessions_dir()
        if base is None:
            raise SessionValidationError("this PostgreSQL store has no local root")
        return base / session_id

    def _safe_parent(self) -> Path | None:
        """The local sessions directory, unless a part of it is a symlink."""
        base = self._sessions_dir()
        if base is None or self.local_root is None:
            return None
        here = self.local_root
        for part in (".flow", "maestro", "sessions"):
            here = here / part
            if here.is_symlink():
                raise UnsafePathError(None, f"{here} is a symbolic link; refusing to follow it")
        return base

    def _make_directory(self, session_id: str) -> None:
        base = self._safe_parent()
        if base is None:
            return
        try:
            (base / session_id).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(
                session_id, "making the local session directory", error, committed=True
            ) from None

    def _remove_directory(self, session_id: str) -> None:
        base = self._safe_parent()
        if base is None:
            return
        directory = base / session_id
        if directory.is_symlink():
            directory.unlink()
        elif directory.is_dir():
            try:
                shutil.rmtree(directory)
            except OSError as error:
                raise StorageError(
                    session_id, "removing the local session directory", error, committed=True
                ) from None

    # ------------------------------------------------------------ export and import

    def export_sessions(
        self,
        sessions: Iterable[Session],
        target: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> ExportResult:
        """The file store's export format: each record as ``metadata.json``, with the
        other files this host keeps in the session's local directory, if any.

        The archive is put together in a scratch file store and written by it,
        so both stores read and write one format.
        """
        from maestro.stores.files import FileSessionStore

        chosen = list(sessions)
        with tempfile.TemporaryDirectory(prefix="maestro-export-") as scratch:
            sessions_dir = Path(scratch) / "sessions"
            sessions_dir.mkdir()
            for session in chosen:
                folder = sessions_dir / session.session_id
                local = self._sessions_dir()
                source = None if local is None else local / session.session_id
                if source is not None and source.is_dir() and not source.is_symlink():
                    shutil.copytree(source, folder, symlinks=True)
                    (folder / "metadata.json").unlink(missing_ok=True)
                else:
                    folder.mkdir()
                (folder / "metadata.json").write_bytes(encode_record(session))
            scratch_store = FileSessionStore(
                sessions_dir, base=Path(scratch), index=False, durable=False
            )
            return scratch_store.export_sessions(chosen, target, progress=progress)

    def import_sessions(
        self,
        source: str | os.PathLike[str],
        *,
        max_file_bytes: int | None = None,
        max_total_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Bring in an export (of either store): records into the database, the
        other files of each session into its local directory on this host.

        The archive is checked whole and unpacked by a scratch file store
        first (the file store's limits and refusals apply); then each record
        is written here unless the database holds the same or a higher
        revision.  The record keeps its revision; the change feed reports a
        new session as ``created`` and a replaced one as ``replaced``.
        """
        from maestro.stores.files import FileSessionStore

        result = ImportResult()
        with tempfile.TemporaryDirectory(prefix="maestro-import-") as scratch:
            sessions_dir = Path(scratch) / "sessions"
            scratch_store = FileSessionStore(
                sessions_dir, base=Path(scratch), index=False, durable=False
            )
            scratch_store.import_sessions(
                source, max_file_bytes=max_file_bytes, max_total_bytes=max_total_bytes
            )
            entries = sorted(
                (entry for entry in scratch_store.scan() if entry.session is not None),
                key=lambda entry: entry.session_id,
            )
            for number, entry in enumerate(entries, 1):
                assert entry.session is not None
                outcome = self._put(entry.session)
                getattr(result, outcome).append(entry.session_id)
                if outcome != "unchanged":
                    self._place_files(sessions_dir / entry.session_id, entry.session_id)
                if progress is not None:
                    progress(number, len(entries))
        return result

    def _put(self, session: Session, *, only_new: bool = False) -> str:
        """Store ``session`` as it is unless a same or higher revision is here
        (with ``only_new``, unless it is here at all): ``created``, ``updated``
        or ``unchanged``."""
        session_id = session.session_id
        raw = encode_record(session)
        row = self._row(session, raw)

        def body(conn: Any) -> tuple[str, str]:
            _lock(conn, session_id)
            found = conn.execute(
                "SELECT project, revision FROM maestro_sessions WHERE "
                + self._one()
                + " LIMIT 1 FOR UPDATE",
                self._one_args(session_id),
            ).fetchone()
            if found is not None and (only_new or found[1] >= session.revision):
                return "unchanged", str(found[0])
            if found is None:
                project = self.project
                conn.execute(
                    f"INSERT INTO maestro_sessions ({_COLUMNS}) VALUES (%(project)s, "
                    "%(session_id)s, %(status)s, %(phase)s, %(branch)s, %(worktree)s, "
                    "%(created_at)s, %(updated_at)s, %(active_at)s, %(words)s::text[], "
                    "%(create_request)s, %(revision)s, %(record)s::jsonb)",
                    {**row, "project": project, "create_request": _create_key(session)},
                )
                kind, before = ChangeKind.CREATED, None
            else:
                project = found[0]
                conn.execute(
                    "UPDATE maestro_sessions SET status = %(status)s, phase = %(phase)s, "
                    "branch = %(branch)s, worktree = %(worktree)s, "
                    "created_at = %(created_at)s, updated_at = %(updated_at)s, "
                    "active_at = %(active_at)s, words = %(words)s::text[], "
                    "revision = %(revision)s, "
                    "create_request = %(create_request)s, record = %(record)s::jsonb "
                    "WHERE project = %(project)s AND session_id = %(session_id)s",
                    {**row, "project": project, "create_request": _create_key(session)},
                )
                kind, before = ChangeKind.REPLACED, None
            self._event(
                conn,
                project,
                kind,
                session,
                before,
                session.status.value,
                session.updated_at or session.created_at,
                None,
            )
            return ("created" if found is None else "updated"), str(project)

        outcome, project = self._run(session_id, "importing the session", body, write=True)
        self._trim(project)
        return outcome

    def _place_files(self, unpacked: Path, session_id: str) -> None:
        """The files of an imported session, other than its record, into its local directory."""
        base = self._safe_parent()
        if base is None:
            return
        target = base / session_id
        try:
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(unpacked.rglob("*")):
                relative = path.relative_to(unpacked)
                name = relative.as_posix()
                if name in ("metadata.json", ".lock") or path.is_symlink():
                    continue
                if name.startswith(".metadata.json."):
                    continue  # a file store writer's leftover
                if path.is_dir():
                    (target / relative).mkdir(parents=True, exist_ok=True)
                elif path.is_file():
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target / relative)
        except OSError as error:
            raise StorageError(
                session_id, "placing the session's files", error, committed=True
            ) from None

    def adopt_sessions(self, sessions_dir: str | os.PathLike[str], *, move: bool) -> AdoptResult:
        """The session directories of a file store at ``sessions_dir`` (a linked
        worktree's own, which ``doctor`` looks for); with ``move``, each comes in.

        Moving one takes its lock there (a session whose lock is busy stays
        for a later call), puts its record in the database as an import does
        (same revision, history and request ids), its other files in its
        directory on this host, and removes the directory.  An id the
        database holds already is reported, never overwritten; an unreadable
        record stays where it is (that store's ``doctor`` reports it).
        Links are not followed, as the file store refuses them.
        """
        from maestro.ids import is_session_id

        source = Path(sessions_dir).absolute()
        result = AdoptResult()
        if any(path.is_symlink() for path in (source.parent.parent, source.parent, source)):
            return result
        try:
            names = sorted(os.listdir(source))
        except OSError:
            return result
        ids = [
            name
            for name in names
            if is_session_id(name) and not (source / name).is_symlink() and (source / name).is_dir()
        ]
        where, args = self._where_project()

        def held(conn: Any) -> set[str]:
            rows = conn.execute(
                f"SELECT session_id FROM maestro_sessions WHERE {where} AND session_id = ANY(%s)",
                [*args, ids],
            ).fetchall()
            return {str(row[0]) for row in rows}

        here = self._run(None, "looking for sessions", held) if ids else set()
        for session_id in ids:
            result.found.append(session_id)
            if session_id in here:
                result.duplicates.append(session_id)
            elif move:
                outcome = self._adopt(source / session_id, session_id)
                if outcome == "moved":
                    result.moved.append(session_id)
                elif outcome == "duplicate":
                    result.duplicates.append(session_id)
        return result

    def _adopt(self, folder: Path, session_id: str) -> str:
        """Move one file-store session directory in (see :meth:`adopt_sessions`):
        ``moved``, ``duplicate`` (the database has it now) or ``stays``."""
        import fcntl

        try:
            lock_fd = os.open(
                folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
            )
        except OSError:
            return "stays"
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return "stays"  # a writer there has it now
            record = folder / "metadata.json"
            try:
                if record.is_symlink():
                    return "stays"
                session = decode_record(session_id, record.read_bytes(), where=f"{record}")
            except (OSError, ValueError):
                return "stays"
            if self._put(session, only_new=True) == "unchanged":
                return "duplicate"  # it came in from elsewhere meanwhile
            self._place_files(folder, session_id)
            try:
                shutil.rmtree(folder)
            except OSError as error:
                raise StorageError(
                    session_id, f"removing the adopted directory {folder}", error, committed=True
                ) from None
            return "moved"
        finally:
            os.close(lock_fd)
