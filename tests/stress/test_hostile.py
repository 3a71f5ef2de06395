"""Hostile ids and symlink attacks: nothing outside the sessions root is ever touched.

Two kinds of attack:

* ids built to escape the store (``../``, ``%2e%2e%2f``, absolute paths, NUL,
  ``{uuid}``, upper case, whitespace, very long strings, non-strings), fuzzed
  with Hypothesis around real session ids, while a Python audit hook records
  every file access the library makes;
* a session directory, ``metadata.json`` or ``.lock`` replaced by a symlink
  (to a file, a directory, nothing, or another session), once before the
  operations and repeatedly while they run.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import stat
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maestro import (
    GitContext,
    InvalidSessionIdError,
    InvalidTransitionError,
    Session,
    SessionError,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
    UnsafePathError,
)

from .conftest import size

FIXED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)
REAL = "The real request: add OAuth login"
DECOY = "DECOY record outside the store"
SESSIONS = Path(".flow") / "maestro" / "sessions"

STATS: Counter[str] = Counter()


def fixed_clock() -> datetime:
    return FIXED


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\nhostile input: {dict(sorted(STATS.items()))}")


# ---------------------------------------------------------------- the audit hook

#: Events that reach a path: opens, and everything that creates, renames,
#: removes or lists a directory entry.
WATCHED = frozenset(
    {
        "open",
        "os.mkdir",
        "os.rename",
        "os.remove",
        "os.rmdir",
        "os.symlink",
        "os.link",
        "os.truncate",
        "os.chmod",
        "os.chown",
        "os.utime",
        "os.listdir",
        "os.scandir",
        "shutil.rmtree",
        "shutil.copyfile",
        "shutil.move",
    }
)


class Recorder:
    """What the audit hook saw while ``recording`` was on, in the recording thread."""

    def __init__(self) -> None:
        self.thread: int | None = None
        self.events: list[tuple[str, tuple[Any, ...]]] = []

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.thread is not None and event in WATCHED and threading.get_ident() == self.thread:
            self.events.append((event, args))

    def __call__(self, action: Callable[[], Any]) -> tuple[Any, list[tuple[str, tuple[Any, ...]]]]:
        """Run ``action`` while recording; returns its result or exception, and the events."""
        self.events = []
        self.thread = threading.get_ident()
        try:
            outcome: Any = action()
        except Exception as error:
            outcome = error
        finally:
            self.thread = None
        return outcome, self.events


# Audit hooks cannot be removed: one hook for the whole run, idle unless recording.
RECORDER = Recorder()
sys.addaudithook(RECORDER.hook)


def _paths(event: str, args: tuple[Any, ...]) -> list[tuple[Any, int | None]]:
    """(path, dir_fd) pairs of an event; dir_fd None when the event does not say."""
    if event == "open":
        return [(args[0], None)]
    if event == "os.rename":
        return [(args[0], args[2]), (args[1], args[3])]
    if event in ("os.mkdir", "os.symlink"):
        return [(args[0] if event == "os.mkdir" else args[1], args[-1])]
    if event == "os.link":
        return [(args[0], args[2]), (args[1], args[3])]
    if event in ("os.remove", "os.rmdir"):
        return [(args[0], args[-1])]
    if event in ("shutil.copyfile", "shutil.move"):
        return [(args[0], None), (args[1], None)]
    return [(args[0], None)]


def escapes(event: str, args: tuple[Any, ...], root: Path) -> list[str]:
    """The paths of an event that may lie outside ``root``.

    An absolute path is fine when it is ``root`` or below it.  A relative one
    is fine only as a single name (no ``/``, not ``..``): the store opens
    names relative to directory descriptors, and a single name cannot leave
    the directory it is relative to.  With an explicit "no dir_fd" (-1) a
    relative name would be relative to the working directory: not fine.
    """
    bad = []
    for path, dir_fd in _paths(event, args):
        if isinstance(path, int):
            continue  # an already open descriptor
        text = os.fsdecode(os.fspath(path))
        if os.path.isabs(text):
            normal = os.path.normpath(text)
            if normal != str(root) and not normal.startswith(str(root) + os.sep):
                bad.append(f"{event} {text!r}")
        elif "/" in text or text in ("", "..") or dir_fd == -1:
            bad.append(f"{event} {text!r} (dir_fd {dir_fd})")
    return bad


# ---------------------------------------------------------------- hostile ids

CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)


def canonical(value: object) -> bool:
    """Independent of the library: what ``str(uuid.UUID(...))`` gives back unchanged."""
    if not isinstance(value, str) or not value.isascii():
        return False
    try:
        return str(uuid.UUID(value)) == value and CANONICAL.fullmatch(value) is not None
    except ValueError:
        return False


FRAGMENTS = [
    "../",
    "..\\",
    "..",
    ".",
    "/",
    "\\",
    "//",
    "%2e%2e%2f",
    "%2e%2e/",
    "..%2f",
    "%2f",
    "%00",
    "\x00",
    "{",
    "}",
    "urn:uuid:",
    "URN:UUID:",
    " ",
    "\t",
    "\n",
    "\r",
    "\x0b",
    "\u00a0",
    "\u2028",
    "\ufeff",
    "~",
    "/etc/passwd",
    "/tmp",
    "C:\\Windows",
    "\\\\server\\share",
    "metadata.json",
    ".lock",
    ".trash-",
    ".metadata.json.",
    "*",
    "?",
    "$HOME",
    "\u2215",  # division slash
    "\uff0e\uff0e\uff0f",  # full-width "../"
    "\u0430",  # Cyrillic a
    "\u0663",  # Arabic-Indic digit three: a digit, not an ASCII hex digit
    "-",
    "0x",
]
MUTATION_CHARACTERS = "ABCDEFGgxz/\\.\x00 \t\n-_{}%\u0663\uff10\u00e9\u0430"
PREFIXES = ["", "../", "..\\", "/", "./", "{", "urn:uuid:", " ", "\t", "%2e%2e%2f", "sessions/"]
SUFFIXES = ["", "/", "/..", "}", "\n", "\x00", " ", "/metadata.json", "/../../outside", "%00"]


class PathLike:
    def __init__(self, path: str) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return self.path


def fixed_hostile(existing: str) -> list[object]:
    return [
        "",
        ".",
        "..",
        "../../etc",
        "/etc/passwd",
        "..\\..\\windows",
        "%2e%2e%2f" + existing,
        "{" + existing + "}",
        "urn:uuid:" + existing,
        existing.upper(),
        " " + existing,
        existing + " ",
        existing + "\n",
        existing + "\x00",
        existing + "/",
        existing + "/.",
        existing + "/../" + existing,
        "./" + existing,
        "../sessions/" + existing,
        existing.replace("-", ""),
        existing[:-1],
        existing + "0",
        "x" * 10_000,
        existing * 100,
        None,
        42,
        4.2,
        existing.encode(),
        bytearray(existing.encode()),
        uuid.UUID(existing),
        Path(existing),
        PathLike("../../outside"),
        [existing],
        {existing: existing},
    ]


def mutate(base: str, index: int, character: str, how: str) -> str:
    index %= len(base) + 1
    if how == "replace":
        return base[:index] + character + base[index + 1 :]
    if how == "insert":
        return base[:index] + character + base[index:]
    return base[:index] + base[index + 1 :]


def hostile_ids(existing: list[str]) -> st.SearchStrategy[str]:
    valid = st.sampled_from(existing) | st.uuids(version=4).map(str)
    part = st.one_of(
        st.sampled_from(FRAGMENTS),
        valid,
        valid.map(str.upper),
        valid.map(lambda s: s.replace("-", "")),
        st.tuples(valid, st.integers(0, 36)).map(lambda t: t[0][: t[1]]),
        st.text(alphabet=MUTATION_CHARACTERS + "0123456789abcdef", max_size=6),
    )
    joined = st.lists(part, min_size=1, max_size=6).map("".join)
    mutated = st.builds(
        mutate,
        valid,
        st.integers(0, 36),
        st.sampled_from(MUTATION_CHARACTERS),
        st.sampled_from(["replace", "insert", "delete"]),
    )
    wrapped = st.builds(
        lambda p, v, s: p + v + s, st.sampled_from(PREFIXES), valid, st.sampled_from(SUFFIXES)
    )
    long = st.builds(
        lambda f, n, v: f * n + v,
        st.sampled_from([*FRAGMENTS, "a", "0"]),
        st.integers(50, 3000),
        valid,
    )
    return st.one_of(joined, mutated, wrapped, long).filter(lambda s: not canonical(s))


def id_operations(manager: SessionManager) -> dict[str, Callable[[Any], object]]:
    store = manager.store
    template = manager.get_session(manager.query_sessions()[0].session_id)

    def store_create(value: Any) -> object:
        session = dataclasses.replace(template)
        session.session_id = value  # bypasses the model's own checks on purpose
        return store.create(session)

    return {
        "get_session": manager.get_session,
        "update_session": lambda v: manager.update_session(v, {"statistics": {"total_tasks": 1}}),
        "transition_state": lambda v: manager.transition_state(v, SessionStatus.PLANNING),
        "pause_session": lambda v: manager.pause_session(v),
        "resume_session": lambda v: manager.resume_session(v),
        "increment_statistics": lambda v: manager.increment_statistics(v, completed_tasks=1),
        "delete_session": manager.delete_session,
        "store.load": store.load,
        "store.modify": lambda v: store.modify(v, lambda s: s),
        "store.delete": store.delete,
        "store.create": store_create,
    }


def tree(top: Path) -> dict[str, bytes | str]:
    """Every entry below ``top``: file bytes, ``"<dir>"`` or the symlink's target."""
    found: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(folder, name)
            mode = path.lstat().st_mode
            key = str(path.relative_to(top))
            if stat.S_ISLNK(mode):
                found[key] = "-> " + os.readlink(path)
            elif stat.S_ISDIR(mode):
                found[key] = "<dir>"
            elif stat.S_ISREG(mode):
                found[key] = path.read_bytes()
            else:
                found[key] = f"<mode {mode:o}>"
    return found


def check_refused(value: object, outcome: object, events: list[Any], operation: str) -> None:
    where = f"{operation}({value!r:.80})"
    assert isinstance(outcome, InvalidSessionIdError), f"{where} gave {outcome!r:.200}"
    assert isinstance(outcome, ValueError) and isinstance(outcome, FileNotFoundError)
    assert isinstance(outcome, SessionNotFoundError) and isinstance(outcome, SessionError)
    # Refused before any I/O: not a single file event.
    assert events == [], f"{where} touched the filesystem: {events[:3]}"
    message = str(outcome)
    assert len(message) < 300 and message.isprintable(), f"{where}: message {message!r:.400}"


def test_hostile_ids_are_refused_and_nothing_outside_is_touched(tmp_path: Path) -> None:
    root = tmp_path / "root"
    sessions = root / SESSIONS
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "metadata.json").write_text('{"precious": true}')
    manager = SessionManager(root, clock=fixed_clock)
    existing = [manager.create_session(REAL, git_context=GIT).session_id for _ in range(3)]
    manager.transition_state(existing[1], SessionStatus.PLANNING)
    manager.pause_session(existing[2])
    operations = id_operations(manager)
    # Warm up: any lazy import or first-use file access happens now, not recorded.
    for name, operation in operations.items():
        if name not in ("delete_session", "store.delete", "store.create"):
            RECORDER(lambda op=operation: op(existing[1]))
    store_before = tree(root)
    outside_before = tree(outside)
    escaped: list[str] = []
    seen = Counter[str]()

    def attack(value: object) -> None:
        for name, operation in operations.items():
            outcome, events = RECORDER(lambda op=operation: op(value))
            for event, args in events:
                escaped.extend(escapes(event, args, sessions))
            check_refused(value, outcome, events, name)
            seen["calls"] += 1
        seen["ids"] += 1
        # Real lookups in between: a valid id that is not there, and one that is.
        outcome, events = RECORDER(lambda: manager.get_session(str(uuid.uuid4())))
        assert type(outcome) is SessionNotFoundError, outcome
        outcome, more = RECORDER(lambda: manager.get_session(existing[0]))
        assert isinstance(outcome, Session) and outcome.feature_request == REAL
        for event, args in events + more:
            escaped.extend(escapes(event, args, sessions))
        seen["opens by valid lookups"] += sum(1 for event, _ in events + more if event == "open")

    for value in fixed_hostile(existing[0]):
        attack(value)

    @settings(
        max_examples=size(300, 5000),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(hostile_ids(existing))
    def fuzz(value: str) -> None:
        attack(value)

    fuzz()
    assert escaped == [], f"file access outside the sessions root: {escaped[:10]}"
    assert tree(root) == store_before
    assert tree(outside) == outside_before
    # The hook is live and sees the store's own opens, so the checks above are not vacuous.
    assert seen["opens by valid lookups"] >= 4 * seen["ids"]
    STATS["hostile ids tried"] += seen["ids"]
    STATS["hostile calls refused"] += seen["calls"]


def test_the_audit_check_sees_an_escape(tmp_path: Path) -> None:
    """The hook and the classification above flag access outside the root."""
    root = tmp_path / "root" / SESSIONS
    root.mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("x")

    def touch_things() -> None:
        with open(outside, "rb"):
            pass
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.close(os.open("../x", os.O_RDONLY | os.O_CREAT, 0o600, dir_fd=fd))
            os.close(os.open("fine", os.O_RDONLY | os.O_CREAT, 0o600, dir_fd=fd))
        finally:
            os.close(fd)
        with open(root / "inside", "wb"):
            pass

    _, events = RECORDER(touch_things)
    flagged = [bad for event, args in events for bad in escapes(event, args, root)]
    assert len(flagged) == 2, flagged
    assert str(outside) in flagged[0] and "'../x'" in flagged[1]
    assert escapes("os.mkdir", ("name", 0o777, -1), root)
    assert not escapes("os.mkdir", ("name", 0o777, 5), root)
    assert escapes("open", (str(root) + "-sibling/x", None, 0), root)
    assert escapes("open", (str(root) + "/../x", None, 0), root)


# ---------------------------------------------------------------- symlinks before operations


def decoy_record(real: bytes) -> bytes:
    """The same session's record with another request: what following a link would return."""
    text = real.decode()
    assert REAL in text
    return text.replace(REAL, DECOY).encode()


#: Operations in an order that is valid on a fresh session; delete last.
SEQUENCE: list[tuple[str, Callable[[SessionManager, str], object]]] = [
    ("get", lambda m, sid: m.get_session(sid)),
    ("update", lambda m, sid: m.update_session(sid, {"statistics": {"total_tasks": 5}})),
    ("increment", lambda m, sid: m.increment_statistics(sid, completed_tasks=1)),
    ("transition", lambda m, sid: m.transition_state(sid, SessionStatus.PLANNING)),
    ("pause", lambda m, sid: m.pause_session(sid, reason="attack")),
    ("resume", lambda m, sid: m.resume_session(sid)),
    ("delete", lambda m, sid: m.delete_session(sid)),
]

ATTACKS = {
    # name: (what is replaced, where the link points, which operations still work)
    "session dir -> outside dir": ("dir", "decoy-dir", set()),
    "session dir -> outside file": ("dir", "decoy-file", set()),
    "session dir -> nothing": ("dir", "missing", set()),
    "session dir -> other session": ("dir", "other-dir", set()),
    "session dir -> relative ../../../..": ("dir", "relative", set()),
    "metadata.json -> outside file": ("metadata", "decoy-file", set()),
    "metadata.json -> outside dir": ("metadata", "decoy-dir", set()),
    "metadata.json -> nothing": ("metadata", "missing", set()),
    "metadata.json -> other session": ("metadata", "other-record", set()),
    "metadata.json -> /dev/null": ("metadata", "device", set()),
    ".lock -> outside file": ("lock", "decoy-file", {"get"}),
    ".lock -> nothing": ("lock", "missing", {"get"}),
    "stale temp name -> outside file": ("temp", "decoy-file", {name for name, _ in SEQUENCE}),
    "other file -> outside file": ("other", "decoy-file", {name for name, _ in SEQUENCE}),
    "metadata.json hard link to outside file": (
        "hardlink",
        "decoy-file",
        {name for name, _ in SEQUENCE},
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_symlinks_in_the_store_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, attack: str
) -> None:
    replaced, pointing_to, working = ATTACKS[attack]
    for round_ in range(size(4, 40)):
        base = tmp_path / f"round-{round_}"
        outside = base / "outside"
        outside.mkdir(parents=True)
        manager = SessionManager(base / "root", durable=False, clock=fixed_clock)
        sid = manager.create_session(REAL, git_context=GIT).session_id
        other = manager.create_session("bystander", git_context=GIT).session_id
        sessions = manager.sessions_dir
        folder = sessions / sid
        real = (folder / "metadata.json").read_bytes()
        (outside / "decoy-dir").mkdir()
        (outside / "decoy-dir" / "metadata.json").write_bytes(decoy_record(real))
        (outside / "decoy-file").write_bytes(decoy_record(real))
        targets = {
            "decoy-dir": outside / "decoy-dir",
            "decoy-file": outside / "decoy-file",
            "missing": outside / "missing",
            "other-dir": sessions / other,
            "other-record": sessions / other / "metadata.json",
            "device": Path(os.devnull),
            "relative": Path("../../../../outside/decoy-dir"),
        }
        target = targets[pointing_to]
        if replaced == "dir":
            shutil.move(folder, base / "held")
            folder.symlink_to(target, target_is_directory=True)
        elif replaced == "metadata":
            (folder / "metadata.json").unlink()
            (folder / "metadata.json").symlink_to(target)
        elif replaced == "lock":
            (folder / ".lock").unlink(missing_ok=True)
            (folder / ".lock").symlink_to(target)
        elif replaced == "temp":
            (folder / ".metadata.json.0123456789ab.tmp").symlink_to(target)
        elif replaced == "other":
            (folder / "checkpoints.json").symlink_to(target)
        else:
            (outside / "decoy-file").write_bytes(real)
            (folder / "metadata.json").unlink()
            os.link(target, folder / "metadata.json")
        outside_before = tree(outside)
        other_before = tree(sessions / other)

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="maestro"):
            listed = [s.session_id for s in manager.query_sessions()]
        if "get" in working:
            assert sorted(listed) == sorted([sid, other])
        else:
            assert listed == [other]
            assert any(sid in r.getMessage() for r in caplog.records), "no warning for the link"

        for name, operation in SEQUENCE:
            try:
                result = operation(manager, sid)
            except UnsafePathError as error:
                assert name not in working, f"{name} refused: {error}"
                assert sid in str(error)
                STATS["symlink refusals"] += 1
            else:
                assert name in working, f"{name} went through the link"
                if isinstance(result, Session):
                    assert result.feature_request == REAL
        assert tree(outside) == outside_before, "something outside the root changed"
        assert tree(sessions / other) == other_before, "the other session changed"
        assert manager.get_session(other).feature_request == "bystander"
        if replaced in ("dir", "metadata"):
            assert (folder if replaced == "dir" else folder / "metadata.json").is_symlink()
        if "delete" in working:
            assert not folder.exists() and not folder.is_symlink()
        STATS["symlink attacks"] += 1


def test_a_session_path_that_is_a_plain_file_is_not_found(tmp_path: Path) -> None:
    """Not a symlink, just not a directory: the session does not exist."""
    manager = SessionManager(tmp_path, durable=False, clock=fixed_clock)
    sid = manager.create_session(REAL, git_context=GIT).session_id
    shutil.rmtree(manager.sessions_dir / sid)
    (manager.sessions_dir / sid).write_text("not a directory")
    for name, operation in SEQUENCE:
        with pytest.raises(SessionNotFoundError) as caught:
            operation(manager, sid)
        assert not isinstance(caught.value, UnsafePathError), name
    assert (manager.sessions_dir / sid).read_text() == "not a directory"


# ---------------------------------------------------------------- symlinks while operations run


class Progress:
    """How many operations the main thread has started; ``stop`` ends the swapping early."""

    def __init__(self) -> None:
        self.started = 0
        #: Bumped by the swapper after each swap, so that an operation can tell
        #: whether it ran entirely within one of them.
        self.phase = 0
        self.stop = False
        self.done = threading.Event()
        self.between = threading.Event()
        self.quiet = threading.Event()
        self.resume = threading.Event()
        self.failure: BaseException | None = None

    def wait_for(self, more: int) -> None:
        """Yield until ``more`` further operations have started."""
        target = self.started + more
        while self.started < target and not self.stop:
            time.sleep(0)

    # A swap made while an operation runs may land inside a writer's window
    # between reading the record and renaming its new one into place (the
    # swapper mostly runs while the writer waits in fsync); the writer's rename
    # then replaces the link.  Swaps that must hold for a whole operation are
    # therefore made between two operations, by this handshake.

    def checkpoint(self) -> None:
        """Main thread, between operations: let a waiting swapper act."""
        if self.between.is_set():
            self.between.clear()
            self.quiet.set()
            self.resume.wait(10)
            self.resume.clear()

    def between_operations(self, action: Callable[[], None]) -> None:
        """Swapper thread: run ``action`` while no operation is under way."""
        self.between.set()
        while not self.quiet.wait(0.01):
            if self.stop:
                return
        self.quiet.clear()
        try:
            action()
        finally:
            self.resume.set()


def swap_metadata(folder: Path, decoy: Path, cycles: int, progress: Progress) -> None:
    """Atomically replace metadata.json by a symlink to ``decoy`` and back, ``cycles`` times.

    Even cycles keep the link in place for one whole operation and put the
    record back while the next one runs; odd cycles remove the link while an
    operation runs and then leave the real record for one whole operation.
    """
    meta, held, link = folder / "metadata.json", folder / ".held", folder / ".link"

    def swap_in() -> None:
        os.symlink(decoy, link)
        while True:
            try:
                os.link(meta, held)
                break
            except FileNotFoundError:
                # A writer renamed a new record over metadata.json between
                # the lookup and the link: the name is there, try again.
                continue
        os.replace(link, meta)
        progress.phase += 1

    try:
        for cycle in range(cycles):
            if progress.stop:
                break
            if cycle % 2 == 0:
                progress.between_operations(swap_in)
            else:
                swap_in()
            progress.wait_for(2 - cycle % 2)
            os.replace(held, meta)
            progress.phase += 1
            progress.wait_for(1 + cycle % 2)
    except BaseException as error:
        progress.failure = error
    finally:
        progress.done.set()


def swap_directory_in(real: Path, held: Path, decoy: Path, progress: Progress) -> None:
    os.rename(real, held)
    os.symlink(decoy, real)
    progress.phase += 1


def swap_directory(sessions: Path, sid: str, decoy: Path, cycles: int, progress: Progress) -> None:
    """Replace the session directory by a symlink to ``decoy`` and back, ``cycles`` times.

    The same rhythm as :func:`swap_metadata`; in between the directory is
    briefly missing.
    """
    real, held = sessions / sid, sessions / f".held-{sid}"
    try:
        for cycle in range(cycles):
            if progress.stop:
                break
            if cycle % 2 == 0:
                progress.between_operations(lambda: swap_directory_in(real, held, decoy, progress))
            else:
                swap_directory_in(real, held, decoy, progress)
            progress.wait_for(2 - cycle % 2)
            os.unlink(real)
            os.rename(held, real)
            progress.phase += 1
            progress.wait_for(1 + cycle % 2)
    except BaseException as error:
        progress.failure = error
    finally:
        progress.done.set()


RACE_OPERATIONS: list[tuple[str, Callable[[SessionManager, str], object]]] = [
    ("get", lambda m, sid: m.get_session(sid)),
    ("update", lambda m, sid: m.update_session(sid, {"statistics": {"total_tasks": 3}})),
    ("increment", lambda m, sid: m.increment_statistics(sid, decisions_made=1)),
    ("query", lambda m, sid: m.query_sessions()),
    ("pause", lambda m, sid: m.pause_session(sid)),
    ("resume", lambda m, sid: m.resume_session(sid)),
    ("recent", lambda m, sid: m.get_recent_sessions(5)),
]


@pytest.mark.parametrize("swapped", ["metadata.json", "session directory"])
def test_symlinks_swapped_in_during_operations(tmp_path: Path, swapped: str) -> None:
    cycles = size(300, 4000)
    manager = SessionManager(tmp_path / "root", clock=fixed_clock)
    sid = manager.create_session(REAL, git_context=GIT).session_id
    manager.transition_state(sid, SessionStatus.PLANNING)
    other = manager.create_session("bystander", git_context=GIT).session_id
    folder = manager.sessions_dir / sid
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    decoy = decoy_record((folder / "metadata.json").read_bytes())
    (outside / "dir" / "metadata.json").write_bytes(decoy)
    (outside / "record.json").write_bytes(decoy)
    outside_before = tree(outside)
    other_before = tree(manager.sessions_dir / other)

    progress = Progress()
    if swapped == "metadata.json":
        swapper = threading.Thread(
            target=swap_metadata, args=(folder, outside / "record.json", cycles, progress)
        )
        # metadata.json is always there, a file or a link: never "not found".
        allowed: tuple[type[SessionError], ...] = (UnsafePathError, InvalidTransitionError)
    else:
        swapper = threading.Thread(
            target=swap_directory,
            args=(manager.sessions_dir, sid, outside / "dir", cycles, progress),
        )
        allowed = (UnsafePathError, SessionNotFoundError, InvalidTransitionError)
    swapped_path = folder / "metadata.json" if swapped == "metadata.json" else folder
    outcomes = Counter[str]()
    under_link = Counter[str]()
    logging.getLogger("maestro").disabled = True  # skipped sessions warn; not the point here
    swapper.start()
    try:
        step = 0
        while not progress.done.is_set():
            progress.checkpoint()
            name, operation = RACE_OPERATIONS[step % len(RACE_OPERATIONS)]
            step += 1
            phase = progress.phase
            linked_before = swapped_path.is_symlink()
            progress.started += 1
            try:
                result = operation(manager, sid)
                outcome = "succeeded"
            except SessionError as error:
                assert isinstance(error, allowed), f"{name}: {error!r}"
                outcome = "refused" if isinstance(error, UnsafePathError) else type(error).__name__
            else:
                results = result if isinstance(result, list) else [result]
                for session in results:
                    assert isinstance(session, Session)
                    assert session.feature_request != DECOY, f"{name} read the decoy"
                if name in ("query", "recent"):
                    ids = [s.session_id for s in results]
                    assert other in ids
                    outcome = "succeeded" if sid in ids else "refused"
                else:
                    assert results[0].session_id == sid
            outcomes[outcome] += 1
            # Only the swapper makes links, so a link there before and after,
            # with no swap in between, was there the whole time.  (A writer that
            # read the record just before a swap may rename its new record over
            # the link after it: then the path is no link afterwards.)
            if linked_before and progress.phase == phase and swapped_path.is_symlink():
                under_link[outcome] += 1
                assert outcome == "refused", f"{name} ran under the link: {outcome}"
    finally:
        progress.stop = True  # if this thread failed, the swapper must not wait for it
        swapper.join()
        logging.getLogger("maestro").disabled = False
    assert progress.failure is None, f"the swapper failed: {progress.failure!r}"
    assert tree(outside) == outside_before, "something outside the root changed"
    assert tree(manager.sessions_dir / other) == other_before
    # Every operation seen to run wholly under a link was refused (checked
    # above), and each even cycle, swapped in between two operations, held the
    # link for one whole operation.  Odd cycles hold the real record for one
    # whole operation, which must have read it (a refused pause or resume also
    # read it).
    assert under_link["refused"] >= (cycles + 1) // 2, (outcomes, under_link)
    real_reads = outcomes["succeeded"] + outcomes["InvalidTransitionError"]
    assert real_reads >= cycles // 2, outcomes
    final = manager.get_session(sid)
    assert final.feature_request == REAL
    assert sorted(os.listdir(folder)) == [".lock", "metadata.json"]
    assert manager.increment_statistics(sid, failed_tasks=1).revision == final.revision + 1
    STATS[f"swaps of the {swapped}"] += cycles
    STATS[f"operations during {swapped} swaps"] += sum(outcomes.values())
