"""Queries at 1k, 10k and 100k sessions: the SQLite index against a full scan.

For each size the script writes that many sessions in the original
prototype's file format (as another tool would have left them, so indexing
foreign files is part of what is measured), builds the index from them, and
times each query twice in the same run: through the index, and through a naive
full scan that reads and parses every ``metadata.json`` and filters in Python,
the way the prototype answered every query.  It reports medians and the ratio
between the two, the index build time and its peak memory, and what keeping
the index costs each write.

Run from a checkout with the package installed::

    python benchmarks/bench_index.py                   # 1k, 10k, 100k
    python benchmarks/bench_index.py --sizes 1000,10000 --repeat 20

The data set lives in a temporary directory under ``--root`` (default: the
current directory) and is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from maestro import GitContext, Session, SessionManager, SessionStatus
from maestro.stores.index import RACY_NS

S = SessionStatus

#: Three quarters of the sessions active, as on a busy orchestrator.
STATUS_WEIGHTS = {
    S.INITIALIZING: 5,
    S.PLANNING: 10,
    S.GENERATING_TASKS: 10,
    S.IMPLEMENTING: 25,
    S.VALIDATING: 15,
    S.GENERATING_REPORT: 5,
    S.PAUSED: 5,
    S.COMPLETED: 17,
    S.FAILED: 8,
}
PHASE_OF = {
    S.PLANNING: "plan",
    S.GENERATING_TASKS: "generate_tasks",
    S.IMPLEMENTING: "implement",
    S.VALIDATING: "validate",
    S.GENERATING_REPORT: "cleanup",
}
VERBS = ["Add", "Fix", "Refactor", "Build", "Migrate", "Document", "Speed up", "Remove"]
THINGS = [
    "OAuth login",
    "the payment service",
    "user management API",
    "search indexing",
    "the billing dashboard",
    "rate limiting",
    "CSV export",
    "dark mode",
    "audit logging",
    "the flaky integration test",
    "websocket notifications",
    "the onboarding flow",
]
EXTRAS = [
    "with retries",
    "for mobile clients",
    "behind a feature flag",
    "in the admin panel",
    "using the new cache",
    "without downtime",
    "for enterprise tenants",
    "",
]
BRANCHES = [f"feat/team-{n}" for n in range(30)] + ["main"] * 10


def prototype_record(rng: random.Random, created: datetime) -> dict[str, Any]:
    """One record as the prototype wrote it: naive timestamps, no new fields."""
    status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
    stamp = created.replace(tzinfo=None).isoformat() + "Z"
    updated = (created + timedelta(minutes=rng.randint(1, 600))).replace(tzinfo=None)
    record: dict[str, Any] = {
        "session_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "feature_request": f"{rng.choice(VERBS)} {rng.choice(THINGS)} {rng.choice(EXTRAS)}".strip(),
        "status": status.value,
        "created_at": stamp,
        "updated_at": updated.isoformat() + "Z",
        "git_context": {
            "branch": rng.choice(BRANCHES),
            "commit": f"{rng.getrandbits(160):040x}",
            "repo_root": "/home/dev/src/app",
            "is_worktree": False,
        },
        "statistics": {
            "total_tasks": rng.randint(0, 40),
            "completed_tasks": rng.randint(0, 20),
            "failed_tasks": rng.randint(0, 3),
            "decisions_made": rng.randint(0, 12),
            "checkpoints_created": rng.randint(0, 5),
            "error_recovery_count": rng.randint(0, 2),
            "duration_seconds": 0.0,
        },
        "configuration": {
            "max_iterations": 3,
            "timeout_minutes": 120,
            "auto_checkpoint": True,
            "error_recovery_enabled": True,
        },
    }
    if status in PHASE_OF:
        record["current_phase"] = PHASE_OF[status]
    if status in (S.COMPLETED, S.FAILED):
        record["completed_at"] = record["updated_at"]
    return record


def generate(sessions_dir: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    sessions_dir.mkdir(parents=True, exist_ok=True)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for number in range(count):
        record = prototype_record(rng, start + timedelta(seconds=number * 300 + rng.random()))
        folder = sessions_dir / record["session_id"]
        folder.mkdir()
        (folder / "metadata.json").write_text(json.dumps(record, indent=2))


# ---------------------------------------------------------------- the baseline


def naive_scan(sessions_dir: Path, keep: Callable[[Session], bool]) -> list[Session]:
    """What the prototype did for every query: parse every file, filter, sort."""
    found = []
    for folder in sessions_dir.iterdir():
        path = folder / "metadata.json"
        if not path.is_file():
            continue
        try:
            session = Session.from_dict(json.loads(path.read_text()))
        except ValueError:
            continue
        if keep(session):
            found.append(session)
    found.sort(key=lambda s: (s.created_at, s.session_id), reverse=True)
    return found


def words(text: str) -> set[str]:
    return set(text.lower().replace(",", " ").split())


# ---------------------------------------------------------------- timing


def median_ms(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        action()
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1e6


BUILD_SCRIPT = """
import resource, sys, time
from maestro import SessionManager
manager = SessionManager(sys.argv[1])
started = time.perf_counter()
count = manager.rebuild_index()
elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(count, elapsed, peak)
"""


def build_index(root: Path) -> tuple[int, float, float]:
    """Build from scratch in a fresh process: sessions, seconds, peak RSS in MB."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{root}/.flow/maestro/index.sqlite3{suffix}").unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", BUILD_SCRIPT, str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    count, seconds, peak_kb = done.stdout.split()
    return int(count), float(seconds), int(peak_kb) / 1024


def write_cost(root: Path, repeat: int) -> tuple[float, float]:
    """Median of a durable update with and without the index, interleaved."""
    indexed = SessionManager(root)
    plain = SessionManager(root, index=False)
    git = GitContext("main", "0" * 40, str(root))
    first = indexed.create_session("write benchmark", git_context=git).session_id
    second = plain.create_session("write benchmark", git_context=git).session_id
    with_index, without = [], []
    for number in range(repeat):
        for manager, sid, samples in ((indexed, first, with_index), (plain, second, without)):
            started = time.perf_counter_ns()
            manager.update_session(sid, {"statistics": {"total_tasks": number}})
            samples.append(time.perf_counter_ns() - started)
    indexed.delete_session(first)
    indexed.delete_session(second)
    return statistics.median(with_index) / 1e3, statistics.median(without) / 1e3


# ---------------------------------------------------------------- one size


def run_size(base: Path, count: int, repeat: int, scan_repeat: int) -> dict[str, Any]:
    root = base / f"n{count}"
    sessions_dir = root / ".flow" / "maestro" / "sessions"
    started = time.perf_counter()
    generate(sessions_dir, count)
    generated = time.perf_counter() - started
    # Files written this very moment have mtimes too recent to vouch for them
    # (see RACY_NS); sessions normally sit for longer than that before a query.
    time.sleep(RACY_NS / 1e9)
    indexed_count, build_s, build_mb = build_index(root)
    manager = SessionManager(root)
    manager.query_sessions(limit=1)  # open the connection; the timings below are warm

    active = {s.value for s in S if s not in (S.COMPLETED, S.FAILED)}
    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        (
            "query(status, branch, limit=10)",
            lambda: manager.query_sessions(status="implementing", branch="main", limit=10),
            lambda: naive_scan(
                sessions_dir,
                lambda s: s.status is S.IMPLEMENTING and s.git_context.branch == "main",
            )[:10],
        ),
        (
            "get_recent_sessions(10)",
            lambda: manager.get_recent_sessions(10),
            lambda: naive_scan(sessions_dir, lambda s: True)[:10],
        ),
        (
            "count_sessions(status=failed)",
            lambda: manager.count_sessions(status="failed"),
            lambda: len(naive_scan(sessions_dir, lambda s: s.status is S.FAILED)),
        ),
        (
            'text search "oauth login", limit 20',
            lambda: manager.query_sessions(text="oauth login", limit=20),
            lambda: naive_scan(
                sessions_dir, lambda s: {"oauth", "login"} <= words(s.feature_request)
            )[:20],
        ),
        (
            "list_active_sessions()",
            manager.list_active_sessions,
            lambda: naive_scan(sessions_dir, lambda s: s.status.value in active),
        ),
    ]
    rows = []
    for name, with_index, scan in cases:
        # the same answer, or the comparison means nothing
        mine = with_index()
        theirs = scan()
        if isinstance(mine, list):
            assert isinstance(theirs, list)
            if "text" in name:
                assert len(mine) == len(theirs), name
            else:
                assert [s.session_id for s in mine] == [s.session_id for s in theirs], name
        else:
            assert mine == theirs, name
        results = len(mine) if isinstance(mine, list) else mine
        index_ms = median_ms(with_index, repeat if "list_active" not in name else scan_repeat)
        scan_ms = median_ms(scan, scan_repeat)
        rows.append(
            {
                "query": name,
                "results": results,
                "index_ms": index_ms,
                "scan_ms": scan_ms,
                "speedup": scan_ms / index_ms,
            }
        )
    with_idx_us, without_us = write_cost(root, repeat=max(repeat, 50))
    shutil.rmtree(root)
    return {
        "sessions": count,
        "indexed": indexed_count,
        "generate_s": generated,
        "build_s": build_s,
        "build_peak_mb": build_mb,
        "write_with_index_us": with_idx_us,
        "write_without_index_us": without_us,
        "write_overhead": with_idx_us / without_us - 1,
        "queries": rows,
    }


def print_report(result: dict[str, Any]) -> None:
    print(f"\n== {result['sessions']:,} sessions (prototype format; indexed {result['indexed']:,})")
    print(
        f"index build from scratch: {result['build_s']:.2f} s, "
        f"peak RSS {result['build_peak_mb']:.0f} MB"
    )
    print(
        f"durable update: {result['write_with_index_us']:.0f} us with the index, "
        f"{result['write_without_index_us']:.0f} us without "
        f"(+{result['write_overhead'] * 100:.0f}%)"
    )
    print(f"{'query':<36} {'results':>8} {'index ms':>10} {'scan ms':>10} {'speed-up':>10}")
    for row in result["queries"]:
        print(
            f"{row['query']:<36} {row['results']:>8} {row['index_ms']:>10.2f} "
            f"{row['scan_ms']:>10.1f} {row['speedup']:>9.0f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=30, help="timed runs of indexed queries")
    parser.add_argument("--scan-repeat", type=int, default=3, help="timed runs of full scans")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="maestro-bench-index-", dir=args.root))
    results = []
    try:
        for size in (int(part) for part in args.sizes.split(",")):
            result = run_size(base, size, args.repeat, args.scan_repeat)
            results.append(result)
            if not args.json:
                print_report(result)
                sys.stdout.flush()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
