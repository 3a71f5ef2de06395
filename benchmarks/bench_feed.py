"""The change feed of the file store: how fast a watcher hears of a write, what it costs.

Three measurements, all in one run:

* **commit-to-watcher latency**: a writer in another process makes ``--writes``
  writes (heartbeats) back to back, noting the wall-clock time each one
  returned; this process follows ``manager.changes(follow=True)`` and notes
  when each event arrives.  Latency is arrival minus return, so it slightly
  understates the true commit-to-arrival time (the commit comes just before
  the return).  Target: p99 <= 100 ms.
* **write overhead**: the write operations (create, update, transition,
  increment) on a store with the feed and on one without it
  (``feed_retention=0``: the index, no events), interleaved call by call so
  that background noise hits both alike; printed as a ratio.  A store without
  the index is timed too, for scale.
* **idle watcher CPU**: a process that follows the feed of an idle store for
  ``--idle`` seconds reports its CPU time (``getrusage``) as a share of one
  core.  Target: under 1 %.

Run from a checkout with the package installed::

    python benchmarks/bench_feed.py [--writes N] [--overhead N] [--root DIR] [--json]

Put ``--root`` on the filesystem you care about (default: the current
directory); the scratch directory is removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from maestro import GitContext, SessionManager, SessionStatus
from maestro.stores.files import FileSessionStore

S = SessionStatus
GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)

#: Makes N heartbeats on one session and prints the wall-clock time (ns) each
#: one returned, as JSON: argv = root, session id, N.
WRITER = """
import json, sys, time
from maestro import SessionManager
manager = SessionManager(sys.argv[1])
returned = []
for _ in range(int(sys.argv[3])):
    session = manager.heartbeat(sys.argv[2])
    returned.append((session.revision, time.time_ns()))
print(json.dumps(returned))
"""

#: Follows the feed of an idle store for argv[2] seconds; prints its CPU seconds.
IDLE_WATCHER = """
import json, resource, sys
from maestro import SessionManager

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)  # microseconds, unlike os.times()
    return usage.ru_utime + usage.ru_stime

manager = SessionManager(sys.argv[1])
cursor = manager.changes_cursor()
before = cpu()
seen = list(manager.changes(cursor, follow=True, timeout=float(sys.argv[2])))
print(json.dumps({"cpu_s": cpu() - before, "events": len(seen)}))
"""


def _env() -> dict[str, str]:
    source = Path(__file__).resolve().parents[1] / "src"
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{source}{os.pathsep}{path}" if path else str(source)}


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latency(root: Path, writes: int) -> dict[str, Any]:
    manager = SessionManager(root / "latency")
    sid = manager.create_session("watched", git_context=GIT).session_id
    cursor = manager.changes_cursor()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(manager.repo_root), sid, str(writes)],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    arrived: dict[int, int] = {}
    for event in manager.changes(cursor, follow=True, timeout=max(60.0, writes * 0.1)):
        if event.session_id == sid and event.revision is not None:
            arrived[event.revision] = time.time_ns()
        if len(arrived) == writes:
            break
    out, _ = writer.communicate(timeout=120)
    returned = {revision: at for revision, at in json.loads(out)}
    delays_ms = [(arrived[r] - returned[r]) / 1e6 for r in returned if r in arrived]
    return {
        "writes": writes,
        "events_seen": len(arrived),
        "p50_ms": round(statistics.median(delays_ms), 2),
        "p99_ms": round(_percentile(delays_ms, 0.99), 2),
        "max_ms": round(max(delays_ms), 2),
        "target_p99_ms": 100,
        "met": _percentile(delays_ms, 0.99) <= 100 and len(arrived) == writes,
    }


class _Driver:
    """One store and the sessions the timed writes go to."""

    def __init__(self, root: Path, name: str, **options: Any) -> None:
        base = root / name
        store = FileSessionStore(base / ".flow" / "maestro" / "sessions", base=base, **options)
        self.manager = SessionManager(base, store=store)
        self.sid = self._fresh()
        self.calls = 0

    def _fresh(self) -> str:
        sid = self.manager.create_session("timed", git_context=GIT).session_id
        for state in (S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING):
            self.manager.transition_state(sid, state)
        return sid

    def prepare(self, operation: str) -> None:
        # A record growing without end would time a larger write each call,
        # so a transition loop moves to a fresh session now and then, untimed.
        if operation == "transition_state" and self.calls % TRANSITIONS_PER_SESSION == 0:
            self.sid = self._fresh()

    def run(self, operation: str) -> None:
        manager, sid = self.manager, self.sid
        self.calls += 1
        if operation == "create_session":
            manager.create_session("timed", git_context=GIT)
        elif operation == "update_session":
            manager.update_session(sid, {"statistics": {"total_tasks": self.calls}})
        elif operation == "transition_state":
            target = S.VALIDATING if self.calls % 2 else S.IMPLEMENTING
            manager.transition_state(sid, target)
        else:
            manager.increment_statistics(sid, completed_tasks=1)


TRANSITIONS_PER_SESSION = 20
OPERATIONS = ("create_session", "update_session", "transition_state", "increment_statistics")


def overhead(root: Path, calls: int) -> dict[str, Any]:
    """Each write operation on three stores, call by call in turn, in one run."""
    stores = {
        "feed": _Driver(root, "feed"),
        "index, no feed": _Driver(root, "nofeed", feed_retention=0),
        "no index": _Driver(root, "noindex", index=False),
    }
    results: dict[str, Any] = {"calls": calls, "operations": {}}
    for operation in OPERATIONS:
        timings: dict[str, list[int]] = {name: [] for name in stores}
        for call in range(calls + 20):  # the first 20: warm-up, untimed
            # Alternate the order so that no store always goes first.
            names = list(stores) if call % 2 == 0 else list(reversed(stores))
            for name in names:
                driver = stores[name]
                driver.prepare(operation)
                start = time.perf_counter_ns()
                driver.run(operation)
                if call >= 20:
                    timings[name].append(time.perf_counter_ns() - start)
        medians = {name: statistics.median(values) / 1000 for name, values in timings.items()}
        results["operations"][operation] = {
            "median_us": {name: round(value, 1) for name, value in medians.items()},
            "feed_vs_index_only": round(medians["feed"] / medians["index, no feed"], 3),
            "feed_vs_no_index": round(medians["feed"] / medians["no index"], 3),
        }
    return results


def idle_cpu(root: Path, seconds: float) -> dict[str, Any]:
    manager = SessionManager(root / "idle")
    manager.create_session("idle", git_context=GIT)
    done = subprocess.run(
        [sys.executable, "-c", IDLE_WATCHER, str(manager.repo_root), str(seconds)],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
        timeout=seconds + 60,
    )
    measured = json.loads(done.stdout)
    share = measured["cpu_s"] / seconds * 100
    return {
        "seconds": seconds,
        "cpu_seconds": round(measured["cpu_s"], 4),
        "core_percent": round(share, 3),
        "target_percent": 1,
        "met": share < 1,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000, help="writes timed for latency")
    parser.add_argument("--overhead", type=int, default=200, help="calls per operation and store")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds the idle watcher runs")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="where the scratch goes")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="maestro-bench-feed-", dir=args.root))
    try:
        results = {
            "latency": latency(scratch, args.writes),
            "overhead": overhead(scratch, args.overhead),
            "idle": idle_cpu(scratch, args.idle),
        }
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    lat, over, idle = results["latency"], results["overhead"], results["idle"]
    print(f"scratch on {scratch.parent}")
    print(
        f"commit-to-watcher latency over {lat['writes']} writes from another process:"
        f" p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms"
        f" ({lat['events_seen']} events seen)"
        f"  [target p99 <= 100 ms: {'met' if lat['met'] else 'MISSED'}]"
    )
    print(f"write overhead, median of {over['calls']} calls per store, interleaved:")
    print(f"  {'operation':<22}{'feed':>10}{'index only':>12}{'no index':>10}  feed/index-only")
    for operation, figures in over["operations"].items():
        medians = figures["median_us"]
        print(
            f"  {operation:<22}{medians['feed']:>8.0f}us{medians['index, no feed']:>10.0f}us"
            f"{medians['no index']:>8.0f}us  {figures['feed_vs_index_only']:.3f}x"
        )
    print(
        f"idle watcher: {idle['cpu_seconds']} CPU s in {idle['seconds']} s"
        f" = {idle['core_percent']} % of a core"
        f"  [target < 1 %: {'met' if idle['met'] else 'MISSED'}]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
