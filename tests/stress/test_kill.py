"""``kill -9`` in the middle of writes: the record stays whole, current and lockable.

One child at a time writes the churn sequence of ``tests/stress/workers.py``
(feature requests from one character to about 1 MB, counters, configuration,
transitions, pause and resume) to one session, reporting each write once the
call has returned.  The parent kills it with SIGKILL after a random delay,
then checks the store and performs the next write of the sequence itself
before starting the next child on the same session.  The next child is
started while the current one runs, so interpreter start-up costs no time.

The parent rebuilds every expected record from the write number alone
(:class:`~tests.stress.workers.ChurnModel`), so "the record is the last
acknowledged write or the one in flight" is checked field by field.
Kill moments are random; ``MAESTRO_STRESS_SEED`` fixes the seed (printed in
every failure message) to replay the same delays.
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import signal
import time
from pathlib import Path

from maestro import GitContext, SessionManager
from maestro.schema import validate_record

from .conftest import size
from .workers import ChurnModel, Worker, churn_view, churn_write, stop_all, view_digest

GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)

KILLS = size(50, 1000)
#: The child writes for a random time up to this many seconds before the kill.
MAX_DELAY = 0.12
#: The parent's own write right after a kill must get the lock within this.
SHORT_LOCK_TIMEOUT = 2.0
TEMP_PATTERN = ".metadata.json.*.tmp"


def _all_records_valid(manager: SessionManager) -> list[str]:
    """Parse and schema-check every metadata.json, then load each session; their ids."""
    ids = []
    for path in sorted(manager.sessions_dir.glob("*/metadata.json")):
        record = json.loads(path.read_bytes())
        validate_record(record, session_id=path.parent.name)
        manager.get_session(path.parent.name)
        ids.append(path.parent.name)
    return ids


def _wait_for_temp_file(folder: Path, timeout: float = 2.0) -> bool:
    """Wait (briefly) until a write is between creating its temp file and the rename."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(fnmatch.fnmatch(name, TEMP_PATTERN) for name in os.listdir(folder)):
            return True
    return False


def test_kill_nine_mid_write_leaves_a_whole_current_record(tmp_path: Path) -> None:
    seed = int(os.environ.get("MAESTRO_STRESS_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    setup = SessionManager(tmp_path)
    session = setup.create_session("churn seed", git_context=GIT)
    sid = session.session_id
    for state in ("planning", "generating_tasks", "implementing"):
        session = setup.transition_state(sid, state)
    bystander = setup.create_session("bystander", git_context=GIT)
    base = session.revision
    model = ChurnModel.start(session)
    checker = SessionManager(tmp_path, lock_timeout=SHORT_LOCK_TIMEOUT)
    folder = checker.sessions_dir / sid
    logs = tmp_path / "logs"

    def start_child(number: int) -> Worker:
        args = ["churn", "--root", str(tmp_path), "--session", sid, "--base", str(base)]
        return Worker(f"churn-{number}", args, logs=logs)

    acknowledged = 0
    in_flight_landed = 0
    leftovers_seen = 0
    aimed = 0

    def take(lines: list[str], where: str) -> None:
        """Follow the child's acknowledgements; each must be the model's next write."""
        nonlocal model, acknowledged
        for line in lines:
            word, seq, digest = line.split()
            expected = model.after()
            assert (word, int(seq)) == ("ack", expected.seq), f"{where}: {line!r}"
            assert digest == view_digest(expected.view), f"{where}: write {seq}"
            model = expected
            acknowledged += 1

    children: list[Worker] = [start_child(0)]
    try:
        for kill in range(KILLS):
            where = f"seed {seed}, kill {kill}"
            child = children[-1]
            children.append(start_child(kill + 1))
            child.expect("ready")
            child.send(f"go {model.seq}")
            child.expect("started")

            # Kill a child that is in its write loop: after its first write,
            # at a random moment.
            take([child.read_line()], where)
            take(child.lines_until(time.monotonic() + rng.uniform(0, MAX_DELAY)), where)
            if kill % 4 == 3:
                aimed += _wait_for_temp_file(folder)
            child.kill()
            status = child.wait()
            take(child.drain(), where)
            assert status == -signal.SIGKILL, child.fail("ended before the kill")
            child.stop()

            # The directory holds the record, the lock, and at most temp files
            # of the killed write.
            names = set(os.listdir(folder))
            temps = {name for name in names if fnmatch.fnmatch(name, TEMP_PATTERN)}
            assert names - temps == {"metadata.json", ".lock"}, f"{where}: {sorted(names)}"
            leftovers_seen += bool(temps)

            # Every record parses and validates; temp files are not sessions.
            assert sorted(_all_records_valid(checker)) == sorted([sid, bystander.session_id])
            queried = {s.session_id: s for s in checker.query_sessions()}
            assert sorted(queried) == sorted([sid, bystander.session_id]), where
            assert queried[bystander.session_id] == bystander, where

            # The record is the last acknowledged write or the one in flight.
            stored = churn_view(checker.get_session(sid))
            assert stored["revision"] in (base + model.seq, base + model.seq + 1), where
            if stored["revision"] == base + model.seq + 1:
                model = model.after()
                in_flight_landed += 1
            assert stored == model.view, f"{where}: write {model.seq}"
            assert churn_view(queried[sid]) == model.view, where

            # The lock is free at once: the next write, with a short lock
            # timeout, goes through and sweeps the killed writer's temp files.
            written = churn_write(checker, sid, model.seq + 1, model.status)
            model = model.after()
            assert churn_view(written) == model.view, where
            assert sorted(os.listdir(folder)) == [".lock", "metadata.json"], where
    finally:
        stop_all(children)

    final = checker.get_session(sid)
    assert churn_view(final) == model.view
    assert final.revision == base + model.seq
    assert checker.get_session(bystander.session_id) == bystander
    # Some children died with a temp file on disk, so the sweep was put to the test.
    assert leftovers_seen > 0, (seed, aimed)
    print(
        f"\nkill -9: {KILLS} kills, {model.seq} writes ({acknowledged} acknowledged by "
        f"children), in-flight write landed {in_flight_landed} times, temp files left "
        f"{leftovers_seen} times ({aimed} kills aimed at a temp file), seed {seed}"
    )
