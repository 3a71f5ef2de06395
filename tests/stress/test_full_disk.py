"""A full disk and an unusable index: every public operation fails typed, or works.

Every public method of ``SessionManager`` and of the exported
``FileSessionStore``, and every command of the ``maestro`` CLI, runs on a copy
of one small store (sessions in several states, one corrupt record, an index,
an archive to import) in two kinds of trouble:

* **A full disk.**  The disk fills up at the N-th call of one kind: ``os.open``,
  ``os.write``, ``os.mkdir``, ``os.replace``, ``os.rename``, ``os.fsync``, the
  opening or writing of a file object (archives), or an SQLite statement of
  the index.  From that call on every call of every kind fails with
  ``ENOSPC``; SQLite's connection is capped at the pages it has
  (``max_page_count``), so SQLite itself reports ``SQLITE_FULL`` the way it does
  on a real full disk.  N = 1 of every kind is always tried, then a sample
  (every N with ``MAESTRO_STRESS=full``).
* **An unusable index.**  ``index.sqlite3`` is a directory; the index can only
  be opened read-only (a read-only directory); every SQLite connection is
  full from the start.  The JSON files are the truth, so here every operation
  must succeed except those whose whole point is the index (rebuilding it,
  ``doctor --reindex`` / ``--fix``), which raise a ``StorageError`` with the
  cause's errno.

What must hold: the API raises nothing but ``SessionError`` subclasses (a
``StorageError`` carrying ``ENOSPC`` on the full disk), no message or warning
says "cannot rollback" instead of the cause, queries still agree with the
files once the disk has room again, and the CLI never prints a traceback: it
exits 0, or 1 with one ``error:`` line (``doctor`` may also exit 1 on a report).
"""

from __future__ import annotations

import builtins
import dataclasses
import errno
import inspect
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from maestro import (
    FileSessionStore,
    GitContext,
    SessionError,
    SessionManager,
    SessionQuery,
    SessionStatus,
    StorageError,
    UnsupportedOperationError,
)
from maestro.cli import cli
from maestro.stores.index import IndexUnavailable, SessionIndex

from .conftest import size

S = SessionStatus
GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)
OLD = datetime.now(UTC) - timedelta(days=10)
REQUEST = "Add OAuth login to the settings page"
OS_KINDS = ("open", "write", "mkdir", "replace", "rename", "fsync")
KINDS = (*OS_KINDS, "file", "sqlite")
#: How many N are tried per kind of call, besides the first and the last.
SAMPLE = size(2, 10_000)
NO_SPACE = os.strerror(errno.ENOSPC)

STATS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nfull disk: {dict(sorted(STATS.items()))}")


@pytest.fixture(autouse=True)
def index_must_answer() -> None:
    """Replaces the suite's guard: here queries are meant to fall back to a scan."""


# ---------------------------------------------------------------- the disk


class Disk:
    """Counts the calls that write (or could) and fills the disk at one of them.

    Only calls of the arming thread between ``armed()``'s entry and exit count,
    so the test's own copying never shifts N.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: Counter[str] = Counter()
        self.fault: tuple[str, int] | None = None
        self.full = False
        self.thread: int | None = None
        for name in OS_KINDS:
            monkeypatch.setattr(os, name, self._wrap(name, getattr(os, name)))
        real_open = builtins.open

        def open_file(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            writing = any(flag in mode for flag in "wax+")
            if writing and self._event("file"):
                raise OSError(errno.ENOSPC, NO_SPACE, str(file))
            handle = real_open(file, mode, *args, **kwargs)
            return _FileOnDisk(handle, self) if writing and self._mine() else handle

        monkeypatch.setattr(builtins, "open", open_file)
        full_disk = _full_connection(lambda: self._event("sqlite"))
        real_connect = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            kwargs.setdefault("factory", full_disk)
            return real_connect(*args, **kwargs)

        monkeypatch.setattr(sqlite3, "connect", connect)

    def _mine(self) -> bool:
        return self.thread is not None and threading.get_ident() == self.thread

    def _event(self, kind: str) -> bool:
        """Count one call; true when the disk is (now) full."""
        if not self._mine():
            return False
        self.counts[kind] += 1
        if self.fault is not None and self.fault == (kind, self.counts[kind]):
            self.full = True
            STATS["faults"] += 1
        return self.full

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._event(name):
                raise OSError(errno.ENOSPC, NO_SPACE)
            return real(*args, **kwargs)

        return wrapper

    @contextmanager
    def armed(self, fault: tuple[str, int] | None = None) -> Iterator[None]:
        self.counts.clear()
        self.fault = fault
        self.full = False
        self.thread = threading.get_ident()
        try:
            yield
        finally:
            self.thread = None
            self.fault = None
            self.full = False


def _disk_full_error() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    # What SQLite attaches to the errors it raises itself.
    error.sqlite_errorcode = sqlite3.SQLITE_FULL
    error.sqlite_errorname = "SQLITE_FULL"
    return error


def _full_connection(full: Callable[[], bool]) -> type[sqlite3.Connection]:
    """A connection that behaves as SQLite does on a full disk once ``full()``.

    A statement that needs a new page fails (the database is capped at the
    pages it has), and so does every COMMIT, since the WAL cannot grow: SQLite
    then rolls the transaction back by itself, as it does after SQLITE_FULL.
    ``full()`` is asked at every statement (the disk counts them).
    """

    class Connection(sqlite3.Connection):
        capped = False

        def _room(self, sql: object) -> None:
            if not full():
                return
            if not self.capped:
                self.capped = True
                pages = super().execute("PRAGMA page_count").fetchone()[0]
                super().execute(f"PRAGMA max_page_count = {max(int(pages), 1)}")
            if str(sql).strip().upper().startswith(("COMMIT", "END")):
                if self.in_transaction:
                    super().execute("ROLLBACK")
                raise _disk_full_error()

        def execute(self, sql: str, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
            self._room(sql)
            return super().execute(sql, *args, **kwargs)

        def executemany(self, sql: str, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
            self._room(sql)
            return super().executemany(sql, *args, **kwargs)

    return Connection


class _FileOnDisk:
    """A file object whose writes fail once the disk is full."""

    def __init__(self, handle: Any, disk: Disk) -> None:
        self._handle = handle
        self._disk = disk

    def write(self, data: Any) -> int:
        if self._disk._event("file"):
            raise OSError(errno.ENOSPC, NO_SPACE)
        return int(self._handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _FileOnDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


# ---------------------------------------------------------------- the store


@dataclasses.dataclass(frozen=True)
class Template:
    root: Path
    archive: Path
    ids: dict[str, str]


def _make_template(base: Path) -> Template:
    root = base / "template"
    manager = SessionManager(root, clock=lambda: OLD)

    def new(request: str = REQUEST) -> str:
        return manager.create_session(request, git_context=GIT).session_id

    ids = {"fresh": new(), "planning": new(), "paused": new(), "report": new(), "done": new()}
    for name in ("planning", "paused", "report", "done"):
        manager.transition_state(ids[name], S.PLANNING)
    manager.pause_session(ids["paused"], reason="waiting for review")
    for name in ("report", "done"):
        for state in (S.GENERATING_TASKS, S.IMPLEMENTING, S.VALIDATING, S.GENERATING_REPORT):
            manager.transition_state(ids[name], state)
    manager.transition_state(ids["done"], S.COMPLETED)
    ids["corrupt"] = new()
    (manager.sessions_dir / ids["corrupt"] / "metadata.json").write_text('{"session_id": ')
    manager.query_sessions()  # the index, with the corrupt session remembered

    elsewhere = SessionManager(base / "elsewhere", clock=lambda: OLD)
    incoming = elsewhere.create_session("Imported: OAuth for the API", git_context=GIT)
    (elsewhere.sessions_dir / incoming.session_id / "checkpoints.json").write_text("{}")
    elsewhere.create_session("Imported: dark mode", git_context=GIT)
    archive = base / "incoming.tar.gz"
    elsewhere.export_sessions(archive)
    return Template(root, archive, ids)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    return _make_template(tmp_path_factory.mktemp("full-disk"))


def _copy(template: Template, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(template.root, target, symlinks=True)
    return target


# ---------------------------------------------------------------- the operations

Api = Callable[[SessionManager, dict[str, str], Path, Path], object]


def _store(manager: SessionManager) -> FileSessionStore:
    assert isinstance(manager.store, FileSessionStore)
    return manager.store


def _store_create(m: SessionManager, ids: dict[str, str], work: Path, archive: Path) -> object:
    copy = dataclasses.replace(m.get_session(ids["planning"]), session_id=str(uuid.uuid4()))
    return _store(m).create(copy)


def _store_adopt(m: SessionManager, ids: dict[str, str], work: Path, archive: Path) -> object:
    """A session directory of another store (a worktree's own), moved in."""
    other = work / "worktree" / ".flow" / "maestro" / "sessions"
    other.mkdir(parents=True, exist_ok=True)
    copy = dataclasses.replace(m.get_session(ids["planning"]), session_id=str(uuid.uuid4()))
    FileSessionStore(other, durable=False, index=False).create(copy)
    return _store(m).adopt_sessions(other, move=True)


def _phase(m: SessionManager, ids: dict[str, str], work: Path, archive: Path) -> object:
    """A phase entered and left for the next state, with a progress report."""
    with m.phase(ids["planning"], S.PLANNING, next=S.GENERATING_TASKS) as p:
        p.progress(total_tasks=2)
    return p.session


def _hooked(m: SessionManager, ids: dict[str, str], work: Path, archive: Path) -> object:
    """A transition with a hook that raises: logged, never an error of the write."""

    def broken(*args: object) -> None:
        raise RuntimeError("a hook's bug")

    m.on_transition(broken)
    return m.transition_state(ids["planning"], S.GENERATING_TASKS)


def _unless_unsupported(operation: Callable[[], object]) -> object:
    """A database-only operation: the file store declines it, which is no failure."""
    try:
        return operation()
    except UnsupportedOperationError:
        return None


#: Every public method of SessionManager and FileSessionStore, with arguments
#: that make it do its real work on the template store.
API: dict[str, Api] = {
    "create_session": lambda m, ids, w, a: m.create_session(REQUEST, git_context=GIT),
    "resolve_session_id": lambda m, ids, w, a: m.resolve_session_id(ids["planning"][:8]),
    "get_session": lambda m, ids, w, a: m.get_session(ids["planning"]),
    "update_session": lambda m, ids, w, a: m.update_session(
        ids["fresh"], {"statistics": {"total_tasks": 3}}
    ),
    "transition_state": lambda m, ids, w, a: m.transition_state(
        ids["planning"], S.GENERATING_TASKS
    ),
    "query_sessions": lambda m, ids, w, a: m.query_sessions(status="planning", text="oauth"),
    "count_sessions": lambda m, ids, w, a: m.count_sessions(status=["planning", "paused"]),
    "query_page": lambda m, ids, w, a: m.query_page(limit=1, text="oauth"),
    "query_page(with_total)": lambda m, ids, w, a: m.query_page(limit=2, with_total=True),
    "page_is_current": lambda m, ids, w, a: m.page_is_current(m.query_page(limit=2)),
    "session_ids": lambda m, ids, w, a: m.session_ids(ids["planning"][:8]),
    "timeline": lambda m, ids, w, a: m.timeline(ids["planning"]),
    "rebuild_index": lambda m, ids, w, a: m.rebuild_index(),
    "list_active_sessions": lambda m, ids, w, a: m.list_active_sessions(),
    "iter_sessions": lambda m, ids, w, a: list(m.iter_sessions(status="planning", limit=5)),
    "get_recent_sessions": lambda m, ids, w, a: m.get_recent_sessions(3),
    "delete_session": lambda m, ids, w, a: m.delete_session(ids["fresh"]),
    "pause_session": lambda m, ids, w, a: m.pause_session(ids["planning"], reason="lunch"),
    "resume_session": lambda m, ids, w, a: m.resume_session(ids["paused"]),
    "increment_statistics": lambda m, ids, w, a: m.increment_statistics(
        ids["planning"], completed_tasks=1
    ),
    "heartbeat": lambda m, ids, w, a: m.heartbeat(ids["planning"]),
    "phase": _phase,
    "resume_run": lambda m, ids, w, a: m.resume_run(ids["paused"]),
    "on_transition": _hooked,
    "on_change": lambda m, ids, w, a: (
        m.on_change(lambda kind, session: None),
        m.increment_statistics(ids["planning"], completed_tasks=1),
    ),
    "rerun_session": lambda m, ids, w, a: m.rerun_session(ids["done"]),
    "reruns_of": lambda m, ids, w, a: m.reruns_of(ids["done"]),
    "session_directory": lambda m, ids, w, a: m.session_directory(ids["planning"]),
    "find_stale_sessions": lambda m, ids, w, a: m.find_stale_sessions(),
    "reap_stale_sessions": lambda m, ids, w, a: m.reap_stale_sessions(),
    "gc": lambda m, ids, w, a: m.gc(timedelta(days=1)),
    "stats": lambda m, ids, w, a: m.stats(),
    "export_sessions": lambda m, ids, w, a: m.export_sessions(w / "out.tar.gz"),
    "import_sessions": lambda m, ids, w, a: m.import_sessions(a),
    "doctor": lambda m, ids, w, a: m.doctor(),
    "doctor(reindex)": lambda m, ids, w, a: m.doctor(reindex=True),
    "doctor(fix)": lambda m, ids, w, a: m.doctor(fix=True),
    "changes": lambda m, ids, w, a: list(m.changes(timeout=0.05, follow=True)) + list(m.changes()),
    "changes_cursor": lambda m, ids, w, a: m.changes_cursor(),
    "change_filter": lambda m, ids, w, a: [m.change_filter(branch="main")(e) for e in m.changes()],
    "upgrade_schema": lambda m, ids, w, a: _unless_unsupported(m.upgrade_schema),
    "store.load": lambda m, ids, w, a: _store(m).load(ids["planning"]),
    "store.create": _store_create,
    "store.modify": lambda m, ids, w, a: _store(m).modify(ids["planning"], lambda s: s),
    "store.delete": lambda m, ids, w, a: _store(m).delete(ids["fresh"]),
    "store.session_ids": lambda m, ids, w, a: _store(m).session_ids(),
    "store.scan": lambda m, ids, w, a: list(_store(m).scan()),
    "store.query": lambda m, ids, w, a: _store(m).query(SessionQuery(limit=2)),
    "store.count": lambda m, ids, w, a: _store(m).count(SessionQuery()),
    "store.query_stamped": lambda m, ids, w, a: _store(m).query_stamped(
        SessionQuery(limit=2), count=True
    ),
    "store.is_current": lambda m, ids, w, a: _store(m).is_current(
        _store(m).query_stamped(SessionQuery(limit=2))[2]
    ),
    "store.rebuild_index": lambda m, ids, w, a: _store(m).rebuild_index(),
    "store.reindex": lambda m, ids, w, a: _store(m).reindex([ids["planning"]]),
    "store.export_sessions": lambda m, ids, w, a: _store(m).export_sessions(
        _store(m).query(SessionQuery()), w / "store-out.tar.gz"
    ),
    "store.import_sessions": lambda m, ids, w, a: _store(m).import_sessions(a),
    "store.session_directory": lambda m, ids, w, a: _store(m).session_directory(ids["done"]),
    "store.doctor": lambda m, ids, w, a: _store(m).doctor(),
    "store.adopt_sessions": _store_adopt,
    "store.changes_after": lambda m, ids, w, a: _store(m).changes_after(None),
    "store.feed_end": lambda m, ids, w, a: _store(m).feed_end(),
    "store.wait_for_change": lambda m, ids, w, a: _store(m).wait_for_change(
        _store(m).feed_end(), 0.05
    ),
}

#: Every command, with arguments that make it do its real work.
CLI: dict[str, Callable[[dict[str, str], Path, Path], list[str]]] = {
    "create": lambda ids, w, a: ["create", REQUEST],
    "show": lambda ids, w, a: ["show", ids["planning"][:8]],
    "list": lambda ids, w, a: ["list"],
    "search": lambda ids, w, a: ["search", "oauth"],
    "transition": lambda ids, w, a: ["transition", ids["planning"], "generating_tasks"],
    "pause": lambda ids, w, a: ["pause", ids["planning"]],
    "resume": lambda ids, w, a: ["resume", ids["paused"]],
    "fail": lambda ids, w, a: ["fail", ids["planning"], "--reason", "broken"],
    "complete": lambda ids, w, a: ["complete", ids["report"]],
    "update": lambda ids, w, a: ["update", ids["fresh"], "--set", "statistics.total_tasks=3"],
    "increment": lambda ids, w, a: ["increment", ids["planning"], "completed_tasks"],
    "heartbeat": lambda ids, w, a: ["heartbeat", ids["planning"]],
    "rerun": lambda ids, w, a: ["rerun", ids["done"]],
    "path": lambda ids, w, a: ["path", ids["planning"]],
    "show finished": lambda ids, w, a: ["show", ids["done"]],
    "delete": lambda ids, w, a: ["delete", ids["fresh"], "--yes"],
    "stats": lambda ids, w, a: ["stats"],
    "stale": lambda ids, w, a: ["stale"],
    "stale --reap": lambda ids, w, a: ["stale", "--reap"],
    "gc": lambda ids, w, a: ["gc", "--older-than", "1d"],
    "export": lambda ids, w, a: ["export", "--force", "-o", str(w / "out.tar.gz")],
    "import": lambda ids, w, a: ["import", str(a)],
    "doctor": lambda ids, w, a: ["doctor"],
    "doctor --reindex": lambda ids, w, a: ["doctor", "--reindex"],
    "doctor --fix": lambda ids, w, a: ["doctor", "--fix"],
    "demo": lambda ids, w, a: ["demo"],
    "db upgrade": lambda ids, w, a: ["db", "upgrade"],
    "watch": lambda ids, w, a: ["watch", "--timeout", "0.05"],
    "watch ID": lambda ids, w, a: ["watch", ids["planning"], "--timeout", "0.05"],
    # Served over stdio until its input ends: at once, as the runner gives none.
    "mcp": lambda ids, w, a: ["mcp"],
    # A server runs until stopped: here it opens the store, then refuses to bind
    # beyond loopback without a token (its routes are tested in tests/test_server*.py).
    "serve": lambda ids, w, a: ["serve", "--host", "0.0.0.0"],  # noqa: S104
}

#: Operations still known to let an untyped error escape (none).
PENDING: dict[str, str] = {}
#: What exists to use the index: with an unusable index, these must fail.
NEEDS_INDEX = {
    "rebuild_index",
    "store.rebuild_index",
    "store.reindex",
    "doctor(reindex)",
    "doctor(fix)",
}
#: ``doctor`` reports the unusable index as a problem: exit 1, one line.
NEEDS_INDEX_CLI = {"doctor", "doctor --reindex", "doctor --fix"}
#: The change feed lives in the index: without a usable one it fails (typed)
#: or reads what is there, depending on the trouble.
FEED = {
    "changes",
    "changes_cursor",
    "change_filter",
    "store.changes_after",
    "store.feed_end",
    "store.wait_for_change",
}
#: ``watch ID`` exits 1 when the session has not ended by its timeout.
FEED_CLI = {"watch", "watch ID"}
#: Refused on purpose whatever the disk: ``serve`` off loopback without a token.
REFUSED_CLI = {"serve"}


def _params(names: dict[str, Any]) -> list[Any]:
    return [
        pytest.param(
            name, marks=pytest.mark.xfail(strict=True, reason=PENDING[name], raises=AssertionError)
        )
        if name in PENDING
        else name
        for name in names
    ]


def test_every_public_operation_is_covered() -> None:
    """A new method or command must join the tables above."""
    for cls, prefix in ((SessionManager, ""), (FileSessionStore, "store.")):
        public = {
            name
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }
        covered = {
            name.removeprefix(prefix).split("(")[0] for name in API if name.startswith(prefix)
        }
        assert public <= covered, f"{cls.__name__}: not covered: {sorted(public - covered)}"
    assert set(cli.commands) <= {name.split()[0] for name in CLI}


# ---------------------------------------------------------------- the checks


def _check_error(where: str, error: BaseException, *, errnos: tuple[int, ...]) -> None:
    assert isinstance(error, SessionError), (
        f"{where}: {type(error).__module__}.{type(error).__name__} escaped: {error}"
    )
    assert "cannot rollback" not in str(error), f"{where}: the cause was hidden: {error}"
    if isinstance(error, OSError):
        assert error.errno in errnos, f"{where}: errno {error.errno} ({error}), not {errnos}"


def _check_logs(where: str, caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert "cannot rollback" not in record.getMessage(), f"{where}: {record.getMessage()}"
    caplog.clear()


#: The count below a table, on stderr when stdout is a pipe (as here).
TABLE_FOOTER = re.compile(
    r"(\d+ (of \d+ )?sessions?\b|sessions \d+-\d+ of |(would remove|removed) \d+ session)"
)


def _check_cli(where: str, result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{where}: {type(result.exception).__name__}: {result.exception}"
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output, f"{where}: {output}"
    assert "cannot rollback" not in output, f"{where}: {output}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    others = [
        line
        for line in result.stderr.splitlines()
        if line.strip()
        and not line.startswith(("error:", "warning:"))
        and not TABLE_FOOTER.match(line)
    ]
    assert not others, f"{where}: unexpected stderr {others}"
    if result.exit_code == 0:
        assert not errors, f"{where}: {errors}"
        return
    assert result.exit_code == 1, f"{where}: exit {result.exit_code}: {result.stderr}"
    assert len(errors) == 1, f"{where}: {result.stderr}"


def _agrees(where: str, root: Path) -> None:
    """With room on the disk again, the index answers as the files do."""
    indexed = SessionManager(root).query_sessions()
    scanned = SessionManager(root, index=False).query_sessions()
    assert [s.session_id for s in indexed] == [s.session_id for s in scanned], where
    assert indexed == scanned, where


def _invoke(root: Path, args: list[str]) -> Result:
    env = {"COLUMNS": "80", "NO_COLOR": "1", "MAESTRO_ROOT": None}
    return CliRunner().invoke(cli, ["--root", str(root), *args], env=env)


def _faults(counts: Counter[str]) -> Iterator[tuple[str, int]]:
    """The first and last call of each kind, and a sample between them."""
    for kind in KINDS:
        total = counts[kind]
        if total == 0:
            continue
        step = max(1, (total - 1) // (SAMPLE + 1))
        chosen = {1, total, *range(1 + step, total, step)}
        if len(chosen) > SAMPLE + 2:
            chosen = {1, total, *sorted(chosen - {1, total})[:: max(1, len(chosen) // SAMPLE)]}
        for nth in sorted(chosen):
            yield kind, nth


# ---------------------------------------------------------------- a full disk


@pytest.mark.parametrize("operation", _params(API))
def test_api_on_a_full_disk_raises_only_typed_errors(
    operation: str,
    template: Template,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="maestro")
    disk = Disk(monkeypatch)
    run = API[operation]
    root = _copy(template, tmp_path / "root")
    with disk.armed():
        run(SessionManager(root), template.ids, tmp_path, template.archive)
    counts = Counter(disk.counts)
    for fault in _faults(counts):
        where = f"{operation} with the disk full from {fault[0]} #{fault[1]}"
        root = _copy(template, tmp_path / "root")
        with disk.armed(fault):
            try:
                run(SessionManager(root), template.ids, tmp_path, template.archive)
            except BaseException as error:
                _check_error(where, error, errnos=(errno.ENOSPC,))
                STATS["api errors"] += 1
            else:
                STATS["api completed"] += 1
        _check_logs(where, caplog)
        _agrees(where, root)


@pytest.mark.parametrize("command", _params(CLI))
def test_cli_on_a_full_disk_prints_one_error_line(
    command: str,
    template: Template,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    disk = Disk(monkeypatch)
    args = CLI[command](template.ids, tmp_path, template.archive)
    root = _copy(template, tmp_path / "root")
    with disk.armed():
        _check_cli(command, _invoke(root, args))
    counts = Counter(disk.counts)
    for fault in _faults(counts):
        where = f"maestro {' '.join(args)} with the disk full from {fault[0]} #{fault[1]}"
        root = _copy(template, tmp_path / "root")
        with disk.armed(fault):
            result = _invoke(root, args)
        _check_cli(where, result)
        STATS[f"cli exit {result.exit_code}"] += 1


# ---------------------------------------------------------------- an unusable index


def _index_is_a_directory(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, ...]:
    index = root / ".flow" / "maestro" / "index.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.mkdir()
    return (errno.EIO,)


def _index_is_read_only(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, ...]:
    # What SQLite does in a directory it may not write to: it opens read-only.
    real_connect = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs["uri"] = True
        return real_connect(f"file:{database}?mode=ro", *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    return (errno.EROFS,)


def _index_disk_is_full(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, ...]:
    real_connect = sqlite3.connect
    full_disk = _full_connection(lambda: True)

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", full_disk)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    # Make every query write to the index: the session files changed behind its back.
    (root / ".flow" / "maestro" / "index.stale").touch()
    return (errno.ENOSPC,)


INDEX_TROUBLE: dict[str, Callable[[Path, pytest.MonkeyPatch], tuple[int, ...]]] = {
    "index is a directory": _index_is_a_directory,
    "index is read-only": _index_is_read_only,
    "index disk is full": _index_disk_is_full,
}


@pytest.mark.parametrize("trouble", list(INDEX_TROUBLE))
def test_api_with_an_unusable_index_works_or_raises_storage_error(
    trouble: str,
    template: Template,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="maestro")
    failed = []
    for operation, run in API.items():
        where = f"{operation} when the {trouble}"
        root = _copy(template, tmp_path / "root")
        with monkeypatch.context() as patch:
            errnos = INDEX_TROUBLE[trouble](root, patch)
            try:
                run(SessionManager(root), template.ids, tmp_path, template.archive)
            except BaseException as error:
                _check_error(where, error, errnos=errnos)
                assert isinstance(error, StorageError), where
                failed.append(operation)
        _check_logs(where, caplog)
    # The files are the truth: only what exists for the index may fail without it.
    assert set(failed) - FEED == NEEDS_INDEX


@pytest.mark.parametrize("trouble", list(INDEX_TROUBLE))
def test_cli_with_an_unusable_index_works_or_prints_one_error_line(
    trouble: str, template: Template, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = []
    for command, make_args in CLI.items():
        args = make_args(template.ids, tmp_path, template.archive)
        root = _copy(template, tmp_path / "root")
        with monkeypatch.context() as patch:
            INDEX_TROUBLE[trouble](root, patch)
            result = _invoke(root, args)
        where = f"maestro {' '.join(args)} when the {trouble}"
        _check_cli(where, result)
        if any(line.startswith("error:") for line in result.stderr.splitlines()):
            failed.append(command)
    assert set(failed) - FEED_CLI - REFUSED_CLI == NEEDS_INDEX_CLI


def test_installed_command_reports_an_unusable_index_in_one_line(
    template: Template, tmp_path: Path
) -> None:
    """``maestro doctor --reindex`` as a shell runs it, the index path a directory."""
    root = _copy(template, tmp_path / "root")
    index = root / ".flow" / "maestro" / "index.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    index.mkdir()
    maestro = Path(sys.executable).with_name("maestro")
    done = subprocess.run(
        [str(maestro), "--root", str(root), "doctor", "--reindex"],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1
    assert len([line for line in lines if line.startswith("error:")]) == 1, done.stderr
    assert "rebuilding the session index failed" in done.stderr


def test_rebuild_index_on_a_store_nobody_wrote_to(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path / "new")
    assert manager.rebuild_index() == 0
    assert manager.doctor(reindex=True).healthy
    assert not (tmp_path / "new" / ".flow").exists()


# ---------------------------------------------------------------- a read the disk refused


def _refuse_one_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The next ``os.open`` of a ``metadata.json`` fails once with EIO."""
    real_open = os.open
    refused: list[int] = []

    def flaky_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if path == "metadata.json" and not refused:
            refused.append(1)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", flaky_open)
    return refused


def _settled(manager: SessionManager) -> None:
    """Date ``sessions/`` an hour back: its listing is trusted, not redone by every query."""
    past = datetime.now(UTC).timestamp() - 3600
    os.utime(manager.sessions_dir, (past, past))


def test_a_read_the_disk_refused_while_indexing_hides_no_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session file that could not be read once is not remembered as unreadable."""
    writer = SessionManager(tmp_path, index=False)  # sessions the index has not seen
    ids = {writer.create_session(REQUEST, git_context=GIT).session_id for _ in range(3)}
    manager = SessionManager(tmp_path)
    _settled(manager)
    with monkeypatch.context() as patch:
        refused = _refuse_one_read(patch)
        first = {s.session_id for s in manager.query_sessions()}
    assert refused, "no read was refused"
    assert first == ids  # the scan that stood in for the index read it again
    assert {s.session_id for s in manager.query_sessions()} == ids
    assert {s.session_id for s in SessionManager(tmp_path).query_sessions()} == ids


def test_a_read_the_disk_refused_while_repairing_hides_no_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pending mark whose file could not be read is kept, not taken for a deletion."""
    manager = SessionManager(tmp_path)
    ids = {manager.create_session(REQUEST, git_context=GIT).session_id for _ in range(3)}
    target = sorted(ids)[0]
    with monkeypatch.context() as patch:
        # The row of this write is not stored: its pending mark stays behind,
        # as a writer killed between the JSON write and the index write leaves it.
        def locked(*args: Any, **kwargs: Any) -> int:
            raise IndexUnavailable("database is locked", code=errno.EBUSY)

        patch.setattr(SessionIndex, "store", locked)
        manager.heartbeat(target)
    assert SessionIndex(manager.sessions_dir.parent / "index.sqlite3").pending() == [target]
    _settled(manager)
    with monkeypatch.context() as patch:
        refused = _refuse_one_read(patch)
        first = {s.session_id for s in SessionManager(tmp_path).query_sessions()}
    assert refused, "no read was refused"
    assert first == ids
    assert {s.session_id for s in SessionManager(tmp_path).query_sessions()} == ids
