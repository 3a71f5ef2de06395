"""A ``.flow``, ``.flow/maestro`` or ``sessions`` that is a symlink is refused.

A cloned repository can commit ``.flow`` as a symlink to anywhere; following
it would write the index and the records there.  Every operation refuses it
with an ``UnsafePathError`` naming the link, before anything is read or made
through it, from the library and from the command (``--root`` included),
unless the user opts in with ``MAESTRO_ALLOW_SYMLINKED_ROOT=1`` or
``allow_symlinked_root=True``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from maestro import SessionError, SessionManager, UnsafePathError

from .conftest import GIT

MAESTRO = Path(sys.executable).parent / "maestro"
LINKS = [".flow", ".flow/maestro", ".flow/maestro/sessions"]
ENV = "MAESTRO_ALLOW_SYMLINKED_ROOT"


@pytest.fixture(autouse=True)
def no_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("MAESTRO_ROOT", raising=False)


def tree(top: Path) -> dict[str, bytes | str]:
    """Every entry below ``top`` (links not followed): file bytes or a kind."""
    found: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(folder, name)
            key = str(path.relative_to(top))
            if path.is_symlink():
                found[key] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[key] = "<dir>"
            else:
                found[key] = path.read_bytes()
    return found


def linked_root(tmp_path: Path, link: str) -> tuple[Path, Path, Path]:
    """(root, the link, its target): the target holds a real store with one session."""
    elsewhere = tmp_path / "elsewhere"
    real = SessionManager(elsewhere, index=False)  # no index there: one made via the link shows
    sid = real.create_session("someone else's session", git_context=GIT).session_id
    root = tmp_path / "checkout"
    link_path = root / link
    link_path.parent.mkdir(parents=True)
    target = elsewhere / link
    link_path.symlink_to(target, target_is_directory=True)
    assert SessionManager(elsewhere, index=False).get_session(sid).session_id == sid
    return root, link_path, elsewhere


def operations(manager: SessionManager, tmp_path: Path) -> dict[str, Callable[[], Any]]:
    archive = tmp_path / "one.tar.gz"
    with tarfile.open(archive, "w:gz"):
        pass
    return {
        "create_session": lambda: manager.create_session("x", git_context=GIT),
        "query_sessions": manager.query_sessions,
        "count_sessions": manager.count_sessions,
        "list_active_sessions": manager.list_active_sessions,
        "get_recent_sessions": manager.get_recent_sessions,
        "find_stale_sessions": manager.find_stale_sessions,
        "stats": manager.stats,
        "rebuild_index": manager.rebuild_index,
        "doctor": lambda: manager.doctor(fix=True),
        "resolve_session_id": lambda: manager.resolve_session_id("0123456"),
        "get_session": lambda: manager.get_session("01234567-89ab-4def-8123-456789abcdef"),
        "export_sessions": lambda: manager.export_sessions(tmp_path / "out.tar.gz"),
        "import_sessions": lambda: manager.import_sessions(archive),
    }


@pytest.mark.parametrize("link", LINKS)
def test_every_operation_refuses_a_symlinked_store(tmp_path: Path, link: str) -> None:
    root, link_path, elsewhere = linked_root(tmp_path, link)
    before = tree(elsewhere)
    manager = SessionManager(root)
    for name, operation in operations(manager, tmp_path).items():
        with pytest.raises(UnsafePathError) as caught:
            operation()
        error = caught.value
        assert isinstance(error, SessionError) and isinstance(error, PermissionError), name
        assert str(link_path) in str(error), (name, str(error))
        assert ENV in str(error)
    assert tree(elsewhere) == before, "something was written through the link"


def test_a_dangling_link_is_refused_and_nothing_is_made(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    root.mkdir()
    (root / ".flow").symlink_to(tmp_path / "not-yet")
    with pytest.raises(UnsafePathError, match=r"\.flow is a symlink"):
        SessionManager(root).create_session("x", git_context=GIT)
    assert not (tmp_path / "not-yet").exists()


@pytest.mark.parametrize("link", LINKS)
def test_the_command_refuses_it_even_with_root(tmp_path: Path, link: str) -> None:
    root, link_path, elsewhere = linked_root(tmp_path, link)
    before = tree(elsewhere)
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "MAESTRO_ROOT")}
    for args, cwd in (
        (["--root", str(root), "create", "x"], tmp_path),
        (["create", "x"], root),  # the root found from the working directory
        (["--root", str(root), "list"], tmp_path),
    ):
        done = subprocess.run(
            [str(MAESTRO), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert str(link_path) in lines[0] and ENV in lines[0]
    assert tree(elsewhere) == before


def test_opting_in_follows_the_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _, elsewhere = linked_root(tmp_path, ".flow")
    sid = SessionManager(root, allow_symlinked_root=True).create_session("x").session_id
    assert SessionManager(elsewhere, index=False).get_session(sid).feature_request == "x"
    monkeypatch.setenv(ENV, "1")
    assert len(SessionManager(root).query_sessions()) == 2
    env = {**os.environ, ENV: "1"}
    done = subprocess.run(
        [str(MAESTRO), "--root", str(root), "list"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "2 sessions" in done.stderr  # below the rows, on stderr in a pipe


def test_a_root_reached_through_a_link_is_the_users_choice(tmp_path: Path) -> None:
    """Only the directories below the root are guarded, not the path to it."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    sid = SessionManager(tmp_path / "alias").create_session("x", git_context=GIT).session_id
    assert SessionManager(real).get_session(sid).session_id == sid


# ---------------------------------------------------------------- links inside .flow/maestro


def test_a_linked_index_is_not_followed_queries_fall_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``index.sqlite3`` committed as a link: SQLite would create it at the target."""
    root = tmp_path / "checkout"
    store_dir = root / ".flow" / "maestro"
    (store_dir / "sessions").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (store_dir / "index.sqlite3").symlink_to(outside / "planted.db")
    manager = SessionManager(root)
    sid = manager.create_session("x", git_context=GIT).session_id
    assert [s.session_id for s in manager.query_sessions()] == [sid]
    assert manager.count_sessions() == 1
    assert list(outside.iterdir()) == [], "the database was made through the link"
    assert "index.sqlite3 is a symlink" in caplog.text


def test_doctor_does_not_quarantine_into_a_link(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    manager = SessionManager(root)
    sid = manager.create_session("x", git_context=GIT).session_id
    (manager.sessions_dir / sid / "metadata.json").write_text("{ not json")
    outside = tmp_path / "outside"
    outside.mkdir()
    (manager.sessions_dir.parent / "quarantine").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="quarantine is a symlink"):
        manager.doctor(fix=True)
    assert list(outside.iterdir()) == []
    assert (manager.sessions_dir / sid / "metadata.json").exists()
