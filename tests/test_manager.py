"""The seed's eight methods and what goes beyond them, through the public API."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from maestro import (
    ConflictError,
    GitContext,
    InvalidTransitionError,
    PRDReference,
    Session,
    SessionConfiguration,
    SessionManager,
    SessionNotFoundError,
    SessionPhase,
    SessionStatistics,
    SessionStatus,
    SessionValidationError,
)

from .conftest import GIT, Clock

S = SessionStatus


def read_record(manager: SessionManager, sid: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((manager.sessions_dir / sid / "metadata.json").read_text())
    return data


# ---------------------------------------------------------------- create / get


def test_create_session_stores_a_fresh_record(manager: SessionManager, clock: Clock) -> None:
    session = manager.create_session(feature_request="Add OAuth login")
    assert uuid.UUID(session.session_id).version == 4
    assert session.status is S.INITIALIZING
    assert session.created_at == session.updated_at == clock.now
    assert session.revision == 1 and session.history == []
    assert session.configuration == SessionConfiguration()
    assert (manager.sessions_dir / session.session_id).is_dir()
    record = read_record(manager, session.session_id)
    assert record["session_id"] == session.session_id
    assert record["created_at"] == "2026-03-01T09:00:00.000000Z"
    assert manager.get_session(session.session_id) == session


def test_create_session_takes_configuration_and_prd(manager: SessionManager) -> None:
    session = manager.create_session(
        "x",
        SessionConfiguration(max_iterations=7),
        prd_reference={"filename": "prd.md", "path": "docs/prd.md", "version": "1.0"},
    )
    assert session.configuration.max_iterations == 7
    assert session.prd_reference == PRDReference("prd.md", "docs/prd.md", "1.0")
    as_mapping = manager.create_session("y", configuration={"timeout_minutes": 5})
    assert as_mapping.configuration == SessionConfiguration(timeout_minutes=5)


@pytest.mark.parametrize(
    "bad",
    [{"max_iterations": 0}, {"nope": 1}, {"timeout_minutes": -3}, {"auto_checkpoint": "yes"}],
)
def test_create_session_refuses_bad_configuration_and_writes_nothing(
    manager: SessionManager, bad: dict[str, object]
) -> None:
    with pytest.raises(ValueError):
        manager.create_session("x", configuration=bad)
    assert not manager.sessions_dir.exists() or list(manager.sessions_dir.iterdir()) == []


@pytest.mark.parametrize("request_text", ["", "   ", None, 42])
def test_create_session_refuses_empty_or_non_text_requests(
    manager: SessionManager, request_text: object
) -> None:
    with pytest.raises(ValueError):
        manager.create_session(request_text)  # type: ignore[arg-type]


def test_get_missing_session_is_file_not_found(manager: SessionManager) -> None:
    sid = str(uuid.uuid4())
    with pytest.raises(FileNotFoundError) as caught:
        manager.get_session(sid)
    assert isinstance(caught.value, SessionNotFoundError)
    assert sid in str(caught.value)


def test_seed_keyword_names_still_work(manager: SessionManager) -> None:
    session = manager.create_session(feature_request="kw", configuration=None)
    sid = session.session_id
    manager.transition_state(session_id=sid, new_state=S.PLANNING)
    manager.update_session(sid, updates={"statistics": {"total_tasks": 2}})
    assert manager.get_recent_sessions(count=1)[0].session_id == sid
    assert manager.get_session(session_id=sid).statistics.total_tasks == 2
    manager.delete_session(session_id=sid)


# ---------------------------------------------------------------- update


def test_update_merges_nested_statistics_and_configuration(manager: SessionManager) -> None:
    sid = manager.create_session("x", {"max_iterations": 4}).session_id
    manager.update_session(sid, {"statistics": {"total_tasks": 10, "completed_tasks": 3}})
    session = manager.update_session(
        sid, {"statistics": {"completed_tasks": 4}, "configuration": {"timeout_minutes": 30}}
    )
    assert session.statistics.total_tasks == 10 and session.statistics.completed_tasks == 4
    assert session.configuration == SessionConfiguration(max_iterations=4, timeout_minutes=30)
    assert manager.get_session(sid) == session


def test_update_replaces_with_instances_and_sets_other_fields(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    git = GitContext("feat", "a" * 40, "/w", True, "wt")
    session = manager.update_session(
        sid,
        {
            "statistics": SessionStatistics(total_tasks=1),
            "prd_reference": PRDReference("p.md", "/p.md"),
            "git_context": git,
            "feature_request": "Add OAuth (revised)",
            "current_phase": SessionPhase.PLAN,
        },
    )
    assert session.statistics == SessionStatistics(total_tasks=1)
    assert session.git_context == git
    assert session.feature_request == "Add OAuth (revised)"
    assert session.current_phase is SessionPhase.PLAN
    cleared = manager.update_session(sid, {"prd_reference": None})
    assert cleared.prd_reference is None
    assert "prd_reference" not in read_record(manager, sid)


def test_update_bumps_updated_at_and_revision(manager: SessionManager, clock: Clock) -> None:
    session = manager.create_session("x")
    clock.advance(60)
    updated = manager.update_session(session.session_id, {"statistics": {"total_tasks": 1}})
    assert updated.updated_at == clock.now and updated.created_at == session.created_at
    assert updated.revision == session.revision + 1


@pytest.mark.parametrize(
    "field",
    [
        "session_id",
        "created_at",
        "updated_at",
        "completed_at",
        "history",
        "revision",
        "schema_version",
        "paused_from",
    ],
)
def test_update_refuses_read_only_fields(manager: SessionManager, field: str) -> None:
    session = manager.create_session("x")
    with pytest.raises(ValueError, match="read-only"):
        manager.update_session(session.session_id, {field: "anything"})
    assert manager.get_session(session.session_id) == session


@pytest.mark.parametrize(
    ("updates", "fragment"),
    [
        ({"colour": "blue"}, "unknown field"),
        ({"statistics": {"total_tasks": -1}}, "statistics.total_tasks must be >= 0"),
        ({"statistics": {"bogus": 1}}, "unknown field"),
        ({"statistics": 3}, "statistics must be"),
        ({"configuration": {"max_iterations": 0}}, "max_iterations must be >= 1"),
        ({"configuration": {"max_iterations": "3"}}, "max_iterations must be an integer"),
        ({"current_phase": "nap"}, "current_phase must be one of"),
        ({"status": "sleeping"}, "status must be one of"),
        ({"feature_request": ""}, "must not be empty"),
        ({"git_context": {"is_worktree": "no"}}, "is_worktree must be true or false"),
    ],
)
def test_update_refuses_invalid_values_and_keeps_the_record(
    manager: SessionManager, updates: dict[str, object], fragment: str
) -> None:
    session = manager.create_session("x")
    with pytest.raises(SessionValidationError) as caught:
        manager.update_session(session.session_id, updates)
    assert fragment in str(caught.value)
    assert session.session_id in str(caught.value)
    assert manager.get_session(session.session_id) == session


def test_update_refuses_a_non_mapping(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    with pytest.raises(ValueError, match="mapping"):
        manager.update_session(sid, [("status", "planning")])  # type: ignore[arg-type]


def test_update_status_goes_through_the_state_machine(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    moved = manager.update_session(sid, {"status": "planning"}, reason="go")
    assert moved.status is S.PLANNING and moved.current_phase is SessionPhase.PLAN
    assert [(h.from_status, h.to_status, h.reason) for h in moved.history] == [
        (S.INITIALIZING, S.PLANNING, "go")
    ]
    with pytest.raises(InvalidTransitionError):
        manager.update_session(sid, {"status": "completed", "statistics": {"total_tasks": 9}})
    after = manager.get_session(sid)
    assert after.status is S.PLANNING and after.statistics.total_tasks == 0


def test_update_with_the_same_status_adds_no_history(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    session = manager.update_session(sid, {"status": "initializing", "feature_request": "y"})
    assert session.history == [] and session.feature_request == "y"


# ---------------------------------------------------------------- transitions


def test_transition_records_history_with_reason(manager: SessionManager, clock: Clock) -> None:
    sid = manager.create_session("x").session_id
    clock.advance(1)
    session = manager.transition_state(sid, "planning", reason="plan approved")
    entry = session.history[-1]
    assert (entry.from_status, entry.to_status, entry.at, entry.reason) == (
        S.INITIALIZING,
        S.PLANNING,
        clock.now,
        "plan approved",
    )
    assert read_record(manager, sid)["history"] == [
        {
            "from": "initializing",
            "to": "planning",
            "at": "2026-03-01T09:00:01.000000Z",
            "reason": "plan approved",
        }
    ]


def test_invalid_transition_is_a_value_error_naming_the_session(manager: SessionManager) -> None:
    session = manager.create_session("Secret feature")
    with pytest.raises(ValueError) as caught:
        manager.transition_state(session.session_id, S.COMPLETED)
    assert isinstance(caught.value, InvalidTransitionError)
    assert session.session_id in str(caught.value)
    assert "initializing -> completed" in str(caught.value)
    assert "Secret" not in str(caught.value)
    assert manager.get_session(session.session_id) == session


def test_transition_to_the_same_state_is_refused(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    manager.transition_state(sid, S.PLANNING)
    with pytest.raises(InvalidTransitionError):
        manager.transition_state(sid, S.PLANNING)


def test_transition_refuses_unknown_state_names(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    with pytest.raises(SessionValidationError, match="status must be one of"):
        manager.transition_state(sid, "done")


# ---------------------------------------------------------------- revisions


def test_every_write_method_honours_expected_revision(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    writes = [
        lambda rev: manager.update_session(
            sid, {"statistics": {"total_tasks": 1}}, expected_revision=rev
        ),
        lambda rev: manager.transition_state(sid, S.PLANNING, expected_revision=rev),
        lambda rev: manager.pause_session(sid, expected_revision=rev),
        lambda rev: manager.resume_session(sid, expected_revision=rev),
        lambda rev: manager.increment_statistics(sid, completed_tasks=1, expected_revision=rev),
    ]
    for write in writes:
        current = manager.get_session(sid)
        with pytest.raises(ConflictError) as caught:
            write(current.revision - 1)
        assert caught.value.expected == current.revision - 1
        assert caught.value.actual == current.revision
        assert manager.get_session(sid) == current
        assert write(current.revision).revision == current.revision + 1
    with pytest.raises(ConflictError):
        manager.delete_session(sid, expected_revision=1)
    manager.delete_session(sid, expected_revision=manager.get_session(sid).revision)
    with pytest.raises(SessionNotFoundError):
        manager.get_session(sid)


# ---------------------------------------------------------------- increments


def test_increment_statistics_adds(manager: SessionManager) -> None:
    sid = manager.create_session("x").session_id
    manager.increment_statistics(sid, total_tasks=5, completed_tasks=1)
    session = manager.increment_statistics(sid, completed_tasks=2, failed_tasks=1)
    stats = session.statistics
    assert (stats.total_tasks, stats.completed_tasks, stats.failed_tasks) == (5, 3, 1)


@pytest.mark.parametrize(
    ("deltas", "fragment"),
    [
        ({}, "no counter"),
        ({"duration_seconds": 1}, "unknown counter"),
        ({"bogus": 1}, "unknown counter"),
        ({"total_tasks": 1.5}, "must be an integer"),
        ({"total_tasks": True}, "must be an integer"),
        ({"total_tasks": -1}, "must be >= 0"),
    ],
)
def test_increment_refuses_bad_deltas(
    manager: SessionManager, deltas: dict[str, object], fragment: str
) -> None:
    session = manager.create_session("x")
    with pytest.raises(SessionValidationError, match=fragment):
        manager.increment_statistics(session.session_id, **deltas)  # type: ignore[arg-type]
    assert manager.get_session(session.session_id) == session


# ---------------------------------------------------------------- queries


@pytest.fixture
def populated(manager: SessionManager, clock: Clock) -> list[Session]:
    """Nine sessions an hour apart on two branches, in assorted states."""
    made: list[Session] = []
    plans = [
        ("main", []),
        ("feat/a", [S.PLANNING]),
        ("main", [S.PLANNING, S.GENERATING_TASKS]),
        ("feat/a", [S.FAILED]),
        ("main", [S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING]),
        ("feat/a", [S.PAUSED]),
        ("main", [S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING, S.VALIDATING]),
        (
            "feat/a",
            [
                S.PLANNING,
                S.GENERATING_TASKS,
                S.IMPLEMENTING,
                S.VALIDATING,
                S.GENERATING_REPORT,
                S.COMPLETED,
            ],
        ),
        ("main", [S.PLANNING]),
    ]
    for index, (branch, path) in enumerate(plans):
        git = GitContext(branch, f"{index:040x}", "/repo")
        sid = manager.create_session(f"request {index}", git_context=git).session_id
        for state in path:
            manager.transition_state(sid, state)
        made.append(manager.get_session(sid))
        clock.advance(3600)
    return made


def ids(sessions: list[Session]) -> list[str]:
    return [s.session_id for s in sessions]


def test_query_returns_newest_first(manager: SessionManager, populated: list[Session]) -> None:
    assert ids(manager.query_sessions()) == ids(populated[::-1])
    assert ids(manager.get_recent_sessions(3)) == ids(populated[::-1][:3])
    assert manager.get_recent_sessions(0) == []


def test_query_filters(manager: SessionManager, populated: list[Session]) -> None:
    everything = populated[::-1]
    assert ids(manager.query_sessions(status=S.PLANNING)) == ids(
        [s for s in everything if s.status is S.PLANNING]
    )
    several = manager.query_sessions(status=["failed", S.COMPLETED])
    assert {s.status for s in several} == {S.FAILED, S.COMPLETED} and len(several) == 2
    assert ids(manager.query_sessions(branch="feat/a")) == ids(
        [s for s in everything if s.git_context.branch == "feat/a"]
    )
    assert ids(manager.query_sessions(phase="implement")) == ids(
        [s for s in everything if s.current_phase is SessionPhase.IMPLEMENT]
    )
    assert ids(manager.query_sessions(status="planning", branch="main", limit=1)) == ids(
        [populated[8]]
    )


def test_time_bounds_compare_instants_not_strings(
    manager: SessionManager, populated: list[Session]
) -> None:
    third = populated[2].created_at  # 11:00 UTC
    in_new_york = third.astimezone(timezone(timedelta(hours=-5))).isoformat()  # 06:00-05:00
    found = manager.query_sessions(created_after=in_new_york, created_before=in_new_york)
    assert ids(found) == [populated[2].session_id]
    naive_utc = third.replace(tzinfo=None)
    assert ids(manager.query_sessions(created_before=naive_utc)) == ids(populated[2::-1])
    assert ids(manager.query_sessions(created_after=third + timedelta(seconds=1))) == ids(
        populated[:2:-1]
    )
    z_string = "2026-03-01T12:00:00Z"
    assert ids(manager.query_sessions(created_after=z_string)) == ids(populated[:2:-1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": -1},
        {"limit": "3"},
        {"status": "asleep"},
        {"created_after": "soon"},
        {"phase": 3},
        {"created_before": 12},
    ],
)
def test_query_refuses_bad_arguments(manager: SessionManager, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        manager.query_sessions(**kwargs)  # type: ignore[arg-type]


def test_list_active_sessions(manager: SessionManager, populated: list[Session]) -> None:
    active = manager.list_active_sessions()
    assert ids(active) == ids([s for s in populated[::-1] if not s.is_terminal])
    assert all(s.status not in (S.COMPLETED, S.FAILED) for s in active)


def test_query_on_an_empty_root_creates_nothing(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    assert manager.query_sessions() == [] and manager.list_active_sessions() == []
    assert not (tmp_path / ".flow").exists()


# ---------------------------------------------------------------- delete


def test_delete_removes_every_file_of_the_session(manager: SessionManager) -> None:
    keep = manager.create_session("keep").session_id
    sid = manager.create_session("x").session_id
    folder = manager.sessions_dir / sid
    (folder / "checkpoints.json").write_text("{}")
    (folder / "reports").mkdir()
    (folder / "reports" / "final-report.md").write_text("# done")
    manager.delete_session(sid)
    assert not folder.exists()
    assert [p.name for p in manager.sessions_dir.iterdir()] == [keep]
    with pytest.raises(SessionNotFoundError):
        manager.delete_session(sid)


def test_root_resolution_prefers_explicit_then_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAESTRO_ROOT", str(tmp_path / "env"))
    assert SessionManager().repo_root == tmp_path / "env"
    assert SessionManager(tmp_path / "explicit").repo_root == tmp_path / "explicit"
    assert SessionManager(tmp_path).sessions_dir == tmp_path / ".flow" / "maestro" / "sessions"


def test_clock_defaults_to_aware_utc(tmp_path: Path) -> None:
    session = SessionManager(tmp_path).create_session("x", git_context=GIT)
    assert session.created_at.tzinfo is not None
    assert abs(session.created_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_resolve_session_id_accepts_unique_prefixes(manager: SessionManager) -> None:
    first = manager.create_session("a").session_id
    assert manager.resolve_session_id(first) == first
    assert manager.resolve_session_id(first[:8]) == first
    with pytest.raises(SessionNotFoundError, match="no session id starts"):
        manager.resolve_session_id("ffffff" if not first.startswith("ffffff") else "000000")
    with pytest.raises(ValueError):
        manager.resolve_session_id(first[:5])
    with pytest.raises(ValueError):
        manager.resolve_session_id("../../etc")
    twin = first[:6] + ("0" if first[6] != "0" else "1") + first[7:]
    (manager.sessions_dir / twin).mkdir()
    with pytest.raises(SessionValidationError, match="ambiguous"):
        manager.resolve_session_id(first[:6])
    assert manager.resolve_session_id(first[:7]) == first
