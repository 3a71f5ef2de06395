"""Checks that speak the user's language: finished sessions, consistent counters,
messages without Python type names, inputs taken as users give them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from maestro import SessionManager, SessionStatus
from maestro.cli import cli
from maestro.errors import InvalidTransitionError, SessionValidationError

from .conftest import GIT, Clock
from .test_cli import error_line, ok, run

S = SessionStatus


def finished(manager: SessionManager, status: SessionStatus = S.COMPLETED) -> str:
    sid = manager.create_session("build it", git_context=GIT).session_id
    if status is S.FAILED:
        manager.transition_state(sid, S.FAILED)
        return sid
    for state in (S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING, S.VALIDATING):
        manager.transition_state(sid, state)
    manager.transition_state(sid, S.GENERATING_REPORT)
    manager.transition_state(sid, S.COMPLETED)
    return sid


# ------------------------------------------------------------ finished sessions


@pytest.mark.parametrize("status", [S.COMPLETED, S.FAILED])
@pytest.mark.parametrize(
    "updates",
    [
        {"current_phase": "plan"},
        {"current_phase": "implement"},
        {"status": "planning"},
        {"feature_request": "something else"},
        {"configuration": {"max_iterations": 9}},
        {"git_context": {"branch": "other"}},
        {"statistics": {"duration_seconds": 1.5}},
    ],
)
def test_a_finished_session_keeps_what_it_settled(
    manager: SessionManager, status: SessionStatus, updates: dict[str, object]
) -> None:
    sid = finished(manager, status)
    before = manager.get_session(sid)
    with pytest.raises(SessionValidationError) as caught:
        manager.update_session(sid, updates)
    assert sid in str(caught.value)
    assert status.value in str(caught.value)
    after = manager.get_session(sid)
    assert after.revision == before.revision
    assert (after.status, after.current_phase) == (before.status, before.current_phase)


def test_a_finished_session_still_takes_late_bookkeeping(manager: SessionManager) -> None:
    sid = finished(manager)
    before = manager.get_session(sid)
    updated = manager.update_session(
        sid,
        {
            "statistics": {"total_tasks": 4, "completed_tasks": 4},
            "prd_reference": {"path": "docs/prd.md"},
            "status": "completed",  # restating the status is no change
            "current_phase": before.current_phase,
        },
    )
    assert updated.statistics.completed_tasks == 4
    assert updated.prd_reference is not None and updated.prd_reference.path == "docs/prd.md"
    assert updated.statistics.duration_seconds == before.statistics.duration_seconds
    assert manager.increment_statistics(sid, decisions_made=2).statistics.decisions_made == 2
    with pytest.raises(InvalidTransitionError):
        manager.transition_state(sid, S.PLANNING)
    with pytest.raises(SessionValidationError):
        manager.heartbeat(sid)


def test_cli_update_of_a_finished_phase_is_refused(tmp_path: Path) -> None:
    sid = SessionManager(tmp_path).create_session("x", git_context=GIT).session_id
    ok(run(tmp_path, "fail", sid, "--reason", "broke"))
    line = error_line(run(tmp_path, "update", sid, "--set", "current_phase=plan"), 1)
    assert "failed, so its current_phase is final" in line


# ------------------------------------------------------------ statistics


def test_completed_and_failed_never_exceed_total(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    # Before the tasks are counted (total 0), progress is taken as it comes.
    assert manager.increment_statistics(sid, completed_tasks=2).statistics.completed_tasks == 2
    with pytest.raises(SessionValidationError, match=r"would exceed total_tasks \(1\)"):
        manager.update_session(sid, {"statistics": {"total_tasks": 1}})
    manager.update_session(sid, {"statistics": {"total_tasks": 3}})
    with pytest.raises(SessionValidationError, match=r"failed_tasks \(2\) would exceed"):
        manager.increment_statistics(sid, failed_tasks=2)
    with pytest.raises(SessionValidationError, match="would exceed"):
        manager.update_session(sid, {"statistics": {"total_tasks": 1}})
    both = manager.increment_statistics(sid, total_tasks=2, failed_tasks=2)
    assert (both.statistics.total_tasks, both.statistics.failed_tasks) == (5, 2)
    assert manager.get_session(sid).revision == both.revision


def test_a_zero_increment_is_refused_and_writes_nothing(manager: SessionManager) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    revision = manager.get_session(sid).revision
    with pytest.raises(SessionValidationError, match="increment of 0"):
        manager.increment_statistics(sid, decisions_made=0)
    assert manager.get_session(sid).revision == revision


def test_going_below_zero_names_the_amount_given(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    manager.increment_statistics(sid, decisions_made=1)
    line = error_line(run(tmp_path, "increment", sid, "decisions_made", "-3"), 1)
    assert "decisions_made is 1; subtracting 3 would make it negative" in line
    line = error_line(run(tmp_path, "increment", sid, "decisions_made", "0"), 1)
    assert "increment of 0" in line
    assert manager.get_session(sid).statistics.decisions_made == 1


# ------------------------------------------------------------ resume


def test_resume_of_a_session_that_is_not_paused_says_so(tmp_path: Path) -> None:
    sid = SessionManager(tmp_path).create_session("x", git_context=GIT).session_id
    line = error_line(run(tmp_path, "resume", sid), 4)
    assert "is initializing, not paused" in line
    assert "terminal" not in line and "->" not in line


def test_create_takes_a_prd_path_as_the_cli_does(manager: SessionManager) -> None:
    session = manager.create_session("x", git_context=GIT, prd_reference="docs/prd.md")
    assert session.prd_reference is not None
    assert (session.prd_reference.filename, session.prd_reference.path) == ("prd.md", "docs/prd.md")
    updated = manager.update_session(session.session_id, {"prd_reference": Path("a/b.md")})
    assert updated.prd_reference is not None and updated.prd_reference.filename == "b.md"
    with pytest.raises(SessionValidationError, match=r"docs/prd\.md"):
        manager.create_session("x", git_context=GIT, prd_reference="  ")


# ------------------------------------------------------------ usage errors, reasons, search


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["list", "--bogus"], "No such option '--bogus'. (see `maestro list --help`)"),
        (["show"], "Missing argument 'ID'. (see `maestro show --help`)"),
        (["bogus"], "No such command 'bogus'. (see `maestro --help`)"),
        (["search", ""], "at least one word"),
        (["search", " ", " "], "at least one word"),
        (["--bogus"], "No such option '--bogus'"),
    ],
)
def test_a_usage_error_is_one_line_with_a_hint(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    result = run(tmp_path, *args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0]
    assert "Usage:" not in result.stderr and "Try " not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["transition", "{sid}", "planning", "--reason", ""],
        ["fail", "{sid}", "--reason", " "],
        ["pause", "{sid}", "--reason", ""],
        ["update", "{sid}", "--set", "status=planning", "--reason", ""],
    ],
)
def test_a_blank_reason_is_refused_alike_everywhere(tmp_path: Path, args: list[str]) -> None:
    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    result = run(tmp_path, *[a.format(sid=sid) for a in args])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert "Invalid value for '--reason': must not be empty" in line
    assert manager.get_session(sid).revision == 1


@pytest.mark.parametrize("reason", ["", "  ", 3])
def test_the_api_refuses_a_blank_reason_on_every_write(
    manager: SessionManager, reason: object
) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    writes = [
        lambda: manager.transition_state(sid, S.PLANNING, reason=reason),  # type: ignore[arg-type]
        lambda: manager.pause_session(sid, reason=reason),  # type: ignore[arg-type]
        lambda: manager.resume_session(sid, reason=reason),  # type: ignore[arg-type]
        lambda: manager.update_session(sid, {"status": "failed"}, reason=reason),  # type: ignore[arg-type]
    ]
    for write in writes:
        with pytest.raises(SessionValidationError, match="a reason must be text"):
            write()
    assert manager.get_session(sid).revision == 1


# ------------------------------------------------------------ no Python in messages

#: Words of Python, not of the user: type names and the old phrasings.
PYTHON_WORDS = re.compile(
    r"\b(NoneType|int|str|float|bool|dict|tuple|bytes|Mapping|mapping|datetime|timedelta|"
    r"SessionStatistics|SessionConfiguration|GitContext|PRDReference|Session|"
    r"another string|integer range|TypeError|ValueError)\b"
)

WRONG = [None, 3, 2.5, True, "text", ["a"], {"a": 1}, object(), b"x"]


def _calls(manager: SessionManager, sid: str, value: object) -> list[Callable[[], object]]:
    v: Any = value
    return [
        lambda: manager.create_session(v),
        lambda: manager.create_session("x", v),
        lambda: manager.create_session("x", prd_reference=v),
        lambda: manager.create_session("x", configuration={"max_iterations": v}),
        lambda: manager.update_session(sid, v),
        lambda: manager.update_session(sid, {"statistics": v}),
        lambda: manager.update_session(sid, {"statistics": {"total_tasks": v}}),
        lambda: manager.update_session(sid, {"statistics": {"duration_seconds": v}}),
        lambda: manager.update_session(sid, {"configuration": v}),
        lambda: manager.update_session(sid, {"configuration": {"auto_checkpoint": v}}),
        lambda: manager.update_session(sid, {"git_context": v}),
        lambda: manager.update_session(sid, {"git_context": {"branch": v}}),
        lambda: manager.update_session(sid, {"prd_reference": v}),
        lambda: manager.update_session(sid, {"current_phase": v}),
        lambda: manager.update_session(sid, {"status": v}),
        lambda: manager.update_session(sid, {"feature_request": v}),
        lambda: manager.transition_state(sid, v),
        lambda: manager.increment_statistics(sid, total_tasks=v),
        lambda: manager.query_sessions(status=v),
        lambda: manager.query_sessions(phase=v),
        lambda: manager.query_sessions(created_after=v),
        lambda: manager.query_sessions(branch=v),
        lambda: manager.query_sessions(limit=v),
        lambda: manager.query_sessions(offset=v),
        lambda: manager.query_sessions(text=v),
        lambda: manager.find_stale_sessions(older_than=v),
        lambda: manager.gc(v),
    ]


@pytest.mark.parametrize("value", WRONG, ids=lambda v: type(v).__name__)
def test_no_message_names_a_python_type(manager: SessionManager, value: object) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    refused = 0
    for call in _calls(manager, sid, value):
        try:
            call()
        except SessionValidationError as error:
            refused += 1
            assert not PYTHON_WORDS.search(str(error)), str(error)
    assert refused >= 10  # most of these values are wrong for most of these calls


# ------------------------------------------------------------ ages as users pass them


@pytest.mark.parametrize("age", [timedelta(minutes=30), 1800, 1800.0, "30m", " 30M "])
def test_stale_and_gc_take_an_age_as_users_write_it(
    manager: SessionManager, clock: Clock, age: object
) -> None:
    old = manager.create_session("old", git_context=GIT).session_id
    manager.transition_state(old, S.PLANNING)
    done = finished(manager, S.FAILED)
    clock.advance(31 * 60)
    young = manager.create_session("young", git_context=GIT).session_id
    manager.transition_state(young, S.PLANNING)
    assert [s.session_id for s in manager.find_stale_sessions(older_than=age)] == [old]  # type: ignore[arg-type]
    assert [s.session_id for s in manager.gc(age, dry_run=True)] == [done]  # type: ignore[arg-type]
    assert [s.session_id for s in manager.gc(age)] == [done]  # type: ignore[arg-type]


@pytest.mark.parametrize("age", [0, -5, "0m", "soon", "", None, float("nan"), float("inf"), True])
def test_a_bad_age_is_a_validation_error(manager: SessionManager, age: object) -> None:
    with pytest.raises(SessionValidationError, match="30m, 2h, 2d or 1w"):
        manager.gc(age)  # type: ignore[arg-type]
    if age is not None:  # None: each session's own timeout
        with pytest.raises(SessionValidationError, match="30m, 2h, 2d or 1w"):
            manager.find_stale_sessions(older_than=age)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["create", "x", "--max-iterations", "two"], "'two' is not a whole number of at least 1"),
        (["create", "x", "--timeout-minutes", "0"], "0 is too small: give a whole number"),
        (["search", "x", "--limit", "0"], "give a whole number of at least 1, such as 3"),
        (["watch", "--timeout", "soon"], "'soon' is not a number of at least 0, such as 3.5"),
    ],
)
def test_cli_numbers_are_asked_for_in_words(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run(tmp_path, *args)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert not PYTHON_WORDS.search(result.stderr), result.stderr


def test_cli_increment_amount_is_asked_for_in_words(tmp_path: Path) -> None:
    sid = SessionManager(tmp_path).create_session("x", git_context=GIT).session_id
    result = run(tmp_path, "increment", sid, "decisions_made", "lots")
    assert result.exit_code == 2
    assert "'lots' is not a whole number, such as 3" in result.stderr


# ------------------------------------------------------------ date ranges


def test_a_date_alone_as_until_takes_in_the_whole_day(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    times = iter(
        [
            datetime(2026, 11, 30, 0, 0, tzinfo=UTC),
            datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
        ]
    )
    for request in ("first", "last", "next day"):
        moment = next(times)
        manager = SessionManager(tmp_path, clock=lambda m=moment: m)  # type: ignore[misc]
        manager.create_session(request, git_context=GIT)
    listed = ok(run(tmp_path, "--json", "list", "--until", "2026-11-30"))
    assert sorted(s["feature_request"] for s in json.loads(listed)) == ["first", "last"]
    listed = ok(run(tmp_path, "--json", "list", "--since", "2026-11-30", "--until", "2026-11-30"))
    assert len(json.loads(listed)) == 2
    # A time is taken as given.
    listed = ok(run(tmp_path, "--json", "list", "--until", "2026-11-30T00:00:00Z"))
    assert [s["feature_request"] for s in json.loads(listed)] == ["first"]


@pytest.mark.parametrize("command", ["list", "search"])
def test_an_inverted_range_is_a_usage_error(tmp_path: Path, command: str) -> None:
    words = ["oauth"] if command == "search" else []
    result = run(tmp_path, command, *words, "--since", "2026-12-01", "--until", "2026-11-30")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert "--since is later than --until" in line


# ------------------------------------------------------------ running durations, stale ages


def _backdated(tmp_path: Path, hours: float) -> str:
    from maestro.models import utcnow

    start = utcnow() - timedelta(hours=hours)
    manager = SessionManager(tmp_path, clock=lambda: start)
    sid = manager.create_session("long job", git_context=GIT).session_id
    manager.transition_state(sid, S.PLANNING)
    return sid


def test_show_of_a_running_session_gives_its_duration_so_far(tmp_path: Path) -> None:
    sid = _backdated(tmp_path, 2)
    out = ok(run(tmp_path, "show", sid))
    duration = re.search(r"^duration\s+(.+?)\s*$", out, re.M)
    working = re.search(r"working\s+(\S+(?: \S+)?)\s+paused", out)
    assert duration is not None and working is not None, out
    assert duration.group(1) == f"{working.group(1)} so far"
    assert duration.group(1).startswith("2h 00m")


def test_show_of_a_finished_session_gives_its_stored_duration(tmp_path: Path) -> None:
    sid = _backdated(tmp_path, 2)
    SessionManager(tmp_path).transition_state(sid, S.FAILED)
    out = ok(run(tmp_path, "show", sid))
    assert re.search(r"^duration\s+2h 00m\s*$", out, re.M), out


@pytest.mark.parametrize("reap", [False, True])
def test_stale_says_how_long_ago_the_last_activity_was(tmp_path: Path, reap: bool) -> None:
    sid = _backdated(tmp_path, 2)
    extra = ["--reap"] if reap else []
    # The table a terminal gets.
    out = ok(run(tmp_path, "stale", "--older-than", "30m", *extra, MAESTRO_FORCE_TTY="160"))
    row = next(line for line in out.splitlines() if line.startswith(sid[:8]))
    assert "2h 00m ago" in row, out
    assert "just now" not in out


# ------------------------------------------------------------ export


def test_export_to_standard_output(tmp_path: Path) -> None:
    import io
    import tarfile

    sid = SessionManager(tmp_path).create_session("x", git_context=GIT).session_id
    result = run(tmp_path, "export", "-o", "-")
    assert result.exit_code == 0, result.stderr
    with tarfile.open(fileobj=io.BytesIO(result.stdout_bytes), mode="r:gz") as archive:
        assert f"{sid}/metadata.json" in archive.getnames()
    assert "exported 1 session" in result.stderr and "standard output" in result.stderr


def test_export_does_not_replace_a_file_without_force(tmp_path: Path) -> None:
    SessionManager(tmp_path).create_session("x", git_context=GIT)
    target = tmp_path / "keep.tar.gz"
    target.write_bytes(b"precious")
    result = run(tmp_path, "export", "-o", str(target))
    assert result.exit_code == 2
    assert "already exists; pass --force" in result.stderr
    assert target.read_bytes() == b"precious"
    ok(run(tmp_path, "export", "-o", str(target), "--force"))
    assert target.read_bytes()[:2] == b"\x1f\x8b"


def test_export_warns_of_a_name_that_is_not_an_archive_name(tmp_path: Path) -> None:
    SessionManager(tmp_path).create_session("x", git_context=GIT)
    for name, warned in (("a.tar", True), ("b.tgz", False), ("c.tar.gz", False)):
        result = run(tmp_path, "export", "-o", str(tmp_path / name))
        assert result.exit_code == 0
        assert ("does not end in .tar.gz or .tgz" in result.stderr) is warned
        assert (tmp_path / name).exists()


# ------------------------------------------------------------ demo


def test_demo_runs_in_a_fresh_temporary_store_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from .test_cli import PLAIN_ENV, runner

    work = tmp_path / "repo"
    scratch = tmp_path / "scratch"
    work.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    env = {**PLAIN_ENV, "MAESTRO_ROOT": None, "MAESTRO_STORE": None}
    result = runner().invoke(cli, ["demo"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert not (work / ".flow").exists()  # the user's store is untouched
    [store] = scratch.iterdir()
    assert f"demo store: {store} (pass --root" in result.stdout.splitlines()[0]
    [session] = SessionManager(store).query_sessions()
    assert f"maestro --root {store} show {session.session_id[:8]}" in result.stdout
    # A second demo gets a store of its own.
    assert runner().invoke(cli, ["demo"], env=env).exit_code == 0
    assert len(list(scratch.iterdir())) == 2


def test_demo_with_a_root_keeps_it_there(tmp_path: Path) -> None:
    out = ok(run(tmp_path, "demo"))
    assert "demo store" not in out
    assert len(SessionManager(tmp_path).query_sessions()) == 1


# ------------------------------------------------------------ completion


def test_completion_of_a_target_state_offers_only_the_allowed_ones(tmp_path: Path) -> None:
    from .test_cli import complete

    manager = SessionManager(tmp_path)
    sid = manager.create_session("x", git_context=GIT).session_id
    root = f"--root {tmp_path}"
    assert complete(f"{root} transition {sid} ") == ["planning", "failed", "paused"]
    assert complete(f"{root} transition {sid[:8]} p") == ["planning", "paused"]
    manager.transition_state(sid, S.PLANNING)
    manager.pause_session(sid)
    assert complete(f"{root} transition {sid} ") == ["planning", "generating_tasks", "failed"]
    manager.transition_state(sid, S.FAILED)
    assert complete(f"{root} transition {sid} ") == []
    # A session that cannot be read yet: every state, never an error.
    assert len(complete(f"{root} transition ffffffff ")) == len(S)


# ------------------------------------------------------------ doctor


def test_doctor_fits_80_columns_and_names_each_session_once(tmp_path: Path) -> None:
    from .test_cli import widest_line

    manager = SessionManager(tmp_path)
    broken = [manager.create_session(r, git_context=GIT).session_id for r in ("a", "b")]
    (manager.sessions_dir / broken[0] / "metadata.json").write_text("{bad")
    record = json.loads((manager.sessions_dir / broken[1] / "metadata.json").read_text())
    record["status"] = "weird"
    (manager.sessions_dir / broken[1] / "metadata.json").write_text(json.dumps(record))
    for args in (["doctor"], ["doctor", "--fix"]):
        result = run(tmp_path, *args)
        assert widest_line(result.stdout) <= 80, result.stdout
        corrupt = result.stdout.split("corrupt (2):", 1)[1].split("index:", 1)[0]
        for sid in broken:
            assert corrupt.count(sid[:8]) == 1, corrupt
            assert re.search(rf"^  {sid} *$", corrupt, re.M), corrupt
        assert "must be one of" in corrupt and "invalid JSON" in corrupt
        assert "session " not in corrupt
    fixed = result.stdout.split("fixed:", 1)[1]
    assert fixed.count("quarantined to") == 2
    for sid in broken:
        assert fixed.count(sid[:8]) == 1 and f"quarantine/{sid}-" in fixed
