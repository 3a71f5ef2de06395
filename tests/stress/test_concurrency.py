"""Many processes on one session: exact counters, no lost updates, one winner per race.

Every writer is a separate interpreter (``tests/stress/workers.py``) and all
of them leave a start barrier at the same moment, so their read-modify-write
cycles overlap.  The checks do not rely on the final record alone: each write
reports the record it produced, and a write built on a stale read shows up as
two writes that produced the same revision.

The exact counter, the transition race and compare-and-swap run against
every store that declares ``MULTI_PROCESS``, named by its URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from maestro import Capability, GitContext, SessionManager
from maestro.stores import open_store

from .conftest import size
from .workers import (
    FIELD_WRITERS,
    INCREMENTERS,
    Gate,
    Worker,
    field_value,
    observe_fields,
    run_round,
    start_together,
    stop_all,
)

GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)

PROCESSES = size(4, 16)
INCREMENTS = size(100, 500)
CLI_INCREMENTS = size(10, 50)
FIELD_WRITES = size(150, 1000)
RACERS = size(4, 8)
RACES = size(50, 1000)
CAS_ROUNDS = size(100, 2000)

#: Every store by URL (``{root}`` is the test's directory).
STORE_URLS = {
    "file": "file:{root}",
    "file-noindex": "file:{root}?index=off",
    "memory": "memory:",
    # The test database of tests/postgres_server.py, a project per test.
    "postgres": "postgresql:",
}
#: Those that other processes can share.
MULTI_PROCESS_URLS = [
    name
    for name, url in STORE_URLS.items()
    if name == "postgres"  # declares MULTI_PROCESS; known without a server
    or Capability.MULTI_PROCESS in open_store(url.format(root="/nonexistent")).capabilities
]


@pytest.fixture(params=MULTI_PROCESS_URLS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        from tests.postgres_server import store_url as postgres_url

        return postgres_url(tmp_path)
    return STORE_URLS[request.param].format(root=tmp_path)


#: Generous safety net for a worker's whole run (never an expectation).
RUN_TIMEOUT = 600.0


def _new_session(manager: SessionManager, request: str) -> str:
    return manager.create_session(request, git_context=GIT).session_id


def _results(workers: list[Worker]) -> list[Any]:
    """Each worker's final JSON line, after checking that every worker exited 0."""
    results = [json.loads(worker.read_line(RUN_TIMEOUT)) for worker in workers]
    codes = {worker.name: worker.wait() for worker in workers}
    assert codes == {worker.name: 0 for worker in workers}, [w.stderr() for w in workers]
    return results


# ---------------------------------------------------------------- 1. exact counter


@pytest.mark.parametrize("via", sorted(INCREMENTERS))
def test_counter_is_exact_across_processes(tmp_path: Path, store_url: str, via: str) -> None:
    # Through the command line every increment starts a Python process: fewer.
    increments = INCREMENTS if via == "api" else CLI_INCREMENTS
    manager = SessionManager(store=store_url)
    sid = _new_session(manager, "count")
    gate = Gate(tmp_path / "gate")
    crew: list[Worker] = []
    try:
        for number in range(PROCESSES):
            args = ["increment", "--store", store_url, "--session", sid, "--gate"]
            args += [str(gate.path), "--count", str(increments), "--via", via]
            crew.append(Worker(f"increment-{number}", args, logs=tmp_path / "logs"))
        start_together(crew, gate)
        results = _results(crew)
    finally:
        stop_all(crew)
        gate.dispose()

    total = PROCESSES * increments
    session = manager.get_session(sid)
    assert session.statistics.completed_tasks == total
    assert session.revision == 1 + total
    # Every increment saw a count (and revision) no other increment saw: two
    # that read the same stored value would report the same result.
    seen = sorted(value for result in results for value in result["values"])
    assert seen == list(range(1, total + 1))
    revisions = sorted(revision for result in results for revision in result["revisions"])
    assert revisions == list(range(2, total + 2))
    for result in results:
        assert len(result["values"]) == increments
        assert result["values"] == sorted(result["values"])


# ---------------------------------------------------------------- 2. disjoint fields


def test_writers_of_disjoint_fields_lose_nothing(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path)
    sid = _new_session(manager, "disjoint fields")
    initial = observe_fields(manager.get_session(sid))
    gate = Gate(tmp_path / "gate")
    crew: list[Worker] = []
    try:
        for field in FIELD_WRITERS:
            args = ["fields", "--root", str(tmp_path), "--session", sid, "--gate"]
            args += [str(gate.path), "--field", field, "--count", str(FIELD_WRITES)]
            crew.append(Worker(f"fields-{field}", args, logs=tmp_path / "logs"))
        start_together(crew, gate)
        results = _results(crew)
    finally:
        stop_all(crew)
        gate.dispose()

    # Every write of every writer was acknowledged, in order, with its own value.
    writes = []
    for field, result in zip(FIELD_WRITERS, results, strict=True):
        assert [write["i"] for write in result] == list(range(1, FIELD_WRITES + 1))
        for write in result:
            assert write["fields"][field] == field_value(field, write["i"]), (field, write)
            writes.append((write["revision"], field, write))

    # Each write produced its own revision: none was computed from a stale read.
    writes.sort(key=lambda item: item[0])
    assert [revision for revision, _, _ in writes] == list(
        range(2, 2 + len(FIELD_WRITERS) * FIELD_WRITES)
    )
    # Replayed in revision order, each write leaves exactly the record it
    # reported: the other writers' latest values survive every write.
    state = dict(initial)
    for revision, field, write in writes:
        state[field] = field_value(field, write["i"])
        assert write["fields"] == state, f"revision {revision} by the {field} writer"

    final = manager.get_session(sid)
    assert final.revision == 1 + len(FIELD_WRITERS) * FIELD_WRITES
    assert observe_fields(final) == {
        field: field_value(field, FIELD_WRITES) for field in FIELD_WRITERS
    }


# ---------------------------------------------------------------- 3. transition race


def _start_servers(
    count: int, root: Path, gate: Gate, prefix: str, store_url: str | None = None
) -> list[Worker]:
    servers: list[Worker] = []
    try:
        for number in range(count):
            args = ["serve", "--store", store_url or str(root), "--gate", str(gate.path)]
            servers.append(Worker(f"{prefix}-{number}", args, logs=root / "logs"))
        for server in servers:
            server.expect("ready")
    except BaseException:
        stop_all(servers)
        raise
    return servers


def _shut_down(servers: list[Worker]) -> None:
    """Ask the servers to exit, then make sure they are gone."""
    try:
        for server in servers:
            if server.process.poll() is None:
                server.send_json({"op": "exit"})
    finally:
        stop_all(servers)


def test_one_winner_per_transition_race(tmp_path: Path, store_url: str) -> None:
    manager = SessionManager(store=store_url)
    gate = Gate(tmp_path / "gate")
    servers: list[Worker] = []
    winners: dict[int, int] = {}
    try:
        servers = _start_servers(RACERS, tmp_path, gate, "racer", store_url)
        for race in range(RACES):
            sid = _new_session(manager, f"race {race}")
            manager.transition_state(sid, "planning")
            command = {"op": "transition", "session": sid, "target": "generating_tasks"}
            outcomes = run_round(servers, [command] * RACERS, gate)

            won = [number for number, outcome in enumerate(outcomes) if outcome["ok"]]
            assert len(won) == 1, f"race {race}: {outcomes}"
            winners[won[0]] = winners.get(won[0], 0) + 1
            assert outcomes[won[0]] == {"ok": True, "revision": 3, "status": "generating_tasks"}
            for number, outcome in enumerate(outcomes):
                if number != won[0]:
                    assert outcome == {
                        "ok": False,
                        "error": "InvalidTransitionError",
                        "current": "generating_tasks",
                        "target": "generating_tasks",
                    }, f"race {race}: {outcomes}"

            session = manager.get_session(sid)
            changes = [(h.from_status.value, h.to_status.value) for h in session.history]
            assert changes == [("initializing", "planning"), ("planning", "generating_tasks")]
            assert session.revision == 3
    finally:
        _shut_down(servers)
        gate.dispose()
    print(f"\ntransition races: {RACES} x {RACERS} processes, wins per process {winners}")


# ---------------------------------------------------------------- 4. compare-and-swap


def test_compare_and_swap_has_one_winner_and_no_silent_overwrite(
    tmp_path: Path, store_url: str
) -> None:
    manager = SessionManager(store=store_url)
    sid = _new_session(manager, "cas")
    gate = Gate(tmp_path / "gate")
    servers: list[Worker] = []
    request = "cas"
    increments = 0
    last_revision = 1
    try:
        servers = _start_servers(2, tmp_path, gate, "cas", store_url)
        for round_ in range(CAS_ROUNDS):
            current = manager.get_session(sid)
            revision = current.revision
            commands: list[dict[str, Any]]
            if round_ % 2 == 0:
                # Each writer appends its own marker to what it read.
                commands = [
                    {
                        "op": "update",
                        "session": sid,
                        "updates": {"feature_request": f"{current.feature_request} w{n}r{round_}"},
                        "expected_revision": revision,
                    }
                    for n in range(2)
                ]
            else:
                commands = [
                    {
                        "op": "increment",
                        "session": sid,
                        "deltas": {"decisions_made": 1},
                        "expected_revision": revision,
                    }
                ] * 2
            outcomes = run_round(servers, commands, gate)

            won = [n for n, outcome in enumerate(outcomes) if outcome["ok"]]
            assert len(won) == 1, f"round {round_}: {outcomes}"
            winner = won[0]
            loser = 1 - winner
            assert outcomes[loser] == {
                "ok": False,
                "error": "ConflictError",
                "expected": revision,
                "actual": revision + 1,
            }, f"round {round_}: {outcomes}"
            assert outcomes[winner]["revision"] == revision + 1 > last_revision
            last_revision = outcomes[winner]["revision"]
            if round_ % 2 == 0:
                request = f"{request} w{winner}r{round_}"
            else:
                increments += 1
    finally:
        _shut_down(servers)
        gate.dispose()

    final = manager.get_session(sid)
    # Every winner's write is in the record: the markers in order, the count.
    assert final.feature_request == request
    assert final.statistics.decisions_made == increments == CAS_ROUNDS // 2
    assert final.revision == 1 + CAS_ROUNDS == last_revision


ROUNDS_OF_FIRST_OPENS = size(40, 400)


def _first_query(root: str, gate: Any, report: Any) -> None:
    """A process's first query on a store whose index does not exist yet."""
    import random
    import time

    from maestro.stores.files import FileSessionStore

    problems: list[str] = []
    FileSessionStore._warn_fallback = lambda self, error: problems.append(str(error))  # type: ignore[method-assign]
    manager = SessionManager(root)
    gate.wait()
    time.sleep(random.random() * 0.004)  # staggered, so that the opens interleave
    manager.query_sessions()
    report.put(problems)


def test_processes_opening_a_new_store_at_once_all_answer_from_its_index(tmp_path: Path) -> None:
    """Three processes make the same new index at once: none falls back to a scan
    (switching the new file to WAL can be refused while another makes it)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    problems: list[str] = []
    for round_ in range(ROUNDS_OF_FIRST_OPENS):
        root = tmp_path / str(round_)
        (root / ".flow" / "maestro" / "sessions").mkdir(parents=True)
        gate, report = context.Barrier(3), context.Queue()
        children = [
            context.Process(target=_first_query, args=(str(root), gate, report)) for _ in range(3)
        ]
        for child in children:
            child.start()
        problems += [problem for _ in children for problem in report.get(timeout=60)]
        for child in children:
            child.join(timeout=60)
            assert child.exitcode == 0
    assert problems == []
