"""The list route answers a page again from its kept JSON only while a fresh answer is the same."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from maestro import SessionManager, SessionStatus
from maestro.server.pagecache import SIZE, PageCache
from tests.conftest import GIT, settle
from tests.serverkit import TestClient, client

API = "/api/v1"


@pytest.fixture
def manager(tmp_path: Path) -> SessionManager:
    made = SessionManager(tmp_path, durable=False)
    for number in range(5):
        made.create_session(f"request {number}", git_context=GIT)
    settle(made)
    return made


class Counted:
    """Counts the pages the manager makes, to tell a kept answer from a fresh one."""

    def __init__(self, manager: SessionManager, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made = 0
        real = manager.query_page

        def query_page(*args: object, **kwargs: object) -> object:
            self.made += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(manager, "query_page", query_page)


@pytest.fixture
def counted(manager: SessionManager, monkeypatch: pytest.MonkeyPatch) -> Counted:
    return Counted(manager, monkeypatch)


@pytest.fixture
def http(manager: SessionManager) -> Iterator[TestClient]:
    with client(manager) as running:  # one event loop throughout, as a real server's
        yield running


def _fresh(manager: SessionManager, limit: int = 2) -> bytes:
    """The bytes a fresh answer has: a server that never answered before."""
    answer = client(manager).get(f"{API}/sessions", params={"limit": limit})
    assert answer.status_code == 200
    return answer.content


def test_a_page_asked_again_is_the_same_bytes_and_headers_without_a_query(
    http: TestClient, manager: SessionManager, counted: Counted
) -> None:
    answers = [http.get(f"{API}/sessions", params={"limit": 2}) for _ in range(4)]
    assert counted.made == 2  # asked once: remembered; twice: kept; then answered from it
    first, kept = answers[0], answers[-1]
    assert first.status_code == kept.status_code == 200
    assert sorted(kept.headers.items()) == sorted(first.headers.items())
    body = kept.json()
    assert body["total"] == 5 and len(body["sessions"]) == 2 and body["next_cursor"]
    for _ in range(2):  # another query string: its own answer
        http.get(f"{API}/sessions", params={"limit": 3})
    assert counted.made == 4
    assert len({answer.content for answer in answers}) == 1
    assert kept.content == _fresh(manager)


def test_a_write_through_the_api_or_the_library_shows_at_once(
    http: TestClient, manager: SessionManager, counted: Counted
) -> None:
    for _ in range(2):
        before = http.get(f"{API}/sessions", params={"limit": 2}).json()
    newest = before["sessions"][0]["session_id"]
    answer = http.post(f"{API}/sessions/{newest}/transitions", json={"to": "planning"})
    assert answer.status_code == 200
    after = http.get(f"{API}/sessions", params={"limit": 2}).json()
    assert after["sessions"][0]["status"] == "planning"
    SessionManager(manager.repo_root, durable=False).create_session("from elsewhere")
    latest = http.get(f"{API}/sessions", params={"limit": 2}).json()
    assert latest["total"] == 6 and latest["sessions"][0]["feature_request"] == "from elsewhere"
    assert counted.made == 4


def test_an_edit_by_hand_of_a_listed_session_shows_at_once(
    http: TestClient, manager: SessionManager
) -> None:
    for _ in range(3):
        listed = http.get(f"{API}/sessions", params={"limit": 2}).json()["sessions"]
    path = manager.sessions_dir / listed[1]["session_id"] / "metadata.json"
    record = json.loads(path.read_text())
    record["status"] = SessionStatus.PLANNING.value
    path.write_text(json.dumps(record))
    again = http.get(f"{API}/sessions", params={"limit": 2})
    assert again.json()["sessions"][1]["status"] == "planning"
    assert again.content == _fresh(manager)


def test_a_bad_request_is_never_answered_from_a_kept_page(http: TestClient) -> None:
    assert http.get(f"{API}/sessions", params={"limit": 2}).status_code == 200
    for params in ({"limit": 0}, {"limit": 2, "status": "nope"}, {"limit": 2, "order": "x"}):
        for _ in range(2):
            assert http.get(f"{API}/sessions", params=params).status_code == 400


def test_a_token_is_still_required_for_a_kept_page(manager: SessionManager) -> None:
    with client(manager, token="s3cret") as http:
        _with_token(http)


def _with_token(http: TestClient) -> None:
    bearer = {"authorization": "Bearer s3cret"}
    for _ in range(2):
        assert http.get(f"{API}/sessions", params={"limit": 2}, headers=bearer).status_code == 200
    assert http.get(f"{API}/sessions", params={"limit": 2}).status_code == 401
    kept = http.get(f"{API}/sessions", params={"limit": 2}, headers=bearer)
    assert kept.status_code == 200 and kept.json()["total"] == 5


def test_the_cache_keeps_pages_asked_twice_with_a_stamp_and_the_most_recent(
    manager: SessionManager,
) -> None:
    pages = PageCache(manager, size=2)
    for number in range(3):
        page = manager.query_page(limit=number + 1, with_total=True)
        assert page.stamp is not None
        for _ in range(2):  # the first time only remembers the query string
            pages.keep(f"limit={number + 1}".encode(), page, b"body %d" % number)
    assert len(pages) == 2 and pages.get(b"limit=1") is None
    assert pages.get(b"limit=3") == b"body 2"
    once = manager.query_page(limit=4, with_total=True)
    pages.keep(b"limit=4", once, b"asked once")
    assert pages.get(b"limit=4") is None and pages.get(b"limit=3") == b"body 2"

    manager.create_session("unstamped: too recent", git_context=GIT)
    assert pages.get(b"limit=3") is None and len(pages) == 1  # no longer current: dropped
    page = manager.query_page(limit=3, with_total=True)
    assert page.stamp is None
    pages.keep(b"limit=3", page, b"body")
    assert pages.get(b"limit=3") is None
    settle(manager)
    page = manager.query_page(limit=3, with_total=True)
    pages.keep(b"limit=3", page, b"new body")  # asked often before: kept at once
    assert pages.get(b"limit=3") == b"new body"
    assert SIZE >= 16


def test_pages_asked_once_do_not_push_out_one_asked_often(manager: SessionManager) -> None:
    pages = PageCache(manager, size=2)
    page = manager.query_page(limit=2, with_total=True)
    for _ in range(2):
        pages.keep(b"limit=2", page, b"dashboard")
    for number in range(100):  # a script walking pages, each asked once
        pages.keep(f"limit=2&cursor={number}".encode(), page, b"walked")
    assert pages.get(b"limit=2") == b"dashboard" and len(pages) == 1
