"""Records written by the original prototype open, query, move and upgrade."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from maestro import (
    InvalidTransitionError,
    SessionManager,
    SessionNotFoundError,
    SessionPhase,
    SessionStatus,
    SessionValidationError,
)

from .conftest import PROTOTYPE_CHECKPOINT_ONLY, PROTOTYPE_RECORDS, PROTOTYPE_SESSIONS, Clock

S = SessionStatus
OAUTH = "3f01b541-5cc9-47a7-9f8b-d884159c705f"  # completed, phase implement
FEATURE_B = "6048df43-312b-4b9e-bd0c-bc4018d5486f"  # implementing, no phase
CHAT = "21285640-5215-4cea-9663-b830592aa680"  # completed, prd, worktree


@pytest.fixture
def manager(prototype_root: Path, clock: Clock) -> SessionManager:
    return SessionManager(prototype_root, clock=clock)


def raw(root: Path, sid: str) -> dict[str, Any]:
    path = root / ".flow" / "maestro" / "sessions" / sid / "metadata.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("sid", PROTOTYPE_RECORDS)
def test_every_prototype_record_loads_as_it_is(manager: SessionManager, sid: str) -> None:
    original = json.loads((PROTOTYPE_SESSIONS / sid / "metadata.json").read_text())
    session = manager.get_session(sid)
    assert session.session_id == sid
    assert session.status.value == original["status"]
    assert session.revision == 0 and session.history == []
    assert session.created_at.tzinfo is not None
    assert session.git_context.worktree_name == "worktrees"
    assert session.statistics.to_dict() == original["statistics"]
    assert session.configuration.to_dict() == original["configuration"]
    # reading changes nothing on disk
    assert (manager.sessions_dir / sid / "metadata.json").read_text() == (
        PROTOTYPE_SESSIONS / sid / "metadata.json"
    ).read_text()


def test_naive_z_timestamps_are_utc(manager: SessionManager) -> None:
    session = manager.get_session(OAUTH)
    assert session.created_at == datetime(2026, 1, 7, 13, 2, 57, 119275, tzinfo=UTC)
    assert session.current_phase is SessionPhase.IMPLEMENT


def test_queries_see_records_and_skip_checkpoint_only_directories(
    manager: SessionManager,
) -> None:
    found = manager.query_sessions()
    assert sorted(s.session_id for s in found) == PROTOTYPE_RECORDS
    created = [s.created_at for s in found]
    assert created == sorted(created, reverse=True)
    assert {s.session_id for s in manager.query_sessions(status="completed")} == {
        OAUTH,
        CHAT,
        "31cacf16-80c3-475e-8343-cef6db6dad4f",
    }
    assert len(manager.query_sessions(branch="feat-orchestrate-flow")) == len(PROTOTYPE_RECORDS)
    assert manager.query_sessions(created_after="2026-01-07T13:02:57.178Z", limit=2)[0].session_id


@pytest.mark.parametrize("sid", PROTOTYPE_CHECKPOINT_ONLY)
def test_checkpoint_only_directories_are_not_found_and_kept(
    manager: SessionManager, sid: str
) -> None:
    with pytest.raises(SessionNotFoundError):
        manager.get_session(sid)
    assert (manager.sessions_dir / sid / "checkpoints.json").exists()


def test_transition_upgrades_the_record(manager: SessionManager, prototype_root: Path) -> None:
    moved = manager.transition_state(FEATURE_B, S.VALIDATING, reason="tests written")
    assert moved.revision == 1 and len(moved.history) == 1
    record = raw(prototype_root, FEATURE_B)
    assert record["schema_version"] == 1 and record["revision"] == 1
    assert record["history"][0]["from"] == "implementing"
    assert record["current_phase"] == "validate"
    assert record["created_at"] == "2026-01-07T13:02:57.147520Z"
    assert manager.get_session(FEATURE_B) == moved


def test_update_and_increment_work_on_prototype_records(manager: SessionManager) -> None:
    # A finished record takes late bookkeeping (statistics, PRD), not a new configuration.
    manager.update_session(CHAT, {"prd_reference": {"version": "1.0.1"}})
    session = manager.increment_statistics(CHAT, decisions_made=1)
    assert session.statistics.decisions_made == 6
    assert session.prd_reference is not None and session.prd_reference.version == "1.0.1"
    with pytest.raises(SessionValidationError, match="configuration is final"):
        manager.update_session(CHAT, {"configuration": {"max_iterations": 9}})


def test_terminal_prototype_records_stay_terminal(manager: SessionManager) -> None:
    with pytest.raises(InvalidTransitionError):
        manager.transition_state(OAUTH, S.IMPLEMENTING)


def test_prototype_paused_record_without_origin(
    manager: SessionManager, prototype_root: Path
) -> None:
    path = prototype_root / ".flow" / "maestro" / "sessions" / FEATURE_B / "metadata.json"
    record = json.loads(path.read_text())
    record["status"] = "paused"
    path.write_text(json.dumps(record, indent=2))
    with pytest.raises(SessionValidationError, match="state to resume is unknown"):
        manager.resume_session(FEATURE_B)
    with pytest.raises(InvalidTransitionError, match="origin unknown"):
        manager.transition_state(FEATURE_B, S.COMPLETED)
    assert manager.transition_state(FEATURE_B, S.IMPLEMENTING).status is S.IMPLEMENTING


# ------------------------------------------- the prototype can still read what we write


@dataclass
class _ProtoGit:
    branch: str
    commit: str
    repo_root: str
    is_worktree: bool = False
    worktree_name: str | None = None


@dataclass
class _ProtoPRD:
    filename: str
    path: str
    version: str | None = None


@dataclass
class _ProtoStats:
    total_tasks: int = 0
    completed_tasks: int = 0
    failed_tasks: int = 0
    decisions_made: int = 0
    checkpoints_created: int = 0
    error_recovery_count: int = 0
    duration_seconds: float = 0.0


@dataclass
class _ProtoConfig:
    max_iterations: int = 3
    timeout_minutes: int = 120
    auto_checkpoint: bool = True
    error_recovery_enabled: bool = True


PROTOTYPE_STATUSES = {s.value for s in SessionStatus}
PROTOTYPE_PHASES = {p.value for p in SessionPhase}


def prototype_loads(data: dict[str, Any]) -> None:
    """What the prototype's loader does with a record: nested ``**`` construction."""
    _ProtoGit(**data["git_context"])
    if data.get("prd_reference"):
        _ProtoPRD(**data["prd_reference"])
    _ProtoStats(**data["statistics"])
    _ProtoConfig(**data["configuration"])
    assert data["status"] in PROTOTYPE_STATUSES
    assert data.get("current_phase") is None or data["current_phase"] in PROTOTYPE_PHASES
    for key in ("session_id", "feature_request", "created_at"):
        assert isinstance(data[key], str)
    assert data["created_at"].endswith("Z")


def test_records_we_write_keep_the_prototype_shape(
    manager: SessionManager, prototype_root: Path
) -> None:
    sid = manager.create_session("new", prd_reference={"filename": "p.md", "path": "/p"}).session_id
    for state in (S.PLANNING, S.PAUSED):
        manager.transition_state(sid, state)
    manager.update_session(FEATURE_B, {"statistics": {"total_tasks": 2}})
    for written in (sid, FEATURE_B):
        record = raw(prototype_root, written)
        prototype_loads(record)
        assert {f.name for f in fields(_ProtoStats)} == set(record["statistics"])
