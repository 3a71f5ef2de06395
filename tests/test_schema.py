"""The shipped JSON Schema: valid, enforced on every write, versions migrated."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings

from maestro import Session, SessionManager, SessionStatistics, SessionValidationError
from maestro.models import SCHEMA_VERSION
from maestro.schema import load_schema, migrate, schema_errors, validate_record

from .conftest import GIT, PROTOTYPE_RECORDS, PROTOTYPE_SESSIONS
from .test_models import sessions


def test_schema_ships_as_package_data_and_is_draft_07() -> None:
    text = resources.files("maestro").joinpath("schemas/session.schema.json").read_text()
    schema = json.loads(text)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema == load_schema()
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_every_record_we_write_validates(manager: SessionManager) -> None:
    sid = manager.create_session("x", prd_reference={"filename": "a", "path": "b"}).session_id
    manager.transition_state(sid, "planning", reason="r")
    manager.pause_session(sid)
    record = json.loads((manager.sessions_dir / sid / "metadata.json").read_text())
    assert schema_errors(record) is None


@pytest.mark.parametrize("sid", PROTOTYPE_RECORDS)
def test_prototype_records_validate_after_migration(sid: str) -> None:
    record = json.loads((PROTOTYPE_SESSIONS / sid / "metadata.json").read_text())
    assert schema_errors(record) is not None  # no schema_version, revision, history
    migrated = migrate(record)
    assert schema_errors(migrated) is None
    assert migrated["schema_version"] == 1 and migrated["history"] == []
    assert "schema_version" not in record  # migration works on a copy


def test_newer_records_are_refused() -> None:
    with pytest.raises(SessionValidationError, match="newer than this maestro"):
        migrate({"schema_version": SCHEMA_VERSION + 1})


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("statistics", "total_tasks"), -1, "statistics.total_tasks"),
        (("status",), "done", "status must be one of"),
        (("configuration", "max_iterations"), 0, "configuration.max_iterations"),
        (("git_context", "extra_key"), 1, "git_context must not contain"),
        (("created_at",), "07/01/2026", "created_at must match"),
        (("revision",), "1", "revision must be integer"),
    ],
)
def test_schema_reports_the_path_not_the_value(
    path: tuple[str, ...], value: object, fragment: str, manager: SessionManager
) -> None:
    record = manager.create_session("Confidential idea").to_dict()
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    problem = schema_errors(record)
    assert problem is not None and fragment in problem
    assert "Confidential" not in problem
    with pytest.raises(SessionValidationError):
        validate_record(record)


def test_a_record_the_models_allow_but_the_schema_refuses_is_not_written(
    manager: SessionManager, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Schema validation is the last gate before bytes hit the disk."""
    session = manager.create_session("x", git_context=GIT)
    path = manager.sessions_dir / session.session_id / "metadata.json"
    before = path.read_bytes()

    def sneak(current):  # type: ignore[no-untyped-def]
        changed = dataclasses.replace(current)
        object.__setattr__(changed, "statistics", SessionStatistics())
        changed.statistics.total_tasks = -5  # bypasses the dataclass check
        return changed

    with pytest.raises(SessionValidationError, match="schema"):
        manager.store.modify(session.session_id, sneak)
    assert path.read_bytes() == before


@settings(max_examples=300)
@given(sessions)
def test_every_valid_session_serialises_to_a_schema_valid_record(session: Session) -> None:
    """Reads trust the models' checks: whatever they accept, the schema accepts."""
    record = session.to_dict()
    record["revision"] = max(record["revision"], 1)
    assert schema_errors(record) is None


def test_list_entries_checked_once_are_still_checked_exactly(manager: SessionManager) -> None:
    # A history entry that passed is not checked again, but an entry that
    # differs in any value, type or key is, and messages keep their positions.
    sid = manager.create_session("x").session_id
    for state in ("planning", "generating_tasks", "implementing"):
        manager.transition_state(sid, state, reason="r")
    record = json.loads((manager.sessions_dir / sid / "metadata.json").read_text())
    assert schema_errors(record) is None and schema_errors(record) is None
    bad_state = {**record, "history": [*record["history"], {**record["history"][0], "to": "x"}]}
    assert "history[3].to must be one of" in str(schema_errors(bad_state))
    extra = {**record["history"][1], "note": "n"}
    assert "history[1] must not contain" in str(
        schema_errors({**record, "history": [record["history"][0], extra]})
    )
    reason = {**record["history"][2], "reason": 7}
    assert "history[0].reason must be string" in str(
        schema_errors({**record, "history": [reason, *record["history"]]})
    )
    requests = [{"id": "k", "operation": "create", "fingerprint": "0" * 32, "revision": 1}]
    assert schema_errors({**record, "requests": requests}) is None
    as_bool = [{**requests[0], "revision": True}]
    assert "requests[0].revision must be integer" in str(
        schema_errors({**record, "requests": as_bool})
    )
