"""Child processes for the stress tests, and the parent's handle on them.

Each worker is a separate interpreter started as::

    python -m tests.stress.workers increment --root R --session S --count 100 --gate G
    python -m tests.stress.workers fields    --root R --session S --field F --count 100 --gate G
    python -m tests.stress.workers serve     --root R --gate G
    python -m tests.stress.workers churn     --root R --session S --base 4

from the repository root (``increment`` and ``serve`` take ``--store URL``
in place of ``--root``, any store URL that names a multi-process store).
Workers talk over their standard streams, one line
per event: ``ready`` once set up, JSON results, ``ack`` lines.  Anything
unexpected raises, so the traceback lands in the worker's stderr file and its
exit status is not 0.  ``--lifetime`` arms an alarm that ends a worker the
parent lost track of, so no child outlives the suite.

The *gate* is a start barrier shared by processes: the parent holds an
exclusive ``flock`` on a file, workers block taking a shared one, and
releasing the exclusive lock wakes every waiting worker at once.

The parent side (:class:`Worker`, :class:`Gate`, :func:`run_round`) lives here
as well, so both test modules drive children the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from maestro import (
    ConflictError,
    InvalidTransitionError,
    Session,
    SessionError,
    SessionManager,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Safety nets, never expectations: how long the parent waits for one line,
#: and how long a worker may live at most.
STEP_TIMEOUT = 120.0
LIFETIME = 1800


# ================================================================ the children


def _arm_lifetime(seconds: int) -> None:
    """Die (SIGALRM's default action) if still running after ``seconds``."""
    signal.alarm(max(1, seconds))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def pass_gate(path: str) -> None:
    """Block until the parent opens the gate (see the module docstring)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- increment

#: How a worker adds one to ``statistics.completed_tasks``; each entry returns
#: ``(completed_tasks, revision)`` as the write reported them.  A variant that
#: goes through the command line belongs here, next to the API one.
Incrementer = Callable[[str], tuple[int, int]]


def _api_incrementer(root: str) -> Incrementer:
    manager = SessionManager(store=root)

    def increment(session_id: str) -> tuple[int, int]:
        session = manager.increment_statistics(session_id, completed_tasks=1)
        return session.statistics.completed_tasks, session.revision

    return increment


def _cli_incrementer(root: str) -> Incrementer:
    """Each increment is one run of the installed ``maestro`` command, a process of its own."""
    command = [str(Path(sys.executable).with_name("maestro")), "--store", root, "--json"]

    def increment(session_id: str) -> tuple[int, int]:
        done = subprocess.run(
            [*command, "increment", session_id, "completed_tasks"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"maestro increment exited {done.returncode}: {done.stderr}")
        record = json.loads(done.stdout)
        return record["statistics"]["completed_tasks"], record["revision"]

    return increment


INCREMENTERS: dict[str, Callable[[str], Incrementer]] = {
    "api": _api_incrementer,
    "cli": _cli_incrementer,
}


def _cmd_increment(options: argparse.Namespace) -> None:
    increment = INCREMENTERS[options.via](options.root)
    _say("ready")
    pass_gate(options.gate)
    values: list[int] = []
    revisions: list[int] = []
    for _ in range(options.count):
        value, revision = increment(options.session)
        values.append(value)
        revisions.append(revision)
    _say(json.dumps({"values": values, "revisions": revisions}))


# ---------------------------------------------------------------- disjoint fields

#: The fields the disjoint-field writers own, and the value of write ``i``.
FIELD_WRITERS = ("total_tasks", "max_iterations", "prd_reference")


def field_update(field: str, i: int) -> dict[str, Any]:
    """The ``update_session`` argument of write ``i`` (from 1) of ``field``'s writer."""
    if field == "total_tasks":
        return {"statistics": {"total_tasks": i}}
    if field == "max_iterations":
        return {"configuration": {"max_iterations": i}}
    if field == "prd_reference":
        return {"prd_reference": {"filename": f"prd-{i}.md", "path": f".flow/maestro/prd-{i}.md"}}
    raise ValueError(field)


def field_value(field: str, i: int) -> object:
    """What ``observe_fields`` reports for ``field`` after write ``i``."""
    return f"prd-{i}.md" if field == "prd_reference" else i


def observe_fields(session: Session) -> dict[str, object]:
    """The three contested fields of a record."""
    prd = session.prd_reference
    return {
        "total_tasks": session.statistics.total_tasks,
        "max_iterations": session.configuration.max_iterations,
        "prd_reference": None if prd is None else prd.filename,
    }


def _cmd_fields(options: argparse.Namespace) -> None:
    manager = SessionManager(options.root)
    _say("ready")
    pass_gate(options.gate)
    writes = []
    for i in range(1, options.count + 1):
        session = manager.update_session(options.session, field_update(options.field, i))
        writes.append({"i": i, "revision": session.revision, "fields": observe_fields(session)})
    _say(json.dumps(writes))


# ---------------------------------------------------------------- serve


def run_command(manager: SessionManager, command: dict[str, Any]) -> dict[str, Any]:
    """Carry out one request of the ``serve`` protocol and describe the outcome."""
    op = command["op"]
    sid = command["session"]
    expected = command.get("expected_revision")
    try:
        if op == "transition":
            session = manager.transition_state(sid, command["target"], expected_revision=expected)
        elif op == "update":
            session = manager.update_session(sid, command["updates"], expected_revision=expected)
        elif op == "increment":
            session = manager.increment_statistics(
                sid, expected_revision=expected, **command["deltas"]
            )
        else:
            raise ValueError(f"unknown op {op!r}")
    except SessionError as error:
        outcome: dict[str, Any] = {"ok": False, "error": type(error).__name__}
        if isinstance(error, InvalidTransitionError):
            outcome.update(current=error.current, target=error.target)
        if isinstance(error, ConflictError):
            outcome.update(expected=error.expected, actual=error.actual)
        return outcome
    return {"ok": True, "revision": session.revision, "status": session.status.value}


def _cmd_serve(options: argparse.Namespace) -> None:
    """Answer requests until told to exit: read, say ``armed``, pass the gate, act, report."""
    manager = SessionManager(store=options.root)
    _say("ready")
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "exit":
            return
        _say("armed")
        pass_gate(options.gate)
        _say(json.dumps(run_command(manager, command)))


# ---------------------------------------------------------------- churn (kill -9)

#: Lengths of the feature requests the churn writes, from tiny to about 1 MB.
CHURN_SIZES = (1, 40, 700, 12_000, 150_000, 600_000, 1_000_000)
_FILLER = "Add a dark-mode toggle; ajouter un thème sombre; 添加深色模式; "


def churn_step(seq: int) -> tuple[str, int]:
    """The kind of write number ``seq`` of the churn, and its argument (a request size).

    Deterministic, so the parent can rebuild any record of the sequence.
    """
    rng = random.Random(seq)
    roll = rng.random()
    if roll < 0.5:
        return "request", rng.choice(CHURN_SIZES)
    if roll < 0.72:
        return "increment", 0
    if roll < 0.85:
        return "configure", 0
    return "transition", 0


def churn_request(seq: int, size: int) -> str:
    head = f"request {seq}: "
    body_length = max(size - len(head), 0)
    repeats = body_length // len(_FILLER) + 1
    return head + (_FILLER * repeats)[:body_length]


def _transition_target(seq: int, status: str) -> str:
    if status == "implementing":
        return "validating" if seq % 2 else "paused"
    if status == "validating":
        return "implementing"
    if status == "paused":
        return "resume"
    raise AssertionError(f"the churn never leaves implementing/validating/paused: {status}")


def churn_write(manager: SessionManager, sid: str, seq: int, status: str) -> Session:
    """Perform write ``seq`` of the churn through the public API."""
    kind, argument = churn_step(seq)
    if kind == "request":
        return manager.update_session(sid, {"feature_request": churn_request(seq, argument)})
    if kind == "increment":
        return manager.increment_statistics(sid, completed_tasks=1, decisions_made=2)
    if kind == "configure":
        updates = {
            "configuration": {"max_iterations": 1 + seq % 97},
            "statistics": {"total_tasks": seq},
        }
        return manager.update_session(sid, updates)
    target = _transition_target(seq, status)
    if target == "paused":
        return manager.pause_session(sid, reason=f"pause {seq}")
    if target == "resume":
        return manager.resume_session(sid, reason=f"resume {seq}")
    return manager.transition_state(sid, target, reason=f"to {target} {seq}")


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def churn_view(session: Session) -> dict[str, Any]:
    """Everything of a record the churn determines (timestamps aside)."""
    last = session.history[-1] if session.history else None
    return {
        "revision": session.revision,
        "feature_request": _text_digest(session.feature_request),
        "status": session.status.value,
        "phase": None if session.current_phase is None else session.current_phase.value,
        "paused_from": None if session.paused_from is None else session.paused_from.value,
        "completed_tasks": session.statistics.completed_tasks,
        "decisions_made": session.statistics.decisions_made,
        "total_tasks": session.statistics.total_tasks,
        "max_iterations": session.configuration.max_iterations,
        "history": len(session.history),
        "last_change": None
        if last is None
        else [last.from_status.value, last.to_status.value, last.reason],
    }


def view_digest(view: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:20]


_PHASES = {"implementing": "implement", "validating": "validate"}


@dataclasses.dataclass(frozen=True)
class ChurnModel:
    """The expected record after write ``seq``, computed without the library."""

    seq: int
    view: dict[str, Any]

    @classmethod
    def start(cls, session: Session) -> ChurnModel:
        return cls(0, churn_view(session))

    @property
    def status(self) -> str:
        return str(self.view["status"])

    def after(self) -> ChurnModel:
        """The model once write ``seq + 1`` is in place."""
        seq = self.seq + 1
        view = dict(self.view, revision=self.view["revision"] + 1)
        kind, argument = churn_step(seq)
        if kind == "request":
            view["feature_request"] = _text_digest(churn_request(seq, argument))
        elif kind == "increment":
            view["completed_tasks"] += 1
            view["decisions_made"] += 2
        elif kind == "configure":
            view["max_iterations"] = 1 + seq % 97
            view["total_tasks"] = seq
        else:
            source = self.status
            target = _transition_target(seq, source)
            if target == "paused":
                view.update(status="paused", paused_from=source)
                view["last_change"] = [source, "paused", f"pause {seq}"]
            elif target == "resume":
                back = view["paused_from"]
                view.update(status=back, paused_from=None, phase=_PHASES[back])
                view["last_change"] = ["paused", back, f"resume {seq}"]
            else:
                view.update(status=target, phase=_PHASES[target])
                view["last_change"] = [source, target, f"to {target} {seq}"]
            view["history"] += 1
        return ChurnModel(seq, view)


def _cmd_churn(options: argparse.Namespace) -> None:
    """Write the churn sequence without end; ``ack <seq> <digest>`` after each write returns.

    Waits for ``go <seq>``: the write number already on disk.
    """
    manager = SessionManager(options.root)
    _say("ready")
    words = sys.stdin.readline().split()
    if len(words) != 2 or words[0] != "go":
        raise SystemExit(f"expected 'go <seq>', got {words!r}")
    seq = int(words[1])
    session = manager.get_session(options.session)
    if session.revision != options.base + seq:
        raise SystemExit(
            f"on disk: revision {session.revision}, expected {options.base + seq} for write {seq}"
        )
    _say("started")
    status = session.status.value
    while True:
        seq += 1
        session = churn_write(manager, options.session, seq, status)
        status = session.status.value
        _say(f"ack {seq} {view_digest(churn_view(session))}")


# ---------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.stress.workers")
    parser.add_argument("--lifetime", type=int, default=LIFETIME)
    commands = parser.add_subparsers(dest="command", required=True)

    increment = commands.add_parser("increment")
    increment.add_argument("--root", "--store", dest="root", required=True)
    increment.add_argument("--session", required=True)
    increment.add_argument("--count", type=int, required=True)
    increment.add_argument("--gate", required=True)
    increment.add_argument("--via", choices=sorted(INCREMENTERS), default="api")
    increment.set_defaults(run=_cmd_increment)

    fields = commands.add_parser("fields")
    fields.add_argument("--root", required=True)
    fields.add_argument("--session", required=True)
    fields.add_argument("--field", choices=FIELD_WRITERS, required=True)
    fields.add_argument("--count", type=int, required=True)
    fields.add_argument("--gate", required=True)
    fields.set_defaults(run=_cmd_fields)

    serve = commands.add_parser("serve")
    serve.add_argument("--root", "--store", dest="root", required=True)
    serve.add_argument("--gate", required=True)
    serve.set_defaults(run=_cmd_serve)

    churn = commands.add_parser("churn")
    churn.add_argument("--root", required=True)
    churn.add_argument("--session", required=True)
    churn.add_argument("--base", type=int, required=True)
    churn.set_defaults(run=_cmd_churn)

    options = parser.parse_args(argv)
    _arm_lifetime(options.lifetime)
    options.run(options)


# ================================================================ the parent


def worker_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.stress.workers", *args]


class WorkerError(AssertionError):
    """A worker misbehaved: wrong output, early exit, no answer in time."""


class Worker:
    """A child interpreter running one worker command, with deadlines on every read."""

    def __init__(self, name: str, args: Iterable[str], *, logs: Path) -> None:
        self.name = name
        logs.mkdir(parents=True, exist_ok=True)
        self.stderr_path = logs / f"{name}.stderr"
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                worker_argv(*args),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=REPO_ROOT,
            )
        self._buffer = bytearray()
        self._eof = False

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, pid={self.process.pid})"

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def fail(self, problem: str) -> WorkerError:
        if self._eof:  # the worker is ending: let its exit status show
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        return WorkerError(
            f"{self.name}: {problem} (exit status {self.process.poll()}); stderr:\n{self.stderr()}"
        )

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(line.encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise self.fail(f"gone before it could be sent {line[:60]!r}") from None

    def send_json(self, message: object) -> None:
        self.send(json.dumps(message))

    def _fill(self, deadline: float) -> bool:
        """Read what arrives before ``deadline``; False once nothing more can come."""
        assert self.process.stdout is not None
        if self._eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        fd = self.process.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 1 << 16)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True
        return True

    def _take_line(self) -> str | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            return None
        line = self._buffer[:end].decode()
        del self._buffer[: end + 1]
        return line

    def read_line(self, timeout: float = STEP_TIMEOUT) -> str:
        """The next whole line; fails on end of output or when none comes in time."""
        deadline = time.monotonic() + timeout
        while (line := self._take_line()) is None:
            if not self._fill(deadline):
                what = "stopped talking" if self._eof else f"said nothing for {timeout:g} s"
                raise self.fail(what)
        return line

    def expect(self, word: str, timeout: float = STEP_TIMEOUT) -> None:
        line = self.read_line(timeout)
        if line != word:
            raise self.fail(f"said {line[:200]!r} instead of {word!r}")

    def lines_until(self, deadline: float) -> list[str]:
        """Every whole line that arrives before ``deadline`` (or until end of output)."""
        lines = []
        while True:
            while (line := self._take_line()) is not None:
                lines.append(line)
            if not self._fill(deadline):
                return lines

    def drain(self, timeout: float = STEP_TIMEOUT) -> list[str]:
        """Every remaining whole line, up to end of output; a cut-off last line is dropped."""
        lines = self.lines_until(time.monotonic() + timeout)
        if not self._eof:
            raise self.fail(f"output still open after {timeout:g} s")
        return lines

    def wait(self, timeout: float = STEP_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise self.fail(f"still running after {timeout:g} s") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        """Kill if still running, reap, close the pipes.  Safe to call twice."""
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(30)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def stop_all(workers: Iterable[Worker]) -> None:
    for worker in workers:
        worker.stop()


class Gate:
    """The parent's end of the start barrier: held (closed) from creation on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.hold()

    def hold(self, timeout: float = STEP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    message = f"a worker kept the gate {self.path} for {timeout:g} s"
                    raise WorkerError(message) from None
                time.sleep(0.001)

    def open(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def dispose(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def start_together(workers: Sequence[Worker], gate: Gate) -> None:
    """Wait until every worker is ``ready`` at the gate, then let them all go at once."""
    for worker in workers:
        worker.expect("ready")
    gate.open()


def run_round(
    servers: Sequence[Worker], commands: Sequence[dict[str, Any]], gate: Gate
) -> list[dict[str, Any]]:
    """Give server ``i`` command ``i``, start them all at the same moment, collect outcomes."""
    for server, command in zip(servers, commands, strict=True):
        server.send_json(command)
    for server in servers:
        server.expect("armed")
    gate.open()
    outcomes = [json.loads(server.read_line()) for server in servers]
    gate.hold()
    return outcomes


if __name__ == "__main__":
    main()
