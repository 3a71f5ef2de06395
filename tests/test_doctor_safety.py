"""``doctor --fix`` never harms a healthy session or a live writer.

It looks again under the session's lock before it quarantines, tells a
record it cannot *read* from a corrupt one (and moves neither the first nor
calls it healthy), and removes a temp file or a staging directory only when
the lock its writer holds is free.  The live writers here are separate
processes held in the middle of their write.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from maestro import SessionManager, StorageError
from maestro.cli import cli

from .conftest import Clock

# ---------------------------------------------------------------- re-check under the lock


def test_a_session_repaired_between_the_check_and_the_fix_stays(
    manager: SessionManager, tmp_path: Path
) -> None:
    sid = manager.create_session("will be repaired").session_id
    record = manager.sessions_dir / sid / "metadata.json"
    good = record.read_bytes()
    record.write_text("{broken")

    def repair_meanwhile(done: int, total: int) -> None:
        record.write_bytes(good)  # an import, another tool: the record is sound again

    report = manager.doctor(fix=True, progress=repair_meanwhile)
    assert list(report.corrupt) == [sid]  # what the first look saw
    assert record.read_bytes() == good  # but nothing moved
    assert manager.get_session(sid).feature_request == "will be repaired"
    quarantine = manager.sessions_dir.parent / "quarantine"
    assert not quarantine.exists() or not list(quarantine.iterdir())
    assert manager.doctor().healthy


# ---------------------------------------------------------------- unreadable is not corrupt


@pytest.fixture
def unreadable(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A session whose metadata.json cannot be opened (EACCES or EIO), the rest readable."""
    sid = manager.create_session("cannot be read").session_id
    manager.create_session("fine")
    code = request.param
    real_open = os.open

    def failing_open(path: str, flags: int, *args: object, **kwargs: object) -> int:
        dir_fd = kwargs.get("dir_fd")
        if (
            path == "metadata.json"
            and isinstance(dir_fd, int)
            and os.readlink(f"/proc/self/fd/{dir_fd}").endswith(sid)
        ):
            raise OSError(code, os.strerror(code))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing_open)
    yield sid


@pytest.mark.parametrize("unreadable", [errno.EACCES, errno.EIO], indirect=True)
def test_an_unreadable_record_is_reported_never_moved(
    manager: SessionManager, unreadable: str
) -> None:
    sid = unreadable
    report = manager.doctor(fix=True)
    assert (manager.sessions_dir / sid / "metadata.json").exists()
    assert not (manager.sessions_dir.parent / "quarantine").exists()
    assert not report.healthy
    assert sid in report.to_dict()["unreadable"] and sid not in report.corrupt


@pytest.mark.parametrize("unreadable", [errno.EACCES], indirect=True)
def test_the_command_does_not_call_an_unreadable_store_healthy(
    manager: SessionManager, unreadable: str
) -> None:
    root = manager.sessions_dir.parents[2]
    result = CliRunner().invoke(cli, ["--root", str(root), "doctor", "--fix"])
    assert result.exit_code == 1
    assert "problems remain" in result.output and "\nhealthy" not in result.output
    assert (manager.sessions_dir / unreadable / "metadata.json").exists()
    data = CliRunner().invoke(cli, ["--root", str(root), "--json", "doctor", "--fix"])
    payload = json.loads(data.stdout)
    assert payload["healthy"] is False and unreadable in payload["unreadable"]


# ---------------------------------------------------------------- the store's own names, misused


def test_fix_sets_aside_a_lock_directory_and_a_temp_named_directory(
    manager: SessionManager, tmp_path: Path
) -> None:
    sid = manager.create_session("x").session_id
    other = manager.create_session("y").session_id
    folder = manager.sessions_dir / sid
    (folder / ".lock").unlink(missing_ok=True)
    (folder / ".lock").mkdir()  # what an archive member "<sid>/.lock/x" used to make
    (folder / ".lock" / "x").write_text("from an archive")
    (manager.sessions_dir / other / ".metadata.json.0123abcd.tmp").mkdir()
    (manager.sessions_dir / other / ".metadata.json.0123abcd.tmp" / "y").write_text("z")
    with pytest.raises(StorageError):
        manager.update_session(sid, {"statistics": {"total_tasks": 1}})

    report = manager.doctor(fix=True)
    manager.update_session(sid, {"statistics": {"total_tasks": 1}})
    assert manager.doctor().healthy, manager.doctor().to_dict()
    assert sorted(report.to_dict()["misplaced"]) == sorted(
        [f"{sid}/.lock", f"{other}/.metadata.json.0123abcd.tmp"]
    )
    manager.update_session(other, {"statistics": {"total_tasks": 1}})
    assert manager.export_sessions(tmp_path / "all.tar.gz").sessions == 2
    manager.delete_session(sid)
    quarantined = sorted(p.name for p in (manager.sessions_dir.parent / "quarantine").iterdir())
    assert len(quarantined) == 2  # set aside, never deleted


def test_no_room_for_the_quarantine_is_a_storage_error(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = manager.create_session("x").session_id
    (manager.sessions_dir / sid / "metadata.json").write_text("{broken")
    real_mkdir = os.mkdir

    def mkdir(path: str | Path, *args: object, **kwargs: object) -> None:
        if str(path).endswith("quarantine"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(StorageError) as caught:
        manager.doctor(fix=True)
    assert caught.value.errno == errno.ENOSPC
    assert (manager.sessions_dir / sid / "metadata.json").read_text() == "{broken"


# ---------------------------------------------------------------- live writers in other processes

#: A child that stops in the middle of an operation until the parent says go:
#: ``create`` before the rename of its temp file, ``import`` after its first
#: session.  It prints "ready" when stopped and its result at the end.
CHILD = r"""
import json, os, sys
from maestro import SessionManager

root, action = sys.argv[1], sys.argv[2]
manager = SessionManager(root)

def hold():
    print("ready", flush=True)
    sys.stdin.readline()

if action == "create":
    real_fsync = os.fsync
    def fsync(fd):
        real_fsync(fd)
        name = os.readlink(f"/proc/self/fd/{fd}")
        if "/.metadata.json." in name and name.endswith(".tmp"):
            os.fsync = real_fsync
            hold()
    os.fsync = fsync
    print(json.dumps(manager.create_session("x" * 100_000).session_id), flush=True)
else:
    held = []
    def progress(done, total):
        if not held:
            held.append(done)
            hold()
    result = manager.import_sessions(sys.argv[3], progress=progress)
    print(json.dumps(result.created), flush=True)
"""


def start(root: Path, *args: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "ready\n", child.stderr.read() if child.stderr else ""
    return child


def finish(child: subprocess.Popen[str]) -> object:
    out, err = child.communicate("go\n", timeout=120)
    assert child.returncode == 0, err
    return json.loads(out)


def test_fix_leaves_the_temp_file_of_a_live_create_alone(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path, clock=Clock())
    manager.create_session("makes the store")
    child = start(tmp_path, "create")
    try:
        temps = list(manager.sessions_dir.glob("*/.metadata.json.*.tmp"))
        assert len(temps) == 1
        report = manager.doctor(fix=True)
        assert report.temp_files == [] and temps[0].exists()
        # (the index may still see the write as pending: that is the index's business)
        result = CliRunner().invoke(cli, ["--root", str(tmp_path), "--json", "doctor"])
        assert json.loads(result.stdout)["temp_files"] == []
    finally:
        sid = finish(child)
    assert isinstance(sid, str) and manager.get_session(sid).feature_request == "x" * 100_000


def test_fix_leaves_the_staging_directory_of_a_live_import_alone(tmp_path: Path) -> None:
    source = SessionManager(tmp_path / "source", clock=Clock())
    members = []
    for number in range(3):
        session = source.create_session(f"s{number}")
        members.append((f"{session.session_id}/metadata.json", session))
        (source.sessions_dir / session.session_id / "notes.txt").write_text(f"n{number}")
    archive = tmp_path / "three.tar.gz"
    source.export_sessions(archive)
    target = SessionManager(tmp_path / "target", clock=Clock())
    target.create_session("makes the store")
    child = start(tmp_path / "target", "import", str(archive))
    try:
        staging = [p for p in target.sessions_dir.iterdir() if p.name.startswith(".import-")]
        assert staging
        report = target.doctor(fix=True)
        assert report.leftovers == [] and all(p.exists() for p in staging)
    finally:
        created = finish(child)
    assert isinstance(created, list) and len(created) == 3
    for _, session in members:
        assert target.get_session(session.session_id) == session
        assert (target.sessions_dir / session.session_id / "notes.txt").exists()
    assert target.doctor().healthy


def test_fix_removes_what_a_dead_writer_left(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    (manager.sessions_dir / sid / ".metadata.json.0123abcd.tmp").write_text("half")
    staging = manager.sessions_dir / ".import-0123abcd"
    (staging / sid).mkdir(parents=True)
    (staging / ".lock").touch()
    report = manager.doctor(fix=True)
    assert report.temp_files == [f"{sid}/.metadata.json.0123abcd.tmp"]
    assert report.leftovers == [".import-0123abcd"]
    assert report.healthy and not staging.exists()
    assert manager.doctor().healthy
