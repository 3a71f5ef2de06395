"""What ``manager.phase()`` costs on top of the store's own writes, and its heartbeat traffic.

Measured in one run, on one file store, interleaved round by round so that
background noise hits every variant alike:

* **a phase round trip**: ``with manager.phase(id, IMPLEMENTING,
  next=VALIDATING): pass`` against the bare writes it stands for,
  ``transition_state(id, IMPLEMENTING)`` then ``transition_state(id,
  VALIDATING)`` (two store writes either way; the phase also reads the
  session before each, derives request ids, starts and joins its heartbeat
  thread and sets and restores the SIGTERM handler);
* **a progress report**: ``p.progress(completed_tasks=n)`` against a bare
  ``update_session(id, {"statistics": {"completed_tasks": n}})``;
* **a heartbeat**: ``manager.heartbeat(id)`` against the same bare update.

Each is printed as median and p90 and as a ratio of the medians to the bare
write measured in the same run.  Heartbeat traffic is then counted, not
timed: a phase is run with a short ``--beat`` interval for ``--beat-for``
seconds and the heartbeat events it left in the change feed are counted
against the interval; the default interval (a quarter of the session's
``timeout_minutes``) gives the writes per hour of a real run.

    python benchmarks/bench_phase.py [--rounds N] [--root DIR] [--no-durable] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maestro import ChangeKind, GitContext, SessionManager, SessionStatus
from maestro.phases import HEARTBEAT_FRACTION

S = SessionStatus
GIT = GitContext(branch="main", commit="0" * 40, repo_root="/repo", is_worktree=False)
#: A session's record grows by two history entries a round; start afresh now and then.
ROUNDS_PER_SESSION = 10


def _fresh(manager: SessionManager, key: str) -> str:
    sid = manager.create_session("timed", git_context=GIT, request_id=key).session_id
    for state in (S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING, S.VALIDATING):
        manager.transition_state(sid, state)
    return sid


def _timed(call: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    start = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - start


def _summary(samples: list[float], floor: float | None) -> dict[str, Any]:
    ordered = sorted(samples)
    median = statistics.median(ordered)
    result: dict[str, Any] = {
        "median_us": round(median * 1e6, 1),
        "p90_us": round(ordered[int(0.9 * (len(ordered) - 1))] * 1e6, 1),
    }
    if floor is not None:
        result["ratio"] = round(median / floor, 2)
    return result


def measure(root: Path, rounds: int, durable: bool) -> dict[str, dict[str, Any]]:
    manager = SessionManager(root, durable=durable)
    samples: dict[str, list[float]] = {
        "bare transitions (2 writes)": [],
        "phase round trip (2 writes)": [],
        "bare update_session": [],
        "p.progress": [],
        "heartbeat": [],
    }
    bare = phased = ""
    for number in range(rounds):
        if number % ROUNDS_PER_SESSION == 0:
            bare = _fresh(manager, f"bench-bare-{number}")
            phased = _fresh(manager, f"bench-phase-{number}")

        def transitions(sid: str = bare) -> None:
            manager.transition_state(sid, S.IMPLEMENTING)
            manager.transition_state(sid, S.VALIDATING)

        def phase(sid: str = phased) -> None:
            with manager.phase(sid, S.IMPLEMENTING, next=S.VALIDATING):
                pass

        samples["bare transitions (2 writes)"].append(_timed(transitions))
        samples["phase round trip (2 writes)"].append(_timed(phase))

        counts = {"completed_tasks": number + 1, "total_tasks": rounds + 1}
        samples["bare update_session"].append(
            _timed(manager.update_session, bare, {"statistics": counts})
        )
        with manager.phase(phased, S.VALIDATING, heartbeat_every=3600) as p:
            samples["p.progress"].append(_timed(p.progress, **counts))
        samples["heartbeat"].append(_timed(manager.heartbeat, bare))

    bare_pair = statistics.median(samples["bare transitions (2 writes)"])
    bare_write = statistics.median(samples["bare update_session"])
    return {
        "bare transitions (2 writes)": _summary(samples["bare transitions (2 writes)"], bare_pair),
        "phase round trip (2 writes)": _summary(samples["phase round trip (2 writes)"], bare_pair),
        "bare update_session": _summary(samples["bare update_session"], bare_write),
        "p.progress": _summary(samples["p.progress"], bare_write),
        "heartbeat": _summary(samples["heartbeat"], bare_write),
    }


def heartbeat_traffic(root: Path, every: float, seconds: float) -> dict[str, Any]:
    manager = SessionManager(root / "beats")
    sid = _fresh(manager, "bench-beats")
    cursor = manager.changes_cursor()
    with manager.phase(sid, S.VALIDATING, heartbeat_every=every) as p:
        time.sleep(seconds)
    events = list(manager.changes(cursor, session_id=sid, kind=ChangeKind.HEARTBEAT))
    default_every_s = 120 * 60 * HEARTBEAT_FRACTION
    return {
        "interval_s": every,
        "phase_s": seconds,
        "heartbeats": len(events),
        "expected_at_most": int(seconds / every),
        "counted_by_phase": p.heartbeats,
        "default_interval_s (timeout 120 min)": default_every_s,
        "default_writes_per_hour": round(3600 / default_every_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="timed rounds (default 200)")
    parser.add_argument("--root", type=Path, help="where the scratch store goes (default: cwd)")
    parser.add_argument("--no-durable", action="store_true", help="no fsync (durable=False)")
    parser.add_argument("--beat", type=float, default=0.05, help="heartbeat interval, seconds")
    parser.add_argument("--beat-for", type=float, default=1.0, help="seconds the phase runs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-phase-", dir=args.root or Path.cwd()))
    try:
        results = {
            "durable": not args.no_durable,
            "rounds": args.rounds,
            "timings": measure(scratch, args.rounds, not args.no_durable),
            "heartbeat_traffic": heartbeat_traffic(scratch, args.beat, args.beat_for),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.rounds} rounds, durable={not args.no_durable}")
    print(f"{'operation':<30}{'median':>12}{'p90':>12}{'ratio':>8}")
    for name, row in results["timings"].items():
        print(f"{name:<30}{row['median_us']:>10.0f}µs{row['p90_us']:>10.0f}µs{row['ratio']:>7.2f}x")
    beats = results["heartbeat_traffic"]
    print(
        f"heartbeats: {beats['heartbeats']} in a {beats['phase_s']:g} s phase beating every "
        f"{beats['interval_s']:g} s (at most {beats['expected_at_most']} expected); by default "
        f"(timeout 120 min) one every {beats['default_interval_s (timeout 120 min)']:.0f} s, "
        f"{beats['default_writes_per_hour']:g} writes an hour"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
