"""Where a user waits: a large result, the first open of a store, a command's start.

One command prints every ratio beside the baseline it is measured against,
both taken in the same run on the same machine:

1. ``list_active_sessions()`` on ``--sessions`` sessions (three quarters of
   them active), written in the original prototype's format, against the
   prototype's full scan (read, parse and filter every ``metadata.json``).
   Target: at least 10x the scan.  Two rows without a target say what the
   same query costs before any session is built: its rows from the index
   alone, and those rows each vouched for by one ``stat`` of its file, as
   the listing does (the most any listing that checks every file can reach).
2. The first query on that store while it has no index yet, in a fresh
   process, against the floor: reading every record and parsing it with the
   standard library's ``json`` (after an untimed pass, so both run warm).
   Target: at most 2.5x the floor, peak memory at most 150 MB.
3. The start of a command against a bare ``python -c pass``:
   ``from maestro import SessionManager`` (target 3.5x), ``maestro --json
   show ID`` (4.5x), ``maestro list`` into a pipe (5x) and on a terminal (8x),
   on a store of 20 sessions, interleaved run by run, medians.  Three rows
   without a target say what the libraries alone cost in the same run:
   importing Click and orjson (what a command run through Click loads
   before any of maestro's code; ``show`` and ``list`` run without both),
   those with Rich's console and table, and Rich's console and table alone
   (what a terminal's table cannot start without).

Run from a checkout with the package installed::

    python benchmarks/bench_waits.py                     # 100,000 sessions
    python benchmarks/bench_waits.py --sessions 20000 --starts 20
    python benchmarks/bench_waits.py --only start

The scratch directory is made under ``--root`` (default: the current
directory) and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_index import generate, naive_scan
from maestro import GitContext, SessionManager, SessionStatus
from maestro.stores.index import RACY_NS

S = SessionStatus
ACTIVE = {s.value for s in S if s not in (S.COMPLETED, S.FAILED)}
TARGETS = {
    "list_active_sessions()": ("x the scan", 10.0, "min"),
    "first query, no index yet": ("x the floor", 2.5, "max"),
    "from maestro import SessionManager": ("x python", 3.5, "max"),
    "maestro --json show ID": ("x python", 4.5, "max"),
    "maestro list, piped": ("x python", 5.0, "max"),
    "maestro list, on a terminal": ("x python", 8.0, "max"),
}
#: Rows measured beside the targets, for reference: the libraries' own import.
LIBRARIES = "import click, orjson"
LIBRARIES_RICH = "import click, orjson, rich.console, rich.table"
RICH_ALONE = "import rich.console, rich.table"


def _env() -> dict[str, str]:
    """The environment of the timed processes: bytecode cached, as installed."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("MAESTRO_FORCE_TTY", None)
    env["NO_COLOR"] = "1"
    return env


def median_s(action: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


# ---------------------------------------------------------------- 1. a large result


def large_result(root: Path, repeat: int) -> list[dict[str, Any]]:
    sessions_dir = root / ".flow" / "maestro" / "sessions"
    manager = SessionManager(root)
    manager.query_sessions(limit=1)  # the index is built and the connection warm

    def keep(session: Any) -> bool:
        return session.status.value in ACTIVE

    mine = manager.list_active_sessions()
    theirs = naive_scan(sessions_dir, keep)
    assert [s.session_id for s in mine] == [s.session_id for s in theirs]
    assert mine == theirs  # the same sessions, field for field
    streamed = sum(1 for _ in manager.iter_sessions(status=sorted(ACTIVE)))
    assert streamed == len(mine)
    scan_s = median_s(lambda: naive_scan(sessions_dir, keep), max(1, repeat // 2))
    index_s = median_s(manager.list_active_sessions, repeat)
    iter_s = median_s(lambda: sum(1 for _ in manager.iter_sessions(status=sorted(ACTIVE))), repeat)
    rows_s = median_s(lambda: _rows(manager, sessions_dir, stat=False), repeat)
    checked_s = median_s(lambda: _rows(manager, sessions_dir, stat=True), repeat)
    assert _rows(manager, sessions_dir, stat=True) == len(mine)
    listing = {
        "name": "list_active_sessions()",
        "results": len(mine),
        "value_s": index_s,
        "baseline_s": scan_s,
        "ratio": scan_s / index_s,
        "per_session_us": index_s / len(mine) * 1e6,
        "iter_sessions_s": iter_s,
    }
    return [listing] + [
        {
            "name": name,
            "value_s": value,
            "baseline_s": scan_s,
            "ratio": scan_s / value,
            "unit": "x the scan",
            "us_each": value / len(mine) * 1e6,
        }
        for name, value in (
            ("its rows alone, nothing built", rows_s),
            ("its rows, a stat each, nothing built", checked_s),
        )
    ]


def _rows(manager: SessionManager, sessions_dir: Path, *, stat: bool) -> int:
    """The active sessions' rows as the listing reads them, optionally each
    checked against its file as the listing checks it; how many are current."""
    from maestro.stores.query import SessionQuery

    index = manager.store.index  # type: ignore[attr-defined]
    query = SessionQuery.build(status=sorted(ACTIVE))
    rows = index.select_plain(query, query.text)
    if not stat:
        return sum(1 for _ in rows)
    current = 0
    tail = "/metadata.json"
    root_fd = os.open(sessions_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for sid, ino, size, mtime_ns, racy, _record, _text in rows:
            info = os.stat(sid + tail, dir_fd=root_fd, follow_symlinks=False)
            if (
                info.st_mtime_ns == mtime_ns
                and info.st_ino == ino
                and info.st_size == size
                and not racy
            ):
                current += 1
    finally:
        os.close(root_fd)
    return current


# ---------------------------------------------------------------- 2. the first open

FLOOR_SCRIPT = """
import json, os, sys, time
base = sys.argv[1]
def run():
    count = 0
    for name in os.listdir(base):
        try:
            with open(os.path.join(base, name, "metadata.json"), "rb") as handle:
                json.loads(handle.read())
        except (FileNotFoundError, NotADirectoryError):
            continue
        count += 1
    return count
run()
started = time.perf_counter()
count = run()
print(count, time.perf_counter() - started)
"""

FIRST_OPEN_SCRIPT = """
import resource, sys, time
from maestro import SessionManager
started = time.perf_counter()
manager = SessionManager(sys.argv[1])
found = manager.query_sessions(limit=1)
elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
readers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(manager.count_sessions(), elapsed, peak, readers)
"""


def _drop_index(root: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{root}/.flow/maestro/index.sqlite3{suffix}").unlink(missing_ok=True)


def first_open(root: Path, repeat: int) -> dict[str, Any]:
    sessions_dir = root / ".flow" / "maestro" / "sessions"
    floors, opens, peaks, reader_peaks = [], [], [], []
    count = 0
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", FLOOR_SCRIPT, str(sessions_dir)],
            capture_output=True,
            text=True,
            check=True,
            env=_env(),
        )
        count, seconds = done.stdout.split()
        floors.append(float(seconds))
        _drop_index(root)
        done = subprocess.run(
            [sys.executable, "-c", FIRST_OPEN_SCRIPT, str(root)],
            capture_output=True,
            text=True,
            check=True,
            env=_env(),
        )
        indexed, seconds, peak_kb, readers_kb = done.stdout.split()
        assert int(indexed) == int(count), (indexed, count)
        opens.append(float(seconds))
        peaks.append(int(peak_kb) / 1024)
        reader_peaks.append(int(readers_kb) / 1024)
    floor, value = statistics.median(floors), statistics.median(opens)
    return {
        "name": "first query, no index yet",
        "results": int(count),
        "value_s": value,
        "baseline_s": floor,
        "ratio": value / floor,
        "peak_mb": max(peaks),
        "reader_peak_mb": max(reader_peaks),
    }


# ---------------------------------------------------------------- 3. the start


def _on_a_terminal(command: list[str], env: dict[str, str]) -> None:
    """Run ``command`` with a pseudo-terminal as stdout and stderr, draining it."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env
        )
        os.close(follower)
        follower = -1

        def drain() -> None:
            try:
                while os.read(leader, 65536):
                    pass
            except OSError:
                pass  # EIO: the terminal's last writer closed it

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        # The drain ends when the command closes the terminal, as it exits.
        # Waiting for that first, not for the process: Popen.wait with a
        # timeout polls, at intervals doubling up to 50 ms, which would round
        # the time taken up to the next poll.
        reader.join(timeout=60)
        if process.wait(timeout=60) != 0:
            raise RuntimeError(f"{command} failed on a terminal")
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)


def start_up(scratch: Path, rounds: int) -> list[dict[str, Any]]:
    root = scratch / "small"
    root.mkdir()
    manager = SessionManager(root)
    git = GitContext("main", "0" * 40, str(root))
    ids = [manager.create_session(f"start-up benchmark {n}", git_context=git) for n in range(20)]
    manager.query_sessions(limit=1)
    time.sleep(RACY_NS / 1e9)  # rows old enough to be trusted, as a store's usually are
    manager.query_sessions(limit=1)
    shown = ids[7].session_id
    maestro = shutil.which("maestro", path=str(Path(sys.executable).parent)) or "maestro"
    env = _env()
    env["MAESTRO_ROOT"] = str(root)
    python = [sys.executable]
    runs: dict[str, Callable[[], None]] = {}

    def piped(command: list[str]) -> Callable[[], None]:
        def run() -> None:
            subprocess.run(command, capture_output=True, env=env, check=True)

        return run

    runs["python -c pass"] = piped([*python, "-c", "pass"])
    runs["from maestro import SessionManager"] = piped(
        [*python, "-c", "from maestro import SessionManager"]
    )
    runs["maestro --json show ID"] = piped([maestro, "--json", "show", shown])
    runs["maestro list, piped"] = piped([maestro, "list"])
    runs["maestro list, on a terminal"] = lambda: _on_a_terminal([maestro, "list"], env)
    runs[LIBRARIES] = piped([*python, "-c", LIBRARIES])
    runs[LIBRARIES_RICH] = piped([*python, "-c", LIBRARIES_RICH])
    runs[RICH_ALONE] = piped([*python, "-c", RICH_ALONE])
    for run in runs.values():  # untimed: bytecode written, files cached
        run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    base = statistics.median(samples["python -c pass"])
    rows = []
    for name, taken in samples.items():
        if name == "python -c pass":
            continue
        value = statistics.median(taken)
        rows.append({"name": name, "value_s": value, "baseline_s": base, "ratio": value / base})
    return rows


# ---------------------------------------------------------------- report


def verdict(row: dict[str, Any]) -> str:
    if row["name"] not in TARGETS:
        unit = row.get("unit", "x python")
        return f"{row['ratio']:6.2f}{unit:<12} (reference, no target)"
    unit, target, kind = TARGETS[row["name"]]
    met = row["ratio"] >= target if kind == "min" else row["ratio"] <= target
    bound = ">=" if kind == "min" else "<="
    return f"{row['ratio']:6.2f}{unit:<12} target {bound} {target:g}  {'met' if met else 'MISSED'}"


def print_rows(title: str, baseline: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    for row in rows:
        extra = ""
        if "us_each" in row:
            extra = f"  ({row['us_each']:.1f} us a session)"
        if "per_session_us" in row:
            extra = (
                f"  ({row['results']:,} sessions, {row['per_session_us']:.1f} us each;"
                f" iter_sessions {row['iter_sessions_s'] * 1e3:.0f} ms)"
            )
        if "peak_mb" in row:
            extra = (
                f"  (peak RSS {row['peak_mb']:.0f} MB, target <= 150;"
                f" each reader process {row['reader_peak_mb']:.0f} MB)"
            )
        name = f"  {row['name']}" if "us_each" in row else row["name"]
        print(
            f"{name:<46} {row['value_s'] * 1e3:9.1f} ms   {baseline} "
            f"{row['baseline_s'] * 1e3:9.1f} ms   {verdict(row)}{extra}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of the large result")
    parser.add_argument("--opens", type=int, default=3, help="timed first opens (and floors)")
    parser.add_argument("--starts", type=int, default=30, help="timed start-ups per command")
    parser.add_argument("--only", choices=["result", "open", "start"], action="append")
    parser.add_argument("--root", type=Path, default=Path.cwd())
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    parts = set(args.only or ["result", "open", "start"])
    scratch = Path(tempfile.mkdtemp(prefix="maestro-bench-waits-", dir=args.root))
    results: dict[str, Any] = {"sessions": args.sessions}
    try:
        if parts & {"result", "open"}:
            big = scratch / "big"
            generate(big / ".flow" / "maestro" / "sessions", args.sessions)
            time.sleep(RACY_NS / 1e9)  # files as old as a store's usually are
            if "open" in parts:
                results["open"] = [first_open(big, args.opens)]
                if not args.json:
                    print_rows(
                        f"first open of {args.sessions:,} sessions without an index",
                        "json floor",
                        results["open"],
                    )
            if "result" in parts:
                results["result"] = large_result(big, args.repeat)
                if not args.json:
                    print_rows(
                        f"a large result of {args.sessions:,} sessions", "scan", results["result"]
                    )
        if "start" in parts:
            results["start"] = start_up(scratch, args.starts)
            if not args.json:
                print_rows("a command's start (20 sessions)", "python -c pass", results["start"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
