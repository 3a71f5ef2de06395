"""PostgreSQL under faults: a writer killed mid-transaction, every connection
terminated while writers run.

Writers are separate interpreters started with ``python -c``; the database is
the test database of tests/postgres_server.py (skipped without a server,
failed under ``CI=true``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maestro import ChangeKind, GitContext, SessionManager
from maestro.errors import StoreUnavailableError
from tests.postgres_server import database_url, store_url

from .conftest import size

psycopg = pytest.importorskip("psycopg")

GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)

#: Stops inside the write's transaction, after its row and event are written
#: and before the commit, and says so.  The write's statements are pipelined:
#: fetching a result of a later one makes the server run them first.
MID_TRANSACTION = """
import sys, time
from maestro import SessionManager
from maestro.stores import postgres

real_save = postgres.PostgresStore._save

def stalled_save(self, conn, *args, **kwargs):
    written = real_save(self, conn, *args, **kwargs)
    assert conn.execute("SELECT count(*) FROM maestro_events WHERE xid = "
                        "pg_current_xact_id()::text::bigint").fetchone()[0] == 1
    print("inside", flush=True)
    time.sleep(600)
    return written

postgres.PostgresStore._save = stalled_save
manager = SessionManager(sys.argv[1], store=sys.argv[2])
manager.update_session(sys.argv[3], {"feature_request": "half-written"})
"""

#: Increments under request ids, retrying a failed one with the same id until
#: it is acknowledged; prints the acknowledged ids and the errors it met.
WRITER = """
import json, sys, time
from maestro import SessionError, SessionManager

root, url, sid, name, count = sys.argv[1:6]
manager = SessionManager(root, store=url)
acknowledged, errors = [], []
for number in range(int(count)):
    request = f"{name}-{number}"
    while True:
        try:
            manager.increment_statistics(sid, completed_tasks=1, request_id=request)
        except SessionError as error:
            errors.append(type(error).__name__)
            time.sleep(0.05)
            continue
        acknowledged.append(request)
        break
print(json.dumps({"acknowledged": acknowledged, "errors": errors}), flush=True)
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _completed(manager: SessionManager, sid: str) -> int:
    """The session's count, read by a client whose connections are terminated too:
    it may have to wait for its pool to reconnect (a busy server may refuse for a while)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            return manager.get_session(sid).statistics.completed_tasks
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _terminate_all(url: str) -> int:
    """End every other connection to the test database; how many there were."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_writer_killed_mid_transaction_leaves_no_trace(tmp_path: Path) -> None:
    url = store_url(tmp_path, pool_timeout="5")
    manager = SessionManager(tmp_path, store=url, lock_timeout=5)
    sid = manager.create_session("whole", git_context=GIT).session_id
    # After the create's event, once it is readable: a maestro write in flight
    # on this database (another test's) holds events back, so a cursor taken
    # now could still come before it.
    deadline = time.monotonic() + 60
    while not (created := list(manager.changes(None, session_id=sid))):
        assert time.monotonic() < deadline, "the create's event never became readable"
        time.sleep(0.05)
    assert [event.kind for event in created] == [ChangeKind.CREATED]
    cursor = created[0].cursor
    writer = _python(MID_TRANSACTION, str(tmp_path), url, sid)
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "inside", writer.stderr
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
    # Nothing of the write is visible, and its lock is gone: the next write
    # gets it well within the lock timeout (a held lock would raise).
    session = manager.get_session(sid)
    assert (session.feature_request, session.revision) == ("whole", 1)
    deadline = time.monotonic() + 30
    while True:  # the server notices the dead client when its socket closes
        try:
            updated = manager.update_session(sid, {"feature_request": "after"})
            break
        except TimeoutError:
            assert time.monotonic() < deadline, "the killed writer's lock was never released"
    assert updated.revision == 2
    events = list(manager.changes(cursor))
    assert [(e.kind.value, e.revision) for e in events] == [("updated", 2)]


@pytest.mark.parametrize("rounds", [size(3, 10)])
def test_every_connection_terminated_during_load_loses_no_acknowledged_write(
    tmp_path: Path, rounds: int
) -> None:
    processes, increments = size(4, 16), size(150, 500)
    url = store_url(tmp_path, pool_max="2")
    manager = SessionManager(tmp_path, store=url)
    sid = manager.create_session("under fire", git_context=GIT).session_id
    writers = [
        _python(WRITER, str(tmp_path), url, sid, f"w{number}", str(increments))
        for number in range(processes)
    ]
    terminated = 0
    try:
        done = 0
        for _ in range(rounds):
            # Strike once the writers are busy: after some more increments landed.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                now = _completed(manager, sid)
                if now >= done + processes * 10 or now >= processes * increments:
                    break
                time.sleep(0.05)
            done = now
            if done >= processes * increments:
                break
            terminated += _terminate_all(database_url())
        results = []
        for writer in writers:
            out, err = writer.communicate(timeout=600)
            assert writer.returncode == 0, err
            results.append(json.loads(out))
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
    acknowledged = [request for result in results for request in result["acknowledged"]]
    assert len(acknowledged) == len(set(acknowledged)) == processes * increments
    # Each acknowledged increment is there exactly once, retries included.
    assert _completed(manager, sid) == processes * increments
    session = manager.get_session(sid)
    assert session.revision == 1 + processes * increments
    errors = [name for result in results for name in result["errors"]]
    assert set(errors) <= {"StorageError", "StoreUnavailableError", "LockTimeoutError"}
    assert terminated >= processes  # the writers' connections were among them
    print(f"\nterminated {terminated} connections; writers retried {len(errors)} times")
