"""``GET /api/v1/events`` on a real server: live, filtered, resumable, kept alive."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from maestro import SessionManager, SessionStatus
from tests.serverkit import live_server

S = SessionStatus


@pytest.fixture
def manager(tmp_path: Path) -> SessionManager:
    return SessionManager(tmp_path)


class Stream:
    """Frames of one event stream, read in a thread so a test can wait with a bound."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.frames: list[dict[str, str]] = []
        self.comments: list[str] = []
        self.status: int | None = None
        self.changed = threading.Condition()
        self._client = httpx.Client(timeout=httpx.Timeout(30, read=None))
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as answer:
                with self.changed:
                    self.status = answer.status_code
                    self.changed.notify_all()
                frame: dict[str, str] = {}
                for line in answer.iter_lines():
                    with self.changed:
                        if line.startswith(":"):
                            self.comments.append(line[1:].strip())
                        elif line == "":
                            if frame:
                                self.frames.append(frame)
                            frame = {}
                        else:
                            key, _, value = line.partition(":")
                            frame[key] = value.removeprefix(" ")
                        self.changed.notify_all()
        except httpx.HTTPError:
            pass  # closed by the test

    def wait(self, predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), (self.frames, self.comments)

    def events(self) -> list[dict]:
        return [json.loads(f["data"]) for f in self.frames if "data" in f]

    def close(self) -> None:
        self._client.close()


@pytest.fixture
def server(manager: SessionManager) -> Iterator[str]:
    with live_server(manager, keepalive=0.3) as url:
        yield url


def test_a_stream_sees_each_commit_with_its_cursor_as_id(
    server: str, manager: SessionManager
) -> None:
    stream = Stream(f"{server}/api/v1/events")
    stream.wait(lambda: stream.status == 200 and "connected" in stream.comments)
    sid = manager.create_session("Add OAuth login").session_id
    manager.transition_state(sid, S.PLANNING)
    stream.wait(lambda: len(stream.events()) >= 2)
    created, moved = stream.events()[:2]
    assert (created["kind"], created["session_id"]) == ("created", sid)
    assert (moved["kind"], moved["from_status"], moved["to_status"]) == (
        "transitioned",
        "initializing",
        "planning",
    )
    frames = [f for f in stream.frames if "data" in f]
    assert [f["id"] for f in frames[:2]] == [created["cursor"], moved["cursor"]]
    stream.close()


def test_filters_and_resuming_with_last_event_id(server: str, manager: SessionManager) -> None:
    failed_only = Stream(f"{server}/api/v1/events?status=failed")
    failed_only.wait(lambda: "connected" in failed_only.comments)
    start = manager.changes_cursor()
    one = manager.create_session("one").session_id
    two = manager.create_session("two").session_id
    manager.transition_state(one, S.FAILED, reason="broken")
    manager.transition_state(two, S.PLANNING)
    manager.transition_state(two, S.FAILED, reason="broken too")
    failed_only.wait(lambda: len(failed_only.events()) >= 2)
    assert [(e["session_id"], e["to_status"]) for e in failed_only.events()] == [
        (one, "failed"),
        (two, "failed"),
    ]
    # Resumed after the first change: the four after it, then live.
    everything = manager.changes(start)
    first = next(everything)
    everything.close()
    resumed = Stream(f"{server}/api/v1/events", {"Last-Event-ID": first.cursor})
    resumed.wait(lambda: len(resumed.events()) >= 4)
    assert [e["kind"] for e in resumed.events()] == [
        "created",
        "transitioned",
        "transitioned",
        "transitioned",
    ]
    just_two = Stream(f"{server}/api/v1/events?since={first.cursor}&session_id={two[:8]}")
    just_two.wait(lambda: len(just_two.events()) >= 3)
    assert {e["session_id"] for e in just_two.events()} == {two}
    for stream in (failed_only, resumed, just_two):
        stream.close()


def test_session_filters_keep_the_events_of_matching_sessions(
    server: str, manager: SessionManager
) -> None:
    from tests.conftest import GIT

    other = GIT.__class__(branch="feature/x", commit="1" * 40, repo_root="/repo", is_worktree=False)
    on_x = Stream(f"{server}/api/v1/events?branch=feature/x")
    searched = Stream(f"{server}/api/v1/events?q=cache&kind=created")
    for stream in (on_x, searched):
        stream.wait(lambda stream=stream: "connected" in stream.comments)
    # Each event is judged by its session as it is when the event is sent:
    # wait for each one, so the session is still there to be judged.
    a = manager.create_session("Add OAuth login", git_context=GIT).session_id
    b = manager.create_session("Fix the cache", git_context=other).session_id
    on_x.wait(lambda: len(on_x.events()) >= 1)
    searched.wait(lambda: len(searched.events()) >= 1)
    manager.transition_state(a, S.PLANNING)
    manager.transition_state(b, S.PLANNING)
    on_x.wait(lambda: len(on_x.events()) >= 2)
    manager.delete_session(b)
    on_x.wait(lambda: len(on_x.events()) >= 3)
    assert [(e["session_id"], e["kind"]) for e in on_x.events()] == [
        (b, "created"),
        (b, "transitioned"),
        (b, "deleted"),
    ]
    assert [(e["session_id"], e["kind"]) for e in searched.events()] == [(b, "created")]
    for stream in (on_x, searched):
        stream.close()


def test_an_idle_stream_gets_keep_alive_comments(server: str) -> None:
    stream = Stream(f"{server}/api/v1/events")
    stream.wait(lambda: stream.comments.count("keep-alive") >= 2)
    assert stream.events() == []  # comments only: nothing changed
    stream.close()


def test_a_bad_cursor_or_filter_is_a_400_before_the_stream(server: str) -> None:
    for query in (
        "since=garbage",
        "status=flying",
        "kind=exploded",
        "session_id=xyz",
        "phase=nowhere",
        "created_after=yesterday",
    ):
        answer = httpx.get(f"{server}/api/v1/events?{query}", timeout=10)
        assert 400 <= answer.status_code < 500, query
        assert answer.json()["error"]["type"].endswith("Error")
