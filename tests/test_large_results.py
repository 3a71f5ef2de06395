"""Large results build sessions straight from the index's record copies, equal to the files."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import pytest

from maestro import GitContext, PRDReference, SessionManager, SessionStatus, models
from maestro.models import session_from_owned_record, session_from_trusted_record
from maestro.stores import files_freshness

from .conftest import GIT, Clock

S = SessionStatus


def _varied(manager: SessionManager, clock: Clock) -> None:
    """Sessions with every optional part: history, requests, a PRD, a worktree, extra keys."""
    plain = manager.create_session("plain", git_context=GIT)
    clock.advance(1)
    worktree = GitContext("feat/x", "1" * 40, "/repo/wt", is_worktree=True, worktree_name="wt")
    full = manager.create_session(
        "everything",
        git_context=worktree,
        prd_reference=PRDReference(filename="prd.md", path="docs/prd.md", version="2"),
        request_id="create-key",
    )
    manager.transition_state(full.session_id, S.PLANNING, reason="go")
    manager.pause_session(full.session_id, reason="lunch")
    manager.resume_session(full.session_id)
    manager.heartbeat(full.session_id)
    manager.increment_statistics(full.session_id, completed_tasks=2, request_id="inc-1")
    clock.advance(1)
    done = manager.create_session("finished", git_context=GIT)
    manager.transition_state(done.session_id, S.FAILED, reason="broke")
    manager.rerun_session(done.session_id)
    manager.update_session(plain.session_id, {"statistics": {"duration_seconds": 3}})


def test_an_owned_record_builds_the_same_session(tmp_path: Path, clock: Clock) -> None:
    manager = SessionManager(tmp_path, clock=clock)
    _varied(manager, clock)
    sessions = manager.query_sessions()
    assert len(sessions) == 4
    for session in sessions:
        record = session.to_dict()
        record["an_unknown_key"] = {"kept": True}  # a newer writer's field lands in extra
        expected = session_from_trusted_record(record)
        built = session_from_owned_record(copy.deepcopy(record))
        assert built == expected
        assert built.extra == {"an_unknown_key": {"kept": True}}
        assert vars(built).keys() == vars(expected).keys()
        assert built.to_dict() == record
        assert type(built.statistics.duration_seconds) is float


def test_a_large_result_equals_the_files(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = SessionManager(tmp_path, clock=clock)
    _varied(manager, clock)
    for number in range(40):
        manager.create_session(f"more {number}", git_context=GIT)
    # Files an hour old, so that no row is too recent to vouch for its file
    # and every session comes from its row's copy of the record.
    hour_ago = time.time() - 3600
    for path in manager.sessions_dir.glob("*/metadata.json"):
        os.utime(path, (hour_ago, hour_ago))
    os.utime(manager.sessions_dir, (hour_ago, hour_ago))
    manager.rebuild_index()
    built = []
    original = models.session_from_owned_record

    def counted(record: dict[str, Any]) -> Any:
        built.append(record["session_id"])
        return original(record)

    monkeypatch.setattr(files_freshness, "session_from_owned_record", counted)
    scan = SessionManager(tmp_path, index=False)
    for query in ({}, {"status": ["initializing", "planning"]}, {"order_by": "updated"}):
        assert manager.query_sessions(**query) == scan.query_sessions(**query)
    assert manager.list_active_sessions() == scan.list_active_sessions()
    assert list(manager.iter_sessions()) == scan.query_sessions()
    assert len(built) > 4 * 44  # the rows' copies answered, not re-reads of the files


def test_a_large_result_leaves_the_young_generation(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    manager = SessionManager(tmp_path, clock=clock)
    for number in range(30):
        manager.create_session(f"session {number}", git_context=GIT)
    monkeypatch.setattr(files_freshness, "_PROMOTED_FROM", 50)
    assert gc.isenabled()
    gc.collect()
    found = manager.query_sessions()
    assert len(found) == 30
    assert gc.isenabled()
    # Moved to the oldest generation without a collection: none young is left.
    assert gc.get_count()[0] < 50
    assert gc.get_freeze_count() == 0

    # A program that froze objects itself keeps them frozen.
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert manager.query_sessions() == found
        # Frozen objects freed meanwhile leave the count; a thaw would empty it.
        assert gc.get_freeze_count() > frozen // 2
        assert gc.isenabled()
    finally:
        gc.unfreeze()
