"""Library values the faces print: the timeline, export and import results, terminal states."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import maestro
from maestro import SessionManager, SessionStatus
from maestro.lifecycle import TERMINAL_STATES as LIFECYCLE_TERMINAL
from maestro.models import TERMINAL_STATES
from maestro.timeline import SessionTimeline
from tests.conftest import GIT, Clock

S = SessionStatus


def test_timeline_of_a_running_session_runs_to_now_and_leaves_paused_time_out(
    manager: SessionManager, clock: Clock
) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    clock.advance(60)
    manager.transition_state(sid, S.PLANNING)
    clock.advance(30)
    manager.pause_session(sid)
    clock.advance(600)
    manager.resume_session(sid)
    clock.advance(15)
    line = manager.timeline(sid)
    assert line.session_id == sid and not line.finished
    assert [p.state for p in line.segments] == [S.INITIALIZING, S.PLANNING, S.PAUSED, S.PLANNING]
    assert line.seconds_in_state == {S.INITIALIZING: 60, S.PLANNING: 45, S.PAUSED: 600}
    assert line.active_seconds == 105 and line.paused_seconds == 600
    assert line.life_seconds == 705 and line.end == clock.now
    data = line.to_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-ready as it is
    assert data["seconds_in_state"] == {"initializing": 60, "planning": 45, "paused": 600}
    assert [piece["state"] for piece in data["timeline"]] == [
        "initializing",
        "planning",
        "paused",
        "planning",
    ]
    assert data["finished"] is False and data["ended_at"].endswith("Z")


def test_timeline_of_a_finished_session_stops_at_its_end(
    manager: SessionManager, clock: Clock
) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    clock.advance(10)
    done = manager.transition_state(sid, S.FAILED)
    clock.advance(3600)
    line = manager.timeline(sid)
    assert line.finished and line.end == done.completed_at
    assert line.active_seconds == 10 == done.statistics.duration_seconds
    # the same value whoever asks, at any later moment
    assert SessionTimeline.of(done, clock.advance(99)) == line


def test_export_and_import_results_as_dicts(manager: SessionManager, tmp_path: Path) -> None:
    manager.create_session("x", git_context=GIT)
    exported = manager.export_sessions(tmp_path / "out.tar.gz")
    data = exported.to_dict()
    assert data == {
        "sessions": 1,
        "files": exported.files,
        "bytes": exported.bytes,
        "path": str(tmp_path / "out.tar.gz"),
    }
    assert exported.files >= 1 and exported.bytes > 0
    other = SessionManager(tmp_path / "other")
    first = other.import_sessions(tmp_path / "out.tar.gz").to_dict()
    again = other.import_sessions(tmp_path / "out.tar.gz").to_dict()
    assert len(first["created"]) == 1 and first["updated"] == first["unchanged"] == []
    assert again == {"created": [], "updated": [], "unchanged": first["created"]}


def test_terminal_states_are_defined_once() -> None:
    assert {S.COMPLETED, S.FAILED} == TERMINAL_STATES
    assert LIFECYCLE_TERMINAL is TERMINAL_STATES
    package = Path(maestro.__file__).parent
    spelled_out = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # a collection of exactly the two terminal states is a definition of them
            if isinstance(node, ast.Tuple | ast.Set | ast.List) and len(node.elts) == 2:
                names = {
                    e.attr if isinstance(e, ast.Attribute) else getattr(e, "value", None)
                    for e in node.elts
                }
                if names in ({"COMPLETED", "FAILED"}, {"completed", "failed"}):
                    spelled_out.append(path.name)
    assert spelled_out == ["models.py"]
