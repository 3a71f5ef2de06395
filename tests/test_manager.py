"""The seed's eight methods and what goes beyond them, through the public API."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maestro import (
    GitContext,
    PRDReference,
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
