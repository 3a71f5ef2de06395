"""Model-based test: random sequences of manager calls against a plain model.

A Hypothesis ``RuleBasedStateMachine`` drives a real ``SessionManager`` on a
temporary root (create, update, valid and invalid transitions, pause, resume,
increments, deletes, stale revisions, missing ids, reopening the manager,
queries) and keeps its own model of every session in plain dicts.  The state
machine rules of the model are written out here from the README, not taken
from the library.  After every step each stored record must equal its model
entry field by field, and queries with several filter combinations must
return exactly the model's answer in the model's order.

The clock is controlled by the test and moves forward by a random amount
(zero included, so creation times can tie) before each step, which makes the
time filters, the ordering and ``duration_seconds`` exact and reproducible.
Ties are ordered by session id, newest first, so ids come from a seeded
sequence to keep failing examples replayable.  Each session gets a git
context of its own (branches drawn from a small set, for the branch filter).

The main run skips fsync (``durable=False``); a smaller run repeats it on a
durable store.  Example counts come from ``size()`` (``MAESTRO_STRESS=full``).
"""

from __future__ import annotations

import copy
import math
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import maestro.manager as manager_module
from maestro import (
    ConflictError,
    GitContext,
    InvalidSessionIdError,
    InvalidTransitionError,
    Session,
    SessionError,
    SessionManager,
    SessionNotFoundError,
    SessionValidationError,
)

from .conftest import size

# ---------------------------------------------------------------- the model's rules

#: Forward edges of the workflow, as the README draws them.
FORWARD: dict[str, tuple[str, ...]] = {
    "initializing": ("planning",),
    "planning": ("generating_tasks",),
    "generating_tasks": ("implementing",),
    "implementing": ("validating",),
    "validating": ("implementing", "generating_report"),
    "generating_report": ("completed",),
}
TERMINAL = frozenset({"completed", "failed"})
STATUSES = (*FORWARD, "completed", "failed", "paused")
PHASES = ("plan", "generate_tasks", "implement", "validate", "cleanup")
PHASE_FOR = {
    "planning": "plan",
    "generating_tasks": "generate_tasks",
    "implementing": "implement",
    "validating": "validate",
    "generating_report": "cleanup",
}
COUNTERS = (
    "total_tasks",
    "completed_tasks",
    "failed_tasks",
    "decisions_made",
    "checkpoints_created",
    "error_recovery_count",
)
MAX_INT = 2**63 - 1
DEFAULT_CONFIGURATION = {
    "max_iterations": 3,
    "timeout_minutes": 120,
    "auto_checkpoint": True,
    "error_recovery_enabled": True,
}
UPDATABLE = frozenset(
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

#: Branch names that share prefixes, so only an exact match passes the branch filter.
BRANCHES = ("main", "main-v2", "feature/login", "feature/logout", "fix/typo")
WORKTREES = ("wt-a", "wt-b")
START = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
#: Marks "the phase follows the status" in :func:`moved`.
FOLLOW = object()


def targets(status: str, paused_from: str | None) -> frozenset[str]:
    """Where a session in ``status`` may go next."""
    if status in TERMINAL:
        return frozenset()
    if status == "paused":
        assert paused_from is not None
        return frozenset({paused_from}) | (targets(paused_from, None) - {"paused"})
    return frozenset({*FORWARD[status], "paused", "failed"})


def text_ok(value: object, *, empty: bool = False) -> bool:
    """A string the record may hold: no NUL, no lone surrogate, not blank unless allowed."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    if any(0xD800 <= ord(char) <= 0xDFFF for char in value):
        return False
    return empty or value.strip() != ""


def reason_blank(reason: object) -> bool:
    """Refused by every write before anything else: a reason that says nothing."""
    return reason is not None and (not isinstance(reason, str) or not reason.strip())


def tasks_broken(before: dict[str, Any], after: dict[str, Any]) -> bool:
    """A write moving the task counts past a total that is set."""
    names = ("total_tasks", "completed_tasks", "failed_tasks")
    if all(before[n] == after[n] for n in names):
        return False
    total = after["total_tasks"]
    return bool(total) and after["completed_tasks"] + after["failed_tasks"] > total


def count_ok(value: object, minimum: int = 0) -> bool:
    return type(value) is int and minimum <= value <= MAX_INT


def seconds_ok(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value >= 0


def status_value(value: object) -> str | None:
    """The status a caller means, or None when it names none."""
    text = str(value) if isinstance(value, str) else None
    return text if text in STATUSES else None


def merge_statistics(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any] | None:
    if set(changes) - {*COUNTERS, "duration_seconds"}:
        return None
    merged = {**current, **changes}
    if not all(count_ok(merged[name]) for name in COUNTERS):
        return None
    if not seconds_ok(merged["duration_seconds"]):
        return None
    merged["duration_seconds"] = float(merged["duration_seconds"])
    return merged


def merge_configuration(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any] | None:
    if set(changes) - set(DEFAULT_CONFIGURATION):
        return None
    merged = {**current, **changes}
    if not (count_ok(merged["max_iterations"], 1) and count_ok(merged["timeout_minutes"], 1)):
        return None
    if not all(type(merged[k]) is bool for k in ("auto_checkpoint", "error_recovery_enabled")):
        return None
    return merged


def merge_git(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any] | None:
    if set(changes) - set(current):
        return None
    merged = {**current, **changes}
    if not all(text_ok(merged[k]) for k in ("branch", "commit", "repo_root")):
        return None
    if type(merged["is_worktree"]) is not bool:
        return None
    if merged["worktree_name"] is not None and not text_ok(merged["worktree_name"]):
        return None
    return merged


def merge_prd(current: dict[str, Any] | None, changes: dict[str, Any]) -> dict[str, Any] | None:
    if set(changes) - {"filename", "path", "version"}:
        return None
    path = changes.get("path")
    if "filename" not in changes and isinstance(path, str):
        # A new path without a file name names the file by its last part.
        changes = {**changes, "filename": os.path.basename(path.rstrip("/")) or path}
    merged = {**(current or {}), **changes}
    if not (text_ok(merged.get("filename")) and text_ok(merged.get("path"))):
        return None
    version = merged.get("version")
    if version is not None and not text_ok(version):
        return None
    return {"filename": merged["filename"], "path": merged["path"], "version": version}


def active_seconds(record: dict[str, Any]) -> float:
    """Time spent outside ``paused`` from creation to the last history entry."""
    total = timedelta(0)
    start, state = record["created_at"], "initializing"
    for (_, to, _), at in zip(record["history"], record["history_at"], strict=True):
        if state != "paused":
            total += at - start
        start, state = at, to
    return total / timedelta(seconds=1)


def moved(
    record: dict[str, Any], target: str, reason: str | None, now: datetime, phase: object = FOLLOW
) -> dict[str, Any]:
    """``record`` after an allowed transition to ``target`` at ``now``."""
    new = copy.deepcopy(record)
    new["history"].append((record["status"], target, reason))
    new["history_at"].append(now)
    new["paused_from"] = record["status"] if target == "paused" else None
    new["phase"] = PHASE_FOR.get(target, record["phase"]) if phase is FOLLOW else phase
    new["status"] = target
    if target in TERMINAL:
        new["completed_at"] = now
        new["statistics"]["duration_seconds"] = active_seconds(new)
    return new


# ---------------------------------------------------------------- strategies


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` nine times in ten, ``bad`` otherwise."""
    return st.integers(0, 9).flatmap(lambda n: bad if n == 9 else good)


def fields(
    good: dict[str, st.SearchStrategy[Any]],
    bad: dict[str, st.SearchStrategy[Any]],
    *stray: str,
    required: tuple[str, ...] = (),
    min_size: int = 0,
    max_size: int | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts of some of the ``good`` fields; now and then one field gets a doubtful
    value from ``bad`` or a key from ``stray`` that does not belong."""
    optional = [name for name in good if name not in required]
    chosen = st.lists(
        st.sampled_from(optional),
        unique=True,
        min_size=min_size,
        max_size=max_size or len(optional),
    )
    plain = chosen.flatmap(
        lambda names: st.fixed_dictionaries({n: good[n] for n in (*required, *names)})
    )
    faults = [st.sampled_from(stray).map(lambda name: {name: 1})]
    if bad:
        faults.append(
            st.sampled_from(sorted(bad)).flatmap(
                lambda name: bad[name].map(lambda value: {name: value})
            )
        )
    spoiled = st.tuples(plain, st.one_of(faults)).map(lambda p: {**p[0], **p[1]})
    return mostly(plain, spoiled)


TICKS = st.one_of(
    st.just(0), st.integers(1, 1000), st.integers(1, 10**7), st.integers(10**7, 10**11)
)
REQUESTS = mostly(
    st.one_of(
        st.sampled_from(["Add OAuth login", "Dark mode toggle", "Fix flaky export"]),
        st.text(max_size=12).map(lambda text: f"Feature {text}"),
    ),
    st.one_of(
        st.text(max_size=3),
        st.sampled_from(["", " \t\n", "nul\x00inside", "lone \ud800 surrogate", "\u00a0\u2003"]),
    ),
)
REASONS = st.one_of(
    st.none(),
    mostly(st.text(max_size=12), st.sampled_from(["nul\x00", "\udfff", 7])),
)
BAD_COUNTS = st.sampled_from([-1, MAX_INT, MAX_INT + 1, 2.0, True, "3", None])
STATISTICS = fields(
    {
        **dict.fromkeys(COUNTERS, st.integers(0, 1000)),
        "duration_seconds": st.floats(0, 1e6, allow_nan=False),
    },
    {
        **dict.fromkeys(COUNTERS, BAD_COUNTS),
        "duration_seconds": st.sampled_from([-0.5, math.nan, math.inf, 7, True, "1.0"]),
    },
    "bogus",
    "duration",
    max_size=3,
)
DELTAS = mostly(
    fields(
        dict.fromkeys(COUNTERS, st.integers(-3, 20)),
        dict.fromkeys(COUNTERS, st.sampled_from([-1, -5, MAX_INT, -MAX_INT, 1.0, True, "1"])),
        "duration_seconds",
        "bogus",
        min_size=1,
        max_size=3,
    ),
    st.just({}),
)
CONFIGURATION = fields(
    {
        "max_iterations": st.integers(1, 20),
        "timeout_minutes": st.integers(1, 600),
        "auto_checkpoint": st.booleans(),
        "error_recovery_enabled": st.booleans(),
    },
    {
        "max_iterations": st.sampled_from([0, -3, True, "5", MAX_INT, MAX_INT + 1]),
        "timeout_minutes": st.sampled_from([0, 2.5, None]),
        "auto_checkpoint": st.sampled_from([0, 1, "yes", None]),
        "error_recovery_enabled": st.sampled_from([0, "no"]),
    },
    "max_retries",
)
GOOD_NAMES = st.sampled_from(["prd.md", "docs/prd-v2.md", "spec", "\u00e9t\u00e9/prd.md"])
BAD_NAMES = st.sampled_from(["", "   ", "a\x00b", 3, None])
PRD_FIELDS = {"filename": GOOD_NAMES, "path": GOOD_NAMES, "version": st.none() | GOOD_NAMES}
PRD_FAULTS = dict.fromkeys(("filename", "path", "version"), BAD_NAMES)
PRD = fields(PRD_FIELDS, PRD_FAULTS, "url", required=("filename", "path"))
PRD_CHANGES = fields(PRD_FIELDS, PRD_FAULTS, "url")
GIT_CHANGES = fields(
    {
        "branch": st.sampled_from(BRANCHES),
        "worktree_name": st.none() | st.sampled_from(WORKTREES),
        "is_worktree": st.booleans(),
    },
    {
        "branch": st.sampled_from(["", " ", 5]),
        "worktree_name": st.sampled_from(["", "x\x00"]),
        "is_worktree": st.sampled_from([0, "true"]),
        "commit": st.sampled_from(["", "abc123"]),
    },
    "remote",
)
NOT_STATUSES = st.sampled_from(["bogus", "PLANNING", "", " planning"])
STATUS_ARGS = mostly(st.sampled_from(STATUSES), NOT_STATUSES)
PHASE_ARGS = mostly(st.none() | st.sampled_from(PHASES), st.sampled_from(["deploy", 4]))
UPDATES = fields(
    {
        "feature_request": REQUESTS,
        "status": STATUS_ARGS,
        "current_phase": PHASE_ARGS,
        "statistics": STATISTICS,
        "configuration": CONFIGURATION,
        "git_context": GIT_CHANGES,
        "prd_reference": st.none() | PRD_CHANGES,
    },
    {},
    "revision",
    "history",
    "created_at",
    "updated_at",
    "completed_at",
    "paused_from",
    "session_id",
    "schema_version",
    "owner",
    max_size=3,
)
REVISION_MODES = st.sampled_from(["none", "right"])
OFFSETS = (
    UTC,
    timezone(timedelta(hours=5, minutes=30)),
    timezone(timedelta(hours=-8)),
    timezone(timedelta(hours=14)),
)


def shown(moment: datetime, form: int, offset: timezone) -> datetime | str:
    """The same instant as a datetime or an ISO 8601 string, in one of several shapes."""
    local = moment.astimezone(offset)
    if form == 0:
        return local
    if form == 1:
        return local.isoformat()
    if form == 2:
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat()  # naive: read as UTC


class Clock:
    """Returns the same instant until the test moves it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


# ---------------------------------------------------------------- the machine


class SessionManagerMachine(RuleBasedStateMachine):
    """A real manager on a temporary root, and the model it must agree with."""

    DURABLE = False
    MAX_LIVE = 14

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="maestro-model-"))
        self.clock = Clock()
        self.manager = self.open()
        self.model: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.created = 0
        self.steps = 0
        self.recent: str | None = None
        # Session ids decide the order of creation-time ties; drawing them from a
        # seeded sequence keeps every example reproducible, which shrinking needs.
        self.ids = random.Random(0)
        self.library_ids = manager_module.new_session_id
        manager_module.new_session_id = self.next_id

    def next_id(self) -> str:
        return str(uuid.UUID(int=self.ids.getrandbits(128), version=4))

    def open(self) -> SessionManager:
        return SessionManager(self.root, clock=self.clock, durable=self.DURABLE)

    def teardown(self) -> None:
        manager_module.new_session_id = self.library_ids
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------ helpers

    def tick(self, micros: int) -> datetime:
        self.clock.now += timedelta(microseconds=micros)
        self.steps += 1
        return self.clock.now

    def pick(self, data: st.DataObject, among: list[str] | None = None) -> str:
        """A live session, often the one the previous step touched (long runs on one
        session reach deep states and mix counters, merges and transitions)."""
        candidates = list(self.model) if among is None else among
        if self.recent in candidates and data.draw(st.booleans()):
            return self.recent
        return data.draw(st.sampled_from(candidates))

    def revision_arg(self, sid: str, mode: str) -> int | None:
        return self.model[sid]["revision"] if mode == "right" else None

    def refused(
        self, sid: str, expected: type[SessionError], call: Callable[[], object], *, exact: bool
    ) -> None:
        """``call`` raises ``expected`` and the stored session is unchanged."""
        with pytest.raises(SessionError) as caught:
            call()
        error = caught.value
        if exact:
            assert type(error) is expected, f"{type(error).__name__}: {error}"
        else:
            assert isinstance(error, expected), f"{type(error).__name__}: {error}"
        if sid in self.model:
            self.check(self.manager.get_session(sid))

    def accepted(self, sid: str, record: dict[str, Any], result: Session) -> None:
        """The call returned ``result``: it and the stored session equal ``record``."""
        record["revision"] += 1
        record["updated_at"] = self.clock.now
        self.model[sid] = record
        self.recent = sid
        self.check(result)
        self.check(self.manager.get_session(sid))

    def check(self, session: Session) -> None:
        """Every modelled field of ``session`` equals the model."""
        record = self.model[session.session_id]
        assert session.feature_request == record["feature_request"]
        assert session.status.value == record["status"]
        paused_from = session.paused_from.value if session.paused_from is not None else None
        assert paused_from == record["paused_from"]
        phase = session.current_phase.value if session.current_phase is not None else None
        assert phase == record["phase"]
        assert session.created_at == record["created_at"]
        assert session.updated_at == record["updated_at"]
        assert session.completed_at == record["completed_at"]
        git = session.git_context
        assert {
            "branch": git.branch,
            "commit": git.commit,
            "repo_root": git.repo_root,
            "is_worktree": git.is_worktree,
            "worktree_name": git.worktree_name,
        } == record["git"]
        prd = session.prd_reference
        assert (
            None
            if prd is None
            else {"filename": prd.filename, "path": prd.path, "version": prd.version}
        ) == record["prd"]
        statistics = session.statistics.to_dict()
        duration = statistics.pop("duration_seconds")
        expected = dict(record["statistics"])
        assert math.isclose(
            duration, expected.pop("duration_seconds"), rel_tol=1e-12, abs_tol=5e-7
        ), (duration, record["statistics"])
        assert statistics == expected
        assert session.configuration.to_dict() == record["configuration"]
        assert session.revision == record["revision"]
        history = [(h.from_status.value, h.to_status.value, h.reason) for h in session.history]
        assert history == record["history"]
        assert [h.at for h in session.history] == record["history_at"]
        assert session.schema_version == 1
        assert session.extra == {}

    def answer(
        self,
        *,
        statuses: frozenset[str] | None = None,
        phases: frozenset[str] | None = None,
        branch: str | None = None,
        worktree: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        by_update: bool = False,
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[str]:
        """The ids the model says a query returns, in order."""
        chosen = []
        for sid, record in self.model.items():
            if statuses is not None and record["status"] not in statuses:
                continue
            if phases is not None and record["phase"] not in phases:
                continue
            if branch is not None and record["git"]["branch"] != branch:
                continue
            if worktree is not None and record["git"]["worktree_name"] != worktree:
                continue
            created, updated = record["created_at"], record["updated_at"]
            if created_after is not None and created < created_after:
                continue
            if created_before is not None and created > created_before:
                continue
            if updated_after is not None and updated < updated_after:
                continue
            if updated_before is not None and updated > updated_before:
                continue
            chosen.append((updated if by_update else created, sid))
        chosen.sort(reverse=descending)
        ids = [sid for _, sid in chosen]
        return ids[offset:] if limit is None else ids[offset : offset + limit]

    def same_answer(self, found: list[Session], expected: list[str]) -> None:
        assert [s.session_id for s in found] == expected
        for session in found:
            self.check(session)

    def instant(self, data: st.DataObject) -> datetime:
        """A moment near the interesting ones: record times, now, before everything."""
        bases = [START - timedelta(days=1), self.clock.now]
        for record in self.model.values():
            bases += [record["created_at"], record["updated_at"]]
        base = data.draw(st.sampled_from(bases))
        shift = data.draw(st.sampled_from([0, 0, -1, 1, -1_000_000, 1_000_000]))
        return base + timedelta(microseconds=shift)

    def bound(self, data: st.DataObject, moment: datetime) -> datetime | str:
        form = data.draw(st.integers(0, 3))
        return shown(moment, form, data.draw(st.sampled_from(OFFSETS)))

    # ------------------------------------------------------------ rules

    @initialize(
        seeds=st.lists(
            st.tuples(
                TICKS,
                st.sampled_from(BRANCHES),
                st.none() | st.sampled_from(WORKTREES),
                st.lists(st.booleans(), max_size=7),
                st.integers(0, 3),
            ),
            min_size=1,
            max_size=5,
        ),
        id_seed=st.integers(0, 2**32),
    )
    def seed(self, seeds: list[tuple[int, str, str | None, list[bool], int]], id_seed: int) -> None:
        """Start with a few sessions spread along the workflow, some of them failed."""
        self.ids.seed(id_seed)
        for number, (micros, branch, worktree, turns, fate) in enumerate(seeds):
            sid = self.make(micros, f"Seed request {number}", None, None, branch, worktree, False)
            assert sid is not None
            self.drive(sid, turns, fail=fate == 0)

    def drive(self, sid: str, turns: list[bool], *, fail: bool = False) -> None:
        """Move ``sid`` one forward edge per item of ``turns`` through ``transition_state``
        (an item picks the later of two onward edges: validating to report, not back to
        implementing), then to ``failed`` if ``fail``."""
        for later in turns:
            onward = FORWARD.get(self.model[sid]["status"], ())
            if not onward:
                break
            self.tick(1 + len(self.model[sid]["history"]) * 1000)
            target = onward[-1] if later else onward[0]
            self.transition(sid, target, None, "right" if later else "none")
        if fail and self.model[sid]["status"] not in TERMINAL:
            self.tick(500)
            self.transition(sid, "failed", "gave up", "none")

    @precondition(lambda self: any(r["status"] in FORWARD for r in self.model.values()))
    @rule(
        data=st.data(),
        turns=st.lists(st.booleans(), min_size=1, max_size=6),
        fate=st.integers(0, 3),
    )
    def run_ahead(self, data: st.DataObject, turns: list[bool], fate: int) -> None:
        movable = [sid for sid, record in self.model.items() if record["status"] in FORWARD]
        self.drive(self.pick(data, movable), turns, fail=fate == 0)

    @precondition(lambda self: len(self.model) < self.MAX_LIVE)
    @rule(
        micros=TICKS,
        request=REQUESTS,
        configuration=st.none() | CONFIGURATION,
        prd=st.none() | PRD,
        branch=st.sampled_from(BRANCHES),
        worktree=st.none() | st.sampled_from(WORKTREES),
        is_worktree=st.booleans(),
    )
    def create(
        self,
        micros: int,
        request: str,
        configuration: dict[str, Any] | None,
        prd: dict[str, Any] | None,
        branch: str,
        worktree: str | None,
        is_worktree: bool,
    ) -> None:
        self.make(micros, request, configuration, prd, branch, worktree, is_worktree)

    def make(
        self,
        micros: int,
        request: str,
        configuration: dict[str, Any] | None,
        prd: dict[str, Any] | None,
        branch: str,
        worktree: str | None,
        is_worktree: bool,
    ) -> str | None:
        """Create a session with a git context of its own, or see it refused."""
        now = self.tick(micros)
        self.created += 1
        git = {
            "branch": branch,
            "commit": f"{self.created:040x}",
            "repo_root": f"checkouts/app-{self.created}",
            "is_worktree": is_worktree,
            "worktree_name": worktree,
        }
        config = merge_configuration(DEFAULT_CONFIGURATION, configuration or {})
        prd_record = None if prd is None else merge_prd(None, prd)

        def call() -> Session:
            return self.manager.create_session(
                request, configuration, prd_reference=prd, git_context=GitContext(**git)
            )

        if not text_ok(request) or config is None or (prd is not None and prd_record is None):
            self.refused("", SessionValidationError, call, exact=True)
            return None
        session = call()
        self.model[session.session_id] = {
            "feature_request": request,
            "status": "initializing",
            "paused_from": None,
            "phase": None,
            "statistics": {**dict.fromkeys(COUNTERS, 0), "duration_seconds": 0.0},
            "configuration": config,
            "prd": prd_record,
            "git": git,
            "revision": 1,
            "history": [],
            "history_at": [],
            "created_at": now,
            "updated_at": now,
            "completed_at": None,
        }
        self.recent = session.session_id
        self.check(session)
        self.check(self.manager.get_session(session.session_id))
        return session.session_id

    @precondition(lambda self: self.model)
    @rule(
        micros=TICKS,
        data=st.data(),
        updates=UPDATES,
        reason=REASONS,
        mode=REVISION_MODES,
    )
    def update(
        self,
        micros: int,
        data: st.DataObject,
        updates: dict[str, Any],
        reason: Any,
        mode: str,
    ) -> None:
        now = self.tick(micros)
        sid = self.pick(data)
        record = copy.deepcopy(self.model[sid])
        allowed = targets(record["status"], record["paused_from"])
        if allowed and data.draw(st.booleans()):
            # Often a status change the state machine allows, with or without a phase.
            updates = {**updates, "status": data.draw(st.sampled_from(sorted(allowed)))}
            if data.draw(st.booleans()):
                updates["current_phase"] = data.draw(PHASE_ARGS)

        def call() -> Session:
            return self.manager.update_session(
                sid, updates, reason=reason, expected_revision=self.revision_arg(sid, mode)
            )

        if reason_blank(reason) or set(updates) - UPDATABLE:
            self.refused(sid, SessionValidationError, call, exact=True)
            return
        before = copy.deepcopy(record)
        valid = True
        for key, value in updates.items():
            if key == "feature_request":
                valid &= text_ok(value)
                record[key] = value
            elif key == "current_phase":
                valid &= value is None or value in PHASES
                record["phase"] = value
            elif key == "statistics":
                merged = merge_statistics(record["statistics"], value)
                valid &= merged is not None
                record["statistics"] = merged
            elif key == "configuration":
                merged = merge_configuration(record["configuration"], value)
                valid &= merged is not None
                record["configuration"] = merged
            elif key == "git_context":
                merged = merge_git(record["git"], value)
                valid &= merged is not None
                record["git"] = merged
            elif key == "prd_reference":
                merged = None if value is None else merge_prd(record["prd"], value)
                valid &= value is None or merged is not None
                record["prd"] = merged
        target = status_value(updates.get("status", record["status"]))
        forbidden = target is not None and (
            target != record["status"]
            and target not in targets(record["status"], record["paused_from"])
        )
        if valid and before["status"] in TERMINAL:
            # A finished session keeps all but its statistics counters and PRD.
            for key, field_name in (
                ("feature_request", "feature_request"),
                ("current_phase", "phase"),
                ("configuration", "configuration"),
                ("git_context", "git"),
            ):
                if key in updates and record[field_name] != before[field_name]:
                    valid = False
            duration = "duration_seconds"
            if record["statistics"][duration] != before["statistics"][duration]:
                valid = False
        if valid and tasks_broken(before["statistics"], record["statistics"]):
            valid = False
        if not valid or target is None:
            # With a forbidden transition as well, either refusal may come first.
            self.refused(sid, SessionValidationError, call, exact=not forbidden)
            return
        if target != record["status"]:
            if forbidden:
                self.refused(sid, InvalidTransitionError, call, exact=True)
                return
            if reason is not None and not text_ok(reason, empty=True):
                self.refused(sid, SessionValidationError, call, exact=True)
                return
            phase = record["phase"] if "current_phase" in updates else FOLLOW
            record = moved(record, target, reason, now, phase)
        self.accepted(sid, record, call())

    def transition(self, sid: str, target: Any, reason: Any, mode: str) -> None:
        """Call ``transition_state`` and hold it to the model."""
        record = self.model[sid]

        def call() -> Session:
            return self.manager.transition_state(
                sid, target, reason=reason, expected_revision=self.revision_arg(sid, mode)
            )

        wanted = status_value(target)
        if wanted is None or reason_blank(reason):
            self.refused(sid, SessionValidationError, call, exact=True)
        elif wanted not in targets(record["status"], record["paused_from"]):
            self.refused(sid, InvalidTransitionError, call, exact=True)
        elif reason is not None and not text_ok(reason, empty=True):
            self.refused(sid, SessionValidationError, call, exact=True)
        else:
            self.accepted(sid, moved(record, wanted, reason, self.clock.now), call())

    @precondition(
        lambda self: any(targets(r["status"], r["paused_from"]) for r in self.model.values())
    )
    @rule(micros=TICKS, data=st.data(), reason=REASONS, mode=REVISION_MODES)
    def transition_allowed(self, micros: int, data: st.DataObject, reason: Any, mode: str) -> None:
        self.tick(micros)
        movable = [s for s, r in self.model.items() if targets(r["status"], r["paused_from"])]
        sid = self.pick(data, movable)
        record = self.model[sid]
        allowed = targets(record["status"], record["paused_from"])
        if "failed" in allowed and len(allowed) > 1 and data.draw(st.integers(0, 4)) > 0:
            allowed -= {"failed"}  # failing ends a session: keep most of them going
        target = data.draw(st.sampled_from(sorted(allowed)))
        self.transition(sid, target, reason, mode)

    @precondition(lambda self: self.model)
    @rule(micros=TICKS, data=st.data(), reason=REASONS, mode=REVISION_MODES, bogus=NOT_STATUSES)
    def transition_forbidden(
        self, micros: int, data: st.DataObject, reason: Any, mode: str, bogus: str
    ) -> None:
        """Every state the model says the session cannot go to next, and a non-state:
        each call is refused and changes nothing."""
        self.tick(micros)
        sid = self.pick(data)
        record = self.model[sid]
        for state in sorted(set(STATUSES) - targets(record["status"], record["paused_from"])):
            self.transition(sid, state, reason, mode)
        self.transition(sid, bogus, reason, mode)

    @precondition(lambda self: self.model)
    @rule(micros=TICKS, data=st.data(), reason=REASONS, mode=REVISION_MODES)
    def pause(self, micros: int, data: st.DataObject, reason: Any, mode: str) -> None:
        self.tick(micros)
        sid = self.pick(data)
        record = self.model[sid]

        def call() -> Session:
            return self.manager.pause_session(
                sid, reason=reason, expected_revision=self.revision_arg(sid, mode)
            )

        if reason_blank(reason):
            self.refused(sid, SessionValidationError, call, exact=True)
        elif "paused" not in targets(record["status"], record["paused_from"]):
            self.refused(sid, InvalidTransitionError, call, exact=True)
        elif reason is not None and not text_ok(reason, empty=True):
            self.refused(sid, SessionValidationError, call, exact=True)
        else:
            self.accepted(sid, moved(record, "paused", reason, self.clock.now), call())

    @precondition(lambda self: self.model)
    @rule(micros=TICKS, data=st.data(), reason=REASONS, mode=REVISION_MODES)
    def resume(self, micros: int, data: st.DataObject, reason: Any, mode: str) -> None:
        self.tick(micros)
        paused = [s for s, r in self.model.items() if r["status"] == "paused"]
        prefer_paused = paused and data.draw(st.integers(0, 4)) > 0
        sid = self.pick(data, paused if prefer_paused else None)
        record = self.model[sid]

        def call() -> Session:
            return self.manager.resume_session(
                sid, reason=reason, expected_revision=self.revision_arg(sid, mode)
            )

        if reason_blank(reason):
            self.refused(sid, SessionValidationError, call, exact=True)
        elif record["status"] != "paused":
            self.refused(sid, InvalidTransitionError, call, exact=True)
        elif reason is not None and not text_ok(reason, empty=True):
            self.refused(sid, SessionValidationError, call, exact=True)
        else:
            origin = record["paused_from"]
            self.accepted(sid, moved(record, origin, reason, self.clock.now), call())

    @precondition(lambda self: self.model)
    @rule(
        micros=TICKS,
        data=st.data(),
        deltas=DELTAS,
        mode=REVISION_MODES,
    )
    def increment(
        self, micros: int, data: st.DataObject, deltas: dict[str, Any], mode: str
    ) -> None:
        self.tick(micros)
        sid = self.pick(data)
        record = copy.deepcopy(self.model[sid])

        def call() -> Session:
            return self.manager.increment_statistics(
                sid, expected_revision=self.revision_arg(sid, mode), **deltas
            )

        well_formed = all(name in COUNTERS and type(d) is int for name, d in deltas.items())
        if not deltas or not well_formed or 0 in deltas.values():
            self.refused(sid, SessionValidationError, call, exact=True)
            return
        before = copy.deepcopy(record["statistics"])
        for name, delta in deltas.items():
            record["statistics"][name] += delta
        if not all(count_ok(record["statistics"][name]) for name in deltas) or tasks_broken(
            before, record["statistics"]
        ):
            self.refused(sid, SessionValidationError, call, exact=True)
            return
        self.accepted(sid, record, call())

    @precondition(lambda self: self.model)
    @rule(micros=TICKS, data=st.data(), mode=REVISION_MODES)
    def delete(self, micros: int, data: st.DataObject, mode: str) -> None:
        self.tick(micros)
        sid = self.pick(data)
        self.manager.delete_session(sid, expected_revision=self.revision_arg(sid, mode))
        del self.model[sid]
        self.deleted.append(sid)
        self.refused(sid, SessionNotFoundError, lambda: self.manager.get_session(sid), exact=True)
        assert not (self.manager.sessions_dir / sid).exists()

    @precondition(lambda self: self.model)
    @rule(
        micros=TICKS,
        data=st.data(),
        operation=st.sampled_from(
            ["update", "transition", "pause", "resume", "increment", "delete"]
        ),
        off_by=st.sampled_from([-100, -1, 1, 2, 1000]),
    )
    def stale_revision(self, micros: int, data: st.DataObject, operation: str, off_by: int) -> None:
        self.tick(micros)
        sid = self.pick(data)
        wrong = self.model[sid]["revision"] + off_by
        target = data.draw(st.sampled_from(STATUSES))
        calls: dict[str, Callable[[], object]] = {
            "update": lambda: self.manager.update_session(
                sid, {"feature_request": "changed"}, expected_revision=wrong
            ),
            "transition": lambda: self.manager.transition_state(
                sid, target, expected_revision=wrong
            ),
            "pause": lambda: self.manager.pause_session(sid, expected_revision=wrong),
            "resume": lambda: self.manager.resume_session(sid, expected_revision=wrong),
            "increment": lambda: self.manager.increment_statistics(
                sid, expected_revision=wrong, total_tasks=1
            ),
            "delete": lambda: self.manager.delete_session(sid, expected_revision=wrong),
        }
        self.refused(sid, ConflictError, calls[operation], exact=True)

    @rule(
        micros=TICKS,
        data=st.data(),
        kind=st.sampled_from(["deleted", "unknown", "malformed"]),
        operation=st.sampled_from(
            ["get", "update", "transition", "pause", "resume", "increment", "delete"]
        ),
    )
    def missing(self, micros: int, data: st.DataObject, kind: str, operation: str) -> None:
        self.tick(micros)
        if kind == "deleted" and self.deleted:
            sid = data.draw(st.sampled_from(self.deleted))
        elif kind == "malformed":
            live = [s.upper() for s in self.model]
            sid = data.draw(
                st.sampled_from(
                    [*live, "", "not-a-uuid", "../../etc", "{" + str(uuid.UUID(int=1)) + "}"]
                )
            )
        else:
            sid = str(uuid.UUID(int=data.draw(st.integers(0, 2**128 - 1)), version=4))
            assert sid not in self.model
        calls: dict[str, Callable[[], object]] = {
            "get": lambda: self.manager.get_session(sid),
            "update": lambda: self.manager.update_session(sid, {"feature_request": "x"}),
            "transition": lambda: self.manager.transition_state(sid, "failed"),
            "pause": lambda: self.manager.pause_session(sid),
            "resume": lambda: self.manager.resume_session(sid),
            "increment": lambda: self.manager.increment_statistics(sid, total_tasks=1),
            "delete": lambda: self.manager.delete_session(sid),
        }
        expected = InvalidSessionIdError if kind == "malformed" else SessionNotFoundError
        self.refused(sid, expected, calls[operation], exact=True)
        if kind != "malformed":
            assert not (self.manager.sessions_dir / sid).exists()

    @rule(micros=TICKS)
    def reopen(self, micros: int) -> None:
        self.tick(micros)
        self.manager = self.open()

    @rule(micros=TICKS, data=st.data())
    def query(self, micros: int, data: st.DataObject) -> None:
        self.tick(micros)
        kwargs: dict[str, Any] = {}
        model: dict[str, Any] = {}
        if data.draw(st.booleans()):
            statuses = data.draw(
                st.one_of(
                    st.sampled_from(STATUSES),
                    st.lists(st.sampled_from(STATUSES), min_size=1, max_size=4, unique=True),
                )
            )
            kwargs["status"] = statuses
            model["statuses"] = frozenset([statuses] if isinstance(statuses, str) else statuses)
        if data.draw(st.booleans()):
            phases = data.draw(
                st.one_of(
                    st.sampled_from(PHASES),
                    st.lists(st.sampled_from(PHASES), min_size=1, max_size=3, unique=True),
                )
            )
            kwargs["phase"] = phases
            model["phases"] = frozenset([phases] if isinstance(phases, str) else phases)
        if data.draw(st.booleans()):
            kwargs["branch"] = model["branch"] = data.draw(st.sampled_from(BRANCHES))
        if data.draw(st.integers(0, 3)) == 0:
            kwargs["worktree"] = model["worktree"] = data.draw(st.sampled_from(WORKTREES))
        for name in ("created_after", "created_before", "updated_after", "updated_before"):
            if data.draw(st.integers(0, 2)) == 0:
                moment = self.instant(data)
                model[name] = moment
                kwargs[name] = self.bound(data, moment)
        if data.draw(st.booleans()):
            kwargs["limit"] = model["limit"] = data.draw(st.integers(0, 5))
        if data.draw(st.integers(0, 3)) == 0:
            kwargs["offset"] = model["offset"] = data.draw(st.integers(0, 4))
        if data.draw(st.integers(0, 3)) == 0:
            kwargs["order_by"] = "updated"
            model["by_update"] = True
        if data.draw(st.integers(0, 3)) == 0:
            kwargs["descending"] = model["descending"] = False
        self.same_answer(self.manager.query_sessions(**kwargs), self.answer(**model))

    # ------------------------------------------------------------ invariants

    @invariant()
    def every_record_equals_the_model(self) -> None:
        self.same_answer(self.manager.query_sessions(), self.answer())

    @invariant()
    def filtered_queries_equal_the_model(self) -> None:
        """Filter combinations that change with the step number.  The time bounds are
        stored instants themselves (bounds are inclusive), written in varying shapes."""
        n = self.steps
        status = STATUSES[n % len(STATUSES)]
        several = frozenset({status, STATUSES[(n * 5 + 2) % len(STATUSES)], "paused"})
        phase = PHASES[n % len(PHASES)]
        turn = n % 4
        if turn == 0:
            found = self.manager.query_sessions(status=status)
            expected = self.answer(statuses=frozenset({status}))
        elif turn == 1:
            found = self.manager.query_sessions(status=sorted(several), phase=phase, limit=3)
            expected = self.answer(statuses=several, phases=frozenset({phase}), limit=3)
        elif turn == 2:
            found = self.manager.list_active_sessions()
            expected = self.answer(statuses=frozenset(STATUSES) - TERMINAL)
        else:
            found = self.manager.get_recent_sessions(n % 5)
            expected = self.answer(limit=n % 5)
        self.same_answer(found, expected)

        records = list(self.model.values())
        if not records:
            return
        branch = BRANCHES[n % len(BRANCHES)]
        zone = OFFSETS[n % len(OFFSETS)]
        low = records[n % len(records)]["created_at"]
        high = records[(n * 7 + 3) % len(records)]["created_at"]
        limit = None if n % 3 else 2
        self.same_answer(
            self.manager.query_sessions(
                branch=branch,
                created_after=shown(low, n % 4, zone),
                created_before=shown(high, (n + 1) % 4, zone),
                limit=limit,
            ),
            self.answer(branch=branch, created_after=low, created_before=high, limit=limit),
        )
        since = records[(n * 3 + 1) % len(records)]["updated_at"]
        until = records[(n * 5) % len(records)]["updated_at"] if n % 2 else None
        self.same_answer(
            self.manager.query_sessions(
                updated_after=shown(since, (n + 2) % 4, zone),
                updated_before=None if until is None else shown(until, n % 4, zone),
                order_by="updated",
                descending=n % 3 != 1,
                offset=n % 3,
            ),
            self.answer(
                updated_after=since,
                updated_before=until,
                by_update=True,
                descending=n % 3 != 1,
                offset=n % 3,
            ),
        )


class DurableSessionManagerMachine(SessionManagerMachine):
    """The same machine on a store that fsyncs every write."""

    DURABLE = True


TestSessionManagerModel = SessionManagerMachine.TestCase
TestSessionManagerModel.settings = settings(
    max_examples=size(100, 2000),
    stateful_step_count=size(40, 80),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestDurableSessionManagerModel = DurableSessionManagerMachine.TestCase
TestDurableSessionManagerModel.settings = settings(
    max_examples=size(40, 300),
    stateful_step_count=size(40, 80),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
