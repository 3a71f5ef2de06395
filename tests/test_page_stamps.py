"""A page's stamp: ``page_is_current`` holds exactly while a fresh query would give the same page.

The file store skips its freshness repairs while nothing was committed to
the index, and proves a page current with a ``stat`` per session.  Every
change a fresh query would show must make the stamp fail: a write through
the library (any process, any thread), a session's metadata.json edited by
hand, a session directory added or removed by hand, a stale marker.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from maestro import SessionManager, SessionStatus
from maestro.stores.files import FileSessionStore

from .conftest import GIT, settle


@pytest.fixture
def manager(tmp_path: Path) -> SessionManager:
    made = SessionManager(tmp_path, durable=False)
    for number in range(6):
        made.create_session(f"request {number}", git_context=GIT)
    settle(made)
    return made


def _page(manager: SessionManager, **filters: object):  # type: ignore[no-untyped-def]
    page = manager.query_page(limit=3, with_total=True, **filters)  # type: ignore[arg-type]
    assert page.stamp is not None
    assert manager.page_is_current(page)
    return page


def test_a_page_is_current_until_something_changes(manager: SessionManager) -> None:
    page = _page(manager)
    assert page.total == 6 and len(page.sessions) == 3 and page.next_cursor is not None
    again = manager.query_page(limit=3, with_total=True)
    assert again == page and manager.page_is_current(page)
    assert manager.page_is_current(page)  # asking changes nothing


def test_a_write_through_the_library_ends_it_also_beyond_the_page(
    manager: SessionManager,
) -> None:
    page = _page(manager)
    outside = manager.query_sessions(order_by="created", descending=False)[0]
    assert outside.session_id not in {s.session_id for s in page.sessions}
    manager.transition_state(outside.session_id, SessionStatus.PLANNING)
    assert not manager.page_is_current(page)
    page = _page(manager)  # once the new row is trusted
    manager.create_session("one more", git_context=GIT)
    assert not manager.page_is_current(page)
    assert manager.query_page(limit=3, with_total=True).total == 7


def test_a_write_by_another_manager_or_thread_ends_it(manager: SessionManager) -> None:
    page = _page(manager)
    other = SessionManager(manager.repo_root, durable=False)
    other.heartbeat(page.sessions[0].session_id)
    assert not manager.page_is_current(page)

    settle(manager)
    page = _page(manager)
    wrote = threading.Thread(
        target=manager.heartbeat, args=(manager.query_sessions()[-1].session_id,)
    )
    wrote.start()
    wrote.join()
    assert not manager.page_is_current(page)


def test_a_page_made_in_one_thread_is_judged_in_another(manager: SessionManager) -> None:
    with ThreadPoolExecutor(1) as worker:
        page = _page(manager)
        assert worker.submit(manager.page_is_current, page).result() is True
        assert worker.submit(manager.page_is_current, page).result() is True
        made = worker.submit(manager.query_page, limit=3, with_total=True).result()
        assert made == page and manager.page_is_current(made)
        manager.heartbeat(page.sessions[1].session_id)
        assert worker.submit(manager.page_is_current, page).result() is False
        assert worker.submit(manager.page_is_current, made).result() is False


def test_a_write_by_another_process_ends_it(manager: SessionManager) -> None:
    page = _page(manager)
    sid = page.sessions[2].session_id
    code = (
        "import sys; from maestro import SessionManager;"
        " SessionManager(sys.argv[1], durable=False).heartbeat(sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", code, str(manager.repo_root), sid], check=True)
    assert not manager.page_is_current(page)
    fresh = manager.query_page(limit=3, with_total=True)
    assert fresh.sessions[2].heartbeat_at is not None


def test_a_metadata_json_edited_by_hand_ends_it(manager: SessionManager) -> None:
    page = _page(manager)
    sid = page.sessions[1].session_id
    path = manager.sessions_dir / sid / "metadata.json"
    record = json.loads(path.read_text())
    record["feature_request"] = "edited by hand"
    path.write_text(json.dumps(record))
    assert not manager.page_is_current(page)
    fresh = manager.query_page(limit=3, with_total=True)
    assert fresh.sessions[1].feature_request == "edited by hand"


def test_a_session_added_or_removed_by_hand_ends_it(
    manager: SessionManager, tmp_path: Path
) -> None:
    page = _page(manager)
    source = manager.sessions_dir / page.sessions[0].session_id
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(source), str(copy)], check=True)
    subprocess.run(["rm", "-rf", str(source)], check=True)
    assert not manager.page_is_current(page)
    assert manager.query_page(limit=3, with_total=True).total == 5
    page = manager.query_page(limit=3, with_total=True)
    subprocess.run(["cp", "-a", str(copy), str(source)], check=True)
    assert not manager.page_is_current(page)
    assert manager.query_page(limit=3, with_total=True).total == 6


def test_a_stale_marker_ends_it(manager: SessionManager) -> None:
    page = _page(manager)
    (manager.sessions_dir.parent / "index.stale").touch()
    assert not manager.page_is_current(page)
    assert manager.query_page(limit=3, with_total=True).total == 6


def test_no_stamp_while_a_row_is_too_recent_or_a_session_unreadable(
    manager: SessionManager, caplog: pytest.LogCaptureFixture
) -> None:
    manager.create_session("just written", git_context=GIT)
    page = manager.query_page(limit=3, with_total=True)
    assert page.sessions[0].feature_request == "just written"
    assert page.stamp is None and not manager.page_is_current(page)

    settle(manager)
    broken = manager.sessions_dir / page.sessions[1].session_id / "metadata.json"
    broken.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="maestro"):
        for _ in range(2):  # warned on every query, never answered from a stamp
            caplog.clear()
            page = manager.query_page(limit=3, with_total=True)
            assert page.stamp is None and page.total == 6
            assert any("skipping" in r.getMessage() for r in caplog.records)


def test_the_refresh_after_a_quiet_one_still_repairs_a_dead_writers_mark(
    manager: SessionManager,
) -> None:
    page = _page(manager)
    sid = page.sessions[0].session_id
    store = manager.store
    assert isinstance(store, FileSessionStore) and store.index is not None
    # A writer that died between its pending mark and its row: the mark
    # is committed, the record changed, the row was never stored.
    store.index.mark_pending(sid)
    path = manager.sessions_dir / sid / "metadata.json"
    record = json.loads(path.read_text())
    record["status"] = "planning"
    path.write_text(json.dumps(record))
    assert not manager.page_is_current(page)
    assert manager.count_sessions(status="planning") == 1
    assert manager.query_page(limit=3).sessions[0].status is SessionStatus.PLANNING


def test_other_windows_and_stores_have_no_stamp(tmp_path: Path) -> None:
    memory = SessionManager(store="memory:")
    memory.create_session("in memory", git_context=GIT)
    page = memory.query_page(limit=5, with_total=True)
    assert page.total == 1 and page.stamp is None and not memory.page_is_current(page)
    scanning = SessionManager(tmp_path, durable=False, index=False)
    scanning.create_session("no index", git_context=GIT)
    page = scanning.query_page(limit=5, with_total=True)
    assert page.total == 1 and page.stamp is None and not scanning.page_is_current(page)


def test_the_total_counts_every_match_on_every_page(manager: SessionManager) -> None:
    first = manager.query_page(limit=4, with_total=True, status="initializing")
    second = manager.query_page(
        limit=4, with_total=True, status="initializing", cursor=first.next_cursor
    )
    assert first.total == second.total == 6 == manager.count_sessions(status="initializing")
    assert len(second.sessions) == 2 and second.next_cursor is None
    assert manager.query_page(limit=4).total is None
