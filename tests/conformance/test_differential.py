"""Every store answers any query as :meth:`SessionQuery.apply` does over all its sessions.

Hypothesis makes the sessions (statuses, phases, branches, worktrees,
timestamps that often tie, requests in several scripts) and the queries.
Text queries are compared in creation order; a rank order may differ
between engines, so rank-ordered answers are compared as sets, unwindowed.
Example counts are bounded per store to keep the suite quick; set
``MAESTRO_STRESS=full`` for a long run.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maestro import GitContext, Session, SessionPhase, SessionQuery, SessionStatus
from tests.conformance.conftest import STORES

FULL = os.environ.get("MAESTRO_STRESS", "").lower() == "full"
#: Examples per store: file stores pay for real files, so they get fewer.
EXAMPLES = {"file": 20, "file-noindex": 20, "memory": 60, "postgres": 30}

BASE = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WORDS = [
    "Add OAuth login",
    "login LOGIN page",
    "Café résumé naïve",
    "登录 页面",
    "Ελληνικά αναζήτηση",
    "Привет мир",
    "Straße ß",
    "payment service",
    "🚀 launch",
    "Fix the flaky test",
]
SEARCHES = ["login", "oauth", "log*", "cafe", "resume naive", "登录", "мир", "payment", "zzz", "p*"]
BRANCHES = ["main", "feat/a", "feat/b"]
WORKTREES = [None, "wt1", "wt2"]

moments = st.integers(0, 6).map(lambda minutes: BASE + timedelta(minutes=minutes))


@st.composite
def sessions(draw: st.DrawFn) -> Session:
    created = draw(moments)
    worktree = draw(st.sampled_from(WORKTREES))
    return Session(
        session_id=str(uuid.UUID(int=draw(st.integers(0, 2**122)), version=4)),
        feature_request=" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))),
        status=draw(st.sampled_from(list(SessionStatus))),
        created_at=created,
        updated_at=created + timedelta(minutes=draw(st.integers(0, 4))),
        heartbeat_at=draw(st.none() | moments),
        current_phase=draw(st.none() | st.sampled_from(list(SessionPhase))),
        git_context=GitContext(
            draw(st.sampled_from(BRANCHES)), "0" * 40, "/repo", worktree is not None, worktree
        ),
    )


def _values(enum: Any) -> st.SearchStrategy[Any]:
    return st.none() | st.lists(st.sampled_from([m.value for m in enum]), min_size=1, max_size=3)


queries = st.fixed_dictionaries(
    {},
    optional={
        "status": _values(SessionStatus),
        "phase": _values(SessionPhase),
        "branch": st.sampled_from(BRANCHES),
        "worktree": st.sampled_from(["wt1", "wt2"]),
        "created_after": moments,
        "created_before": moments,
        "updated_after": moments,
        "updated_before": moments,
        "active_before": moments,
        "text": st.sampled_from(SEARCHES),
        "order_by": st.sampled_from(["created", "updated"]),
        "descending": st.booleans(),
        "limit": st.integers(0, 6),
        "offset": st.integers(0, 4),
    },
)


def test_every_store_answers_like_the_reference(store_name: str) -> None:
    examples = EXAMPLES[store_name] * (10 if FULL else 1)

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(
        made=st.lists(sessions(), max_size=12, unique_by=lambda s: s.session_id),
        asked=st.lists(queries, min_size=1, max_size=6),
        ranked=st.sampled_from(SEARCHES),
    )
    def check(made: list[Session], asked: list[dict[str, Any]], ranked: str) -> None:
        with tempfile.TemporaryDirectory() as root:
            store = STORES[store_name](Path(root)).store
            for session in made:
                store.create(session)
            everything = [entry.session for entry in store.scan()]
            assert all(session is not None for session in everything)
            stored: list[Session] = [s for s in everything if s is not None]
            assert len(stored) == len(made)
            for kwargs in asked:
                if "text" in kwargs:
                    # Rank order may differ between engines: text queries are
                    # compared in creation order, rank ones as sets below.
                    kwargs = {"order_by": "created", **kwargs}
                query = SessionQuery.build(**kwargs)
                assert store.query(query) == query.apply(stored), kwargs
                unwindowed = dataclasses.replace(query, limit=None, offset=0)
                assert store.count(query) == len(unwindowed.apply(stored)), kwargs
            rank = SessionQuery.build(text=ranked)
            assert rank.order_by == "rank"
            assert {s.session_id for s in store.query(rank)} == {
                s.session_id for s in rank.apply(stored)
            }

    check()
