"""In-process reactions to the writes a :class:`~maestro.SessionManager` makes.

``manager.on_transition(callback)`` calls ``callback(session, change)`` after
every committed write of that manager that moved a session's status, with the
session as stored and the :class:`~maestro.StateChange` it added;
``manager.on_change(callback)`` calls ``callback(kind, session)`` after every
committed write (transition, update, pause, resume, increment, heartbeat).

A hook runs after the store has committed the write and released the
session's lock, in the thread that made the write (a phase's heartbeats run
in its heartbeat thread): it can neither corrupt the record nor hold up
another writer.  A hook that raises is logged (logger ``maestro.hooks``) and
the write's caller goes on as if nothing happened; the other hooks still run.
A retried request that writes nothing calls no hook.

Writes made by other processes or other managers are not seen here: follow
:meth:`~maestro.SessionManager.changes` (or ``maestro watch --exec``) for those.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from maestro.lazylog import LazyLogger
from maestro.models import Session, SessionStatus, StateChange
from maestro.stores.base import ChangeKind, SessionStore, Transform, reported_kind

__all__ = ["ChangeHook", "Hooks", "TransitionHook"]

log = LazyLogger("maestro.hooks")

#: ``callback(session, change)``: the session as stored, the history entry added.
TransitionHook = Callable[[Session, StateChange], object]
#: ``callback(kind, session)``: what the write was, the session as stored.
ChangeHook = Callable[[ChangeKind, Session], object]


@dataclass(frozen=True)
class _Before:
    status: SessionStatus
    revision: int
    history: int


class Hooks:
    """The hooks of one manager, and the store write that calls them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._transition: list[tuple[TransitionHook, frozenset[SessionStatus] | None]] = []
        self._change: list[ChangeHook] = []

    def on_transition(
        self,
        callback: TransitionHook,
        to: SessionStatus | str | Iterable[SessionStatus | str] | None = None,
    ) -> Callable[[], None]:
        """Register ``callback``; ``to`` keeps only moves into those states.

        Returns a function that unregisters it.
        """
        if not callable(callback):
            raise TypeError("a hook must be callable")
        targets: frozenset[SessionStatus] | None = None
        if to is not None:
            items = [to] if isinstance(to, str) else list(to)
            targets = frozenset(SessionStatus(item) for item in items)
        entry = (callback, targets)
        with self._lock:
            self._transition.append(entry)

        def remove() -> None:
            with self._lock:
                if entry in self._transition:
                    self._transition.remove(entry)

        return remove

    def on_change(self, callback: ChangeHook) -> Callable[[], None]:
        """Register ``callback`` for every committed write; returns its remover."""
        if not callable(callback):
            raise TypeError("a hook must be callable")
        with self._lock:
            self._change.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._change:
                    self._change.remove(callback)

        return remove

    def modify(
        self,
        store: SessionStore,
        session_id: str,
        change: Transform,
        *,
        expected_revision: int | None,
        kind: ChangeKind,
        request_id: str | None,
    ) -> Session:
        """``store.modify(...)``, then the hooks if a write was committed."""
        with self._lock:
            idle = not self._transition and not self._change
        if idle:
            return store.modify(
                session_id,
                change,
                expected_revision=expected_revision,
                kind=kind,
                request_id=request_id,
            )
        seen: list[_Before] = []

        def watched(session: Session) -> Session:
            before = _Before(session.status, session.revision, len(session.history))
            updated = change(session)  # NoChange passes through: nothing is seen
            seen.append(before)
            return updated

        stored = store.modify(
            session_id,
            watched,
            expected_revision=expected_revision,
            kind=kind,
            request_id=request_id,
        )
        if seen and stored.revision != seen[-1].revision:
            self._fire(kind, seen[-1], stored)
        return stored

    def _fire(self, kind: ChangeKind, before: _Before, session: Session) -> None:
        with self._lock:
            transition = list(self._transition)
            change = list(self._change)
        reported = reported_kind(kind, before.status.value, session.status.value)
        for hook in change:
            _call(hook, reported, session)
        if session.status is before.status and len(session.history) == before.history:
            return
        for entry in session.history[before.history :]:
            for callback, targets in transition:
                if targets is None or entry.to_status in targets:
                    _call(callback, session, entry)


def _call(hook: Callable[..., object], *args: object) -> None:
    try:
        hook(*args)
    except Exception:
        log.exception("hook %s failed; the write it reacted to stands", _name(hook))


def _name(hook: Callable[..., object]) -> str:
    return getattr(hook, "__qualname__", None) or repr(hook)
