"""Injected I/O errors: every write operation fails cleanly at every system call it makes.

The method is SQLite's: run an operation once to count the calls it makes to
one ``os`` function, then for N = 1, 2, ... run it again with that function
failing at call N (once, or from call N on), until N passes the count and the
operation completes.  After every fault:

* the caller gets a ``StorageError`` -- a ``SessionError`` and an ``OSError``
  carrying the injected errno;
* ``committed`` is true exactly when the failing call came after the rename
  that put the new record (or, for delete, the renamed-away directory) in
  place; then the new state is visible, otherwise the old one is intact,
  byte for byte, for the session and every other file of the store;
* no temp file is left, and the next operation succeeds once the fault is gone.

Which outcome each injection point allows (no other error type is legitimate:
a fault reaches no validation, lock or state-machine path):

* every call before the rename -- the opens of ``sessions/``, of the session
  directory, of ``.lock``, of ``metadata.json`` for the re-read and of the
  temp file, the writes, the temp file's fsync, the rename itself, and for
  create the ``mkdir`` calls and the fsync of ``sessions/`` -- a
  ``StorageError`` with ``committed`` false, the store exactly as before;
* the directory fsync after the rename: ``committed`` true, the new state;
* delete only, the ``os.open`` with which ``shutil.rmtree`` removes the
  renamed-away directory: the session is deleted already, so either a logged
  warning or a committed ``StorageError``; once the fault is gone the next
  delete leaves no ``.trash-*`` directory behind.

The expected new record comes from a fault-free run of the same operation on
a copy of the old one under a fixed clock: a completed (or committed)
operation must leave exactly those bytes.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import stat
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import maestro.manager
import maestro.stores.files
from maestro import (
    GitContext,
    SessionError,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
    StorageError,
)

from .conftest import size

FIXED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)
REQUEST = "Fault-injected request: add OAuth login"
FUNCTIONS = ("open", "write", "fsync", "replace", "mkdir", "rename")
CODES = (errno.ENOSPC, errno.EIO)
MODES = ("once", "persistent")
#: ``os.write`` hands over at most this many bytes per call (short writes are
#: legal), so a record takes several calls and a fault can hit the middle.
WRITE_LIMIT = size(256, 24)
SESSIONS = Path(".flow") / "maestro" / "sessions"
TEMP_NAME = (".metadata.json.", ".tmp")

STATS: Counter[str] = Counter()


def fixed_clock() -> datetime:
    return FIXED


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nfault injection: {dict(sorted(STATS.items()))}")


# ---------------------------------------------------------------- the injector


@dataclass(frozen=True)
class Fault:
    function: str
    nth: int
    code: int
    persistent: bool


@dataclass
class Fired:
    function: str
    nth: int
    after_rename: bool


@dataclass
class Injector:
    """Wraps the ``os`` functions; counts and fails calls only while armed.

    Only calls made by the arming thread between ``armed()``'s entry and exit
    count, so the test's own file access never shifts N.  Keyword arguments
    (``dir_fd=``, ``src_dir_fd=``, ...) pass through untouched.
    """

    monkeypatch: pytest.MonkeyPatch
    real: dict[str, Callable[..., Any]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    fired: list[Fired] = field(default_factory=list)
    fault: Fault | None = None
    renamed: bool = False
    thread: int | None = None

    def __post_init__(self) -> None:
        for name in FUNCTIONS:
            self.real[name] = getattr(os, name)
            self.monkeypatch.setattr(os, name, self._wrap(name))

    def _wrap(self, name: str) -> Callable[..., Any]:
        real = self.real[name]

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.thread is None or threading.get_ident() != self.thread:
                return real(*args, **kwargs)
            self.counts[name] += 1
            nth = self.counts[name]
            fault = self.fault
            if (
                fault is not None
                and fault.function == name
                and (nth == fault.nth or (fault.persistent and nth > fault.nth))
            ):
                self.fired.append(Fired(name, nth, self.renamed))
                raise OSError(fault.code, os.strerror(fault.code))
            if name == "write" and len(args) == 2:
                args = (args[0], memoryview(args[1])[:WRITE_LIMIT])
            result = real(*args, **kwargs)
            if name in ("replace", "rename"):
                self.renamed = True
            return result

        return wrapper

    @contextmanager
    def armed(self, fault: Fault | None = None) -> Iterator[None]:
        self.counts.clear()
        self.fired.clear()
        self.renamed = False
        self.fault = fault
        self.thread = threading.get_ident()
        try:
            yield
        finally:
            self.thread = None
            self.fault = None


# ---------------------------------------------------------------- the store on disk


#: Derived files: the query index and its markers change with every write
#: attempt (a pending mark is set before the JSON is written).  They are
#: checked by what they answer (see ``check_index_agrees``), not byte by byte.
#: The store's ``.gitignore`` is written once, after a new store's first record.
DERIVED = {
    "index.sqlite3",
    "index.sqlite3-wal",
    "index.sqlite3-shm",
    "index.stale",
    "trash.pending",
    ".gitignore",
}


def snapshot(top: Path) -> dict[str, bytes | str]:
    """Every entry under ``top``: file bytes, ``"<dir>"`` or the symlink target.

    ``.lock`` files are left out: the first writer of a session creates its
    lock file, whatever happens afterwards, and it never holds data.  So are
    the derived index files.
    """
    tree: dict[str, bytes | str] = {}
    if not top.exists():
        return tree
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            if name == ".lock" or name in DERIVED:
                continue
            path = Path(folder, name)
            key = str(path.relative_to(top))
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                tree[key] = "-> " + os.readlink(path)
            elif stat.S_ISDIR(info.st_mode):
                tree[key] = "<dir>"
            else:
                tree[key] = path.read_bytes()
    return tree


def temp_files(tree: dict[str, bytes | str]) -> list[str]:
    return [
        key
        for key in tree
        if Path(key).name.startswith(TEMP_NAME[0]) and Path(key).name.endswith(TEMP_NAME[1])
    ]


def describe_difference(before: dict[str, Any], after: dict[str, Any]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return f"added {added}, removed {removed}, changed {changed}"


# ---------------------------------------------------------------- the operations


def prepare_fresh(manager: SessionManager) -> str:
    return manager.create_session(REQUEST, git_context=GIT).session_id


def prepare_planning(manager: SessionManager) -> str:
    sid = prepare_fresh(manager)
    manager.transition_state(sid, SessionStatus.PLANNING)
    return sid


def prepare_paused(manager: SessionManager) -> str:
    sid = prepare_planning(manager)
    manager.pause_session(sid, reason="waiting for review")
    return sid


@dataclass(frozen=True)
class Operation:
    kind: str  # "modify", "delete" or "create"
    prepare: Callable[[SessionManager], str]
    run: Callable[[SessionManager, str], object]


OPERATIONS: dict[str, Operation] = {
    "update_session": Operation(
        "modify",
        prepare_fresh,
        lambda m, sid: m.update_session(
            sid, {"statistics": {"total_tasks": 7}, "configuration": {"max_iterations": 9}}
        ),
    ),
    "transition_state": Operation(
        "modify",
        prepare_fresh,
        lambda m, sid: m.transition_state(sid, SessionStatus.PLANNING, reason="go"),
    ),
    "increment_statistics": Operation(
        "modify",
        prepare_fresh,
        lambda m, sid: m.increment_statistics(sid, completed_tasks=2, decisions_made=1),
    ),
    "pause_session": Operation(
        "modify", prepare_planning, lambda m, sid: m.pause_session(sid, reason="lunch")
    ),
    "resume_session": Operation(
        "modify", prepare_paused, lambda m, sid: m.resume_session(sid, reason="back")
    ),
    "delete_session": Operation("delete", prepare_fresh, lambda m, sid: m.delete_session(sid)),
    "create_session": Operation(
        "create",
        lambda m: "",
        lambda m, sid: m.create_session(REQUEST, {"max_iterations": 4}, git_context=GIT),
    ),
    "create_session_in_a_new_root": Operation(
        "create",
        lambda m: "",
        lambda m, sid: m.create_session(REQUEST, {"max_iterations": 4}, git_context=GIT),
    ),
}


class Harness:
    """A store with a bystander session, a reference store and the injector."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: str, seed: int
    ) -> None:
        self.name = operation
        self.operation = OPERATIONS[operation]
        self.root = tmp_path / "root"
        self.sessions = self.root / SESSIONS
        self.fresh_root = operation == "create_session_in_a_new_root"
        # Setup and reference runs skip the fsyncs: they do not change the bytes.
        self.setup = SessionManager(self.root, durable=False, clock=fixed_clock)
        self.manager = SessionManager(self.root, clock=fixed_clock)
        self.reference_root = tmp_path / "reference"
        self.reference = SessionManager(self.reference_root, durable=False, clock=fixed_clock)
        self.rng = random.Random(seed)
        self.planned = ""
        monkeypatch.setattr(maestro.manager, "new_session_id", lambda: self.planned)
        self.root.mkdir()
        if not self.fresh_root:
            self.planned = self.new_id()
            self.setup.create_session("bystander", git_context=GIT)
        self.injector = Injector(monkeypatch)
        # The store's .gitignore is a convenience written after the record,
        # whose own failure is quiet by design: outside the sweep.
        write_gitignore = maestro.stores.files.write_gitignore

        def unswept(*args: Any, **kwargs: Any) -> bool:
            thread, self.injector.thread = self.injector.thread, None
            try:
                return write_gitignore(*args, **kwargs)
            finally:
                self.injector.thread = thread

        monkeypatch.setattr(maestro.stores.files, "write_gitignore", unswept)

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def prepare(self) -> str:
        """A session in the state the operation starts from (the planned id for create)."""
        self.planned = self.new_id()
        if self.fresh_root:
            shutil.rmtree(self.root / ".flow", ignore_errors=True)
        if self.operation.kind == "create":
            return self.planned
        return self.operation.prepare(self.setup)

    def expected(self, sid: str) -> bytes | None:
        """The record the operation leaves when nothing fails (None: no record)."""
        if self.operation.kind == "delete":
            return None
        folder = self.reference_root / SESSIONS / sid
        if self.operation.kind == "modify":
            folder.mkdir(parents=True)
            shutil.copyfile(self.sessions / sid / "metadata.json", folder / "metadata.json")
        self.operation.run(self.reference, sid)
        data = (folder / "metadata.json").read_bytes()
        shutil.rmtree(folder)
        return data

    def run(self, sid: str, fault: Fault | None) -> BaseException | None:
        with self.injector.armed(fault):
            try:
                self.operation.run(self.manager, sid)
            except Exception as error:
                return error
        return None

    def discard(self, sid: str) -> None:
        shutil.rmtree(self.sessions / sid, ignore_errors=True)
        for leftover in self.sessions.glob(f".trash-{sid}-*"):
            shutil.rmtree(leftover)

    def count_calls(self, function: str) -> int:
        sid = self.prepare()
        error = self.run(sid, None)
        assert error is None, f"{self.name} fails without a fault: {error!r}"
        calls = self.injector.counts[function]
        self.discard(sid)
        return calls


def check_error(
    error: BaseException | None, fault: Fault, sid: str, *, committed: bool
) -> StorageError:
    assert error is not None, "the fault was swallowed: the operation reported success"
    assert isinstance(error, SessionError), f"not a SessionError: {type(error).__name__}: {error}"
    assert isinstance(error, StorageError), f"expected StorageError, got {error!r}"
    assert isinstance(error, OSError)
    assert error.errno == fault.code, f"errno {error.errno}, injected {fault.code}"
    assert error.committed is committed, f"committed={error.committed}, expected {committed}"
    # None when the sessions directory itself failed, before any session was addressed.
    assert error.session_id in (sid, None), f"the error names session {error.session_id}"
    assert REQUEST not in str(error)
    return error


def sweep(harness: Harness, function: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Inject ``function`` faults at every call N; returns every problem found."""
    calls = harness.count_calls(function)
    STATS[f"calls counted ({function})"] += calls
    problems: list[str] = []
    for code in CODES:
        for mode in MODES:
            for nth in range(1, calls + 2):
                fault = Fault(function, nth, code, mode == "persistent")
                label = f"{function} call {nth}/{calls} {errno.errorcode[code]} {mode}"
                try:
                    verify_one(harness, fault, calls, caplog)
                except AssertionError as failure:
                    problems.append(f"{label}: {str(failure).splitlines()[0]}")
    return problems


def verify_one(
    harness: Harness, fault: Fault, calls: int, caplog: pytest.LogCaptureFixture
) -> None:
    kind = harness.operation.kind
    sid = harness.prepare()
    expected = harness.expected(sid)
    before = snapshot(harness.root)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="maestro"):
        error = harness.run(sid, fault)
    fired = list(harness.injector.fired)
    try:
        if fault.nth > calls:
            # N past the count: nothing fails and the operation completes.
            assert not fired, f"call {fault.nth} happened, but only {calls} were counted"
            assert error is None, f"failed without a fault: {error!r}"
            check_completed(harness, sid, before, expected)
            STATS["completed runs"] += 1
            return
        assert fired and fired[0].nth == fault.nth, "the counted call did not happen again"
        STATS["faults injected"] += 1
        after_rename = fired[0].after_rename
        after = snapshot(harness.root)
        assert not temp_files(after), f"temp files left: {temp_files(after)}"
        if not after_rename:
            check_error(error, fault, sid, committed=False)
            check_untouched(harness, sid, before, after)
            # The fault is gone: the same operation now succeeds.
            retry = harness.run(sid, None)
            assert retry is None, f"the retry failed: {retry!r}"
            check_completed(harness, sid, before, expected)
            STATS["clean failures"] += 1
        elif fault.function == "fsync":
            check_error(error, fault, sid, committed=True)
            check_committed(harness, sid, before, after, expected)
            STATS["committed failures"] += 1
        elif kind == "delete" and fault.function == "open":
            # The rename has deleted the session; removing the renamed-away
            # directory failed.  Reported as a logged warning or as a
            # committed StorageError, and cleaned up once the fault is gone.
            if error is None:
                assert any("could not remove" in r.getMessage() for r in caplog.records), (
                    "the delete hid the failure: no error, no warning"
                )
            else:
                check_error(error, fault, sid, committed=True)
            check_deleted_with_leftover(harness, sid, before, after)
            STATS["delete leftovers"] += 1
        else:
            raise AssertionError(f"a {fault.function} call after the rename failed: {error!r}")
    finally:
        harness.discard(sid)


def check_index_agrees(harness: Harness) -> None:
    """Whatever the fault interrupted, the index answers as the files do."""
    indexed = SessionManager(harness.root)
    scanned = SessionManager(harness.root, index=False)
    assert indexed.query_sessions() == scanned.query_sessions()
    for status in SessionStatus:
        assert indexed.count_sessions(status=status) == len(
            scanned.query_sessions(status=status)
        ), f"the index miscounts {status.value} sessions"


def check_untouched(
    harness: Harness, sid: str, before: dict[str, Any], after: dict[str, Any]
) -> None:
    check_index_agrees(harness)
    if harness.fresh_root:
        # Empty parent directories may have been made; no session, no file.
        leftovers = {k: v for k, v in after.items() if v != "<dir>"}
        assert not leftovers, f"files left in a new root: {sorted(leftovers)}"
        assert not (harness.sessions.exists() and any(harness.sessions.iterdir())), (
            f"entries left in sessions/: {sorted(os.listdir(harness.sessions))}"
        )
    else:
        assert after == before, f"the store changed: {describe_difference(before, after)}"
    if harness.operation.kind == "create":
        with pytest.raises(SessionNotFoundError):
            harness.setup.get_session(sid)
    else:
        # The previous record is still whole and readable.
        assert harness.setup.get_session(sid).session_id == sid


def check_completed(
    harness: Harness, sid: str, before: dict[str, Any], expected: bytes | None
) -> None:
    after = snapshot(harness.root)
    assert not temp_files(after), f"temp files left: {temp_files(after)}"
    check_index_agrees(harness)
    key = str(SESSIONS / sid / "metadata.json")
    if expected is None:
        gone = {k: v for k, v in before.items() if not k.startswith(str(SESSIONS / sid))}
        assert after == gone, f"after delete: {describe_difference(gone, after)}"
        with pytest.raises(SessionNotFoundError):
            harness.setup.get_session(sid)
        return
    assert after.get(key) == expected, "the record differs from a fault-free run"
    others = {k: v for k, v in after.items() if not k.startswith(str(SESSIONS / sid))}
    old_others = {k: v for k, v in before.items() if not k.startswith(str(SESSIONS / sid))}
    if harness.fresh_root:
        old_others = {k: "<dir>" for k in (".flow", ".flow/maestro", ".flow/maestro/sessions")}
    assert others == old_others, f"other files changed: {describe_difference(old_others, others)}"
    assert harness.setup.get_session(sid).session_id == sid


def check_committed(
    harness: Harness,
    sid: str,
    before: dict[str, Any],
    after: dict[str, Any],
    expected: bytes | None,
) -> None:
    check_completed(harness, sid, before, expected)
    # The store is healthy: the next write goes through.
    if expected is None:
        assert harness.setup.create_session("after a committed delete", git_context=GIT)
    else:
        revision = harness.setup.get_session(sid).revision
        updated = harness.manager.increment_statistics(sid, failed_tasks=1)
        assert updated.revision == revision + 1


def check_deleted_with_leftover(
    harness: Harness, sid: str, before: dict[str, Any], after: dict[str, Any]
) -> None:
    with pytest.raises(SessionNotFoundError):
        harness.setup.get_session(sid)
    assert sid not in [s.session_id for s in harness.setup.query_sessions()]
    prefix = str(SESSIONS / sid)
    rest = {k: v for k, v in before.items() if not k.startswith(prefix)}
    kept = {k: v for k, v in after.items() if ".trash-" not in k}
    assert kept == rest, describe_difference(rest, kept)
    # The fault is gone: the next delete goes through and leaves no leftovers.
    other = harness.prepare()
    assert harness.run(other, None) is None
    leftovers = [k for k in snapshot(harness.root) if Path(k).name.startswith(".trash-")]
    assert not leftovers, f"deleted sessions left on disk: {leftovers}"


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_fault_at_every_call(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    operation: str,
    function: str,
) -> None:
    seed = FUNCTIONS.index(function) * 100 + list(OPERATIONS).index(operation)
    harness = Harness(tmp_path, monkeypatch, operation, seed)
    problems = sweep(harness, function, caplog)
    assert not problems, f"{len(problems)} faults mishandled:\n" + "\n".join(problems)


#: Calls each operation must make at least: a write path without them would
#: make the sweep above vacuous.
MINIMUM_CALLS = {
    "modify": {"open": 4, "write": 2, "fsync": 2, "replace": 1},
    "delete": {"open": 3, "fsync": 1, "rename": 1},
    "create": {"open": 3, "write": 2, "fsync": 3, "replace": 1, "mkdir": 1},
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_the_counted_calls_are_the_operations_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    harness = Harness(tmp_path, monkeypatch, operation, seed=7)
    counts = []
    for _ in range(3):
        sid = harness.prepare()
        harness.expected(sid)  # the test's own file access, before arming
        # While armed, calls made by another thread do not count.
        with harness.injector.armed():
            stranger = threading.Thread(
                target=lambda: os.close(os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY))
            )
            stranger.start()
            stranger.join()
        assert harness.injector.counts == Counter()
        assert harness.run(sid, None) is None
        counted = Counter(harness.injector.counts)
        # After the operation, calls do not count.
        os.close(os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY))
        assert harness.injector.counts == counted
        counts.append(counted)
        harness.discard(sid)
    # The same operation on the same state makes the same calls every time.
    assert counts[0] == counts[1] == counts[2]
    for function, minimum in MINIMUM_CALLS[harness.operation.kind].items():
        assert counts[0][function] >= minimum, (function, counts[0])
    if harness.operation.kind != "create":
        assert counts[0]["mkdir"] == 0
    STATS[f"calls per {operation}"] = sum(counts[0].values())


def test_keyword_arguments_reach_the_real_functions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    injector = Injector(monkeypatch)
    (tmp_path / "a").write_text("x")
    with injector.armed():
        dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.replace("a", "b", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.rename("b", "c", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.mkdir("d", 0o700, dir_fd=dir_fd)
            fd = os.open("c", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
            os.close(fd)
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d"]
    assert injector.counts == Counter(open=2, replace=1, rename=1, mkdir=1, fsync=1)
