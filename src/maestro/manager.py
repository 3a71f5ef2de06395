"""``SessionManager``: the public API over a session store.

The manager holds the lifecycle rules (state machine, read-only fields,
merging of nested objects, statistics) and leaves durability and concurrency
to the store: every write is one ``store.modify`` call, a read-modify-write
under the session's lock, so concurrent writers never lose each other's
updates and a transition is checked against the state read under the lock.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from maestro.errors import (
    AmbiguousSessionIdError,
    ConflictError,
    CorruptSessionError,
    InvalidSessionIdError,
    InvalidTransitionError,
    SessionError,
    SessionNotFoundError,
    SessionValidationError,
)
from maestro.ids import check_session_id, is_session_id, new_session_id
from maestro.lazylog import LazyLogger

#: Set by type checkers only.  The models, the lifecycle, the stores and the
#: rest are imported where they are used: ``from maestro import
#: SessionManager`` then loads neither :mod:`dataclasses` nor :mod:`typing`,
#: and each call loads what it needs once (a command line call is a process).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from maestro.feedfilter import ChangeFilter
    from maestro.hooks import ChangeHook, Hooks, TransitionHook
    from maestro.models import (
        GitContext,
        PRDReference,
        Session,
        SessionConfiguration,
        SessionPhase,
        SessionStatistics,
        SessionStatus,
    )
    from maestro.pages import SessionPage
    from maestro.phases import Phase, RunState
    from maestro.reports import DoctorReport, ExportResult, ImportResult, Progress
    from maestro.stats import SessionStats
    from maestro.stores.base import (
        ChangeEvent,
        ChangeFeed,
        ChangeKind,
        DirectoryExport,
        Doctor,
        Migratable,
        PrefixLookup,
        Reindexable,
        SessionQuery,
        SessionStore,
        StampedQueries,
        Transform,
    )
    from maestro.timeline import SessionTimeline

    _Nested = GitContext | PRDReference | SessionStatistics | SessionConfiguration

__all__ = [
    "READ_ONLY_FIELDS",
    "TERMINAL_EDITABLE_FIELDS",
    "UPDATABLE_FIELDS",
    "SessionManager",
    "resolve_root",
]

log = LazyLogger("maestro")
#: How many sessions :meth:`SessionManager.iter_sessions` fetches at a time.
ITER_PAGE = 1000

#: Shortest id prefix accepted in place of a full session id.
MIN_ID_PREFIX = 6
_ID_PREFIX = re.compile(r"[0-9a-f-]+")

#: Fields ``update_session`` may change.
UPDATABLE_FIELDS = frozenset(
    {
        "feature_request",
        "status",
        "current_phase",
        "git_context",
        "prd_reference",
        "statistics",
        "configuration",
    }
)
#: Fields kept by the library itself; ``update_session`` refuses them.
READ_ONLY_FIELDS = frozenset(
    {
        "session_id",
        "created_at",
        "updated_at",
        "completed_at",
        "paused_from",
        "history",
        "revision",
        "schema_version",
        "requests",
        "rerun_of",
    }
)

#: What a finished (``completed``/``failed``) session still lets
#: ``update_session`` change: late bookkeeping about the work, never the work's
#: outcome.  Its status and phase are final, and so are its request, git
#: context, configuration and measured duration.
TERMINAL_EDITABLE_FIELDS = frozenset({"statistics", "prd_reference"})


def resolve_root(repo_root: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding ``.flow/``: explicit, ``MAESTRO_ROOT``, repository, cwd.

    The repository's directory is its main checkout, from any linked
    worktree or subdirectory (for a bare repository, the directory holding
    it): see :func:`maestro.gitctx.find_repository_root`.
    """
    if repo_root is not None:
        return Path(repo_root).expanduser().absolute()
    from_env = os.environ.get("MAESTRO_ROOT")
    if from_env:
        return Path(from_env).expanduser().absolute()
    from maestro.gitctx import find_repository_root

    cwd = Path.cwd()
    # The main checkout, not the worktree: every worktree shares one store.
    return find_repository_root(cwd) or cwd


def _with_session_id(error: SessionValidationError, session_id: str) -> SessionValidationError:
    if error.session_id is not None:
        return error
    return SessionValidationError(str(error), session_id=session_id)


def _merge(current: _Nested | None, value: object, cls: type[_Nested], name: str) -> Any:
    """A mapping merges into the current nested object; an instance replaces it."""
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        base = current.to_dict() if current is not None else {}
        return cls.from_dict({**base, **value})
    raise SessionValidationError(f"{name} must be an object of fields, such as {_EXAMPLES[name]}")


_EXAMPLES = {
    "statistics": '{"completed_tasks": 3}',
    "configuration": '{"max_iterations": 5}',
    "git_context": '{"branch": "main"}',
    "prd_reference": '{"path": "docs/prd.md"}',
}


def _prd(current: PRDReference | None, value: object) -> PRDReference:
    """A PRD reference from a path (as the CLI's ``--prd`` takes), a mapping or an object.

    The file name defaults to the path's last part, whichever way it is given.
    """
    from maestro.models import PRDReference

    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        if not isinstance(path, str) or not path.strip():
            raise SessionValidationError("prd_reference must be a path such as docs/prd.md")
        return PRDReference(filename=os.path.basename(path.rstrip("/")) or path, path=path)
    path = value.get("path") if isinstance(value, Mapping) else None
    if isinstance(value, Mapping) and "filename" not in value and isinstance(path, str):
        value = {**value, "filename": os.path.basename(path.rstrip("/")) or path}
    merged: PRDReference = _merge(current, value, PRDReference, "prd_reference")
    return merged


def _check_reason(reason: str | None, session_id: str) -> None:
    """A reason, when given, says something: the same rule for every write that takes one."""
    if reason is not None and (not isinstance(reason, str) or not reason.strip()):
        raise SessionValidationError(
            'a reason must be text that says why, such as "review approved"; '
            "leave it out (None) to give none",
            session_id=session_id,
        )


def _check_terminal(session: Session, updated: Session, keys: Iterable[str]) -> None:
    """Refuse a write that would change what a finished session settled."""
    if not session.is_terminal:
        return
    for key in keys:
        if key in TERMINAL_EDITABLE_FIELDS:
            continue
        if key == "status" and updated.status is session.status:
            continue
        if getattr(updated, key) == getattr(session, key):
            continue  # restating a value is not a change
        raise SessionValidationError(
            f"the session is {session.status.value}, so its {key} is final; "
            "only " + " and ".join(sorted(TERMINAL_EDITABLE_FIELDS)) + " may still change",
            session_id=session.session_id,
        )
    if updated.statistics.duration_seconds != session.statistics.duration_seconds:
        raise SessionValidationError(
            f"the session is {session.status.value}, so its measured duration is final",
            session_id=session.session_id,
        )


def _check_task_counts(
    before: SessionStatistics, after: SessionStatistics, session_id: str
) -> None:
    """Completed and failed tasks are among the total: a write may not break that.

    A total of 0 means the tasks have not been counted yet (an orchestrator
    may report progress before its plan is known), so it bounds nothing.
    """
    counts = ("total_tasks", "completed_tasks", "failed_tasks")
    if all(getattr(before, name) == getattr(after, name) for name in counts):
        return  # untouched: a record stored inconsistent earlier stays readable
    if after.total_tasks and after.completed_tasks + after.failed_tasks > after.total_tasks:
        raise SessionValidationError(
            f"completed_tasks ({after.completed_tasks}) + failed_tasks "
            f"({after.failed_tasks}) would exceed total_tasks ({after.total_tasks}); "
            "raise total_tasks first",
            session_id=session_id,
        )


class _Transitions:
    """``SessionManager.STATE_TRANSITIONS``: :data:`maestro.lifecycle.TRANSITIONS`,
    loaded when first asked for."""

    def __get__(
        self, instance: object, owner: type | None = None
    ) -> Mapping[SessionStatus, tuple[SessionStatus, ...]]:
        from maestro.lifecycle import TRANSITIONS

        return TRANSITIONS


class SessionManager:
    """Create, read, update, transition, query and delete sessions.

    ``repo_root`` is where ``.flow/maestro/sessions`` lives: the path given,
    else ``$MAESTRO_ROOT``, else the repository of the working directory
    (its main checkout, also from a linked worktree), else the working
    directory.  ``store`` replaces the default file store:
    a store object, or a store URL (:func:`maestro.stores.open_store`: a
    path or ``file:PATH``, ``memory:``); a file URL's path is then the root.
    ``lock_timeout`` applies to any store the manager opens; ``durable``
    and ``index`` (``False`` turns off the SQLite query index) belong to the
    file store and are refused with another one.  ``all_projects`` lets a
    store shared by several projects (``postgresql://``) show every
    project's sessions, not only the current one's; a store of one
    repository ignores it.  ``clock`` replaces the
    source of timestamps (tests).

    No directory between ``repo_root`` and ``sessions/`` (``.flow``,
    ``.flow/maestro``, ``sessions``) may be a symlink: a checkout can commit
    one that points anywhere.  ``allow_symlinked_root=True`` (or
    ``$MAESTRO_ALLOW_SYMLINKED_ROOT=1``) follows them; an explicit
    ``repo_root`` does not, it only says where ``.flow`` is.
    """

    #: The whitelist of state transitions (see :mod:`maestro.lifecycle`).
    STATE_TRANSITIONS = _Transitions()

    def __init__(
        self,
        repo_root: str | os.PathLike[str] | None = None,
        *,
        store: SessionStore | str | os.PathLike[str] | None = None,
        lock_timeout: float = 10.0,
        durable: bool = True,
        index: bool = True,
        clock: Callable[[], datetime] | None = None,
        allow_symlinked_root: bool | None = None,
        all_projects: bool = False,
    ) -> None:
        # Only what the caller changed is passed on, so that a store which
        # does not take an option refuses it instead of ignoring it.
        from maestro.models import utcnow
        from maestro.stores import select_store

        file_options: dict[str, Any] = {}
        if not durable:
            file_options["durable"] = False
        if not index:
            file_options["index"] = False
        if allow_symlinked_root is not None:
            file_options["allow_symlinked_root"] = allow_symlinked_root
        if all_projects:
            file_options["all_projects"] = True
        self.store, self.repo_root = select_store(
            store,
            root=resolve_root,
            explicit_root=None if repo_root is None else resolve_root(repo_root),
            lock_timeout=lock_timeout,
            options=file_options,
        )
        self.sessions_dir = self.repo_root / ".flow" / "maestro" / "sessions"
        self._clock = clock or utcnow
        self._hooks: Hooks | None = None  # made by the first on_transition/on_change

    def _git_context_here(self) -> GitContext:
        """The checkout being worked in: the cwd's when it shares the root's repository.

        A session made in a linked worktree is stored at the main checkout
        but records the worktree (its branch, commit and name).
        """
        from maestro.gitctx import capture_git_context, find_repository_root

        try:
            cwd = Path.cwd()
            same = find_repository_root(cwd) == Path(os.path.realpath(self.repo_root))
        except OSError:
            same = False
        return capture_git_context(cwd if same else self.repo_root)

    def __repr__(self) -> str:
        return f"SessionManager({str(self.repo_root)!r}, store={self.store!r})"

    def _now(self) -> datetime:
        return self._clock()

    def _once(
        self,
        change: Transform,
        request_id: str | None,
        operation: str,
        arguments: dict[str, Any],
        expected_revision: int | None,
    ) -> tuple[Transform, int | None]:
        """The transform and expected revision to hand the store for this write.

        Without a request id, ``change`` as it is.  With one, ``change``
        guarded by it (see :mod:`maestro.idempotency`), which checks
        ``expected_revision`` itself.
        """
        from maestro import idempotency

        if request_id is None:
            return change, expected_revision
        idempotency.check_request_id(request_id)
        digest = idempotency.fingerprint(
            operation, {**arguments, "expected_revision": expected_revision}
        )
        guarded = idempotency.guarded(
            change,
            request_id=request_id,
            operation=operation,
            digest=digest,
            expected_revision=expected_revision,
        )
        return guarded, None

    def _hooks_made(self) -> Hooks:
        if self._hooks is None:
            from maestro.hooks import Hooks

            self._hooks = Hooks()
        return self._hooks

    def _modify(
        self,
        session_id: str,
        change: Transform,
        *,
        expected_revision: int | None,
        kind: ChangeKind,
        request_id: str | None,
    ) -> Session:
        """One write through the store, then this manager's hooks (:mod:`maestro.hooks`)."""
        if self._hooks is None:
            return self.store.modify(
                session_id,
                change,
                expected_revision=expected_revision,
                kind=kind,
                request_id=request_id,
            )
        return self._hooks.modify(
            self.store,
            session_id,
            change,
            expected_revision=expected_revision,
            kind=kind,
            request_id=request_id,
        )

    # ------------------------------------------------------------ the seed's API

    def create_session(
        self,
        feature_request: str,
        configuration: SessionConfiguration | Mapping[str, Any] | None = None,
        *,
        prd_reference: PRDReference | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        git_context: GitContext | None = None,
        request_id: str | None = None,
        rerun_of: str | None = None,
    ) -> Session:
        """Start a new session in ``initializing`` and store it.

        The git context of the repository root is captured unless given.
        ``prd_reference`` may be a path (``"docs/prd.md"``), as ``--prd`` takes.
        With ``request_id``, a retry returns the session the first call
        created (it keeps that key for its life), even from another process.
        ``rerun_of`` names the finished (completed or failed) session this
        one runs again; see :meth:`rerun_session`.
        """
        from maestro import idempotency
        from maestro.models import Session, SessionConfiguration, SessionStatus

        if request_id is not None:
            idempotency.check_request_id(request_id)
        if rerun_of is not None:
            self._check_rerunnable(self.get_session(rerun_of))
        config: SessionConfiguration = (
            SessionConfiguration()
            if configuration is None
            else _merge(None, configuration, SessionConfiguration, "configuration")
        )
        prd: PRDReference | None = None if prd_reference is None else _prd(None, prd_reference)
        now = self._now()
        session = Session(
            session_id=new_session_id(),
            feature_request=feature_request,
            status=SessionStatus.INITIALIZING,
            created_at=now,
            updated_at=now,
            git_context=git_context or self._git_context_here(),
            prd_reference=prd,
            configuration=config,
            rerun_of=rerun_of,
        )
        if request_id is None:
            return self.store.create(session)
        # Fingerprinted as stored (a configuration given as a dict or as an
        # object, complete or not, is the same request), and the git context
        # only when given: the one captured may move between a call and its retry.
        digest = idempotency.fingerprint(
            "create",
            {
                "feature_request": feature_request,
                "configuration": config,
                "prd_reference": prd,
                "git_context": git_context,
                **({"rerun_of": rerun_of} if rerun_of is not None else {}),
            },
        )
        session = idempotency.with_create_key(session, request_id, digest)
        stored = self.store.create(session, request_id=request_id)
        return idempotency.check_created(stored, request_id, digest)

    @staticmethod
    def _check_rerunnable(session: Session) -> None:
        if not session.is_terminal:
            raise SessionValidationError(
                f"only a finished (completed or failed) session can be run again; "
                f"it is {session.status.value}",
                session_id=session.session_id,
            )

    def rerun_session(self, session_id: str, *, request_id: str | None = None) -> Session:
        """Start a new session with the request, configuration and PRD of a
        finished one, recording ``rerun_of``; the finished one is not written.

        The git context is captured anew (the run happens now).  A session
        that is not completed or failed raises ``SessionValidationError``.
        """
        original = self.get_session(session_id)
        self._check_rerunnable(original)
        return self.create_session(
            original.feature_request,
            original.configuration,
            prd_reference=original.prd_reference,
            request_id=request_id,
            rerun_of=original.session_id,
        )

    def session_directory(self, session_id: str) -> Path:
        """The directory holding the session's files, for stores that keep one.

        ``UnsupportedOperationError`` for a store without session directories
        (``memory:``); ``SessionNotFoundError`` if the session does not exist.
        """
        store = self._directory_export("session_directory")
        return store.session_directory(self.get_session(session_id).session_id)

    def reruns_of(self, session_id: str) -> list[Session]:
        """The sessions that run ``session_id`` again, oldest first.

        A scan of every session (reruns are few and rarely asked for; the
        index holds no column for them).
        """
        return [
            session
            for session in self.query_sessions(order_by="created", descending=False)
            if session.rerun_of == session_id
        ]

    def resolve_session_id(self, prefix: str) -> str:
        """The full id of the one session whose id starts with ``prefix`` (6+ characters).

        A full id is returned as it is.  ``SessionNotFoundError`` when nothing
        matches, ``InvalidSessionIdError`` when the prefix is too short or not
        hexadecimal, ``AmbiguousSessionIdError`` when it matches several.
        """
        if is_session_id(prefix):
            return prefix
        if (
            not isinstance(prefix, str)
            or len(prefix) < MIN_ID_PREFIX
            or not _ID_PREFIX.fullmatch(prefix)
        ):
            raise InvalidSessionIdError(prefix)
        matches = self.session_ids(prefix)
        if not matches:
            raise SessionNotFoundError(prefix, "no session id starts with it")
        if len(matches) > 1:
            raise AmbiguousSessionIdError(prefix, matches)
        return matches[0]

    def session_ids(self, prefix: str = "") -> list[str]:
        """The ids of the stored sessions starting with ``prefix``, sorted.

        Cheap on a store that declares ``Capability.PREFIX_LOOKUP``; any other
        store answers by a query.
        """
        from maestro.stores.kinds import Capability

        if Capability.PREFIX_LOOKUP in self.store.capabilities:
            # Declared by the capability (typing.cast would load typing for it).
            lookup: PrefixLookup = self.store  # type: ignore[assignment]
            return lookup.session_ids(prefix)
        return sorted(
            s.session_id for s in self.query_sessions() if s.session_id.startswith(prefix)
        )

    def get_session(self, session_id: str) -> Session:
        """The stored session.  ``SessionNotFoundError``, ``CorruptSessionError``."""
        return self.store.load(check_session_id(session_id))

    def update_session(
        self,
        session_id: str,
        updates: Mapping[str, Any],
        *,
        expected_revision: int | None = None,
        reason: str | None = None,
        request_id: str | None = None,
    ) -> Session:
        """Change fields of a session in one atomic write.

        ``statistics``, ``configuration``, ``git_context`` and ``prd_reference``
        given as mappings merge into the stored object; ``status`` goes through
        the state machine (``reason`` is recorded in the history); unknown and
        read-only fields raise ``SessionValidationError`` before anything is read.
        ``request_id`` makes a retry a no-op (see :meth:`create_session`).
        """
        from maestro import lifecycle
        from maestro.models import (
            GitContext,
            SessionConfiguration,
            SessionStatistics,
            SessionStatus,
        )
        from maestro.records import replace
        from maestro.stores.kinds import ChangeKind

        check_session_id(session_id)
        _check_reason(reason, session_id)
        if not isinstance(updates, Mapping):
            raise SessionValidationError(
                'updates must be an object of fields such as {"current_phase": "plan"}',
                session_id=session_id,
            )
        for key in updates:
            if key in READ_ONLY_FIELDS:
                raise SessionValidationError(f"field {key!r} is read-only", session_id=session_id)
            if key not in UPDATABLE_FIELDS:
                raise SessionValidationError(
                    f"unknown field {str(key)[:40]!r}; updatable fields: "
                    + ", ".join(sorted(UPDATABLE_FIELDS)),
                    session_id=session_id,
                )

        def change(session: Session) -> Session:
            now = self._now()
            try:
                fields: dict[str, Any] = {}
                for key, value in updates.items():
                    if key == "status":
                        continue
                    if key == "statistics":
                        value = _merge(session.statistics, value, SessionStatistics, key)
                    elif key == "configuration":
                        value = _merge(session.configuration, value, SessionConfiguration, key)
                    elif key == "git_context":
                        value = _merge(session.git_context, value, GitContext, key)
                    elif key == "prd_reference" and value is not None:
                        value = _prd(session.prd_reference, value)
                    fields[key] = value
                updated = replace(session, **fields, updated_at=now)
                _check_terminal(session, updated, updates.keys())
                _check_task_counts(session.statistics, updated.statistics, session.session_id)
                if "status" in updates:
                    target = SessionStatus(_status(updates["status"]))
                    if target is not session.status:
                        explicit_phase = updated.current_phase
                        updated = lifecycle.apply_transition(updated, target, at=now, reason=reason)
                        if "current_phase" in updates:
                            # An explicit phase wins over the status's, None included.
                            updated.current_phase = explicit_phase
            except SessionValidationError as error:
                raise _with_session_id(error, session.session_id) from None
            return updated

        # Reported as ``transitioned`` when it moves the status (the store's rule).
        write, expected = self._once(
            change,
            request_id,
            "update",
            {"updates": dict(updates), "reason": reason},
            expected_revision,
        )
        return self._modify(
            session_id,
            write,
            expected_revision=expected,
            kind=ChangeKind.UPDATED,
            request_id=request_id,
        )

    def transition_state(
        self,
        session_id: str,
        new_state: SessionStatus | str,
        *,
        reason: str | None = None,
        expected_revision: int | None = None,
        request_id: str | None = None,
        from_state: SessionStatus | str | None = None,
    ) -> Session:
        """Move a session to ``new_state`` if the whitelist allows it.

        Records the change in ``history``; entering ``completed`` or
        ``failed`` sets ``completed_at`` and ``statistics.duration_seconds``.
        Raises ``InvalidTransitionError`` (a ``ValueError``) otherwise.

        ``from_state`` moves the session only if it is still in that state
        when the write happens, checked under the session's lock: a button
        showing a state never acts on a session that has moved on, while
        writes that leave the status alone (a heartbeat) do not stop it, as
        ``expected_revision`` would.
        """
        from maestro import lifecycle
        from maestro.models import SessionStatus
        from maestro.stores.kinds import ChangeKind

        check_session_id(session_id)
        _check_reason(reason, session_id)
        try:
            target = SessionStatus(_status(new_state))
            source = None if from_state is None else SessionStatus(_status(from_state))
        except SessionValidationError as error:
            raise _with_session_id(error, session_id) from None

        def change(session: Session) -> Session:
            if source is not None and session.status is not source:
                raise InvalidTransitionError(
                    session.session_id,
                    session.status.value,
                    target.value,
                    tuple(
                        t.value
                        for t in lifecycle.allowed_targets(session.status, session.paused_from)
                    ),
                    message=f"the session is {session.status.value}, no longer "
                    f"{source.value}; nothing was changed",
                )
            now = self._now()
            moved = lifecycle.apply_transition(session, target, at=now, reason=reason)
            moved.updated_at = now
            return moved

        kind = ChangeKind.PAUSED if target is SessionStatus.PAUSED else ChangeKind.TRANSITIONED
        write, expected = self._once(
            change,
            request_id,
            "transition",
            {
                "new_state": target,
                "reason": reason,
                **({"from_state": source} if source is not None else {}),
            },
            expected_revision,
        )
        return self._modify(
            session_id, write, expected_revision=expected, kind=kind, request_id=request_id
        )

    def query_sessions(
        self,
        status: SessionStatus | str | Iterable[SessionStatus | str] | None = None,
        phase: SessionPhase | str | Iterable[SessionPhase | str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        branch: str | None = None,
        limit: int | None = None,
        *,
        worktree: str | None = None,
        updated_after: datetime | str | None = None,
        updated_before: datetime | str | None = None,
        active_before: datetime | str | None = None,
        text: str | None = None,
        order_by: str | None = None,
        descending: bool = True,
        offset: int = 0,
    ) -> list[Session]:
        """Sessions matching every given filter, newest first.

        ``status`` and ``phase`` take one value or several; time bounds are
        inclusive, take ``datetime`` or ISO 8601 strings with any offset and
        are compared as instants.  ``text`` is a full-text search over the
        feature requests (every word must occur; ``word*`` is a prefix),
        ranked best first unless ``order_by`` says otherwise (``"created"``,
        ``"updated"``, ``"rank"``).  ``limit`` and ``offset`` page through the
        results.  Unreadable sessions are skipped with a logged warning.
        """
        from maestro.stores.query import SessionQuery

        query = SessionQuery.build(
            status=status,
            phase=phase,
            branch=branch,
            worktree=worktree,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
            active_before=active_before,
            text=text,
            order_by=order_by,
            descending=descending,
            limit=limit,
            offset=offset,
        )
        return self.store.query(query)

    def query_page(
        self,
        status: SessionStatus | str | Iterable[SessionStatus | str] | None = None,
        phase: SessionPhase | str | Iterable[SessionPhase | str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        branch: str | None = None,
        limit: int = 50,
        *,
        worktree: str | None = None,
        updated_after: datetime | str | None = None,
        updated_before: datetime | str | None = None,
        active_before: datetime | str | None = None,
        text: str | None = None,
        order_by: str | None = None,
        descending: bool = True,
        cursor: str | None = None,
        with_total: bool = False,
    ) -> SessionPage:
        """One page of :meth:`query_sessions`, and the cursor of the next one.

        Pass ``next_cursor`` back as ``cursor`` with the same filters and
        order to get the next page; it is ``None`` on the last page.  Pages
        are keyset pages: sessions created between two calls never make a
        session repeat or an older one go missing (with ``order_by="updated"``
        a session updated meanwhile moves in the order, and may then be seen
        twice or not at all).  The order is by creation unless ``order_by``
        says ``"updated"``, also with ``text``: a search rank is no stable key
        to page by, so ``order_by="rank"`` is refused.  A cursor that is
        damaged, or was made for other filters or another order, raises
        ``SessionValidationError``.  ``with_total`` also counts every session
        the filters match (``total``; :meth:`count_sessions` of them), with
        the same look at how fresh the store's index is.
        """
        from maestro.records import replace
        from maestro.stores.kinds import Capability
        from maestro.stores.query import SessionQuery

        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise SessionValidationError("limit must be a positive integer")
        if order_by == "rank":
            raise SessionValidationError(
                "pages need order_by 'created' or 'updated': a search rank is no stable "
                "key to page by (query_sessions with offset pages by rank)"
            )
        query = SessionQuery.build(
            status=status,
            phase=phase,
            branch=branch,
            worktree=worktree,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
            active_before=active_before,
            text=text,
            order_by=order_by or "created",
            descending=descending,
            limit=limit + 1,  # one more tells whether a next page exists
        )
        from maestro.pages import SessionPage, decode_cursor, encode_cursor

        if cursor is not None:
            query = replace(query, after=decode_cursor(cursor, query))
        if Capability.STAMPED_QUERIES in self.store.capabilities:
            stamped: StampedQueries = self.store  # type: ignore[assignment]  # declared
            found, total, stamp = stamped.query_stamped(query, count=with_total)
        else:
            found, stamp = self.store.query(query), None
            every = replace(query, limit=None, after=None)
            total = self.store.count(every) if with_total else None
        sessions = found[:limit]
        more = len(found) > limit
        next_cursor = encode_cursor(query, sessions[-1]) if more else None
        return SessionPage(sessions, next_cursor, total, stamp)

    def page_is_current(self, page: SessionPage) -> bool:
        """Whether :meth:`query_page`, called again as it was for ``page``, would return it.

        True means the same sessions at the same revisions, the same
        ``next_cursor`` and ``total``: nothing was written to them or to the
        store's index since, from any process, and no session's file was
        changed or added by hand.  The file store can tell at the cost of a
        ``stat`` per session of the page, when its index was in step as the
        page was made; otherwise, and on the other stores, this is False
        (ask again).  A caller that keeps what it made of a page (its JSON)
        can serve it again while this holds.
        """
        from maestro.stores.kinds import Capability

        if page.stamp is None or Capability.STAMPED_QUERIES not in self.store.capabilities:
            return False
        stamped: StampedQueries = self.store  # type: ignore[assignment]  # declared
        return stamped.is_current(page.stamp)

    def iter_sessions(
        self,
        status: SessionStatus | str | Iterable[SessionStatus | str] | None = None,
        phase: SessionPhase | str | Iterable[SessionPhase | str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        branch: str | None = None,
        limit: int | None = None,
        *,
        worktree: str | None = None,
        updated_after: datetime | str | None = None,
        updated_before: datetime | str | None = None,
        active_before: datetime | str | None = None,
        text: str | None = None,
        order_by: str | None = None,
        descending: bool = True,
        offset: int = 0,
    ) -> Generator[Session, None, None]:
        """The sessions of :meth:`query_sessions`, one at a time, in constant memory.

        Same filters, order and window; the sessions are fetched in keyset
        pages of :data:`ITER_PAGE`, so a caller streaming 100,000 sessions
        holds one page at a time.  As with :meth:`query_page`, a session
        created meanwhile never makes another repeat or go missing; in
        ``"updated"`` order a session updated meanwhile moves, and may be met
        twice or not at all.  A search ranked by relevance (``text`` without
        ``order_by``) has no key to page by: its matches are gathered first.
        The arguments are checked at the call, before the first session.
        """
        from maestro.stores.query import SessionQuery

        query = SessionQuery.build(
            status=status,
            phase=phase,
            branch=branch,
            worktree=worktree,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
            active_before=active_before,
            text=text,
            order_by=order_by,
            descending=descending,
            limit=limit,
            offset=offset,
        )
        return self._iter_query(query)

    def _iter_query(self, query: SessionQuery) -> Generator[Session, None, None]:
        from maestro.records import replace

        if query.order_by == "rank":
            yield from self.store.query(query)
            return
        skip, left = query.offset, query.limit
        after: tuple[datetime, str] | None = None
        while left is None or left > 0:
            size = ITER_PAGE if left is None else min(ITER_PAGE, skip + left)
            page = self.store.query(replace(query, after=after, limit=size, offset=0))
            for session in page:
                if skip:
                    skip -= 1
                    continue
                yield session
                if left is not None:
                    left -= 1
                    if left == 0:
                        return
            if len(page) < size:
                return
            after = query.sort_key(page[-1])

    def count_sessions(
        self,
        status: SessionStatus | str | Iterable[SessionStatus | str] | None = None,
        phase: SessionPhase | str | Iterable[SessionPhase | str] | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        branch: str | None = None,
        *,
        worktree: str | None = None,
        updated_after: datetime | str | None = None,
        updated_before: datetime | str | None = None,
        active_before: datetime | str | None = None,
        text: str | None = None,
    ) -> int:
        """How many sessions match the filters of :meth:`query_sessions`, without loading them."""
        from maestro.stores.query import SessionQuery

        query = SessionQuery.build(
            status=status,
            phase=phase,
            branch=branch,
            worktree=worktree,
            created_after=created_after,
            created_before=created_before,
            updated_after=updated_after,
            updated_before=updated_before,
            active_before=active_before,
            text=text,
        )
        return self.store.count(query)

    def rebuild_index(self) -> int:
        """Rebuild the query index from the session files; returns the sessions indexed.

        Only needed after editing ``metadata.json`` files in place by hand:
        sessions written through the library, and session directories added
        or removed by other means, are picked up on their own.
        """
        from typing import cast

        from maestro.stores.kinds import Capability, require

        require(self.store, Capability.REINDEX, "rebuilding the index")
        return cast("Reindexable", self.store).rebuild_index()

    def upgrade_schema(self) -> tuple[int, int]:
        """Bring the store's database schema up to date (``maestro db upgrade``).

        Returns (the version found when the store was opened, the version
        now).  Needs a store with a schema (``Capability.MIGRATIONS``).
        """
        from typing import cast

        from maestro.stores.kinds import Capability, require

        require(self.store, Capability.MIGRATIONS, "upgrading the schema")
        return cast("Migratable", self.store).upgrade_schema()

    def changes(
        self,
        since: str | None = None,
        *,
        follow: bool = False,
        timeout: float | None = None,
        session_id: str | None = None,
        status: SessionStatus | str | Iterable[SessionStatus | str] | None = None,
        kind: ChangeKind | str | Iterable[ChangeKind | str] | None = None,
        **session_filters: Any,
    ) -> Generator[ChangeEvent, None, None]:
        """The committed changes, oldest first, as :class:`ChangeEvent` values.

        ``since`` is the ``cursor`` of an event already seen: reading goes on
        after it, also in another process.  Without it, reading starts at the
        oldest event kept, or with ``follow`` at the current end.  With
        ``follow`` the iterator waits for new events until ``timeout``
        seconds have passed (``None``: forever); else it ends when it has
        given what there is.  ``session_id``, ``status`` (the status after
        the change) and ``kind`` keep only some events; so do the filters of
        :meth:`query_sessions` (``phase``, ``branch``, ``worktree``, the
        time bounds, ``text``), judged on each event's session as it is when
        the event is read (see :meth:`change_filter`).  A ``reset`` event
        (the events after ``since`` are no longer kept: re-read what you
        need) always passes.  Needs a store with the change feed
        (``UnsupportedOperationError`` otherwise).
        """
        from typing import cast

        from maestro.stores.kinds import Capability, require

        require(self.store, Capability.CHANGES, "reading the change feed")
        feed = cast("ChangeFeed", self.store)
        wanted = self.change_filter(
            session_id=session_id, status=status, kind=kind, **session_filters
        )
        if timeout is not None and not timeout >= 0:
            raise SessionValidationError("timeout must be a non-negative number of seconds")
        if since is not None and not isinstance(since, str):
            raise SessionValidationError("since must be a cursor string")

        def events() -> Generator[ChangeEvent, None, None]:
            deadline = None if timeout is None else time.monotonic() + timeout
            cursor = feed.feed_end() if since is None and follow else since
            batch_size = 1000
            while True:
                batch = feed.changes_after(cursor, limit=batch_size)
                for event in batch:
                    cursor = event.cursor
                    if wanted(event):
                        yield event
                if len(batch) == batch_size:
                    continue  # more is there already
                if not follow:
                    return
                if cursor is None:
                    cursor = feed.feed_end()
                while True:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return
                    if feed.wait_for_change(cursor, 1.0 if remaining is None else remaining):
                        break

        return events()

    def change_filter(
        self,
        *,
        session_id: str | None = None,
        status: SessionStatus | str | Iterable[SessionStatus | str] | None = None,
        kind: ChangeKind | str | Iterable[ChangeKind | str] | None = None,
        phase: SessionPhase | str | Iterable[SessionPhase | str] | None = None,
        branch: str | None = None,
        worktree: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        updated_after: datetime | str | None = None,
        updated_before: datetime | str | None = None,
        text: str | None = None,
    ) -> ChangeFilter:
        """The predicate :meth:`changes` keeps events with, for readers of the feed.

        ``session_id``, ``status`` (after the change) and ``kind`` are
        fields of the event.  The others are :meth:`query_sessions`' filters,
        answered by reading the event's session as it is when the event is
        judged: a session that matched before in this filter's life and no
        longer does, or was deleted, passes once more, so a live view can drop
        it.  The filter keeps that memory; use one per reader.
        """
        from maestro.feedfilter import ChangeFilter
        from maestro.models import SessionStatus
        from maestro.stores.kinds import ChangeKind
        from maestro.stores.query import SessionQuery

        if session_id is not None:
            check_session_id(session_id)
        statuses = None if status is None else _choices(status, SessionStatus, "status")
        kinds = None if kind is None else _choices(kind, ChangeKind, "kind")
        given = (phase, branch, worktree, created_after, created_before)
        query = None
        if any(value is not None for value in (*given, updated_after, updated_before, text)):
            query = SessionQuery.build(
                phase=phase,
                branch=branch,
                worktree=worktree,
                created_after=created_after,
                created_before=created_before,
                updated_after=updated_after,
                updated_before=updated_before,
                text=text,
                order_by="created",
            )

        def load(sid: str) -> Session | None:
            try:
                return self.store.load(sid)
            except SessionError:
                return None

        return ChangeFilter(
            load, session_id=session_id, statuses=statuses, kinds=kinds, query=query
        )

    def changes_cursor(self) -> str:
        """The cursor of the newest change: ``changes(since=...)`` of it gives only later ones."""
        from typing import cast

        from maestro.stores.kinds import Capability, require

        require(self.store, Capability.CHANGES, "reading the change feed")
        return cast("ChangeFeed", self.store).feed_end()

    def list_active_sessions(self) -> list[Session]:
        """Every session not in a terminal state, newest first."""
        from maestro.lifecycle import ACTIVE_STATES

        return self.query_sessions(status=sorted(ACTIVE_STATES))

    def get_recent_sessions(self, count: int = 10) -> list[Session]:
        """The ``count`` most recently created sessions, newest first."""
        return self.query_sessions(limit=count)

    def delete_session(
        self,
        session_id: str,
        *,
        expected_revision: int | None = None,
        request_id: str | None = None,
    ) -> None:
        """Remove the session's directory and every file in it.

        With ``request_id``, deleting a session that does not exist succeeds:
        the record that could tell a retry from a mistake is gone with the
        session, and a retry must not fail because the first call went
        through.  A ``request_id`` the session already recorded for another
        write raises ``ConflictError``.
        """
        from maestro import idempotency

        check_session_id(session_id)
        if request_id is None:
            self.store.delete(session_id, expected_revision=expected_revision)
            return
        idempotency.check_request_id(request_id)
        try:
            current = self.store.load(session_id)
            if idempotency.recorded(current, request_id) is not None:
                raise ConflictError(session_id, request_id=request_id)
        except SessionNotFoundError:
            return
        except CorruptSessionError:
            pass  # nothing to compare with; an unreadable record can still be deleted
        try:
            self.store.delete(
                session_id, expected_revision=expected_revision, request_id=request_id
            )
        except SessionNotFoundError:
            return  # another call with this id got there first

    # ------------------------------------------------------------ beyond the seed

    def pause_session(
        self,
        session_id: str,
        *,
        reason: str | None = None,
        expected_revision: int | None = None,
        request_id: str | None = None,
    ) -> Session:
        """Pause an active session; it remembers where it was (``paused_from``)."""
        from maestro.models import SessionStatus

        return self.transition_state(
            session_id,
            SessionStatus.PAUSED,
            reason=reason,
            expected_revision=expected_revision,
            request_id=request_id,
        )

    def resume_session(
        self,
        session_id: str,
        *,
        reason: str | None = None,
        expected_revision: int | None = None,
        request_id: str | None = None,
    ) -> Session:
        """Return a paused session to the state it was paused from."""
        from maestro import lifecycle
        from maestro.models import SessionStatus
        from maestro.stores.kinds import ChangeKind

        check_session_id(session_id)
        _check_reason(reason, session_id)

        def change(session: Session) -> Session:
            if session.status is not SessionStatus.PAUSED:
                raise InvalidTransitionError(
                    session.session_id,
                    session.status.value,
                    "resume",
                    (),
                    message=f"the session is {session.status.value}, not paused; "
                    "only a paused session can be resumed",
                )
            if session.paused_from is None:
                raise SessionValidationError(
                    "paused by an older version, so the state to resume is unknown; "
                    "use transition_state with an explicit state",
                    session_id=session.session_id,
                )
            now = self._now()
            moved = lifecycle.apply_transition(session, session.paused_from, at=now, reason=reason)
            moved.updated_at = now
            return moved

        write, expected = self._once(
            change, request_id, "resume", {"reason": reason}, expected_revision
        )
        return self._modify(
            session_id,
            write,
            expected_revision=expected,
            kind=ChangeKind.RESUMED,
            request_id=request_id,
        )

    def increment_statistics(
        self,
        session_id: str,
        *,
        expected_revision: int | None = None,
        request_id: str | None = None,
        **deltas: int,
    ) -> Session:
        """Add to statistics counters atomically: ``increment_statistics(id, completed_tasks=1)``.

        Deltas may be negative, but no counter may drop below zero.
        """
        from maestro.models import SessionStatistics
        from maestro.records import replace
        from maestro.stores.kinds import ChangeKind

        check_session_id(session_id)
        if not deltas:
            raise SessionValidationError("no counter given", session_id=session_id)
        for name, delta in deltas.items():
            if name not in SessionStatistics.COUNTERS:
                raise SessionValidationError(
                    f"unknown counter {name!r}; counters: " + ", ".join(SessionStatistics.COUNTERS),
                    session_id=session_id,
                )
            if isinstance(delta, bool) or not isinstance(delta, int):
                raise SessionValidationError(
                    f"the increment of {name} must be a whole number such as 1 or -1",
                    session_id=session_id,
                )
            if delta == 0:
                # Refused rather than written: a write that changes nothing
                # would still bump the revision and wake every watcher.
                raise SessionValidationError(
                    f"an increment of 0 leaves {name} as it is; give a non-zero amount "
                    "such as 1 or -1",
                    session_id=session_id,
                )

        def change(session: Session) -> Session:
            counters = {}
            for name, delta in deltas.items():
                current = getattr(session.statistics, name)
                if current + delta < 0:
                    raise SessionValidationError(
                        f"{name} is {current}; subtracting {-delta} would make it negative",
                        session_id=session.session_id,
                    )
                counters[name] = current + delta
            statistics = replace(session.statistics, **counters)
            _check_task_counts(session.statistics, statistics, session.session_id)
            return replace(session, statistics=statistics, updated_at=self._now())

        write, expected = self._once(
            change, request_id, "increment", {"deltas": deltas}, expected_revision
        )
        return self._modify(
            session_id,
            write,
            expected_revision=expected,
            kind=ChangeKind.INCREMENTED,
            request_id=request_id,
        )

    # ------------------------------------------------------------ keeping sessions honest

    def heartbeat(
        self,
        session_id: str,
        *,
        expected_revision: int | None = None,
        request_id: str | None = None,
    ) -> Session:
        """Record that the worker driving an active session is alive (``heartbeat_at``).

        A heartbeat is not a change of the session's data: ``updated_at`` stays.
        """
        from maestro.stores.kinds import ChangeKind

        check_session_id(session_id)

        def change(session: Session) -> Session:
            if session.is_terminal:
                raise SessionValidationError(
                    f"the session is {session.status.value}; there is nothing to keep alive",
                    session_id=session.session_id,
                )
            session.heartbeat_at = self._now()
            return session

        write, expected = self._once(change, request_id, "heartbeat", {}, expected_revision)
        return self._modify(
            session_id,
            write,
            expected_revision=expected,
            kind=ChangeKind.HEARTBEAT,
            request_id=request_id,
        )

    def find_stale_sessions(
        self, older_than: timedelta | float | str | None = None
    ) -> list[Session]:
        """Running sessions nobody has touched for too long: zombies of a crashed worker.

        A session is stale when its last activity (update or heartbeat) is
        older than ``older_than`` or, when that is not given, than its own
        ``configuration.timeout_minutes``.  Paused sessions are idle on
        purpose and never stale.  Oldest activity first.  ``older_than``
        takes a ``timedelta``, a number of seconds or an age such as ``"30m"``.
        """
        from maestro.lifecycle import ACTIVE_STATES
        from maestro.models import SessionStatus

        if older_than is not None:
            from maestro.ages import as_age

            older_than = as_age(older_than, "older_than")
        now = self._now()
        bound = now - (older_than or timedelta(minutes=1))  # the shortest timeout allowed
        running = sorted(ACTIVE_STATES - {SessionStatus.PAUSED})
        candidates = self.query_sessions(status=running, active_before=bound)
        if older_than is None:
            candidates = [
                s
                for s in candidates
                if now - s.last_activity > timedelta(minutes=s.configuration.timeout_minutes)
            ]
        return sorted(candidates, key=lambda s: (s.last_activity, s.session_id))

    def reap_stale_sessions(
        self, older_than: timedelta | float | str | None = None, *, reason: str = "timed out"
    ) -> list[Session]:
        """Fail every stale session (see :meth:`find_stale_sessions`) with ``reason``.

        A session that shows a sign of life between the check and the reaping
        (its revision moved) is left alone.
        """
        from maestro.models import SessionStatus

        reaped = []
        for stale in self.find_stale_sessions(older_than):
            try:
                reaped.append(
                    self.transition_state(
                        stale.session_id,
                        SessionStatus.FAILED,
                        reason=reason,
                        expected_revision=stale.revision,
                    )
                )
            except (ConflictError, SessionNotFoundError):
                continue
        return reaped

    # ------------------------------------------------------------ orchestrators (maestro.phases)

    def phase(
        self,
        session_id: str,
        state: SessionStatus | str,
        *,
        reason: str | None = None,
        next: SessionStatus | str | None = None,
        fallback: SessionStatus | str | None = None,
        heartbeat_every: timedelta | float | None = None,
    ) -> Phase:
        """``with manager.phase(id, SessionStatus.IMPLEMENTING, next=...) as p:``.

        Enters ``state`` (nothing to do if the session is in it), heartbeats
        while the block runs (every quarter of ``timeout_minutes`` unless
        ``heartbeat_every``), then moves to ``next`` on success, to
        ``fallback`` or ``failed`` on an exception (counted in
        ``error_recovery_count``), and pauses on ``KeyboardInterrupt`` or
        ``SIGTERM``.  ``p.progress(completed_tasks=3)`` sets statistics.
        Also ``async with``.  See :mod:`maestro.phases`.
        """
        from maestro.phases import Phase

        return Phase(
            self,
            session_id,
            state,
            reason=reason,
            next=next,
            fallback=fallback,
            heartbeat_every=heartbeat_every,
        )

    def resume_run(
        self,
        run_key: str,
        *,
        older_than: timedelta | float | str | None = None,
        reason: str = "run resumed",
    ) -> RunState | None:
        """Pick up the unfinished run created with ``request_id=run_key``, or ``None``.

        A stale session (idle longer than ``older_than``, default its
        ``timeout_minutes``; 0 takes over at once) is paused with the reason "worker lost" and then
        resumed, a paused one resumed; the answer's ``status`` and ``phase``
        say where to continue.  A live one raises ``WorkerAliveError``.
        Call it before any reaping: a reaped session has failed for good.
        """
        from maestro.phases import resume_run

        return resume_run(self, run_key, older_than=older_than, reason=reason)

    def on_transition(
        self,
        callback: TransitionHook,
        *,
        to: SessionStatus | str | Iterable[SessionStatus | str] | None = None,
    ) -> Callable[[], None]:
        """Call ``callback(session, change)`` after each status change this manager
        writes (only into ``to`` when given); returns a function that removes it.

        Hooks run after the write is committed; one that raises is logged and
        changes nothing.  See :mod:`maestro.hooks`.
        """
        return self._hooks_made().on_transition(callback, to)

    def on_change(self, callback: ChangeHook) -> Callable[[], None]:
        """Call ``callback(kind, session)`` after every write this manager commits;
        returns a function that removes it.  See :mod:`maestro.hooks`."""
        return self._hooks_made().on_change(callback)

    def gc(
        self,
        older_than: timedelta | float | str,
        *,
        status: Iterable[SessionStatus | str] | None = None,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> list[Session]:
        """Delete sessions in ``status`` (default: completed and failed) whose last
        activity is older than ``older_than``.

        Returns the sessions removed (or, with ``dry_run``, that would be).
        A session changed meanwhile is kept.  ``older_than`` takes a
        ``timedelta``, a number of seconds or an age such as ``"30d"``.
        """
        from maestro.ages import as_age
        from maestro.lifecycle import TERMINAL_STATES

        age = as_age(older_than, "older_than")
        chosen = self.query_sessions(
            status=list(TERMINAL_STATES if status is None else status),
            active_before=self._now() - age,
            order_by="created",
            descending=False,
        )
        if dry_run:
            return chosen
        removed = []
        report = progress or _quiet
        for number, session in enumerate(chosen, 1):
            try:
                self.delete_session(session.session_id, expected_revision=session.revision)
                removed.append(session)
            except (ConflictError, SessionNotFoundError):
                pass  # changed or removed meanwhile: kept
            report(number, len(chosen))
        return removed

    def timeline(self, session_id: str) -> SessionTimeline:
        """The session's life state by state, up to now: segments, seconds per state."""
        from maestro.timeline import SessionTimeline

        return SessionTimeline.of(self.get_session(session_id), self._now())

    def stats(self, **filters: Any) -> SessionStats:
        """Counts, success rate, time per state and sessions per branch.

        ``filters`` are those of :meth:`query_sessions` (``status``,
        ``branch``, ``created_after``...).
        """
        from maestro.stats import summarize

        return summarize(self.query_sessions(**filters), self._now())

    # ------------------------------------------------------------ whole directories

    def _directory_export(self, action: str) -> DirectoryExport:
        from typing import cast

        from maestro.stores.kinds import Capability, require

        require(self.store, Capability.DIRECTORY_EXPORT, action)
        return cast("DirectoryExport", self.store)

    def export_sessions(
        self,
        target: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        **filters: Any,
    ) -> ExportResult:
        """Write the chosen sessions' directories, every file in them, to a ``.tar.gz``.

        ``filters`` are those of :meth:`query_sessions`; none exports all.
        """
        exporter = self._directory_export("export")
        chosen = self.query_sessions(**filters)
        return exporter.export_sessions(chosen, target, progress=progress)

    def import_sessions(
        self,
        source: str | os.PathLike[str],
        *,
        max_file_bytes: int | None = None,
        max_total_bytes: int | None = None,
        progress: Progress | None = None,
    ) -> ImportResult:
        """Bring in an export: checked whole first, idempotent, the higher revision wins.

        ``max_file_bytes`` bounds each member (default 64 MiB) and
        ``max_total_bytes`` the archive's uncompressed size (default 1 GiB);
        both are checked against what the archive declares before anything
        is written.
        """
        return self._directory_export("import").import_sessions(
            source,
            max_file_bytes=max_file_bytes,
            max_total_bytes=max_total_bytes,
            progress=progress,
        )

    def doctor(
        self, *, fix: bool = False, reindex: bool = False, progress: Progress | None = None
    ) -> DoctorReport:
        """Look for corrupt records, leftovers of crashed writers and a stale index.

        ``fix`` quarantines corrupt sessions in ``.flow/maestro/quarantine/``
        (never deletes them), removes leftovers and rebuilds the index;
        ``reindex`` only rebuilds the index.
        """
        from typing import cast

        from maestro.stores.kinds import Capability, require

        require(self.store, Capability.DOCTOR, "doctor")
        # Sessions a linked worktree kept in its own .flow before one store
        # served the whole repository: moved first, so the check sees them here.
        found: dict[str, str] = {}
        adopted: dict[str, str] = {}
        duplicates: dict[str, str] = {}
        for worktree, sessions_dir in self._worktree_stores():
            result = cast("DirectoryExport", self.store).adopt_sessions(sessions_dir, move=fix)
            found |= dict.fromkeys(result.found, str(worktree))
            adopted |= dict.fromkeys(result.moved, str(worktree))
            duplicates |= dict.fromkeys(result.duplicates, str(worktree))
        report = cast("Doctor", self.store).doctor(fix=fix, reindex=reindex, progress=progress)
        if Capability.MIGRATIONS in self.store.capabilities:
            report.engine = cast("Migratable", self.store).health()
        report.in_worktrees = found
        report.duplicates = duplicates
        for session_id, origin in adopted.items():
            report.resolved.add(session_id)
            report.fixed.append(f"moved {session_id} here from {origin}")
        return report

    def _worktree_stores(self) -> list[tuple[Path, Path]]:
        """(worktree, its own sessions directory) for this repository's linked worktrees.

        Only a store of whole session directories at the repository's main
        checkout looks; a worktree without a ``.flow`` of its own is skipped.
        """
        from maestro.gitctx import linked_worktrees
        from maestro.stores.kinds import Capability

        if Capability.DIRECTORY_EXPORT not in self.store.capabilities:
            return []
        if not (self.repo_root / ".git").is_dir():
            return []
        here = self.repo_root.resolve()
        stores = []
        for worktree in linked_worktrees(self.repo_root):
            sessions_dir = worktree / ".flow" / "maestro" / "sessions"
            if worktree.resolve() != here and sessions_dir.is_dir():
                stores.append((worktree, sessions_dir))
        return stores


def _quiet(done: int, total: int) -> None:
    return None


def _choices(
    value: object, enum: type[SessionStatus] | type[ChangeKind], name: str
) -> frozenset[str]:
    """One value or several of ``enum`` (members or their strings), as strings."""
    from typing import cast

    items: Iterable[object] = [value] if isinstance(value, str) else cast("Iterable[object]", value)
    chosen: set[str] = set()
    try:
        for item in items:
            chosen.add(enum(item if isinstance(item, str) else str(item)).value)
    except (TypeError, ValueError):
        allowed = ", ".join(member.value for member in enum)
        raise SessionValidationError(f"{name} must be among {allowed}") from None
    return frozenset(chosen)


def _status(value: object) -> str:
    from maestro.models import SessionStatus

    if isinstance(value, SessionStatus):
        return value.value
    if isinstance(value, str):
        try:
            return SessionStatus(value).value
        except ValueError:
            pass
    choices = ", ".join(s.value for s in SessionStatus)
    raise SessionValidationError(f"status must be one of {choices}")
