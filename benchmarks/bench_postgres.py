"""The PostgreSQL store: write throughput against a floor, query latency at
100,000 sessions, commit-to-watcher latency.  One command, one run::

    python benchmarks/bench_postgres.py [--url ADMIN_URL] [--sessions N] [--writes N] [--json]

``--url`` is a server URL whose user may create databases (default:
``$MAESTRO_BENCH_POSTGRES``, else the local server as ``postgres``); the run
makes a scratch database there and drops it at the end.

* **writes**: 1, 2, 4 and 8 processes, each on its own session, alternate
  ``update_session`` and ``transition_state``; throughput and p50/p99 per
  call.  Beside them, in the same run and with the same process counts:
  the **floor**, the SQL a maestro write sends, sent through psycopg with
  precomputed parameters: a maestro process writing a session it wrote
  last sends one statement (the session's advisory lock, the update of
  the same columns and indexes, with its row lock, and the event insert,
  if the row is still the version it wrote), and a ``NOTIFY`` after it at
  most once per ``NOTIFY_INTERVAL``; the floor sends the same, with values
  that change as maestro's do (a new ``updated_at`` on every write, a new
  status on every transition), so that the server updates the same
  indexes (the trim of the change feed, one maestro write in 1,000 at the
  default retention, is left out); and a bare one-column ``UPDATE`` per
  transaction, for scale.  Targets: >= 60 % of the floor at 8 processes,
  >= 1,000 writes/s.
* **queries** at ``--sessions`` sessions (100,000 by default): a filtered
  query (status and branch, 50 rows), ``get_recent_sessions(10)`` and a
  full-text search (20 rows); p50/p99.  Targets: p99 <= 10 ms, <= 10 ms,
  <= 30 ms.
* **watcher**: a writer process heartbeats; this process follows
  ``changes(follow=True)``; latency is arrival minus the writer's return.
  Target: p99 <= 50 ms.

Speed depends on the machine and its load; the ratios to the floor are the
figures that travel.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from maestro import GitContext, Session, SessionManager, SessionStatus, StateChange
from maestro.codec import encode_record
from maestro.search import words
from maestro.stores.postgres import _SWAP, NOTIFY_INTERVAL, _text_array
from maestro.stores.postgres_shared import _NOTIFY

S = SessionStatus
GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)
PROCESS_COUNTS = (1, 2, 4, 8)
PROJECT = "bench"
#: The 100,000 sessions queried: a project of their own, apart from the writers'
#: sessions, whose histories grow long during the write runs.
QUERIED = "bench-queries"


def _database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _store(url: str, project: str = PROJECT) -> str:
    return f"{url}?project={project}&pool_max=2"


# ---------------------------------------------------------------- writers


Write = Callable[[int], None]


def _maestro_writer(url: str, sid: str, count: int) -> Write:
    """``update_session``, then ``transition_state`` away from the status it returned
    (the floor, writing its own copy of the record in between, may have changed it)."""
    manager = SessionManager(tempfile.gettempdir(), store=_store(url))
    status = [manager.get_session(sid).status]  # connected before the start

    def write(number: int) -> None:
        if number % 2:
            target = S.VALIDATING if status[0] is S.IMPLEMENTING else S.IMPLEMENTING
            manager.transition_state(sid, target)
        else:
            status[0] = manager.update_session(sid, {"statistics": {"total_tasks": number}}).status

    return write


def _floor_writer(url: str, sid: str, count: int) -> Write:
    """What a maestro write sends, with everything computed beforehand.

    A maestro process writing a session it wrote last sends one statement
    (``_SWAP``: the session's advisory lock, then the row and its event if
    the row is still the version it wrote) and, at most once per
    ``NOTIFY_INTERVAL`` seconds, the doorbell's ``NOTIFY`` on the same
    connection after it.  The floor sends exactly that.  When the row has
    moved on (the maestro writer's turn came in between) it reads the row's
    version and sends the statement again, as a maestro writer reads the
    row then.

    Its values change as the maestro writer's do, so that PostgreSQL does
    the same work for them: every write moves ``updated_at`` and
    ``active_at``, and every second one (a transition, for maestro) the
    status, so each update writes an entry in the indexes on those columns
    (and in every other index of the row) instead of being a heap-only
    update that leaves the indexes alone.  Its records are the maestro
    writer's, in size: the floor's writes go on from one turn to the next,
    and every second one adds a history entry.
    """
    conn = psycopg.connect(url, autocommit=True)
    row = conn.execute(
        "SELECT record::text, words FROM maestro_sessions WHERE project = %s AND session_id = %s",
        (PROJECT, sid),
    ).fetchone()
    assert row is not None
    record, folded = row
    start = datetime.now(UTC)
    base = json.loads(record)
    status = "implementing"
    steps: list[dict[str, Any]] = []
    for made in range(count):
        moment = start + timedelta(milliseconds=made)
        before = status
        if made % 2:  # a transition
            status = "validating" if status == "implementing" else "implementing"
            base["history"].append(StateChange(before, status, moment).to_dict())
        else:  # an update
            base["statistics"]["total_tasks"] = made
        base["status"] = status
        base["updated_at"] = moment.isoformat()
        steps.append(
            {
                "status": status,
                "updated_at": moment,
                "active_at": moment,
                "kind": "transitioned" if before != status else "updated",
                "from_status": before,
                "record": json.dumps(base, separators=(",", ":"), ensure_ascii=False),
            }
        )
    arguments: dict[str, Any] = {
        "phase": "implement",
        "branch": "main",
        "worktree": None,
        "created_at": start,
        "words": _text_array(folded),
        "project": PROJECT,
        "session_id": sid,
        "request_id": None,
    }
    rung = [-float("inf")]
    made = [0]

    def current() -> None:
        found = conn.execute(
            "SELECT revision, xmin::text FROM maestro_sessions "
            "WHERE project = %s AND session_id = %s",
            (PROJECT, sid),
        ).fetchone()
        assert found is not None
        arguments["was_revision"], arguments["was_version"] = found

    current()

    def write(number: int) -> None:
        arguments.update(steps[made[0] % count])
        made[0] += 1
        while True:
            arguments["revision"] = arguments["was_revision"] + 1
            written = conn.execute(_SWAP, arguments).fetchone()
            if written is not None:
                break
            current()
        arguments["was_revision"], arguments["was_version"] = arguments["revision"], written[0]
        moment = time.monotonic()
        if moment - rung[0] >= NOTIFY_INTERVAL:
            rung[0] = moment
            conn.execute(_NOTIFY)

    return write


def _bare_writer(url: str, sid: str, count: int) -> Write:
    conn = psycopg.connect(url)

    def write(number: int) -> None:
        conn.execute(
            "UPDATE maestro_sessions SET revision = revision + 1 "
            "WHERE project = %s AND session_id = %s",
            (PROJECT, sid),
        )
        conn.commit()

    return write


WRITERS: dict[str, Callable[[str, str, int], Write]] = {
    "maestro": _maestro_writer,
    "floor": _floor_writer,
    "bare UPDATE": _bare_writer,
}
#: Each kind's writes, in turns: a burst of load on the (shared) machine then
#: hits every kind alike instead of the one that happened to run.
ROUNDS = 4


def _writer(kind: str, url: str, sid: str, count: int, go: Any, results: Any) -> None:
    """One writer process: ``ROUNDS`` turns of its share of ``count`` writes."""
    write = WRITERS[kind](url, sid, count)
    for turn in range(ROUNDS):
        go.wait()
        latencies = []
        start = time.perf_counter()
        # An even number of writes per turn: each starts with an update.
        turns = 2 * ((count // 2) * (turn + 1) // ROUNDS - (count // 2) * turn // ROUNDS)
        for number in range(turns):
            began = time.perf_counter()
            write(number)
            latencies.append(time.perf_counter() - began)
        results.put((time.perf_counter() - start, latencies))


def _run_writers(url: str, sids: list[str], count: int) -> dict[str, dict[str, float]]:
    """Every kind with ``len(sids)`` processes, one session each, taking turns."""
    context = multiprocessing.get_context("spawn")
    gates = {kind: context.Barrier(len(sids) + 1) for kind in WRITERS}
    queues = {kind: context.Queue() for kind in WRITERS}
    children = [
        context.Process(target=_writer, args=(kind, url, sid, count, gates[kind], queues[kind]))
        for kind in WRITERS
        for sid in sids
    ]
    for child in children:
        child.start()
    walls = dict.fromkeys(WRITERS, 0.0)
    latencies: dict[str, list[float]] = {kind: [] for kind in WRITERS}
    for _ in range(ROUNDS):
        for kind in WRITERS:
            gates[kind].wait()
            start = time.perf_counter()
            outcomes = [queues[kind].get(timeout=900) for _ in sids]
            walls[kind] += time.perf_counter() - start
            latencies[kind].extend(value for _, values in outcomes for value in values)
    for child in children:
        child.join()
    return {
        kind: {
            "writes_per_s": len(latencies[kind]) / walls[kind],
            "p50_ms": _percentile(latencies[kind], 0.5) * 1000,
            "p99_ms": _percentile(latencies[kind], 0.99) * 1000,
        }
        for kind in WRITERS
    }


def bench_writes(url: str, writes: int) -> dict[str, dict[int, dict[str, float]]]:
    """Each process count on sessions of its own, made for it: a count's
    sessions start as the others' do, not with the history earlier counts
    left in them (which made the larger counts write longer records)."""
    manager = SessionManager(tempfile.gettempdir(), store=_store(url))
    table: dict[str, dict[int, dict[str, float]]] = {kind: {} for kind in WRITERS}
    for processes in PROCESS_COUNTS:
        sids = []
        for _ in range(processes):
            sid = manager.create_session("Benchmark writer", git_context=GIT).session_id
            for state in (S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING):
                manager.transition_state(sid, state)
            sids.append(sid)
        for kind, figures in _run_writers(url, sids, writes).items():
            table[kind][processes] = figures
    return table


# ---------------------------------------------------------------- queries

REQUESTS = [
    "Add OAuth login to the admin page",
    "Fix the flaky payment service test",
    "Migrate the search index to the new cluster",
    "Refactor session storage for teams",
    "Speed up the dashboard charts",
]


def load_sessions(url: str, count: int) -> None:
    """``count`` sessions straight into the table (COPY), records made by the codec."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    statuses = list(SessionStatus)
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy(
            "COPY maestro_sessions (project, session_id, status, phase, branch, worktree, "
            "created_at, updated_at, active_at, words, create_request, revision, record) "
            "FROM STDIN"
        ) as copy:
            for number in range(count):
                created = base + timedelta(seconds=number * 30)
                request = f"{REQUESTS[number % len(REQUESTS)]} #{number}"
                session = Session(
                    session_id=str(uuid.UUID(int=number, version=4)),
                    feature_request=request,
                    status=statuses[number % len(statuses)],
                    created_at=created,
                    updated_at=created,
                    git_context=GitContext(f"feat/{number % 50}", "0" * 40, "/repo", False, None),
                )
                copy.write_row(
                    (
                        QUERIED,
                        session.session_id,
                        session.status.value,
                        None,
                        session.git_context.branch,
                        None,
                        created,
                        created,
                        created,
                        sorted(set(words(request))),
                        None,
                        1,
                        encode_record(session).decode(),
                    )
                )
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        # What autovacuum does to a table in steady use (hint bits, visibility map).
        conn.execute("VACUUM ANALYZE maestro_sessions")


def bench_queries(url: str, rounds: int) -> dict[str, dict[str, float]]:
    manager = SessionManager(tempfile.gettempdir(), store=_store(url, QUERIED))
    cases = {
        "filtered query": lambda: manager.query_sessions(
            status="implementing", branch="feat/7", limit=50
        ),
        "get_recent_sessions(10)": lambda: manager.get_recent_sessions(10),
        "full-text search": lambda: manager.query_sessions(text="payment flaky", limit=20),
    }
    table = {}
    for name, run in cases.items():
        found = len(run())  # warm, and it must find something
        latencies = []
        for _ in range(rounds):
            began = time.perf_counter()
            run()
            latencies.append(time.perf_counter() - began)
        table[name] = {
            "rows": found,
            "p50_ms": _percentile(latencies, 0.5) * 1000,
            "p99_ms": _percentile(latencies, 0.99) * 1000,
        }
    return table


# ---------------------------------------------------------------- watcher

WATCHED_WRITER = """
import json, sys, time
from maestro import SessionManager
manager = SessionManager(sys.argv[1], store=sys.argv[2])
manager.get_session(sys.argv[3])
time.sleep(1.0)
returned = []
for _ in range(int(sys.argv[4])):
    session = manager.heartbeat(sys.argv[3])
    returned.append((session.revision, time.time_ns()))
    time.sleep(0.005)
print(json.dumps(returned))
"""


def bench_watcher(url: str, writes: int) -> dict[str, float]:
    manager = SessionManager(tempfile.gettempdir(), store=_store(url))
    sid = manager.create_session("watched", git_context=GIT).session_id
    cursor = manager.changes_cursor()
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WATCHED_WRITER,
            tempfile.gettempdir(),
            _store(url),
            sid,
            str(writes),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    arrived: dict[int, int] = {}
    for event in manager.changes(cursor, follow=True, timeout=300, session_id=sid):
        if event.revision is not None:
            arrived[event.revision] = time.time_ns()
        if len(arrived) == writes:
            break
    out, _ = writer.communicate(timeout=300)
    latencies = [(arrived[revision] - at) / 1e6 for revision, at in json.loads(out)]
    return {
        "events": len(latencies),
        "p50_ms": _percentile(latencies, 0.5),
        "p99_ms": _percentile(latencies, 0.99),
    }


# ---------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "MAESTRO_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=400, help="writes per process")
    parser.add_argument("--queries", type=int, default=300, help="runs of each query")
    parser.add_argument("--events", type=int, default=300, help="events the watcher awaits")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()

    name = "maestro_bench_" + secrets.token_hex(4)
    with psycopg.connect(options.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _database(options.url, name)
    try:
        SessionManager(tempfile.gettempdir(), store=_store(url))  # the schema
        writes = bench_writes(url, options.writes)
        load_sessions(url, options.sessions)
        queries = bench_queries(url, options.queries)
        watcher = bench_watcher(url, options.events)
    finally:
        from maestro.stores import postgres

        postgres._close_all()
        with psycopg.connect(options.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    result = {
        "writes": writes,
        "queries": queries,
        "watcher": watcher,
        "sessions": options.sessions,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    if options.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print("\nwrites (update_session and transition_state alternating, one session per process)")
    print(
        f"{'processes':>9}  {'maestro/s':>9} {'p50 ms':>7} {'p99 ms':>7}  "
        f"{'floor/s':>8} {'ratio':>6}  {'bare/s':>7}"
    )
    for processes in PROCESS_COUNTS:
        ours, floor = writes["maestro"][processes], writes["floor"][processes]
        bare = writes["bare UPDATE"][processes]
        print(
            f"{processes:>9}  {ours['writes_per_s']:>9.0f} {ours['p50_ms']:>7.1f} "
            f"{ours['p99_ms']:>7.1f}  {floor['writes_per_s']:>8.0f} "
            f"{ours['writes_per_s'] / floor['writes_per_s']:>6.0%}  {bare['writes_per_s']:>7.0f}"
        )
    eight = writes["maestro"][8]["writes_per_s"]
    ratio = eight / writes["floor"][8]["writes_per_s"]
    print(
        f"targets at 8 processes: >= 60% of the floor ({ratio:.0%}: "
        f"{'met' if ratio >= 0.6 else 'missed'}), >= 1,000 writes/s "
        f"({eight:.0f}: {'met' if eight >= 1000 else 'missed'})"
    )
    print(f"\nqueries at {options.sessions:,} sessions")
    limits = {"filtered query": 10, "get_recent_sessions(10)": 10, "full-text search": 30}
    for name_, figures in queries.items():
        limit = limits[name_]
        verdict = "met" if figures["p99_ms"] <= limit else "missed"
        print(
            f"  {name_:<24} p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms  "
            f"(target p99 <= {limit} ms: {verdict}; {figures['rows']:.0f} rows)"
        )
    verdict = "met" if watcher["p99_ms"] <= 50 else "missed"
    print(
        f"\ncommit-to-watcher: p50 {watcher['p50_ms']:.1f} ms  p99 {watcher['p99_ms']:.1f} ms "
        f"over {watcher['events']:.0f} events (target p99 <= 50 ms: {verdict})"
    )


if __name__ == "__main__":
    main()
