"""The index never gives a wrong answer: restored directories, foreign indexes,
every script in full-text search, doctor's row check, writers stuck on a lock."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maestro import SessionManager, SessionStatus

from .conftest import GIT

MAESTRO = Path(sys.executable).parent / "maestro"
HOUR_AGO = time.time() - 3600


def _counts(manager: SessionManager) -> dict[str, int]:
    return {s.value: manager.count_sessions(status=s) for s in SessionStatus}


def _scan(root: Path) -> SessionManager:
    return SessionManager(root, index=False, durable=False)


def _settle(manager: SessionManager) -> None:
    """Put every file's and sessions/'s mtime an hour back, so no row is 'racy'
    (a racy row is re-read on every query, which would hide a stale one)."""
    for path in manager.sessions_dir.glob("*/metadata.json"):
        os.utime(path, (HOUR_AGO, HOUR_AGO))
    os.utime(manager.sessions_dir, (HOUR_AGO, HOUR_AGO))
    manager.rebuild_index()
    manager.count_sessions()


def test_a_directory_restored_from_an_older_copy_takes_its_row(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path, durable=False)
    sid = manager.create_session("restore me", git_context=GIT).session_id
    kept = manager.create_session("untouched", git_context=GIT).session_id
    directory = manager.sessions_dir / sid
    backup = tmp_path / "backup"
    subprocess.run(["cp", "-a", str(directory), str(backup)], check=True)
    manager.transition_state(sid, "planning")
    manager.transition_state(sid, "generating_tasks")
    _settle(manager)
    assert manager.count_sessions(status="generating_tasks") == 1

    shutil.rmtree(directory)  # restore: same id, new directory, lower revision
    subprocess.run(["cp", "-a", str(backup), str(directory)], check=True)

    for reader in (manager, SessionManager(tmp_path, durable=False)):
        assert _counts(reader) == _counts(_scan(tmp_path))
        assert reader.count_sessions(status="initializing") == 2
        assert {s.session_id for s in reader.query_sessions(status="initializing")} == {
            sid,
            kept,
        }
        assert reader.get_session(sid).revision == 1


def _cli(root: Path, *args: str) -> str:
    done = subprocess.run(
        [str(MAESTRO), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    return done.stdout


@pytest.mark.parametrize("twin_queries", [False, True])
def test_an_index_swapped_in_from_a_diverged_twin_is_rebuilt(
    tmp_path: Path, twin_queries: bool
) -> None:
    root, twin = tmp_path / "root", tmp_path / "twin"
    root.mkdir()
    ids = [_cli(root, "create", "-q", f"session {n}").strip() for n in range(3)]
    _cli(root, "list")
    subprocess.run(["cp", "-a", str(root), str(twin)], check=True)
    # The twin goes its own way: two sessions move on, through its own index.
    _cli(twin, "transition", ids[0], "planning")
    _cli(twin, "transition", ids[1], "failed", "--reason", "twin")
    if twin_queries:
        _cli(twin, "list")
    index = Path(".flow/maestro/index.sqlite3")
    for suffix in ("-wal", "-shm"):
        assert not (twin / f"{index}{suffix}").exists()  # all in the main file
    shutil.copyfile(twin / index, root / index)

    manager = SessionManager(root, durable=False)
    assert _counts(manager) == _counts(_scan(root))
    assert manager.count_sessions(status="initializing") == 3
    assert [s.session_id for s in manager.query_sessions(status="planning")] == []


SCRIPTS = [
    "ログイン 機能",  # kana with dakuten, kanji
    "한국어 검색 기능",  # Hangul syllables
    "Ελληνικά λόγος ΆΛΦΑ",  # Greek with tonos
    "Привет Ёлка",  # Cyrillic
    "Résumé café naïve",  # Latin with accents
    "deploy 🚀 rocket",  # emoji
]


def test_search_in_japanese_through_the_installed_command(tmp_path: Path) -> None:
    sid = _cli(tmp_path, "create", "-q", "ログイン 機能").strip()
    assert json.loads(_cli(tmp_path, "--json", "search", "ログイン"))[0]["session_id"] == sid
    assert json.loads(_cli(tmp_path, "--json", "search", "機能"))[0]["session_id"] == sid


@pytest.mark.parametrize(
    "text",
    ["ログイン", "ロ*", "機能", "한국어", "검*", "ελληνικά", "ΛΟΓΟΣ", "άλφα", "ёлка", "привет",
     "resume", "CAFÉ", "naive", "rocket🚀", "rocket", "deploy rocket", "ログイン 機能"],
)  # fmt: skip
def test_search_finds_what_the_scan_finds_in_every_script(tmp_path: Path, text: str) -> None:
    manager = SessionManager(tmp_path, durable=False)
    for request in SCRIPTS:
        manager.create_session(request, git_context=GIT)
    indexed = {s.session_id for s in manager.query_sessions(text=text)}
    scanned = {s.session_id for s in _scan(tmp_path).query_sessions(text=text)}
    assert indexed == scanned
    assert manager.count_sessions(text=text) == len(scanned)


def test_doctor_names_a_row_left_stale_by_an_edit_in_place(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path, durable=False)
    sid = manager.create_session("alpha login", git_context=GIT).session_id
    other = manager.create_session("beta login", git_context=GIT).session_id
    _settle(manager)
    path = manager.sessions_dir / sid / "metadata.json"
    before = path.stat()
    path.write_bytes(path.read_bytes().replace(b"alpha", b"gamma"))  # same size, same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert manager.query_sessions(text="gamma") == []  # the edit is not seen: the row is stale

    report = manager.doctor()
    assert not report.healthy
    assert report.stale_rows == [sid]
    assert sid in report.index and other not in report.index
    shown = json.loads(
        subprocess.run(
            [str(MAESTRO), "--root", str(tmp_path), "--json", "doctor"],
            capture_output=True,
            text=True,
        ).stdout
    )
    assert shown["stale_rows"] == [sid]

    fixed = manager.doctor(fix=True)
    assert any("reindexed" in line for line in fixed.fixed)
    assert [s.session_id for s in manager.query_sessions(text="gamma")] == [sid]
    assert manager.doctor().healthy


_HOLDER = """
import sys, time
from maestro import SessionManager
manager = SessionManager(sys.argv[1], durable=False)
store = manager.store
locks = []
for sid in sys.argv[2:]:
    held = store._locked(sid)
    held.__enter__()          # the writer has the lock...
    store._index_begin(sid)   # ...and has marked the session pending, then stops
    locks.append(held)
print("ready", flush=True)
time.sleep(120)
"""


def test_a_query_waits_at_most_one_second_in_all_for_stuck_writers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    manager = SessionManager(tmp_path, durable=False)
    stuck = [manager.create_session(f"stuck {n}", git_context=GIT).session_id for n in range(2)]
    free = manager.create_session("free", git_context=GIT).session_id
    manager.transition_state(stuck[0], "planning")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path), *stuck], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        # A clock that moves only when the query sleeps: what it waited is
        # counted, not timed.
        waited = [0.0]
        monkeypatch.setattr(time, "monotonic", lambda: 1000.0 + waited[0])
        monkeypatch.setattr(
            time, "sleep", lambda seconds: waited.__setitem__(0, waited[0] + seconds)
        )
        with caplog.at_level(logging.WARNING, logger="maestro"):
            found = {s.session_id: s.status.value for s in manager.query_sessions()}
            first_wait, waited[0] = waited[0], 0.0
            counted = manager.count_sessions(status="planning")
        assert found == {stuck[0]: "planning", stuck[1]: "initializing", free: "initializing"}
        assert counted == 1
        for wait in (first_wait, waited[0]):  # each query: at most 1 s for both locks
            assert 0 < wait <= 1.0 + 1e-9
        warned = " ".join(r.getMessage() for r in caplog.records)
        assert all(sid in warned for sid in stuck) and free not in warned
    finally:
        holder.kill()
        holder.wait()
