"""Import as a way in: bounded memory and disk, reserved names, whole sessions.

An archive is input from elsewhere.  What it declares is checked before
anything is written, members are streamed (never held whole in memory), no
member may carry a name the store reserves at any depth, and a session
already here is either replaced whole or left byte for byte.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import json
import os
import tarfile
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from maestro import SessionManager, SessionValidationError, StorageError
from maestro.cli import cli

from .conftest import Clock

MiB = 1024 * 1024


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path below ``folder`` (None for a directory), the lock left out."""
    return {
        str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.name != ".lock"
    }


def record_of(manager: SessionManager, sid: str, **changes: object) -> bytes:
    record = json.loads((manager.sessions_dir / sid / "metadata.json").read_text())
    record.update(changes)
    return json.dumps(record).encode()


def write_archive(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def other_root(tmp_path: Path) -> SessionManager:
    return SessionManager(tmp_path / "other", clock=Clock())


def nothing_written(manager: SessionManager) -> bool:
    return not manager.sessions_dir.exists() or list(manager.sessions_dir.iterdir()) == []


def gnu_sparse_member(name: str, declared: int) -> bytes:
    """The header of a GNU sparse file of ``declared`` bytes that stores none (a hole)."""
    info = tarfile.TarInfo(name)
    info.size = 0
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    # one map entry: 0 bytes of data at the very end; then the real size
    header[386:398] = b"%011o\0" % declared
    header[398:410] = b"%011o\0" % 0
    header[483:495] = b"%011o\0" % declared
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    return bytes(header[:512])


# ---------------------------------------------------------------- memory and disk


def test_a_sparse_member_declaring_more_than_the_limit_is_refused_before_any_write(
    manager: SessionManager, tmp_path: Path
) -> None:
    sid = manager.create_session("x").session_id
    data = record_of(manager, sid)
    info = tarfile.TarInfo(f"{sid}/metadata.json")
    info.size = len(data)
    padding = b"\0" * (-len(data) % tarfile.BLOCKSIZE)
    raw = info.tobuf(format=tarfile.GNU_FORMAT) + data + padding
    # a hole of 65 MiB, just over the default limit, in a few hundred bytes of archive
    raw += gnu_sparse_member(f"{sid}/huge.bin", 65 * MiB) + b"\0" * (2 * tarfile.BLOCKSIZE)
    path = tmp_path / "sparse.tar.gz"
    path.write_bytes(gzip.compress(raw))
    assert path.stat().st_size < 1024
    target = other_root(tmp_path)
    with pytest.raises(SessionValidationError):
        target.import_sessions(path)
    assert nothing_written(target)


def test_a_member_over_the_per_file_limit_is_refused_before_any_write(
    manager: SessionManager, tmp_path: Path
) -> None:
    sid = manager.create_session("x").session_id
    archive = write_archive(
        tmp_path / "big.tar.gz",
        [(f"{sid}/metadata.json", record_of(manager, sid)), (f"{sid}/blob.bin", b"\0" * 5000)],
    )
    target = other_root(tmp_path)
    with pytest.raises(SessionValidationError, match="per file"):
        target.import_sessions(archive, max_file_bytes=4096)
    assert nothing_written(target)
    assert target.import_sessions(archive, max_file_bytes=5000).created == [sid]


def test_an_archive_over_the_per_import_limit_is_refused_before_any_write(
    manager: SessionManager, tmp_path: Path
) -> None:
    members = []
    for number in range(4):
        sid = manager.create_session(f"s{number}").session_id
        members += [(f"{sid}/metadata.json", record_of(manager, sid)), (f"{sid}/a", b"x" * 3000)]
    archive = write_archive(tmp_path / "many.tar.gz", members)
    target = other_root(tmp_path)
    with pytest.raises(SessionValidationError, match="limit of one import"):
        target.import_sessions(archive, max_total_bytes=12_000)
    assert nothing_written(target)
    assert len(target.import_sessions(archive, max_total_bytes=64_000).created) == 4


def test_the_command_takes_the_limits_as_options_and_from_the_environment(
    manager: SessionManager, tmp_path: Path
) -> None:
    sid = manager.create_session("x").session_id
    archive = write_archive(
        tmp_path / "big.tar.gz",
        [(f"{sid}/metadata.json", record_of(manager, sid)), (f"{sid}/blob.bin", b"\0" * 5000)],
    )
    root = tmp_path / "cli"
    root.mkdir()
    runner = CliRunner()
    refused = runner.invoke(
        cli, ["--root", str(root), "import", "--max-file-size", "4k", str(archive)]
    )
    assert refused.exit_code == 1 and "per file" in refused.output
    refused = runner.invoke(
        cli,
        ["--root", str(root), "import", str(archive)],
        env={"MAESTRO_IMPORT_MAX_TOTAL_SIZE": "6KiB"},
    )
    assert refused.exit_code == 1 and "limit of one import" in refused.output
    assert not (root / ".flow" / "maestro" / "sessions").exists() or not list(
        (root / ".flow" / "maestro" / "sessions").iterdir()
    )
    done = runner.invoke(
        cli, ["--root", str(root), "import", "--max-file-size", "1MiB", str(archive)]
    )
    assert done.exit_code == 0, done.output


def test_members_are_streamed_to_disk_not_read_into_memory(
    manager: SessionManager, tmp_path: Path
) -> None:
    sid = manager.create_session("x").session_id
    archive = write_archive(
        tmp_path / "large.tar.gz",
        [(f"{sid}/metadata.json", record_of(manager, sid)), (f"{sid}/large.bin", b"\0" * 16 * MiB)],
    )
    target = other_root(tmp_path)
    tracemalloc.start()
    try:
        target.import_sessions(archive)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (target.sessions_dir / sid / "large.bin").stat().st_size == 16 * MiB
    assert peak < 8 * MiB, f"peak {peak} bytes for a 16 MiB member"


# ---------------------------------------------------------------- reserved names


@pytest.mark.parametrize(
    "member",
    [
        "{sid}/.lock/x",
        "{sid}/.metadata.json.0123abcd.tmp/y",
        "{sid}/reports/.lock",
        "{sid}/reports/.metadata.json.0123abcd.tmp",
        "{sid}/.import-0123/z",
        "{sid}/.trash-0123/z",
    ],
)
def test_a_reserved_name_at_any_depth_refuses_the_archive(
    manager: SessionManager, tmp_path: Path, member: str
) -> None:
    sid = manager.create_session("x").session_id
    archive = write_archive(
        tmp_path / "bad.tar.gz",
        [(f"{sid}/metadata.json", record_of(manager, sid)), (member.format(sid=sid), b"data")],
    )
    target = other_root(tmp_path)
    with pytest.raises(SessionValidationError, match="reserves"):
        target.import_sessions(archive)
    assert nothing_written(target)


# ---------------------------------------------------------------- a session whole or not at all


@pytest.fixture
def local_and_archive(manager: SessionManager, tmp_path: Path) -> tuple[str, Path]:
    """A session holding a file ``zzz``, and an archive of a newer revision of it."""
    sid = manager.create_session("x").session_id
    folder = manager.sessions_dir / sid
    (folder / "checkpoints.json").write_text('{"local": true}')
    (folder / "zzz").write_text("local file")
    (folder / "reports").mkdir()
    (folder / "reports" / "a.md").write_text("local report")
    newer = record_of(manager, sid, revision=9)
    members = [
        (f"{sid}/checkpoints.json", b'{"archive": true}'),
        (f"{sid}/reports/a.md", b"archive report"),
        (f"{sid}/reports/b.md", b"new report"),
        (f"{sid}/metadata.json", newer),
    ]
    return sid, write_archive(tmp_path / "newer.tar.gz", members)


def test_a_clash_with_the_local_session_changes_nothing(
    manager: SessionManager, tmp_path: Path, local_and_archive: tuple[str, Path]
) -> None:
    sid, _ = local_and_archive
    newer = record_of(manager, sid, revision=9)
    archive = write_archive(
        tmp_path / "clash.tar.gz",
        [
            (f"{sid}/checkpoints.json", b'{"archive": true}'),
            (f"{sid}/zzz/inner", b"needs zzz to be a directory"),
            (f"{sid}/metadata.json", newer),
        ],
    )
    before = tree(manager.sessions_dir / sid)
    with pytest.raises(SessionValidationError, match=sid):
        manager.import_sessions(archive)
    assert tree(manager.sessions_dir / sid) == before
    assert manager.get_session(sid).revision == 1
    assert not [p for p in manager.sessions_dir.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("failing_call", range(1, 8))
def test_an_io_error_halfway_puts_every_file_back(
    manager: SessionManager,
    local_and_archive: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    failing_call: int,
) -> None:
    sid, archive = local_and_archive
    before = tree(manager.sessions_dir / sid)
    calls = 0
    real_rename, real_replace = os.rename, os.replace

    def failing(real: object) -> object:
        def move(*args: object, **kwargs: object) -> None:
            nonlocal calls
            calls += 1
            if calls == failing_call:
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real(*args, **kwargs)  # type: ignore[operator]

        return move

    monkeypatch.setattr(os, "rename", failing(real_rename))
    monkeypatch.setattr(os, "replace", failing(real_replace))
    with pytest.raises(StorageError) as caught:
        manager.import_sessions(archive)
    monkeypatch.undo()
    assert caught.value.errno == errno.EIO
    assert tree(manager.sessions_dir / sid) == before
    assert manager.get_session(sid).revision == 1
    # and the next attempt applies it whole
    assert manager.import_sessions(archive).updated == [sid]
    assert (manager.sessions_dir / sid / "reports" / "b.md").read_text() == "new report"
    assert (manager.sessions_dir / sid / "zzz").read_text() == "local file"
    assert manager.get_session(sid).revision == 9


# ---------------------------------------------------------------- a full disk is a StorageError


def test_no_room_for_the_staging_directory_is_a_storage_error(
    manager: SessionManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = manager.create_session("x").session_id
    archive = write_archive(
        tmp_path / "a.tar.gz", [(f"{sid}/metadata.json", record_of(manager, sid))]
    )
    target = other_root(tmp_path)
    target.create_session("makes the sessions directory")
    real_mkdir = os.mkdir

    def mkdir(path: str | Path, *args: object, **kwargs: object) -> None:
        if str(path).startswith(".import-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", mkdir)
    with pytest.raises(StorageError) as caught:
        target.import_sessions(archive)
    assert caught.value.errno == errno.ENOSPC


def test_a_failure_opening_the_next_staged_session_closes_nothing_twice(
    manager: SessionManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import stages one session after the other; the staging directory of
    the second cannot be opened (the disk refuses).  The first one's folders
    were closed already: the error is the disk's, and no descriptor is closed
    twice (a second ``close`` fails, or closes a file opened meanwhile)."""
    import sys

    first, second = (manager.create_session(name).session_id for name in ("one", "two"))
    archive = write_archive(
        tmp_path / "two.tar.gz",
        [
            (f"{first}/reports/a.md", b"first report"),
            (f"{first}/metadata.json", record_of(manager, first)),
            (f"{second}/reports/b.md", b"second report"),
            (f"{second}/metadata.json", record_of(manager, second)),
        ],
    )
    target = other_root(tmp_path)
    target.create_session("makes the sessions directory")
    before = set(os.listdir(target.sessions_dir))
    real_open = os.open
    refused = []

    def open_(path: object, *args: object, **kwargs: object) -> int:
        if path == second and sys._getframe(1).f_code.co_name == "_stage":
            refused.append(path)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    def open_below(folder: Path) -> list[str]:
        """What this process holds open below ``folder`` (other tests' files aside)."""
        held = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # closed meanwhile
                where = os.readlink(f"/proc/self/fd/{fd}")
                if where == str(folder) or where.startswith(f"{folder}/"):
                    held.append(where)
        return sorted(held)

    descriptors = open_below(target.sessions_dir)
    monkeypatch.setattr(os, "open", open_)
    with pytest.raises(StorageError) as caught:
        target.import_sessions(archive)
    monkeypatch.undo()
    assert refused == [second]
    assert caught.value.errno == errno.ENOSPC
    assert open_below(target.sessions_dir) == descriptors  # none left open either
    assert set(os.listdir(target.sessions_dir)) == before  # staging gone, nothing placed
    assert sorted(target.import_sessions(archive).created) == sorted([first, second])
    assert (target.sessions_dir / second / "reports" / "b.md").read_bytes() == b"second report"
