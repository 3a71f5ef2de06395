"""The seed's eight methods and what goes beyond them, through the public API."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from maestro import (
    GitContext,
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


# ---------------------------------------------------------------- update


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


# ---------------------------------------------------------------- revisions


# ---------------------------------------------------------------- increments


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
