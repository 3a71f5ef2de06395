"""Shared fixtures: a manager on a temporary root, a controllable clock, prototype data."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maestro import FileSessionStore, GitContext, SessionManager

DATA = Path(__file__).parent / "data"
PROTOTYPE_SESSIONS = DATA / "prototype-sessions"

#: Ids of the prototype records that hold a metadata.json, and of those that don't.
PROTOTYPE_RECORDS = sorted(
    p.name for p in PROTOTYPE_SESSIONS.iterdir() if (p / "metadata.json").exists()
)
PROTOTYPE_CHECKPOINT_ONLY = sorted(
    p.name for p in PROTOTYPE_SESSIONS.iterdir() if not (p / "metadata.json").exists()
)

GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)


class Clock:
    """A clock the test moves by hand; every reading is a distinct instant."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.postgres_server import drop_test_database

    drop_test_database()


@pytest.fixture(autouse=True)
def index_must_answer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query that silently scans because the index broke would hide index bugs:
    unless a test is about that fallback (its name says "fall_back"), it fails."""
    if "fall_back" in request.node.name:
        return

    def refuse(self: FileSessionStore, error: Exception) -> None:
        raise AssertionError(f"the index was bypassed: {error}")

    monkeypatch.setattr(FileSessionStore, "_warn_fallback", refuse)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def manager(tmp_path: Path, clock: Clock) -> SessionManager:
    return SessionManager(tmp_path, clock=clock)


@pytest.fixture
def sessions_dir(manager: SessionManager) -> Path:
    return manager.sessions_dir


@pytest.fixture
def prototype_root(tmp_path: Path) -> Iterator[Path]:
    """A root whose sessions directory is a copy of the prototype's files."""
    sessions = tmp_path / ".flow" / "maestro" / "sessions"
    sessions.parent.mkdir(parents=True)
    shutil.copytree(PROTOTYPE_SESSIONS, sessions)
    yield tmp_path


def settle(manager: SessionManager) -> None:
    """Every file's and sessions/'s mtime an hour back, the index rebuilt.

    No row is then too recent to trust its file's mtime, so a page of the
    file store gets a stamp (see ``page_is_current``).
    """
    hour_ago = time.time() - 3600
    for path in manager.sessions_dir.glob("*/metadata.json"):
        os.utime(path, (hour_ago, hour_ago))
    os.utime(manager.sessions_dir, (hour_ago, hour_ago))
    manager.rebuild_index()
    manager.count_sessions()
