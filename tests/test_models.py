"""Models: enum values, construction checks, timestamps, exact round trips."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maestro import (
    GitContext,
    PRDReference,
    Session,
    SessionConfiguration,
    SessionPhase,
    SessionStatistics,
    SessionStatus,
    StateChange,
)
from maestro.models import format_timestamp, parse_timestamp

from .conftest import GIT

SID = "3f01b541-5cc9-47a7-9f8b-d884159c705f"


def test_enum_values_are_the_seeds() -> None:
    assert [s.value for s in SessionStatus] == [
        "initializing",
        "planning",
        "generating_tasks",
        "implementing",
        "validating",
        "generating_report",
        "completed",
        "failed",
        "paused",
    ]
    assert [p.value for p in SessionPhase] == [
        "plan",
        "generate_tasks",
        "implement",
        "validate",
        "cleanup",
    ]
    assert SessionStatus.PLANNING == "planning"
    assert isinstance(SessionPhase.PLAN, str)


def test_defaults_are_the_seeds() -> None:
    assert SessionStatistics() == SessionStatistics(0, 0, 0, 0, 0, 0, 0.0)
    config = SessionConfiguration()
    assert (config.max_iterations, config.timeout_minutes) == (3, 120)
    assert config.auto_checkpoint is True and config.error_recovery_enabled is True
    git = GitContext("main", "abc", "/r")
    assert git.is_worktree is False and git.worktree_name is None
    assert PRDReference("p.md", "/p.md").version is None


def test_session_accepts_strings_for_enums_and_timestamps() -> None:
    session = Session(
        session_id=SID,
        feature_request="Add OAuth",
        status="planning",  # type: ignore[arg-type]
        created_at="2026-01-07T13:02:57.119275Z",  # type: ignore[arg-type]
        git_context=GIT,
        current_phase="plan",  # type: ignore[arg-type]
    )
    assert session.status is SessionStatus.PLANNING
    assert session.current_phase is SessionPhase.PLAN
    assert session.created_at == datetime(2026, 1, 7, 13, 2, 57, 119275, tzinfo=UTC)
    assert session.created_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"status": "bogus"}, "status must be one of"),
        ({"current_phase": "nap"}, "current_phase must be one of"),
        ({"feature_request": ""}, "feature_request must not be empty"),
        ({"feature_request": "   "}, "feature_request must not be empty"),
        ({"feature_request": 12}, "feature_request must be text"),
        ({"created_at": "yesterday"}, "created_at must be an ISO 8601"),
        ({"created_at": 1700000000}, "created_at must be an ISO 8601 timestamp"),
        ({"statistics": {"total_tasks": -1}}, "statistics.total_tasks must be at least 0"),
        ({"statistics": {"total_tasks": True}}, "statistics.total_tasks must be a whole number"),
        ({"statistics": {"total_tasks": 1.5}}, "statistics.total_tasks must be a whole number"),
        ({"statistics": {"bogus": 1}}, "statistics has unknown field(s): bogus"),
        ({"statistics": {"duration_seconds": -0.5}}, "duration_seconds must be a finite"),
        ({"statistics": {"duration_seconds": float("nan")}}, "duration_seconds must be a finite"),
        ({"configuration": {"max_iterations": 0}}, "max_iterations must be at least 1"),
        ({"configuration": {"timeout_minutes": "10"}}, "timeout_minutes must be a whole number"),
        ({"configuration": {"auto_checkpoint": 1}}, "auto_checkpoint must be true or false"),
        ({"git_context": {"branch": "x"}}, "git_context is missing required field(s)"),
        ({"revision": -1}, "revision must be at least 0"),
        ({"extra": {"status": "x"}}, "extra must not hold known field(s): status"),
    ],
)
def test_invalid_values_raise_value_error(kwargs: dict[str, Any], fragment: str) -> None:
    base: dict[str, Any] = {
        "session_id": SID,
        "feature_request": "x",
        "status": "planning",
        "created_at": "2026-01-07T13:02:57Z",
        "git_context": GIT,
    }
    with pytest.raises(ValueError) as caught:
        Session(**{**base, **kwargs})
    assert fragment in str(caught.value)


def test_error_messages_do_not_quote_the_feature_request() -> None:
    secret = "Sekret plan: acquire competitor"
    with pytest.raises(ValueError) as caught:
        Session(SID, secret, "nope", "2026-01-07T13:02:57Z", GIT)  # type: ignore[arg-type]
    assert "Sekret" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-07T13:02:57.119275Z", datetime(2026, 1, 7, 13, 2, 57, 119275, tzinfo=UTC)),
        ("2026-01-07T13:02:57.119275", datetime(2026, 1, 7, 13, 2, 57, 119275, tzinfo=UTC)),
        ("2026-01-07T15:02:57+02:00", datetime(2026, 1, 7, 13, 2, 57, tzinfo=UTC)),
        ("2026-01-07T08:02:57-05:00", datetime(2026, 1, 7, 13, 2, 57, tzinfo=UTC)),
        ("2026-01-07", datetime(2026, 1, 7, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_gives_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_format_timestamp_is_utc_with_z_and_microseconds() -> None:
    moment = datetime(2026, 1, 7, 15, 2, 57, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == "2026-01-07T13:02:57.000000Z"
    assert format_timestamp(datetime(2026, 1, 7, 13, 2, 57, 5)) == "2026-01-07T13:02:57.000005Z"


def test_format_timestamp_gives_one_text_per_instant_however_often_asked() -> None:
    # Texts are kept for equal moments: the same instant in any zone, or a
    # naive time taken as UTC, always gives the UTC text.
    utc = datetime(2026, 3, 1, 8, 0, 0, 250, tzinfo=UTC)
    zones = [utc, utc.astimezone(timezone(timedelta(hours=-5))), utc.replace(tzinfo=None)]
    for _ in range(2):
        for moment in [*zones, *reversed(zones)]:
            assert format_timestamp(moment) == "2026-03-01T08:00:00.000250Z"
    later = [utc + timedelta(microseconds=n) for n in range(1, 5000)]  # past what is kept
    assert [format_timestamp(m)[20:26] for m in later[::1000]] == [
        f"{250 + n:06d}" for n in range(1, 5000, 1000)
    ]
    assert format_timestamp(zones[1]) == "2026-03-01T08:00:00.000250Z"


def test_state_change_serialises_with_from_to_at() -> None:
    change = StateChange("planning", "paused", "2026-01-07T13:02:57Z", "lunch")  # type: ignore[arg-type]
    assert change.to_dict() == {
        "from": "planning",
        "to": "paused",
        "at": "2026-01-07T13:02:57.000000Z",
        "reason": "lunch",
    }
    assert StateChange.from_dict(change.to_dict()) == change
    with pytest.raises(ValueError, match="unknown field"):
        StateChange.from_dict({**change.to_dict(), "who": "me"})


def test_unknown_top_level_keys_are_kept() -> None:
    record = Session(SID, "x", SessionStatus.PLANNING, datetime.now(UTC), GIT).to_dict()
    record["orchestrator_note"] = {"kept": [1, 2]}
    session = Session.from_dict(record)
    assert session.extra == {"orchestrator_note": {"kept": [1, 2]}}
    assert session.to_dict()["orchestrator_note"] == {"kept": [1, 2]}


# ---------------------------------------------------------------- round trips

text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() and "\x00" not in s)
moments = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.just(UTC),
)
counts = st.integers(min_value=0, max_value=10**9)

git_contexts = st.builds(
    GitContext,
    branch=text,
    commit=text,
    repo_root=text,
    is_worktree=st.booleans(),
    worktree_name=st.none() | text,
)
prds = st.builds(PRDReference, filename=text, path=text, version=st.none() | text)
statistics = st.builds(
    SessionStatistics,
    total_tasks=counts,
    completed_tasks=counts,
    failed_tasks=counts,
    decisions_made=counts,
    checkpoints_created=counts,
    error_recovery_count=counts,
    duration_seconds=st.floats(min_value=0, max_value=1e9, allow_nan=False),
)
configurations = st.builds(
    SessionConfiguration,
    max_iterations=st.integers(1, 1000),
    timeout_minutes=st.integers(1, 10**6),
    auto_checkpoint=st.booleans(),
    error_recovery_enabled=st.booleans(),
)
changes = st.builds(
    StateChange,
    from_status=st.sampled_from(SessionStatus),
    to_status=st.sampled_from(SessionStatus),
    at=moments,
    reason=st.none() | st.text(max_size=30).filter(lambda s: "\x00" not in s),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
sessions = st.builds(
    Session,
    session_id=st.uuids(version=4).map(str),
    feature_request=text,
    status=st.sampled_from(SessionStatus),
    created_at=moments,
    git_context=git_contexts,
    current_phase=st.none() | st.sampled_from(SessionPhase),
    updated_at=st.none() | moments,
    completed_at=st.none() | moments,
    prd_reference=st.none() | prds,
    statistics=statistics,
    configuration=configurations,
    paused_from=st.none() | st.sampled_from(SessionStatus),
    heartbeat_at=st.none() | moments,
    history=st.lists(changes, max_size=4),
    revision=st.integers(0, 10**6),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(
            lambda k: k not in {f for f in Session.__dataclass_fields__}
        ),
        json_values,
        max_size=2,
    ),
)


@given(sessions)
def test_round_trip_through_dict_and_json_is_exact(session: Session) -> None:
    record = session.to_dict()
    assert Session.from_dict(record) == session
    through_json = json.loads(json.dumps(record))
    assert through_json == record
    assert Session.from_dict(through_json) == session
    assert Session.from_dict(through_json).to_dict() == record


@given(statistics)
def test_nested_round_trips(stats: SessionStatistics) -> None:
    assert SessionStatistics.from_dict(stats.to_dict()) == stats


@given(git_contexts, prds, configurations)
def test_other_nested_round_trips(
    git: GitContext, prd: PRDReference, config: SessionConfiguration
) -> None:
    assert GitContext.from_dict(git.to_dict()) == git
    assert PRDReference.from_dict(prd.to_dict()) == prd
    assert SessionConfiguration.from_dict(config.to_dict()) == config


def test_text_must_be_valid_unicode() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        Session(SID, "bad \ud800 text", SessionStatus.PLANNING, datetime.now(UTC), GIT)


def test_counters_stay_within_64_bits() -> None:
    SessionStatistics(total_tasks=2**63 - 1)
    with pytest.raises(ValueError, match="must be <="):
        SessionStatistics(total_tasks=2**63)


@given(sessions)
def test_trusted_rebuild_equals_the_checked_one(session: Session) -> None:
    from maestro.models import session_from_trusted_record

    record = json.loads(json.dumps(session.to_dict()))
    rebuilt = session_from_trusted_record(record)
    assert rebuilt == session
    assert rebuilt.to_dict() == session.to_dict()
    assert rebuilt.created_at.tzinfo is UTC


def test_stored_requests_are_checked_as_strictly_as_the_schema() -> None:
    from maestro.errors import SessionValidationError
    from maestro.models import RequestRecord
    from maestro.schema import schema_errors

    good = {"id": "job-1", "operation": "create", "fingerprint": "0" * 32, "revision": 1}
    assert RequestRecord.from_dict(good).to_dict() == good
    for bad in (
        {**good, "id": ""},
        {**good, "id": "x" * 201},
        {**good, "operation": "delete"},
        {**good, "fingerprint": "XYZ"},
        {**good, "revision": -1},
        {**good, "extra": 1},
    ):
        with pytest.raises(SessionValidationError):
            RequestRecord.from_dict(bad)
    session = Session.from_dict(
        {
            "session_id": "3f01b541-5cc9-47a7-9f8b-d884159c705f",
            "feature_request": "x",
            "status": "planning",
            "created_at": "2026-01-01T00:00:00Z",
            "git_context": {"branch": "b", "commit": "c", "repo_root": "/r", "is_worktree": False},
            "requests": [good],
        }
    )
    assert schema_errors(session.to_dict()) is None
    assert session.to_dict()["requests"] == [good]


# ---------------------------------------------------------------- the checked fast path

FULL_RECORD: dict[str, Any] = {
    "schema_version": 1,
    "session_id": SID,
    "feature_request": "Add OAuth login",
    "status": "paused",
    "created_at": "2026-01-07T13:02:57.119275Z",
    "updated_at": "2026-01-07T14:02:57+02:00",
    "completed_at": "2026-01-08T13:02:57",
    "git_context": {
        "branch": "main",
        "commit": "a" * 40,
        "repo_root": "/repo",
        "is_worktree": True,
        "worktree_name": "wt",
    },
    "current_phase": "implement",
    "prd_reference": {"filename": "prd.md", "path": "docs/prd.md", "version": "2"},
    "statistics": {"total_tasks": 8, "completed_tasks": 3, "duration_seconds": 4},
    "configuration": {"max_iterations": 5, "auto_checkpoint": False},
    "revision": 7,
    "paused_from": "implementing",
    "heartbeat_at": "2026-01-07T15:00:00Z",
    "history": [
        {"from": "planning", "to": "implementing", "at": "2026-01-07T13:05:00Z"},
        {"from": "implementing", "to": "paused", "at": "2026-01-07T13:06:00Z", "reason": ""},
    ],
    "requests": [
        {"id": "k", "operation": "create", "fingerprint": "0" * 32, "revision": 0},
    ],
    "rerun_of": "4f01b541-5cc9-47a7-9f8b-d884159c705f",
    "custom": {"kept": [1, 2]},
}
ODD_VALUES: list[Any] = [
    None, "", " ", "x\x00", "\ud800", "planning", "2026-01-07", "Z", 0, -1, 1, 2**63, True,
    1.5, float("nan"), [], {}, [{}], {"branch": "main"},
]  # fmt: skip


def _slow_from_dict(monkeypatch: pytest.MonkeyPatch, record: dict[str, Any]) -> Session | str:
    """What ``from_dict`` gives without its fast path: a session, or the error's words."""
    import maestro.models as models

    def refuse(record: dict[str, Any]) -> Session:
        raise ValueError

    with monkeypatch.context() as patched:
        patched.setattr(models, "_checked_session", refuse)
        try:
            return Session.from_dict(record)
        except ValueError as error:
            return str(error)


def _fast_from_dict(record: dict[str, Any]) -> Session | str:
    try:
        return Session.from_dict(record)
    except ValueError as error:
        return str(error)


def _variants() -> list[dict[str, Any]]:
    """The full record with one value replaced by an odd one, or one key dropped."""
    found = []
    places: list[tuple[str, ...]] = [(key,) for key in FULL_RECORD]
    for key in ("git_context", "prd_reference", "statistics", "configuration"):
        places += [(key, inner) for inner in FULL_RECORD[key]]
    places += [(key, "unknown") for key in ("git_context", "prd_reference", "statistics")]
    places += [("configuration", name) for name in ("timeout_minutes", "error_recovery_enabled")]
    places += [("history", "0", name) for name in ("from", "to", "at", "reason", "unknown")]
    places += [("requests", "0", name) for name in ("id", "operation", "fingerprint", "revision")]
    for place in places:
        for value in [*ODD_VALUES, ...]:  # ... drops the key
            record = json.loads(json.dumps(FULL_RECORD))
            holder: Any = record
            for step in place[:-1]:
                holder = holder[int(step)] if isinstance(holder, list) else holder[step]
            if value is ...:
                holder.pop(place[-1], None)
            else:
                holder[place[-1]] = value
            found.append(record)
    return found


def test_the_fast_path_makes_what_the_constructors_make(monkeypatch: pytest.MonkeyPatch) -> None:
    import maestro.models as models

    whole = models._checked_session(json.loads(json.dumps(FULL_RECORD)))
    assert whole == _slow_from_dict(monkeypatch, json.loads(json.dumps(FULL_RECORD)))
    assert whole.extra == {"custom": {"kept": [1, 2]}} and whole.history[1].reason == ""
    taken = 0
    for record in _variants():
        slow = _slow_from_dict(monkeypatch, json.loads(json.dumps(record)))
        fast = _fast_from_dict(json.loads(json.dumps(record)))
        assert fast == slow, record
        if isinstance(slow, Session):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                taken += models._checked_session(json.loads(json.dumps(record))) == slow
    assert taken > 100  # most sound variants went the fast way


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 7, 13, 2, 57, 119275, tzinfo=UTC),
        datetime(2026, 1, 7, 13, 2, 57, tzinfo=UTC),  # no fraction: written as .000000
        datetime(2026, 1, 7, 13, 2, 57, 1, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 1, 7, 15, 2, 57, 500000, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 1, 7, 13, 2, 57),  # naive: taken as UTC
    ],
)
def test_timestamps_are_written_with_microseconds_and_a_z(moment: datetime) -> None:
    utc = parse_timestamp(moment)
    expected = utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    assert format_timestamp(moment) == expected
    assert len(expected) == len("2026-01-07T13:02:57.119275Z")
    assert parse_timestamp(expected) == utc


def test_last_activity_is_the_latest_moment() -> None:
    start = datetime(2026, 1, 7, tzinfo=UTC)
    session = Session(SID, "x", SessionStatus.PLANNING, start, GIT)
    assert session.last_activity == start
    session.updated_at = start + timedelta(minutes=2)
    assert session.last_activity == session.updated_at
    session.heartbeat_at = start + timedelta(minutes=1)
    assert session.last_activity == session.updated_at
    session.heartbeat_at = start + timedelta(minutes=3)
    assert session.last_activity == session.heartbeat_at
    session.updated_at = None
    assert session.last_activity == session.heartbeat_at
