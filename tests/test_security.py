"""Ids, paths and symlinks: nothing outside the sessions root is read or written."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from maestro import (
    InvalidSessionIdError,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
    UnsafePathError,
)
from maestro.ids import check_session_id

VALID = "3f01b541-5cc9-47a7-9f8b-d884159c705f"
MALFORMED = [
    "../../etc",
    "..",
    ".",
    "",
    "/etc/passwd",
    "..\\..\\windows",
    "%2e%2e%2f",
    "{" + VALID + "}",
    "urn:uuid:" + VALID,
    VALID.upper(),
    " " + VALID,
    VALID + "\n",
    VALID + "\x00",
    VALID.replace("-", ""),
    VALID + "/../" + VALID,
    "x" * 10_000,
    None,
    42,
    uuid.UUID(VALID),
]


@pytest.mark.parametrize("value", MALFORMED, ids=lambda v: repr(v)[:30])
def test_malformed_ids_are_both_value_error_and_not_found(value: object) -> None:
    with pytest.raises(InvalidSessionIdError) as caught:
        check_session_id(value)
    error = caught.value
    assert isinstance(error, ValueError)
    assert isinstance(error, SessionNotFoundError) and isinstance(error, FileNotFoundError)
    assert len(str(error)) < 200


def test_canonical_id_is_accepted() -> None:
    assert check_session_id(VALID) == VALID


@pytest.fixture
def no_filesystem(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make any filesystem call fail loudly; returns a function that undoes it."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"filesystem touched with {args!r}")

    for name in (
        "open",
        "stat",
        "lstat",
        "scandir",
        "listdir",
        "mkdir",
        "rename",
        "replace",
        "unlink",
        "rmdir",
    ):
        monkeypatch.setattr(os, name, forbidden)
    return monkeypatch.undo


OPERATIONS: dict[str, Callable[[SessionManager, Any], object]] = {
    "get": lambda m, sid: m.get_session(sid),
    "update": lambda m, sid: m.update_session(sid, {"statistics": {"total_tasks": 1}}),
    "transition": lambda m, sid: m.transition_state(sid, SessionStatus.PLANNING),
    "pause": lambda m, sid: m.pause_session(sid),
    "resume": lambda m, sid: m.resume_session(sid),
    "increment": lambda m, sid: m.increment_statistics(sid, total_tasks=1),
    "delete": lambda m, sid: m.delete_session(sid),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("value", MALFORMED, ids=lambda v: repr(v)[:30])
def test_malformed_ids_never_reach_the_filesystem(
    tmp_path: Path,
    no_filesystem: Callable[[], None],
    operation: str,
    value: object,
) -> None:
    manager = SessionManager(tmp_path)
    with pytest.raises(InvalidSessionIdError):
        OPERATIONS[operation](manager, value)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside"
    target.mkdir()
    (target / "metadata.json").write_text('{"precious": true}')
    return target


def test_symlinked_session_directory_is_refused(tmp_path: Path, outside: Path) -> None:
    manager = SessionManager(tmp_path / "root")
    real = manager.create_session("x").session_id
    link = manager.sessions_dir / str(uuid.uuid4())
    link.symlink_to(outside, target_is_directory=True)
    for operation in OPERATIONS.values():
        with pytest.raises(UnsafePathError, match="session directory is a symlink"):
            operation(manager, link.name)
    assert [s.session_id for s in manager.query_sessions()] == [real]
    assert (outside / "metadata.json").read_text() == '{"precious": true}'
    assert sorted(p.name for p in outside.iterdir()) == ["metadata.json"]
    assert link.is_symlink()


def test_symlinked_metadata_file_is_refused_and_target_untouched(
    tmp_path: Path, outside: Path
) -> None:
    manager = SessionManager(tmp_path / "root")
    sid = manager.create_session("x").session_id
    path = manager.sessions_dir / sid / "metadata.json"
    path.unlink()
    path.symlink_to(outside / "metadata.json")
    for operation in OPERATIONS.values():
        with pytest.raises(UnsafePathError, match=r"metadata\.json is a symlink"):
            operation(manager, sid)
    assert (outside / "metadata.json").read_text() == '{"precious": true}'
    assert manager.query_sessions() == []


def test_symlinked_lock_file_is_refused(tmp_path: Path, outside: Path) -> None:
    manager = SessionManager(tmp_path / "root")
    sid = manager.create_session("x").session_id
    lock = manager.sessions_dir / sid / ".lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside / "metadata.json")
    with pytest.raises(UnsafePathError):
        manager.update_session(sid, {"statistics": {"total_tasks": 1}})
    assert (outside / "metadata.json").read_text() == '{"precious": true}'


def test_fifo_as_metadata_does_not_hang(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x").session_id
    path = manager.sessions_dir / sid / "metadata.json"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(UnsafePathError, match="not a regular file"):
        manager.get_session(sid)


def test_delete_does_not_follow_symlinks_inside_a_session(tmp_path: Path, outside: Path) -> None:
    manager = SessionManager(tmp_path / "root")
    sid = manager.create_session("x").session_id
    (manager.sessions_dir / sid / "escape").symlink_to(outside, target_is_directory=True)
    manager.delete_session(sid)
    assert (outside / "metadata.json").read_text() == '{"precious": true}'
    assert not (manager.sessions_dir / sid).exists()
