"""An orchestrator's phases in one line each, and picking a crashed run up again.

::

    run = manager.resume_run("feature-812")                 # after a crash, else None
    session = manager.create_session(request, request_id="feature-812")

    with manager.phase(session.session_id, SessionStatus.IMPLEMENTING,
                       next=SessionStatus.VALIDATING) as p:
        for number, task in enumerate(tasks, 1):
            do(task)
            p.progress(completed_tasks=number)

:class:`Phase` enters its state (nothing to do if the session is already in
it, so a resumed run re-enters cleanly), heartbeats in a background thread
while the block runs, and on leaving it:

* success: moves to ``next`` when given;
* an exception: counts it in ``error_recovery_count`` and moves the session
  to ``fallback`` (a retry, e.g. validating → implementing) or to ``failed``,
  the exception's type in the history's reason; the exception propagates;
* ``KeyboardInterrupt``, ``SIGTERM``, ``SystemExit`` or a cancelled task:
  pauses the session instead (an interrupted run is not a failed one); the
  exception propagates.  ``SIGTERM`` becomes :class:`Terminated` (a
  ``SystemExit`` with code 143) while a phase entered from the main thread
  runs.

Every write these make carries a request id derived from the run (the
create request id, else the session id) and from the point in the session's
history it is made at, so a step retried after a crash writes once.
Heartbeats carry none: repeating one is harmless, and recording them would
crowd the steps out of the requests a session remembers.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from maestro import idempotency, lifecycle
from maestro.ages import as_age, parse_age
from maestro.errors import (
    ConflictError,
    InvalidTransitionError,
    SessionError,
    SessionValidationError,
)
from maestro.lazylog import LazyLogger
from maestro.models import Session, SessionPhase, SessionStatistics, SessionStatus

if TYPE_CHECKING:
    import asyncio

    from maestro.manager import SessionManager

__all__ = [
    "HEARTBEAT_FRACTION",
    "Phase",
    "RunState",
    "Terminated",
    "WorkerAliveError",
    "find_run",
    "resume_run",
    "run_key",
]

log = LazyLogger("maestro.phases")

#: A phase heartbeats every ``timeout_minutes * HEARTBEAT_FRACTION``.
HEARTBEAT_FRACTION = 0.25
#: The reason a stale session's pause records.
WORKER_LOST = "worker lost"
_MAX_REASON = 300


class Terminated(SystemExit):
    """``SIGTERM`` arrived while a phase ran: the session was paused, the process ends (143)."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


class WorkerAliveError(SessionError):
    """The run's session is running and not stale: another worker may be driving it."""

    def __init__(self, session: Session, idle: timedelta) -> None:
        super().__init__(
            f"session {session.session_id} is {session.status.value} and was active "
            f"{idle.total_seconds():.0f} s ago: another worker may still drive it; "
            "wait until it is stale or pass a shorter older_than"
        )
        self.session_id = session.session_id


def run_key(session: Session) -> str:
    """The key of the run a session belongs to: its create request id, else its id."""
    for entry in session.requests:
        if entry.operation == "create":
            return entry.request_id
    return session.session_id


def _request_id(run: str, action: str) -> str:
    text = f"{run}:{action}"
    if len(text) <= idempotency.MAX_REQUEST_ID:
        return text
    import hashlib  # loaded by the runs that need a key only

    return "run-" + hashlib.sha256(text.encode()).hexdigest()


def _reason(prefix: str | None, error: BaseException) -> str:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = type(error).__name__ + (f": {detail}" if detail else "")
    if prefix:
        text = f"{prefix}: {text}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _status(value: SessionStatus | str, name: str) -> SessionStatus:
    try:
        return SessionStatus(value)
    except ValueError:
        choices = ", ".join(s.value for s in SessionStatus)
        raise SessionValidationError(f"{name} must be one of {choices}") from None


class Phase:
    """``with manager.phase(id, state) as p:`` (or ``async with``); see the module."""

    def __init__(
        self,
        manager: SessionManager,
        session_id: str,
        state: SessionStatus | str,
        *,
        reason: str | None = None,
        next: SessionStatus | str | None = None,
        fallback: SessionStatus | str | None = None,
        heartbeat_every: timedelta | float | None = None,
    ) -> None:
        self.manager = manager
        self.session_id = session_id
        self.state = _status(state, "state")
        if self.state in lifecycle.TERMINAL_STATES or self.state is SessionStatus.PAUSED:
            raise SessionValidationError(
                f"a phase is a working state, not {self.state.value}", session_id=session_id
            )
        self.reason = reason
        self.next = None if next is None else _status(next, "next")
        self.fallback = None if fallback is None else _status(fallback, "fallback")
        self._every = (
            None if heartbeat_every is None else as_age(heartbeat_every, "heartbeat_every")
        )
        self._session: Session | None = None
        self._run = session_id
        self._stop = threading.Event()
        self._beater: threading.Thread | None = None
        self._previous_handler: Any = None
        self._signal_installed = False
        self._terminated = False
        self._task: asyncio.Task[Any] | None = None
        #: Heartbeats this phase wrote (for measuring traffic).
        self.heartbeats = 0
        #: Seconds between two heartbeats, once entered.
        self.heartbeat_interval: float | None = None

    # ---------------------------------------------------------------- reading

    @property
    def session(self) -> Session:
        """The session as this phase last wrote or read it."""
        if self._session is None:
            raise SessionValidationError(
                "the phase has not been entered", session_id=self.session_id
            )
        return self._session

    def _rid(self, action: str, session: Session) -> str:
        return _request_id(self._run, f"{action}@{len(session.history)}")

    # ---------------------------------------------------------------- entering

    def _enter(self) -> Session:
        manager = self.manager
        session = manager.get_session(self.session_id)
        self.session_id = session.session_id
        self._run = run_key(session)
        if session.is_terminal:
            raise SessionValidationError(
                f"the session is {session.status.value}; no phase can run in it",
                session_id=session.session_id,
            )
        if session.status is SessionStatus.PAUSED:
            raise SessionValidationError(
                "the session is paused; resume it first (resume_session or resume_run)",
                session_id=session.session_id,
            )
        if session.status is not self.state:
            action = f"{session.status.value}->{self.state.value}"
            session = manager.transition_state(
                session.session_id,
                self.state,
                reason=self.reason,
                request_id=self._rid(action, session),
            )
        self._session = session
        return session

    def _start_heartbeat(self) -> None:
        every = self._every
        if every is None:
            minutes = self.session.configuration.timeout_minutes
            every = timedelta(minutes=minutes * HEARTBEAT_FRACTION)
        seconds = max(every.total_seconds(), 0.001)
        self.heartbeat_interval = seconds
        self._stop.clear()
        self._beater = threading.Thread(
            target=self._beat, args=(seconds,), name=f"maestro-heartbeat-{self.session_id[:8]}"
        )
        self._beater.daemon = True
        self._beater.start()

    def _beat(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.manager.heartbeat(self.session_id)
                self.heartbeats += 1
            except SessionValidationError:
                return  # finished meanwhile (reaped, failed by hand): nothing to keep alive
            except Exception:
                log.warning("heartbeat of session %s failed", self.session_id, exc_info=True)

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._beater is not None and self._beater is not threading.current_thread():
            self._beater.join()
        self._beater = None

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def terminate(signum: int, frame: FrameType | None) -> None:
            raise Terminated

        self._previous_handler = signal.signal(signal.SIGTERM, terminate)
        self._signal_installed = True

    def _restore_sigterm(self) -> None:
        if self._signal_installed:
            signal.signal(signal.SIGTERM, self._previous_handler)
            self._signal_installed = False

    def __enter__(self) -> Phase:
        self._enter()
        self._start_heartbeat()
        self._install_sigterm()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._restore_sigterm()
        self._stop_heartbeat()
        self._leave(error)

    # ---------------------------------------------------------------- async

    async def __aenter__(self) -> Phase:
        import asyncio  # only async callers pay for it

        await asyncio.to_thread(self._enter)
        self._start_heartbeat()
        self._task = asyncio.current_task()
        if threading.current_thread() is threading.main_thread() and self._task is not None:
            previous = signal.getsignal(signal.SIGTERM)
            try:
                asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self._on_sigterm)
            except (NotImplementedError, RuntimeError):
                pass
            else:
                self._previous_handler = previous
                self._signal_installed = True
        return self

    def _on_sigterm(self) -> None:
        self._terminated = True
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        import asyncio

        if self._signal_installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
            # The loop leaves the default behind: put back what was there.
            if self._previous_handler is not None:
                signal.signal(signal.SIGTERM, self._previous_handler)
            self._signal_installed = False
        self._stop_heartbeat()
        terminated = self._terminated and isinstance(error, asyncio.CancelledError)
        if terminated and self._task is not None:
            self._task.uncancel()
        await asyncio.to_thread(self._leave, Terminated() if terminated else error)
        if terminated:
            raise Terminated from error

    # ---------------------------------------------------------------- progress

    def progress(self, **statistics: int) -> Session:
        """Set the given statistics to these absolute values (``completed_tasks=3``).

        Absolute values, not increments: a step repeated after a crash sets
        the same number again instead of counting twice.
        """
        unknown = sorted(set(statistics) - set(SessionStatistics.COUNTERS))
        if not statistics or unknown:
            raise SessionValidationError(
                "progress takes statistics counters: " + ", ".join(SessionStatistics.COUNTERS),
                session_id=self.session_id,
            )
        session = self.session
        values = ",".join(f"{name}={statistics[name]}" for name in sorted(statistics))
        self._session = self.manager.update_session(
            self.session_id,
            {"statistics": dict(statistics)},
            request_id=self._rid(f"progress:{values}", session),
        )
        return self._session

    # ---------------------------------------------------------------- leaving

    def _leave(self, error: BaseException | None) -> None:
        try:
            if error is None:
                self._succeed()
            elif isinstance(error, Exception):
                self._record_failure(error)
            else:
                self._pause(error)
        except SessionError as problem:
            if error is None:
                raise
            # The block's own exception is what the caller must see.
            log.error("session %s: recording the phase's end failed: %s", self.session_id, problem)
            error.add_note(f"maestro could not record this in session {self.session_id}: {problem}")

    def _succeed(self) -> None:
        if self.next is None:
            return
        # The session as last written here saves a read; if the block moved
        # it meanwhile, the state machine says so and it is read afresh.
        session = self.session
        try:
            self._session = self.manager.transition_state(
                self.session_id,
                self.next,
                request_id=self._rid(f"{session.status.value}->{self.next.value}", session),
            )
        except InvalidTransitionError:
            session = self.manager.get_session(self.session_id)
            if session.status is not self.next:
                raise
            self._session = session

    def _record_failure(self, error: Exception) -> None:
        manager = self.manager
        session = manager.get_session(self.session_id)
        if session.is_terminal or session.status is SessionStatus.PAUSED:
            self._session = session
            return  # finished or paused inside the block: its own decision stands
        at = session
        session = manager.increment_statistics(
            self.session_id, error_recovery_count=1, request_id=self._rid("error", at)
        )
        reason = _reason(None, error)
        target = self.fallback or SessionStatus.FAILED
        allowed = lifecycle.allowed_targets(session.status, session.paused_from)
        if target not in allowed:
            target = SessionStatus.FAILED
        try:
            self._session = manager.transition_state(
                self.session_id,
                target,
                reason=reason,
                request_id=self._rid(f"{session.status.value}->{target.value}", at),
            )
        except (InvalidTransitionError, ConflictError):
            self._session = manager.get_session(self.session_id)

    def _pause(self, error: BaseException) -> None:
        session = self.manager.get_session(self.session_id)
        if session.is_terminal or session.status is SessionStatus.PAUSED:
            self._session = session
            return
        cause = "SIGTERM" if isinstance(error, Terminated) else type(error).__name__
        self._session = self.manager.pause_session(
            self.session_id,
            reason=f"interrupted ({cause})",
            request_id=self._rid(f"{session.status.value}->paused", session),
        )


# -------------------------------------------------------------------- resuming a run


@dataclass(frozen=True)
class RunState:
    """Where a run stands after :func:`resume_run`: continue from ``status``/``phase``.

    ``worker_lost`` says the session was found stale (a crashed worker) and
    paused as such before it was resumed.
    """

    session: Session
    worker_lost: bool

    @property
    def status(self) -> SessionStatus:
        return self.session.status

    @property
    def phase(self) -> SessionPhase | None:
        return self.session.current_phase

    @property
    def session_id(self) -> str:
        return self.session.session_id


def find_run(manager: SessionManager, key: str) -> Session | None:
    """The unfinished session of the run ``key`` (its create request id), if any.

    Only unfinished sessions are looked at, so the search stays as cheap as
    the list of active sessions; a finished run is found by creating it
    again with the same request id, which returns the session as stored.
    A session created without a request id has its id as its key.
    """
    idempotency.check_request_id(key)
    for session in manager.query_sessions(status=sorted(lifecycle.ACTIVE_STATES)):
        if run_key(session) == key:
            return session
    return None


def _staleness(value: timedelta | float | str) -> timedelta:
    """``older_than`` of :func:`resume_run`: an age, or 0 to take over at once."""
    zero = timedelta(0)
    if isinstance(value, timedelta) and value == zero:
        return zero
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return zero
    if isinstance(value, str) and (value.strip() == "0" or parse_age(value) == zero):
        return zero
    return as_age(value, "older_than")


def resume_run(
    manager: SessionManager,
    key: str,
    *,
    older_than: timedelta | float | str | None = None,
    reason: str = "run resumed",
) -> RunState | None:
    """Pick up the unfinished run created with request id ``key``; ``None`` if there is none.

    A running session whose last activity is older than ``older_than``
    (default: its own ``timeout_minutes``; 0 when the caller knows the old
    worker is gone) was left by a crashed worker: it
    is paused with the reason "worker lost", then resumed.  A paused session
    is resumed.  A running session that is not stale raises
    :class:`WorkerAliveError`.  The answer says which state and phase to
    continue from.
    """
    session = find_run(manager, key)
    if session is None:
        return None
    lost = False
    if session.status is not SessionStatus.PAUSED:
        limit = (
            _staleness(older_than)
            if older_than is not None
            else timedelta(minutes=session.configuration.timeout_minutes)
        )
        idle = manager._now() - session.last_activity
        if idle <= limit:
            raise WorkerAliveError(session, idle)
        try:
            session = manager.pause_session(
                session.session_id,
                reason=WORKER_LOST,
                expected_revision=session.revision,
                request_id=_request_id(key, f"lost@{len(session.history)}"),
            )
        except ConflictError:
            raise WorkerAliveError(manager.get_session(session.session_id), timedelta(0)) from None
        lost = True
    session = manager.resume_session(
        session.session_id,
        reason=reason,
        request_id=_request_id(key, f"resume@{len(session.history)}"),
    )
    return RunState(session, worker_lost=lost)
