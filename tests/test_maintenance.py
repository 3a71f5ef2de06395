"""Heartbeats, stale sessions, gc, statistics, export/import and doctor."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from maestro import (
    CorruptSessionError,
    GitContext,
    Session,
    SessionManager,
    SessionStatus,
    SessionValidationError,
)

from .conftest import Clock

S = SessionStatus


def walk(manager: SessionManager, sid: str, *states: SessionStatus) -> Session:
    session = manager.get_session(sid)
    for state in states:
        session = manager.transition_state(sid, state)
    return session


# ---------------------------------------------------------------- heartbeat and stale


def test_heartbeat_records_liveness_without_touching_updated_at(
    manager: SessionManager, clock: Clock
) -> None:
    session = manager.create_session("x")
    clock.advance(30)
    beat = manager.heartbeat(session.session_id)
    assert beat.heartbeat_at == clock.now
    assert beat.updated_at == session.updated_at
    assert beat.revision == session.revision + 1
    assert beat.last_activity == clock.now
    assert manager.get_session(session.session_id).heartbeat_at == clock.now


def test_heartbeat_refuses_finished_sessions(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    manager.transition_state(sid, S.FAILED)
    with pytest.raises(SessionValidationError, match="nothing to keep alive"):
        manager.heartbeat(sid)


def test_stale_sessions_use_their_own_timeout(manager: SessionManager, clock: Clock) -> None:
    quick = manager.create_session("quick", {"timeout_minutes": 5}).session_id
    slow = manager.create_session("slow", {"timeout_minutes": 60}).session_id
    beating = manager.create_session("beating", {"timeout_minutes": 5}).session_id
    paused = manager.create_session("paused", {"timeout_minutes": 5}).session_id
    manager.pause_session(paused)
    done = manager.create_session("done", {"timeout_minutes": 5}).session_id
    manager.transition_state(done, S.FAILED)
    clock.advance(4 * 60)
    manager.heartbeat(beating)
    clock.advance(2 * 60)  # quick: 6 min idle; beating: 2 min; slow: 6 of 60
    assert [s.session_id for s in manager.find_stale_sessions()] == [quick]
    # with an explicit age every running session is judged by it
    assert {s.session_id for s in manager.find_stale_sessions(timedelta(minutes=3))} == {
        quick,
        slow,
    }
    with pytest.raises(ValueError, match="positive"):
        manager.find_stale_sessions(timedelta(0))


def test_reap_fails_stale_sessions_with_a_reason(manager: SessionManager, clock: Clock) -> None:
    sid = manager.create_session("x", {"timeout_minutes": 1}).session_id
    clock.advance(120)
    [reaped] = manager.reap_stale_sessions()
    assert reaped.session_id == sid and reaped.status is S.FAILED
    assert reaped.history[-1].reason == "timed out"
    assert manager.reap_stale_sessions() == []


def test_reap_spares_a_session_that_came_back_to_life(
    manager: SessionManager, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = manager.create_session("x", {"timeout_minutes": 1}).session_id
    clock.advance(120)
    stale = manager.find_stale_sessions()
    manager.heartbeat(sid)  # between the check and the reaping
    monkeypatch.setattr(manager, "find_stale_sessions", lambda older_than=None: stale)
    assert manager.reap_stale_sessions() == []
    assert manager.get_session(sid).status is S.INITIALIZING


# ---------------------------------------------------------------- gc


def test_gc_removes_old_finished_sessions(manager: SessionManager, clock: Clock) -> None:
    old_done = manager.create_session("old done").session_id
    manager.transition_state(old_done, S.FAILED)
    old_running = manager.create_session("old running").session_id
    clock.advance(40 * 86400)
    new_done = manager.create_session("new done").session_id
    manager.transition_state(new_done, S.FAILED)
    would = manager.gc(timedelta(days=30), dry_run=True)
    assert [s.session_id for s in would] == [old_done]
    assert manager.get_session(old_done)  # dry run keeps it
    removed = manager.gc(timedelta(days=30))
    assert [s.session_id for s in removed] == [old_done]
    assert {s.session_id for s in manager.query_sessions()} == {old_running, new_done}
    everything = manager.gc(timedelta(days=30), status=list(SessionStatus))
    assert [s.session_id for s in everything] == [old_running]


# ---------------------------------------------------------------- stats


def test_stats_counts_rates_durations_and_branches(manager: SessionManager, clock: Clock) -> None:
    for number, outcome in enumerate([S.COMPLETED, S.COMPLETED, S.FAILED, None]):
        git = GitContext("main" if number else "feat/x", "c" * 40, "/r")
        sid = manager.create_session(f"s{number}", git_context=git).session_id
        clock.advance(10)
        manager.transition_state(sid, S.PLANNING)
        clock.advance(10 * (number + 1))  # 10, 20, 30, 40 s of planning
        if outcome is S.COMPLETED:
            walk(
                manager,
                sid,
                S.GENERATING_TASKS,
                S.IMPLEMENTING,
                S.VALIDATING,
                S.GENERATING_REPORT,
                S.COMPLETED,
            )
        elif outcome is S.FAILED:
            manager.transition_state(sid, S.FAILED)
    stats = manager.stats()
    assert stats.total == 4
    assert stats.by_status == {"planning": 1, "completed": 2, "failed": 1}
    assert stats.success_rate == pytest.approx(2 / 3)
    planning = stats.durations["planning"]
    assert planning.sessions == 4
    assert planning.median_seconds == pytest.approx(25.0)
    assert planning.p90_seconds == pytest.approx(37.0)
    assert stats.by_branch == {"main": 3, "feat/x": 1}
    assert manager.stats(branch="feat/x").total == 1
    assert json.loads(json.dumps(stats.to_dict()))["by_status"]["completed"] == 2


def test_stats_of_nothing(manager: SessionManager) -> None:
    stats = manager.stats()
    assert stats.total == 0 and stats.success_rate is None and stats.durations == {}


# ---------------------------------------------------------------- export / import


@pytest.fixture
def exported(manager: SessionManager, tmp_path: Path) -> tuple[Path, list[str]]:
    ids = []
    for number in range(3):
        sid = manager.create_session(f"request {number}").session_id
        folder = manager.sessions_dir / sid
        (folder / "checkpoints.json").write_text(json.dumps({"n": number}))
        (folder / "reports").mkdir()
        (folder / "reports" / "final-report.md").write_text(f"# report {number}\n")
        ids.append(sid)
    manager.transition_state(ids[0], S.PLANNING)
    target = tmp_path / "out.tar.gz"
    result = manager.export_sessions(target)
    assert result.sessions == 3 and result.files == 9
    return target, ids


def other_root(tmp_path: Path, name: str = "other") -> SessionManager:
    return SessionManager(tmp_path / name, clock=Clock())


def test_export_then_import_brings_every_file(
    manager: SessionManager, exported: tuple[Path, list[str]], tmp_path: Path
) -> None:
    archive, ids = exported
    with tarfile.open(archive) as opened:
        names = opened.getnames()
    assert "maestro-export.json" in names
    assert not any(name.endswith(".lock") for name in names)
    target = other_root(tmp_path)
    result = target.import_sessions(archive)
    assert sorted(result.created) == sorted(ids) and result.updated == []
    for sid in ids:
        assert target.get_session(sid) == manager.get_session(sid)
        for relative in ("checkpoints.json", "reports/final-report.md"):
            assert (target.sessions_dir / sid / relative).read_bytes() == (
                manager.sessions_dir / sid / relative
            ).read_bytes()
    assert {s.session_id for s in target.query_sessions()} == set(ids)
    assert not [p for p in target.sessions_dir.iterdir() if p.name.startswith(".import-")]


def test_import_is_idempotent_and_the_higher_revision_wins(
    manager: SessionManager, exported: tuple[Path, list[str]], tmp_path: Path
) -> None:
    archive, ids = exported
    target = other_root(tmp_path)
    target.import_sessions(archive)
    again = target.import_sessions(archive)
    assert sorted(again.unchanged) == sorted(ids) and again.created == again.updated == []
    assert len(target.query_sessions()) == 3
    # the source moves on: a newer export replaces the older copy
    manager.transition_state(ids[1], S.PLANNING)
    (manager.sessions_dir / ids[1] / "checkpoints.json").write_text('{"n": "newer"}')
    newer = tmp_path / "newer.tar.gz"
    manager.export_sessions(newer, status="planning")
    result = target.import_sessions(newer)
    assert result.updated == [ids[1]] and result.unchanged == [ids[0]]
    assert target.get_session(ids[1]).status is S.PLANNING
    assert (target.sessions_dir / ids[1] / "checkpoints.json").read_text() == '{"n": "newer"}'
    # and the older archive no longer overrides it
    target.import_sessions(archive)
    assert target.get_session(ids[1]).status is S.PLANNING


def tar_with(members: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """An archive from (name, kind, data); kind None is a file, b"l" a symlink."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == b"l":
                info.type = tarfile.SYMTYPE
                info.linkname = data.decode()
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("members", "fragment"),
    [
        ([("../evil/metadata.json", None, b"{}")], "unsafe name"),
        ([("/abs/metadata.json", None, b"{}")], "unsafe name"),
        ([("not-a-session/metadata.json", None, b"{}")], "not inside a session"),
        ([("{sid}/metadata.json", None, b"{broken")], "invalid record"),
        ([("{sid}/notes.txt", None, b"hi")], "has no metadata.json"),
        (
            [("{sid}/metadata.json", None, b"{good}"), ("{sid}/link", b"l", b"/etc/passwd")],
            "not a regular file",
        ),
        (
            [("{sid}/metadata.json", None, b"{good}"), ("{sid}/metadata.json", None, b"{good}")],
            "twice",
        ),
    ],
)
def test_import_checks_everything_before_writing_anything(
    manager: SessionManager,
    tmp_path: Path,
    members: list[tuple[str, bytes | None, bytes]],
    fragment: str,
) -> None:
    good = manager.create_session("good")
    sid = str(uuid.uuid4())
    record = json.dumps({**good.to_dict(), "session_id": sid}).encode()
    # a valid session first, so a half-done import would show
    other = str(uuid.uuid4())
    first = (
        f"{other}/metadata.json",
        None,
        json.dumps({**good.to_dict(), "session_id": other}).encode(),
    )
    concrete = [
        (name.format(sid=sid), kind, record if data == b"{good}" else data)
        for name, kind, data in members
    ]
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(tar_with([first, *concrete]))
    target = other_root(tmp_path)
    with pytest.raises(SessionValidationError) as caught:
        target.import_sessions(archive)
    assert fragment in str(caught.value)
    assert not target.sessions_dir.exists() or list(target.sessions_dir.iterdir()) == []


def test_import_refuses_something_that_is_not_an_archive(
    manager: SessionManager, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(SessionValidationError, match="not a readable"):
        manager.import_sessions(junk)


def test_import_replaces_a_corrupt_local_copy(
    manager: SessionManager, exported: tuple[Path, list[str]]
) -> None:
    archive, ids = exported
    (manager.sessions_dir / ids[2] / "metadata.json").write_text("{garbage")
    with pytest.raises(CorruptSessionError):
        manager.get_session(ids[2])
    result = manager.import_sessions(archive)
    assert result.updated == [ids[2]]
    assert manager.get_session(ids[2]).feature_request == "request 2"


# ---------------------------------------------------------------- doctor


def test_doctor_on_a_healthy_store(manager: SessionManager) -> None:
    manager.create_session("x")
    manager.query_sessions()
    report = manager.doctor()
    assert report.healthy and report.sessions == 1 and report.index == "ok"


def test_doctor_finds_and_fixes_problems(manager: SessionManager, tmp_path: Path) -> None:
    good = manager.create_session("good").session_id
    bad = manager.create_session("bad").session_id
    (manager.sessions_dir / bad / "metadata.json").write_text("{oops")
    (manager.sessions_dir / good / ".metadata.json.abcdef.tmp").write_text("half")
    (manager.sessions_dir / ".trash-leftover").mkdir()
    orphan = manager.sessions_dir / str(uuid.uuid4())
    orphan.mkdir()
    (orphan / "checkpoints.json").write_text("{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    link = manager.sessions_dir / str(uuid.uuid4())
    link.symlink_to(outside, target_is_directory=True)

    report = manager.doctor()
    assert not report.healthy
    assert list(report.corrupt) == [bad] and list(report.unsafe) == [link.name]
    assert report.without_metadata == [orphan.name]
    assert report.temp_files == [f"{good}/.metadata.json.abcdef.tmp"]
    assert report.leftovers == [".trash-leftover"]
    assert (manager.sessions_dir / bad).exists()  # looking changes nothing

    fixed = manager.doctor(fix=True)
    assert fixed.fixed and fixed.healthy, fixed.to_dict()
    quarantine = manager.sessions_dir.parent / "quarantine"
    moved = sorted(p.name[:36] for p in quarantine.iterdir())
    assert moved == sorted([bad, link.name])
    assert (
        quarantine
        / next(p.name for p in quarantine.iterdir() if p.name.startswith(bad))
        / "metadata.json"
    ).read_text() == "{oops"
    assert outside.exists()  # the link was moved, its target left alone
    assert (orphan / "checkpoints.json").exists()  # never touched
    after = manager.doctor()
    assert after.healthy, after.to_dict()
    assert [s.session_id for s in manager.query_sessions()] == [good]


def test_doctor_reports_a_stale_index_and_reindexes(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    manager.query_sessions()
    path = manager.sessions_dir / sid / "metadata.json"
    record = json.loads(path.read_text())
    record["status"] = "failed"
    path.write_text(json.dumps(record))
    report = manager.doctor()
    assert report.index.startswith("stale")
    assert manager.doctor(reindex=True).index == "rebuilt"
    assert manager.doctor().index == "ok"
    assert manager.count_sessions(status="failed") == 1
