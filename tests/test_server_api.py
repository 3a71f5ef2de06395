"""The HTTP API, in process: every route, its errors, conditional requests, idempotency."""

from __future__ import annotations

from pathlib import Path

import pytest

from maestro import SessionManager, SessionStatus
from tests.conftest import GIT, Clock
from tests.serverkit import (
    TestClient,
    client,
)

S = SessionStatus
API = "/api/v1"


@pytest.fixture
def manager(tmp_path: Path, clock: Clock) -> SessionManager:
    return SessionManager(tmp_path, clock=clock)


@pytest.fixture
def http(manager: SessionManager) -> TestClient:
    return client(manager)


def create(http: TestClient, request: str = "Add OAuth login", **headers: str) -> dict:
    answer = http.post(f"{API}/sessions", json={"feature_request": request}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


def error_of(answer: object, status: int, kind: str) -> dict:
    assert answer.status_code == status, answer.text  # type: ignore[attr-defined]
    body = answer.json()["error"]  # type: ignore[attr-defined]
    assert body["type"] == kind and body["status"] == status and body["message"]
    return body


# ---------------------------------------------------------------- reading


def test_create_answers_the_stored_session_with_its_location_and_etag(
    http: TestClient, manager: SessionManager
) -> None:
    answer = http.post(
        f"{API}/sessions",
        json={"feature_request": "Add OAuth login", "configuration": {"max_iterations": 5}},
    )
    assert answer.status_code == 201
    body = answer.json()
    assert body == manager.get_session(body["session_id"]).to_dict()
    assert body["configuration"]["max_iterations"] == 5
    assert answer.headers["location"] == f"{API}/sessions/{body['session_id']}"
    assert answer.headers["etag"] == f'"{body["revision"]}"'


def test_get_by_full_id_or_prefix_and_unknown_ids(http: TestClient) -> None:
    sid = create(http)["session_id"]
    for given in (sid, sid[:6], sid[:8].upper()):
        answer = http.get(f"{API}/sessions/{given}")
        assert answer.status_code == 200 and answer.json()["session_id"] == sid
    error_of(http.get(f"{API}/sessions/{'0' * 8}"), 404, "SessionNotFoundError")
    error_of(http.get(f"{API}/sessions/abc"), 404, "InvalidSessionIdError")
    error_of(http.get(f"{API}/sessions/not-an-id-at-all"), 404, "InvalidSessionIdError")


def test_list_answers_a_page_the_total_and_a_cursor(
    http: TestClient, manager: SessionManager, clock: Clock
) -> None:
    ids = []
    for n in range(7):
        clock.advance(60)
        ids.append(manager.create_session(f"request {n}", git_context=GIT).session_id)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = http.get(f"{API}/sessions", params=params).json()
        assert body["total"] == 7
        seen += [s["session_id"] for s in body["sessions"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    oldest = http.get(f"{API}/sessions", params={"order": "created", "limit": 2}).json()
    assert [s["session_id"] for s in oldest["sessions"]] == ids[:2]


def test_list_filters_are_those_of_query_sessions(
    http: TestClient, manager: SessionManager, clock: Clock
) -> None:
    first = manager.create_session("Add OAuth login", git_context=GIT).session_id
    clock.advance(3600)
    other = GIT.__class__(branch="feature/x", commit="1" * 40, repo_root="/repo", is_worktree=False)
    second = manager.create_session("Fix the cache", git_context=other).session_id
    manager.transition_state(second, S.PLANNING)

    def ids(**params: object) -> list[str]:
        answer = http.get(f"{API}/sessions", params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["total"] == len(body["sessions"])
        return [s["session_id"] for s in body["sessions"]]

    assert ids(status="planning") == [second]
    assert ids(status=["planning", "initializing"]) == [second, first]
    assert ids(phase="plan") == [second]
    assert ids(branch="feature/x") == [second]
    assert ids(q="oauth") == [first]
    assert ids(q="cach*") == [second]
    assert ids(created_after="2026-03-01T09:30:00Z") == [second]
    assert ids(created_before="2026-03-01T09:30:00+00:00") == [first]
    assert ids(updated_after="2026-03-01T09:30:00Z") == [second]
    assert ids(order="-updated") == [second, first]
    assert ids(active_before="2026-03-01T09:30:00Z") == [first]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "bogus"},
        {"phase": "nope"},
        {"created_after": "yesterday-ish"},
        {"limit": "0"},
        {"limit": "many"},
        {"order": "sideways"},
        {"cursor": "garbage"},
        {"q": '"'},
    ],
)
def test_a_malformed_filter_is_a_clear_400(http: TestClient, params: dict[str, str]) -> None:
    create(http)
    answer = http.get(f"{API}/sessions", params=params)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] in ("RequestValidationError", "SessionValidationError")
    assert error["status"] == 400 and error["message"]


def test_a_cursor_of_other_filters_is_refused(http: TestClient, manager: SessionManager) -> None:
    for n in range(3):
        manager.create_session(f"request {n}", git_context=GIT)
    cursor = http.get(f"{API}/sessions", params={"limit": 1}).json()["next_cursor"]
    answer = http.get(f"{API}/sessions", params={"limit": 1, "cursor": cursor, "status": "paused"})
    error_of(answer, 400, "SessionValidationError")


def test_timeline_is_the_librarys(http: TestClient, manager: SessionManager, clock: Clock) -> None:
    sid = create(http)["session_id"]
    clock.advance(10)
    manager.transition_state(sid, S.PLANNING)
    clock.advance(5)
    manager.pause_session(sid)
    clock.advance(20)
    body = http.get(f"{API}/sessions/{sid[:8]}/timeline").json()
    assert body == {"session_id": sid, **manager.timeline(sid).to_dict()}
    assert [piece["state"] for piece in body["timeline"]] == ["initializing", "planning", "paused"]
    assert body["paused_seconds"] == 20 and body["active_seconds"] == 15


def test_stats_stale_overview_health_and_openapi(
    http: TestClient, manager: SessionManager, clock: Clock
) -> None:
    sid = create(http)["session_id"]
    manager.transition_state(sid, S.PLANNING)
    done = create(http, "finished")["session_id"]
    manager.transition_state(done, S.FAILED, reason="broken")
    stats = http.get(f"{API}/stats").json()
    assert stats == manager.stats().to_dict()
    assert stats["success_rate"] == 0 and stats["by_status"] == {"planning": 1, "failed": 1}
    assert http.get(f"{API}/stats", params={"status": "failed"}).json()["total"] == 1
    assert http.get(f"{API}/stale").json() == {"sessions": []}
    clock.advance(3 * 3600)
    stale = http.get(f"{API}/stale").json()["sessions"]
    assert [s["session_id"] for s in stale] == [sid]
    assert http.get(f"{API}/stale", params={"older_than": "4h"}).json() == {"sessions": []}
    error_of(http.get(f"{API}/stale", params={"older_than": "soon"}), 400, "SessionValidationError")
    overview = http.get(f"{API}/overview", params={"days": 3}).json()
    assert len(overview["days"]) == 3 and overview["stats"]["total"] == 2
    assert [s["session_id"] for s in overview["stale"]] == [sid]
    assert http.get("/healthz").json() == {"status": "ok"}
    document = http.get("/openapi.json").json()
    assert f"{API}/sessions/{{session_id}}/transitions" in document["paths"]
    assert "Session" in document["components"]["schemas"]


# ---------------------------------------------------------------- writing


def test_every_write_route(http: TestClient, manager: SessionManager) -> None:
    sid = create(http)["session_id"]
    url = f"{API}/sessions/{sid}"
    answer = http.patch(url, json={"current_phase": "plan", "statistics": {"total_tasks": 4}})
    assert answer.status_code == 200 and answer.json()["statistics"]["total_tasks"] == 4
    answer = http.post(f"{url}/transitions", json={"to": "planning", "reason": "go"})
    assert answer.json()["status"] == "planning"
    assert manager.get_session(sid).history[-1].reason == "go"
    assert http.post(f"{url}/pause", json={"reason": "lunch"}).json()["status"] == "paused"
    assert http.post(f"{url}/resume").json()["status"] == "planning"
    answer = http.post(f"{url}/increment", json={"completed_tasks": 2})
    assert answer.json()["statistics"]["completed_tasks"] == 2
    before = manager.get_session(sid).heartbeat_at
    assert http.post(f"{url}/heartbeat").json()["heartbeat_at"] is not None
    assert manager.get_session(sid).heartbeat_at != before
    assert http.post(f"{url}/fail", json={"reason": "broken"}).json()["status"] == "failed"
    report = create(http, "to complete")["session_id"]
    for state in ("planning", "generating_tasks", "implementing", "validating"):
        http.post(f"{API}/sessions/{report}/transitions", json={"to": state})
    http.post(f"{API}/sessions/{report}/transitions", json={"to": "generating_report"})
    done = http.post(f"{API}/sessions/{report}/complete")
    assert done.status_code == 200 and done.json()["status"] == "completed"
    answer = http.delete(url)
    assert answer.status_code == 204 and answer.content == b""
    error_of(http.get(url), 404, "SessionNotFoundError")
    error_of(http.delete(url), 404, "SessionNotFoundError")


def test_an_invalid_transition_is_409_with_the_allowed_targets(http: TestClient) -> None:
    sid = create(http)["session_id"]
    body = error_of(
        http.post(f"{API}/sessions/{sid}/transitions", json={"to": "completed"}),
        409,
        "InvalidTransitionError",
    )
    assert body["current"] == "initializing"
    assert body["allowed"] == ["planning", "failed", "paused"]
    error_of(http.post(f"{API}/sessions/{sid}/resume"), 409, "InvalidTransitionError")


def test_from_refuses_a_session_that_moved_on_but_not_one_that_only_heartbeat(
    http: TestClient, manager: SessionManager
) -> None:
    sid = create(http)["session_id"]
    manager.transition_state(sid, S.PLANNING)  # moved on after the page showed it
    body = error_of(
        http.post(f"{API}/sessions/{sid}/pause", json={"from": "initializing"}),
        409,
        "InvalidTransitionError",
    )
    assert body["current"] == "planning"
    assert manager.get_session(sid).status is S.PLANNING
    manager.heartbeat(sid)  # a write that leaves the state alone
    move = {"to": "paused", "from": "planning"}
    answer = http.post(f"{API}/sessions/{sid}/transitions", json=move)
    assert answer.status_code == 200 and answer.json()["status"] == "paused"
    answer = http.post(f"{API}/sessions/{sid}/fail", json={"from": "planning", "reason": "x"})
    error_of(answer, 409, "InvalidTransitionError")
    assert manager.get_session(sid).status is S.PAUSED


def test_conditional_requests_304_and_412(http: TestClient, manager: SessionManager) -> None:
    sid = create(http)["session_id"]
    url = f"{API}/sessions/{sid}"
    etag = http.get(url).headers["etag"]
    unchanged = http.get(url, headers={"if-none-match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert http.get(url, headers={"if-none-match": f'"0", W/{etag}'}).status_code == 304
    manager.heartbeat(sid)
    fresh = http.get(url, headers={"if-none-match": etag})
    assert fresh.status_code == 200 and fresh.headers["etag"] != etag
    # If-Match: the stale revision is refused, nothing is written
    body = error_of(
        http.patch(url, json={"current_phase": "plan"}, headers={"if-match": etag}),
        412,
        "ConflictError",
    )
    assert body["expected"] == int(etag.strip('"')) and body["actual"] == body["expected"] + 1
    assert manager.get_session(sid).current_phase is None
    for route, payload in (
        ("/transitions", {"to": "planning"}),
        ("/pause", None),
        ("/increment", {"total_tasks": 1}),
        ("/heartbeat", None),
    ):
        answer = http.post(url + route, json=payload, headers={"if-match": etag})
        error_of(answer, 412, "ConflictError")
    error_of(http.delete(url, headers={"if-match": etag}), 412, "ConflictError")
    current = http.get(url).headers["etag"]
    answer = http.patch(url, json={"current_phase": "plan"}, headers={"if-match": current})
    assert answer.status_code == 200 and answer.json()["current_phase"] == "plan"
    error_of(http.patch(url, json={}, headers={"if-match": "seven"}), 400, "SessionValidationError")
    assert http.delete(url, headers={"if-match": http.get(url).headers["etag"]}).status_code == 204


def test_idempotency_key_makes_a_retry_a_no_op(http: TestClient, manager: SessionManager) -> None:
    first = create(http, "once", **{"Idempotency-Key": "create-1"})
    again = create(http, "once", **{"Idempotency-Key": "create-1"})
    assert again == first
    assert manager.count_sessions() == 1
    other = http.post(
        f"{API}/sessions",
        json={"feature_request": "something else"},
        headers={"Idempotency-Key": "create-1"},
    )
    error_of(other, 409, "ConflictError")
    assert manager.count_sessions() == 1
    url = f"{API}/sessions/{first['session_id']}"
    key = {"Idempotency-Key": "step-1"}
    one = http.post(f"{url}/transitions", json={"to": "planning"}, headers=key)
    two = http.post(f"{url}/transitions", json={"to": "planning"}, headers=key)
    assert one.status_code == two.status_code == 200
    assert one.json()["revision"] == two.json()["revision"]
    assert len(manager.get_session(first["session_id"]).history) == 1
    bump = {"Idempotency-Key": "count-1"}
    http.post(f"{url}/increment", json={"completed_tasks": 1}, headers=bump)
    http.post(f"{url}/increment", json={"completed_tasks": 1}, headers=bump)
    assert manager.get_session(first["session_id"]).statistics.completed_tasks == 1
    gone = {"Idempotency-Key": "delete-1"}
    assert http.delete(url, headers=gone).status_code == 204
    assert http.delete(url, headers=gone).status_code == 204  # the retry succeeds too


# ---------------------------------------------------------------- bad input


def test_bad_bodies_are_clear_4xx_and_store_nothing(
    http: TestClient, manager: SessionManager
) -> None:
    url = f"{API}/sessions"
    invalid = "RequestValidationError"
    cases = [
        (b"{not json", "application/json", 400, "RequestValidationError"),
        (b"feature_request=x", "application/x-www-form-urlencoded", 400, "RequestValidationError"),
        (b'{"feature_request": 7}', "application/json", 400, "RequestValidationError"),
        (b'{"feature_request": "x", "extra": 1}', "application/json", 400, invalid),
        (b'{"feature_request": "   "}', "application/json", 400, "SessionValidationError"),
        (
            b'{"feature_request": "x", "configuration": {"max_iterations": -1}}',
            "application/json",
            400,
            "SessionValidationError",
        ),
        (b"x" * (10 * 1024 * 1024), "application/json", 413, "RequestTooLargeError"),
    ]
    for content, media_type, status, kind in cases:
        answer = http.post(url, content=content, headers={"content-type": media_type})
        error_of(answer, status, kind)
    assert manager.count_sessions() == 0
    sid = create(http)["session_id"]
    before = manager.get_session(sid)
    for route, content in (
        ("", b"[1, 2]"),
        ("", b'{"revision": 9}'),
        ("/transitions", b'{"to": "flying"}'),
        ("/increment", b'{"completed_tasks": "lots"}'),
        ("/increment", b'{"completed_tasks": 0}'),
    ):
        method = "PATCH" if route == "" else "POST"
        headers = {"content-type": "application/json"}
        answer = http.request(method, f"{url}/{sid}{route}", content=content, headers=headers)
        assert 400 <= answer.status_code < 500, (route, answer.text)
        assert answer.json()["error"]["type"].endswith("Error")
    assert manager.get_session(sid) == before


def test_a_10_mb_body_without_length_is_refused_as_well(
    http: TestClient, manager: SessionManager
) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * (1024 * 1024)

    answer = http.post(f"{API}/sessions", content=chunks())
    error_of(answer, 413, "RequestTooLargeError")
    assert manager.count_sessions() == 0


def test_unknown_paths_and_methods_use_the_error_shape(http: TestClient) -> None:
    error_of(http.get(f"{API}/nothing"), 404, "NotFoundError")
    error_of(http.put(f"{API}/sessions"), 405, "MethodNotAllowedError")
