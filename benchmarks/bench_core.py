"""Latency of the core ``SessionManager`` operations, measured against the durable-write floor.

Every write of the file store is an atomic, durable replace of one small JSON
file: temp file, fsync, rename, fsync of the directory.  That cost, the
*floor*, is set by the filesystem and the disk rather than by maestro, and it
differs by orders of magnitude between machines, so the absolute time of a
write says little on its own.  This script therefore times each operation
together with a bare durable write of the same bytes, interleaved call by
call so that background noise hits both alike, and reports every operation
as a multiple of the floor measured next to it.

Run from a checkout with the package installed::

    python benchmarks/bench_core.py [--repeat N] [--warmup N] [--runs N] [--root DIR] [--json]

The store lives in a fresh temporary directory under ``--root`` (default: the
current directory, so the floor is that of the filesystem you work on; the
system temp directory is often a tmpfs, where fsync costs nothing).  With
``--runs N`` the whole measurement is made N times, each in a fresh store,
and the write targets are judged on the median of the runs' ratios.  It is
removed at the end unless ``--keep`` is given.  The targets printed at the
end are informational: the exit status is 0 whether they are met or not.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maestro
from maestro import SessionManager, SessionStatus
from maestro.gitctx import capture_git_context

S = SessionStatus

#: The walk from a new session into the implementing <-> validating loop,
#: which the lifecycle lets a session go round as often as it likes.
TO_IMPLEMENTING = (S.PLANNING, S.GENERATING_TASKS, S.IMPLEMENTING)
LOOP = (S.VALIDATING, S.IMPLEMENTING)

#: Transitions applied to one session before the benchmark moves on to a fresh
#: one.  Every transition appends to ``history`` and reading a record costs
#: time per history entry, so driving a single session through hundreds of
#: transitions would time an ever-growing record; a real run makes a few dozen.
TRANSITIONS_PER_SESSION = 20

#: History lengths of the extra ``get_session`` measurements, which show how a
#: read grows with the record: the plain one reads a new session's record,
#: with no history at all.
HISTORY_LENGTHS = (20, 200)

#: The statuses of the query store's sessions: session ``k`` walks the first
#: ``k % 7`` steps of this path, so the store holds every working state.
QUERY_PATH = (
    S.PLANNING,
    S.GENERATING_TASKS,
    S.IMPLEMENTING,
    S.VALIDATING,
    S.GENERATING_REPORT,
    S.COMPLETED,
)
QUERY_STATUS = S.IMPLEMENTING
QUERY_LIMIT = 10

# The targets.  Writes are judged relative to the floor measured in the same
# run, because the floor is what the hardware allows; a read involves no
# fsync, so its target is absolute.
CREATE_FLOOR_FACTOR = 2.0  # a create writes the record and makes a directory durable too
WRITE_FLOOR_FACTOR = 1.5
GET_LIMIT_US = 100.0

# Names under which the operations appear in the table and the JSON output.
GIT = "capture_git_context"
CREATE = "create_session"
GET = "get_session"
GET_AFTER_FSYNC = "get_session, right after an fsync"
UPDATE = "update_session"
TRANSITION = "transition_state"
INCREMENT = "increment_statistics"
QUERY = f"query_sessions(status, limit={QUERY_LIMIT})"


# ---------------------------------------------------------------- statistics


def median_us(samples: Sequence[int]) -> float:
    return statistics.median(samples) / 1000


def percentile_us(samples: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile: the smallest sample with ``fraction`` of all at or below it.

    Always an observed value, never an interpolation between two calls.
    """
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1] / 1000


@dataclass
class Measurement:
    """The samples of one operation and of the floor writes measured alongside it."""

    name: str
    op_ns: list[int]
    floor_ns: list[int]
    record_bytes: int

    @property
    def median_us(self) -> float:
        return median_us(self.op_ns)

    @property
    def p90_us(self) -> float:
        return percentile_us(self.op_ns, 0.9)

    @property
    def floor_median_us(self) -> float:
        return median_us(self.floor_ns)

    @property
    def ratio(self) -> float:
        return self.median_us / self.floor_median_us

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.name,
            "median_us": round(self.median_us, 1),
            "p90_us": round(self.p90_us, 1),
            "floor_median_us": round(self.floor_median_us, 1),
            "ratio_to_floor": round(self.ratio, 3),
            "record_bytes": self.record_bytes,
            "samples": len(self.op_ns),
        }


@dataclass
class Target:
    """One informational goal: ``measured_us <= limit_us``, with how the limit was formed."""

    name: str
    measured_us: float
    limit_us: float
    formula: str | None = None  # how ``limit_us`` follows from the measurements, if it does
    unit: str = "us"  # "x": a ratio to the floor, not a time

    @property
    def met(self) -> bool:
        return self.measured_us <= self.limit_us

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "measured_us": round(self.measured_us, 1),
            "limit_us": round(self.limit_us, 1),
            "limit": self.formula or f"{self.limit_us:g}",
            "unit": self.unit,
            "pass": self.met,
        }


# ---------------------------------------------------------------- the floor


class DurableWriteFloor:
    """The least a durable, atomic replace of one file can cost on this filesystem.

    The same steps as the store's write and nothing else: a temp file in the
    target's directory (a rename is only atomic within one filesystem), write,
    flush, fsync of the file (the data must be on disk before a name points
    at it), rename over the target, fsync of the directory (so the rename
    itself survives a power loss).
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.target = directory / "metadata.json"
        self.payload = b"{}\n"

    def write(self) -> None:
        fd, temp = tempfile.mkstemp(prefix=".metadata.json.", suffix=".tmp", dir=self.directory)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.target)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ---------------------------------------------------------------- timing


def _timed(call: Callable[[], object]) -> int:
    start = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - start


def measure(
    name: str,
    operation: Callable[[int], object],
    floor: DurableWriteFloor,
    *,
    repeat: int,
    warmup: int,
    interleave: bool = True,
) -> Measurement:
    """Time ``repeat`` calls of ``operation`` and as many floor writes.

    ``operation`` gets a running call number (warm-up calls included) so it
    can vary its input: the next counter value, the next session of a pool.

    Interleaved, each call is paired with a floor write, so both see the same
    background noise.  Otherwise the calls run back to back and the floor is
    written in two blocks, right before and right after them.
    """
    # Warm-up: lazily built state (the compiled schema validator, imports),
    # the page and dentry caches and the CPU caches settle in the first calls.
    for number in range(warmup):
        operation(number)
        floor.write()
    # Start every group without the previous group's garbage, so a collection
    # it triggered does not land in this one.  The collector stays enabled:
    # its pauses are part of what a caller sees.
    gc.collect()
    calls = [functools.partial(operation, warmup + i) for i in range(repeat)]
    if not interleave:
        half = repeat // 2
        floor_ns = [_timed(floor.write) for _ in range(half)]
        op_ns = [_timed(call) for call in calls]
        floor_ns += [_timed(floor.write) for _ in range(repeat - half)]
        return Measurement(name, op_ns, floor_ns, len(floor.payload))
    op_ns = []
    floor_ns = []
    for i, call in enumerate(calls):
        # Alternate the order, so neither side always runs right after the
        # other's I/O (a journal commit or writeback the last fsync started).
        if i % 2 == 0:
            op_ns.append(_timed(call))
            floor_ns.append(_timed(floor.write))
        else:
            floor_ns.append(_timed(floor.write))
            op_ns.append(_timed(call))
    return Measurement(name, op_ns, floor_ns, len(floor.payload))


# ---------------------------------------------------------------- the benchmark


def make_git_repository(path: Path) -> None:
    """Make ``path`` a repository with one empty commit, so git capture reads a real HEAD."""
    # The identity and signing are set on the command line, and hooks skipped,
    # so that no user configuration can make the commit fail or prompt.
    git = [
        "git",
        "-c",
        "user.name=maestro benchmark",
        "-c",
        "user.email=benchmark@example.invalid",
        "-c",
        "commit.gpgsign=false",
    ]
    commit = ["commit", "-q", "--allow-empty", "--no-verify", "-m", "benchmark root"]
    try:
        subprocess.run([*git, "init", "-q", str(path)], check=True, capture_output=True)
        subprocess.run([*git, "-C", str(path), *commit], check=True, capture_output=True)
    except FileNotFoundError:
        raise SystemExit("bench_core: git is not installed; it is needed for git capture") from None
    except subprocess.CalledProcessError as error:
        detail = error.stderr.decode(errors="replace").strip()
        raise SystemExit(f"bench_core: could not set up the git repository: {detail}") from None


class CoreBenchmark:
    """Every measurement, run against one store in a scratch git repository."""

    def __init__(
        self, root: Path, *, repeat: int, warmup: int, query_sessions: int, index: bool = True
    ) -> None:
        self.root = root
        self.repeat = repeat
        self.warmup = warmup
        self.query_sessions = query_sessions
        self.index = index
        self.manager = SessionManager(root, index=index)
        # Setup that is not measured (filling stores, growing a long history)
        # skips the fsyncs; the records it writes are byte for byte the same.
        self.setup = SessionManager(root, durable=False, index=index)
        self.floor = DurableWriteFloor(root / "floor")

    def _measure(
        self, name: str, operation: Callable[[int], object], *, interleave: bool = True
    ) -> Measurement:
        if sys.stderr.isatty():
            print(f"  measuring {name} ...", file=sys.stderr)
        return measure(
            name,
            operation,
            self.floor,
            repeat=self.repeat,
            warmup=self.warmup,
            interleave=interleave,
        )

    def _use_record_of(self, manager: SessionManager, session_id: str) -> None:
        """Make the floor write exactly the bytes of this session's ``metadata.json``."""
        self.floor.payload = (manager.sessions_dir / session_id / "metadata.json").read_bytes()

    def _new_session(self, label: str) -> str:
        return self.manager.create_session(f"benchmark: {label}").session_id

    def run(self) -> list[Measurement]:
        return [
            self.git_capture(),
            self.create(),
            *self.get(),
            self.update(),
            self.transition(),
            self.increment(),
            self.query(),
            *(self.get_with_history(length) for length in HISTORY_LENGTHS),
        ]

    def git_capture(self) -> Measurement:
        # Measured on its own so the create target can allow for it: capture
        # reads files of the repository, a cost unrelated to the store.
        self._use_record_of(self.manager, self._new_session("record size sample"))
        return self._measure(GIT, lambda _: capture_git_context(self.root))

    def create(self) -> Measurement:
        return self._measure(CREATE, lambda call: self.manager.create_session(f"create {call}"))

    def get(self) -> list[Measurement]:
        session_id = self._new_session("get")
        self._use_record_of(self.manager, session_id)

        def get(_: int) -> object:
            return self.manager.get_session(session_id)

        # Twice.  Back to back, the read's own cost, which the target is about.
        # Interleaved with the floor, every read follows an fsync that put the
        # thread to sleep, and pays for waking up (cold CPU caches, possibly a
        # lower clock): what a read costs in a process that mostly waits.
        return [
            self._measure(GET, get, interleave=False),
            self._measure(GET_AFTER_FSYNC, get),
        ]

    def update(self) -> Measurement:
        session_id = self._new_session("update")
        self._use_record_of(self.manager, session_id)

        def update(call: int) -> object:
            return self.manager.update_session(session_id, {"statistics": {"total_tasks": call}})

        return self._measure(UPDATE, update)

    def _drive(self, session_id: str, loops: int = 0) -> None:
        """Walk a session into implementing, then ``loops`` steps around the loop (untimed)."""
        for target in TO_IMPLEMENTING:
            self.setup.transition_state(session_id, target)
        for step in range(loops):
            self.setup.transition_state(session_id, LOOP[step % 2])

    def transition(self) -> Measurement:
        # The floor writes a record halfway through its share of transitions:
        # the typical size of the records timed.
        sample = self._new_session("transition sample")
        self._drive(sample, TRANSITIONS_PER_SESSION // 2)
        self._use_record_of(self.manager, sample)
        # A pool of sessions in the implementing <-> validating loop; call
        # ``k`` moves session ``k // TRANSITIONS_PER_SESSION`` one step.
        calls = self.warmup + self.repeat
        pool = [
            self._new_session(f"transition {n}")
            for n in range(math.ceil(calls / TRANSITIONS_PER_SESSION))
        ]
        for session_id in pool:
            self._drive(session_id)

        def transition(call: int) -> object:
            index, step = divmod(call, TRANSITIONS_PER_SESSION)
            return self.manager.transition_state(pool[index], LOOP[step % 2])

        return self._measure(TRANSITION, transition)

    def increment(self) -> Measurement:
        session_id = self._new_session("increment")
        self._use_record_of(self.manager, session_id)
        return self._measure(
            INCREMENT,
            lambda _: self.manager.increment_statistics(session_id, completed_tasks=1),
        )

    def query(self) -> Measurement:
        # A store of its own, so its size is exactly --sessions whatever the
        # other groups left behind.  It sits inside the scratch repository, so
        # capture during setup reads the same small repository as everywhere.
        query_root = self.root / "query-store"
        filler = SessionManager(query_root, durable=False, index=self.index)
        session_ids: list[str] = []
        for k in range(self.query_sessions):
            session_id = filler.create_session(f"query {k}").session_id
            for target in QUERY_PATH[: k % (len(QUERY_PATH) + 1)]:
                filler.transition_state(session_id, target)
            session_ids.append(session_id)
        reader = SessionManager(query_root, index=self.index)
        expected = min(QUERY_LIMIT, len(reader.query_sessions(status=QUERY_STATUS)))
        if len(reader.query_sessions(status=QUERY_STATUS, limit=QUERY_LIMIT)) != expected:
            raise RuntimeError("the query store does not answer as set up")
        self._use_record_of(reader, session_ids[-1])
        return self._measure(
            QUERY, lambda _: reader.query_sessions(status=QUERY_STATUS, limit=QUERY_LIMIT)
        )

    def get_with_history(self, length: int) -> Measurement:
        session_id = self._new_session(f"{length} history entries")
        self._drive(session_id, length - len(TO_IMPLEMENTING))
        self._use_record_of(self.manager, session_id)
        return self._measure(
            f"{GET}, {length}-entry history", lambda _: self.manager.get_session(session_id)
        )


def check_targets(results: dict[str, Measurement]) -> list[Target]:
    create, git = results[CREATE], results[GIT]
    update, transition = results[UPDATE], results[TRANSITION]
    create_limit = CREATE_FLOOR_FACTOR * create.floor_median_us + git.median_us
    return [
        Target(
            f"{CREATE} <= {CREATE_FLOOR_FACTOR:g} x floor + git capture",
            create.median_us,
            create_limit,
            f"{CREATE_FLOOR_FACTOR:g} x {create.floor_median_us:.1f} + {git.median_us:.1f}",
        ),
        Target(f"{GET} <= {GET_LIMIT_US:g} us", results[GET].median_us, GET_LIMIT_US),
        *(
            Target(
                f"{m.name} <= {WRITE_FLOOR_FACTOR:g} x floor",
                m.median_us,
                WRITE_FLOOR_FACTOR * m.floor_median_us,
                f"{WRITE_FLOOR_FACTOR:g} x {m.floor_median_us:.1f}",
            )
            for m in (update, transition)
        ),
    ]


# ---------------------------------------------------------------- reporting


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding ``path``, from the mount table (Linux only)."""
    try:
        mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    except OSError:
        return "unknown"
    where = os.path.realpath(path)
    best, kind = "", "unknown"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")  # the table escapes spaces
        inside = where == mount_point or where.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, kind = mount_point, fields[2]
    return kind


def environment(base: Path, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "maestro": maestro.__version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "filesystem": filesystem_type(base),
        "root": str(base),
        "repeat": args.repeat,
        "warmup": args.warmup,
        "query_store_sessions": args.sessions,
    }


def pooled_floor(measurements: Sequence[Measurement]) -> Measurement:
    """Every floor sample of the run as one row, for reference."""
    samples = [sample for m in measurements for sample in m.floor_ns]
    size = round(statistics.median(m.record_bytes for m in measurements))
    return Measurement("durable write floor (all groups)", samples, samples, size)


def print_report(
    env: dict[str, Any], measurements: Sequence[Measurement], targets: Sequence[Target]
) -> None:
    print(
        f"maestro {env['maestro']}: median and p90 of {env['repeat']} calls per operation "
        f"after {env['warmup']} warm-up calls"
    )
    print(
        f"python {env['python']} ({env['implementation']}) on {env['platform']}, "
        f"{env['cpus']} CPUs; store on {env['filesystem']}"
    )
    print()
    header = ("operation", "median us", "p90 us", "floor us", "x floor", "record B")
    width = max(len(m.name) for m in measurements) + 2
    print(f"{header[0]:<{width}}" + "".join(f"{h:>11}" for h in header[1:]))
    print("-" * (width + 11 * (len(header) - 1)))
    for m in [pooled_floor(measurements), *measurements]:
        print(
            f"{m.name:<{width}}{m.median_us:>11.1f}{m.p90_us:>11.1f}"
            f"{m.floor_median_us:>11.1f}{m.ratio:>11.2f}{m.record_bytes:>11}"
        )
    print()
    print(
        "floor us: median of bare durable writes (mkstemp, write, fsync, replace, fsync\n"
        "of the directory) of the same record bytes, one before or after each call;\n"
        f"for {GET}, whose calls run back to back, in blocks before and after them.\n"
        f"{TRANSITION} spreads its calls over sessions of at most "
        f"{TRANSITIONS_PER_SESSION + len(TO_IMPLEMENTING)} history entries."
    )
    floor_us = pooled_floor(measurements).median_us
    if floor_us < 50:
        print(
            f"note: the floor is only {floor_us:.1f} us; fsync seems to be free on this "
            "filesystem (tmpfs? disabled barriers?), so the ratios say little."
        )
    print()
    print("targets (informational; the exit status is 0 either way)")
    name_width = max(len(t.name) for t in targets) + 2
    for t in targets:
        verdict = "PASS" if t.met else "MISS"
        if t.unit == "x":
            print(f"  {t.name:<{name_width}}{verdict}  {t.measured_us:9.2f} x  vs {t.limit_us:g} x")
            continue
        limit = f"{t.formula} = {t.limit_us:.1f}" if t.formula else f"{t.limit_us:.1f}"
        print(f"  {t.name:<{name_width}}{verdict}  {t.measured_us:9.1f} us vs {limit} us")


# ---------------------------------------------------------------- command line


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the core SessionManager operations against a bare durable write.",
    )
    parser.add_argument(
        "--repeat", type=_positive, default=200, help="timed calls per operation (default 200)"
    )
    parser.add_argument(
        "--warmup", type=_non_negative, default=20, help="untimed calls first (default 20)"
    )
    parser.add_argument(
        "--sessions",
        type=_positive,
        default=200,
        help="sessions in the store the query runs over (default 200)",
    )
    parser.add_argument(
        "--root",
        default=".",
        help="directory to create the scratch store in; its filesystem is the one "
        "measured (default: the current directory)",
    )
    parser.add_argument(
        "--no-index",
        action="store_true",
        help="measure the file store alone, without the SQLite query index",
    )
    parser.add_argument(
        "--runs",
        type=_positive,
        default=1,
        help="repeat the whole measurement, each in a fresh store, and judge the write "
        "targets on the median of the runs' ratios (default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory in place")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    base = Path(args.root).resolve()
    if not base.is_dir():
        raise SystemExit(f"bench_core: --root {args.root}: not a directory")
    # With either variable set, git capture runs a git process instead of
    # reading .git, and git itself would look at another repository: measure
    # the ordinary case.
    for variable in ("GIT_DIR", "GIT_WORK_TREE"):
        os.environ.pop(variable, None)
    runs: list[list[Measurement]] = []
    for _ in range(args.runs):
        root = Path(tempfile.mkdtemp(prefix="maestro-bench-", dir=base))
        try:
            make_git_repository(root)
            bench = CoreBenchmark(
                root,
                repeat=args.repeat,
                warmup=args.warmup,
                query_sessions=args.sessions,
                index=not args.no_index,
            )
            runs.append(bench.run())
        finally:
            if args.keep:
                print(f"scratch directory kept: {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)
    measurements = runs[-1]
    env = environment(base, args)
    targets = check_targets({m.name: m for m in measurements})
    if len(runs) > 1:
        targets = [*targets[:2], *median_targets(runs)]
    if args.json:
        report = {
            "environment": env,
            "floor": pooled_floor(measurements).to_dict(),
            "operations": [m.to_dict() for m in measurements],
            "runs": [{m.name: m.ratio for m in run} for run in runs],
            "targets": [t.to_dict() for t in targets],
        }
        print(json.dumps(report, indent=2))
    else:
        if len(runs) > 1:
            print_runs(runs)
        print_report(env, measurements, targets)
    return 0


def median_targets(runs: Sequence[Sequence[Measurement]]) -> list[Target]:
    """The write targets judged on the median of the runs' ratios to their floors."""
    targets = []
    for name in (UPDATE, TRANSITION):
        ratios = [next(m.ratio for m in run if m.name == name) for run in runs]
        targets.append(
            Target(
                f"{name} <= {WRITE_FLOOR_FACTOR:g} x floor (median of {len(runs)} runs)",
                statistics.median(ratios),
                WRITE_FLOOR_FACTOR,
                unit="x",
            )
        )
    return targets


def print_runs(runs: Sequence[Sequence[Measurement]]) -> None:
    """Each run's ratio to its floor, per operation, and their median."""
    names = [m.name for m in runs[0]]
    width = max(len(name) for name in names) + 2
    print(f"ratios to the floor in each of {len(runs)} runs (last run in full below)")
    print(
        f"{'operation':<{width}}"
        + "".join(f"{f'run {i + 1}':>8}" for i in range(len(runs)))
        + "  median"
    )
    for name in names:
        ratios = [next(m.ratio for m in run if m.name == name) for run in runs]
        cells = "".join(f"{r:>8.2f}" for r in ratios)
        print(f"{name:<{width}}{cells}{statistics.median(ratios):>8.2f}")
    print()


if __name__ == "__main__":
    sys.exit(main())
