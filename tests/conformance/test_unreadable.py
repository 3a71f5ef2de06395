"""Stores that can hold an unreadable record: scans report it, queries skip it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest

from maestro import CorruptSessionError, SessionManager
from tests.conftest import GIT

Corrupt = Callable[[SessionManager, str, bytes], None]

pytestmark = pytest.mark.corruptible


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"schema_version": 99}', "newer than this maestro"),
    ],
)
def test_an_unreadable_record_is_a_json_decode_error_naming_the_session(
    manager: SessionManager, corrupt: Corrupt, raw: bytes, fragment: str
) -> None:
    sid = manager.create_session("Top secret request", git_context=GIT).session_id
    corrupt(manager, sid, raw)
    with pytest.raises(json.JSONDecodeError) as caught:
        manager.get_session(sid)
    assert isinstance(caught.value, CorruptSessionError)
    assert sid in str(caught.value) and fragment in str(caught.value)
    assert "secret" not in str(caught.value).lower()


def test_scans_report_unreadable_records_and_queries_skip_them(
    manager: SessionManager, corrupt: Corrupt, caplog: pytest.LogCaptureFixture
) -> None:
    good = manager.create_session("good", git_context=GIT).session_id
    bad = manager.create_session("bad", git_context=GIT).session_id
    corrupt(manager, bad, b"{broken")
    entries = {entry.session_id: entry for entry in manager.store.scan()}
    assert set(entries) == {good, bad}
    assert entries[good].session is not None and entries[good].error is None
    assert entries[bad].session is None and isinstance(entries[bad].error, CorruptSessionError)
    with caplog.at_level(logging.WARNING, logger="maestro"):
        assert [s.session_id for s in manager.query_sessions()] == [good]
        assert manager.count_sessions() == 1
    assert any(bad in record.getMessage() for record in caplog.records)


def test_an_unreadable_session_can_still_be_deleted_but_not_changed(
    manager: SessionManager, corrupt: Corrupt
) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    corrupt(manager, sid, b"garbage")
    with pytest.raises(CorruptSessionError):
        manager.increment_statistics(sid, total_tasks=1)
    with pytest.raises(CorruptSessionError):
        manager.delete_session(sid, expected_revision=1)
    manager.delete_session(sid)
    assert [entry.session_id for entry in manager.store.scan()] == []
