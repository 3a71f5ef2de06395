"""Corrupt records: refused with the documented error, skipped by queries, left untouched.

A store holds healthy sessions and a few "slots", sessions whose
``metadata.json`` is overwritten with one damaged variant each: every prefix
of a real record (or a sample), broken JSON, every field given a value of the
wrong type, schema-invalid values, timestamps no calendar can hold, a record
of another session, and session directories without ``metadata.json``.  For
each batch of variants:

* ``get_session`` raises ``CorruptSessionError`` (a ``json.JSONDecodeError``)
  for unreadable or invalid content and ``SessionNotFoundError`` for a missing
  file; writes to such a session fail the same way;
* ``query_sessions``, ``list_active_sessions`` and ``get_recent_sessions``
  return every healthy session and skip the damaged ones, with a logged
  warning for corrupt records and none for a missing file;
* healthy sessions stay byte-for-byte unchanged, the damaged file stays on
  disk untouched, and no message or warning quotes the feature request or
  the file's contents.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from maestro import (
    CorruptSessionError,
    GitContext,
    InvalidSessionIdError,
    SessionError,
    SessionManager,
    SessionNotFoundError,
    SessionStatus,
)
from maestro.schema import load_schema

from .conftest import size

REQUEST = "Confidential: migrate billing to Stripe"  # short enough to be quoted whole
BRANCH = "feature/confidential-billing"
PRD_PATH = ".flow/maestro/prd-confidential-billing.md"
REASON = "waiting for the confidential review"
MARKER = "LEAKED-VALUE"
SLOTS = 8

STATS: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"\ncorruption: {dict(sorted(STATS.items()))}")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


# ---------------------------------------------------------------- the store


@dataclass
class Variant:
    label: str
    make: Callable[[bytes], bytes | None]  # the slot's real record -> new content (None: no file)
    expect: str  # "corrupt", "valid" or "missing"
    markers: tuple[str, ...] = ()


@dataclass
class Store:
    manager: SessionManager
    healthy: list[str]
    active: list[str]
    slots: list[str]
    original: dict[str, bytes] = field(default_factory=dict)
    forbidden: list[str] = field(default_factory=list)

    def path(self, sid: str) -> Path:
        return self.manager.sessions_dir / sid / "metadata.json"


def make_store(root: Path) -> Store:
    git = GitContext(
        branch=BRANCH, commit="1" * 40, repo_root="/src/app", is_worktree=True, worktree_name="wt"
    )
    manager = SessionManager(root, durable=False, clock=Clock())

    def rich(request: str) -> str:
        sid = manager.create_session(
            request,
            {"max_iterations": 5, "timeout_minutes": 30},
            prd_reference={"filename": "prd.md", "path": PRD_PATH, "version": "2"},
            git_context=git,
        ).session_id
        manager.transition_state(sid, SessionStatus.PLANNING)
        manager.transition_state(sid, SessionStatus.GENERATING_TASKS, reason=REASON)
        manager.update_session(sid, {"statistics": {"total_tasks": 8, "duration_seconds": 1.5}})
        manager.increment_statistics(sid, completed_tasks=3, decisions_made=2)
        manager.pause_session(sid, reason=REASON)
        # An unknown top-level key, as a newer writer might add: kept verbatim.
        path = manager.sessions_dir / sid / "metadata.json"
        record = json.loads(path.read_bytes())
        record["x_extension"] = {"note": "kept"}
        path.write_text(json.dumps(record, indent=2) + "\n")
        return sid

    healthy = [rich(f"healthy session {n}") for n in range(3)]
    finished = manager.create_session("healthy but finished", git_context=git).session_id
    manager.transition_state(finished, SessionStatus.FAILED)
    slots = [rich(REQUEST) for _ in range(SLOTS)]
    store = Store(manager, [*healthy, finished], healthy, slots)
    for sid in slots:
        store.original[sid] = store.path(sid).read_bytes()
    store.forbidden = [REQUEST, BRANCH, PRD_PATH, REASON, "1" * 40, "/src/app"]
    return store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return make_store(tmp_path / "root")


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock"}


def check_corrupt_error(error: BaseException, sid: str, forbidden: list[str], where: str) -> None:
    assert isinstance(error, CorruptSessionError), f"{where}: {type(error).__name__}: {error}"
    assert isinstance(error, json.JSONDecodeError) and isinstance(error, ValueError)
    assert error.doc == "", f"{where}: the exception carries the file's contents"
    message = str(error)
    assert sid in message, f"{where}: {message}"
    for text in forbidden:
        assert text not in message and text not in repr(error.args), (
            f"{where}: the message quotes {text!r}: {message}"
        )


def run_batch(store: Store, batch: list[Variant], caplog: pytest.LogCaptureFixture) -> None:
    """Put ``batch`` into the slots, then check reads, writes, queries and the files."""
    manager = store.manager
    sessions = manager.sessions_dir
    assert len(batch) <= len(store.slots)
    # Slots without a variant this time hold their own healthy record again.
    padding = [Variant("healthy", lambda raw: raw, "valid")] * (len(store.slots) - len(batch))
    expected: dict[str, str] = {}
    for sid, variant in zip(store.slots, [*batch, *padding], strict=True):
        content = variant.make(store.original[sid])
        path = store.path(sid)
        path.unlink(missing_ok=True)
        (path.parent / "checkpoints.json").write_text('{"checkpoints": []}')
        if content is not None:
            path.write_bytes(content)
        expected[sid] = variant.expect
    used = dict(zip(store.slots, [*batch, *padding], strict=True))
    healthy_before = {sid: files_of(sessions / sid) for sid in store.healthy}
    slots_before = {sid: files_of(sessions / sid) for sid in used}
    entries_before = sorted(p.name for p in sessions.iterdir())

    for sid, variant in used.items():
        where = f"{variant.label}"
        forbidden = [*store.forbidden, *variant.markers]
        for action, call in (
            ("get_session", lambda s=sid: manager.get_session(s)),
            ("update_session", lambda s=sid: manager.update_session(s, {"feature_request": "x"})),
            ("increment_statistics", lambda s=sid: manager.increment_statistics(s, failed_tasks=1)),
        ):
            if variant.expect == "valid":
                if action == "get_session":
                    session = call()
                    original = json.loads(store.original[sid])
                    assert session.to_dict() == original, f"{where}: read back differently"
                continue
            with pytest.raises(SessionError) as caught:
                call()
            if variant.expect == "corrupt":
                check_corrupt_error(caught.value, sid, forbidden, f"{where} / {action}")
            else:
                assert type(caught.value) is SessionNotFoundError, f"{where}: {caught.value!r}"

    readable = {sid for sid, e in expected.items() if e == "valid"}
    corrupt = {sid for sid, e in expected.items() if e == "corrupt"}
    queries: dict[str, tuple[Callable[[], list[Any]], set[str]]] = {
        "query_sessions": (manager.query_sessions, set(store.healthy) | readable),
        "list_active_sessions": (manager.list_active_sessions, set(store.active) | readable),
        # The damaged sessions must not use up the limit.
        "get_recent_sessions": (
            lambda: manager.get_recent_sessions(len(store.healthy) + len(readable)),
            set(store.healthy) | readable,
        ),
        "query_sessions(status=paused)": (
            lambda: manager.query_sessions(status="paused"),
            set(store.active) | readable,
        ),
    }
    for name, (query, wanted) in queries.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="maestro"):
            got = query()
        ids = [s.session_id for s in got]
        assert sorted(ids) == sorted(wanted), f"{name} with {[v.label for v in batch]}"
        warned = {sid for sid in store.slots for r in caplog.records if sid in r.getMessage()}
        assert warned == corrupt, f"{name}: warnings for {warned}, corrupt {corrupt}"
        strays = [
            r.getMessage() for r in caplog.records if not any(c in r.getMessage() for c in corrupt)
        ]
        assert not strays, f"{name}: warnings about nothing corrupt: {strays}"
        for record in caplog.records:
            text = record.getMessage()
            for secret in [*store.forbidden, *(m for v in batch for m in v.markers)]:
                assert secret not in text, f"{name}: the warning quotes {secret!r}: {text}"
        for sid in store.healthy:
            assert not any(sid in r.getMessage() for r in caplog.records)

    # Nothing else moved: healthy sessions, damaged files, the sessions directory.
    assert {sid: files_of(sessions / sid) for sid in store.healthy} == healthy_before
    assert {sid: files_of(sessions / sid) for sid in used} == slots_before
    assert sorted(p.name for p in sessions.iterdir()) == entries_before
    STATS["batches"] += 1


def run_all(store: Store, variants: list[Variant], caplog: pytest.LogCaptureFixture) -> None:
    for start in range(0, len(variants), SLOTS):
        run_batch(store, variants[start : start + SLOTS], caplog)
    for variant in variants:
        STATS[f"{variant.expect} variants"] += 1


# ---------------------------------------------------------------- record surgery


def edit(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def make(raw: bytes) -> bytes:
        record = json.loads(raw)
        change(record)
        return json.dumps(record, indent=2, ensure_ascii=False).encode()

    return make


def nodes(record: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every (path, value) below the top level, containers included."""
    if isinstance(record, dict):
        items: Iterator[tuple[Any, Any]] = iter(record.items())
    elif isinstance(record, list):
        items = enumerate(record)
    else:
        return
    for key, value in items:
        yield (*path, key), value
        yield from nodes(value, (*path, key))


def put(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        target: Any = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = copy.deepcopy(value)

    return change


def remove(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(record: dict[str, Any]) -> None:
        target: Any = record
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "float", str: "str", dict: "dict", list: "list"}[type(value)]


SUBSTITUTES: dict[str, Any] = {
    "str": f"{MARKER}-string",
    "int": 7,
    "float": 2.5,
    "bool": True,
    "dict": {"k": f"{MARKER}-in-object"},
    "list": [f"{MARKER}-in-array"],
}
#: Types a value may also take: an integer is a valid number.
COMPATIBLE = {"float": {"float", "int"}}


@functools.cache
def schema_validator() -> Callable[[Any], Any]:
    validate: Callable[[Any], Any] = fastjsonschema.compile(load_schema())
    return validate


def schema_valid(record: dict[str, Any]) -> bool:
    try:
        schema_validator()(record)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


# ---------------------------------------------------------------- the tests


def test_every_truncation_of_a_record(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    length = len(store.original[store.slots[0]])
    assert all(len(raw) == length for raw in store.original.values())
    assert store.original[store.slots[0]].endswith(b"}\n")
    # Every proper prefix lacks the closing brace, except the one that drops only the newline.
    everything = list(range(length - 1))
    count = size(60, len(everything))
    chosen = sorted({0, 1, 2, length - 2} | set(random.Random(10).sample(everything, count)))
    variants = [Variant(f"first {n} bytes", lambda raw, n=n: raw[:n], "corrupt") for n in chosen]
    variants.append(Variant("all but the newline", lambda raw: raw[:-1], "valid"))
    run_all(store, variants, caplog)
    STATS["truncations"] += len(variants)


def structural_positions(raw: bytes) -> list[int]:
    """Offsets of JSON punctuation outside strings."""
    positions, in_string, escaped = [], False, False
    for offset, byte in enumerate(raw):
        char = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{}[]:,":
            positions.append(offset)
    return positions


def test_broken_json(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    raw_example = store.original[store.slots[0]]
    fixed: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("empty file", lambda raw: b""),
        ("whitespace only", lambda raw: b" \n\t\n"),
        ("null", lambda raw: b"null"),
        ("an array", lambda raw: b"[1, 2]"),
        ("a string", lambda raw: json.dumps(REQUEST).encode()),
        ("a number", lambda raw: b"42"),
        ("true", lambda raw: b"true"),
        ("BOM and an array", lambda raw: b"\xef\xbb\xbf[]"),
        ("NUL bytes", lambda raw: b"\x00" * 64),
        ("NUL inside", lambda raw: raw[:40] + b"\x00" + raw[40:]),
        ("UTF-16", lambda raw: raw.decode().encode("utf-16")),
        ("invalid UTF-8 in the request", lambda raw: raw.replace(b"Stripe", b"Str\xffpe")),
        ("lone surrogate escape", lambda raw: raw.replace(b"Stripe", b"Str\\ud800pe")),
        ("trailing garbage", lambda raw: raw + b"garbage"),
        ("two records", lambda raw: raw + raw),
        ("single quotes", lambda raw: raw.replace(b'"', b"'")),
        ("trailing comma", lambda raw: raw.rstrip()[:-1] + b",}"),
        ("a comment", lambda raw: b"// metadata\n" + raw),
        ("NaN", lambda raw: raw.replace(b'"revision": ', b'"revision": NaN, "r": ')),
        ("1e400", lambda raw: raw.replace(b'"revision": ', b'"revision": 1e400, "r": ')),
        ("deep nesting", lambda raw: b"[" * 100_000 + b"]" * 100_000),
        ("deep object", lambda raw: b'{"a":' * 5_000 + b"1" + b"}" * 5_000),
        ("record wrapped in an array", lambda raw: b"[" + raw + b"]"),
    ]
    variants = [Variant(label, make, "corrupt") for label, make in fixed]
    positions = structural_positions(raw_example)
    count = min(size(40, len(positions)), len(positions))
    for offset in sorted(random.Random(20).sample(positions, count)):
        punctuation = chr(raw_example[offset])
        variants.append(
            Variant(
                f"{punctuation!r} at {offset} blanked",
                lambda raw, o=offset: raw[:o] + b" " + raw[o + 1 :],
                "corrupt",
            )
        )
    run_all(store, variants, caplog)
    STATS["broken JSON"] += len(variants)


def test_every_field_with_a_value_of_the_wrong_type(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    record = json.loads(store.original[store.slots[0]])
    variants = []
    for path, value in nodes(record):
        if path[0] == "x_extension":
            continue  # unknown top-level keys hold anything
        for name, substitute in SUBSTITUTES.items():
            if name in COMPATIBLE.get(kind(value), {kind(value)}):
                continue
            changed = copy.deepcopy(record)
            put(path, substitute)(changed)
            # The variant really is invalid: the shipped schema says so too.
            assert not schema_valid(changed), (path, name)
            markers = tuple(m for m in (f"{MARKER}-string",) if name == "str")
            variants.append(
                Variant(
                    f"{'.'.join(map(str, path))} = {name}",
                    edit(put(path, substitute)),
                    "corrupt",
                    markers,
                )
            )
    assert len(variants) > 100
    run_all(store, variants, caplog)
    STATS["wrong types"] += len(variants)


def schema_invalid_variants(record: dict[str, Any]) -> list[tuple[str, Callable[..., None]]]:
    other_id = str(uuid.uuid4())
    last = len(record["history"]) - 1
    return [
        ("status unknown", put(("status",), "bogus")),
        ("status upper case", put(("status",), "PAUSED")),
        ("status with a space", put(("status",), "paused ")),
        ("current_phase unknown", put(("current_phase",), "Plan")),
        ("paused_from unknown", put(("paused_from",), "lunch")),
        ("history from unknown", put(("history", 0, "from"), "x")),
        ("history to empty", put(("history", last, "to"), "")),
        ("created_at not a time", put(("created_at",), "yesterday")),
        ("created_at empty", put(("created_at",), "")),
        ("created_at month 13", put(("created_at",), "2026-13-01T00:00:00Z")),
        ("updated_at February 30", put(("updated_at",), "2026-02-30T00:00:00Z")),
        ("history at garbage", put(("history", 0, "at"), "12:00")),
        ("feature_request empty", put(("feature_request",), "")),
        ("feature_request blank", put(("feature_request",), "  \n ")),
        ("feature_request with NUL", put(("feature_request",), "a\x00b")),
        ("branch empty", put(("git_context", "branch"), "")),
        ("commit blank", put(("git_context", "commit"), " ")),
        ("repo_root empty", put(("git_context", "repo_root"), "")),
        ("worktree_name empty", put(("git_context", "worktree_name"), "")),
        ("prd filename empty", put(("prd_reference", "filename"), "")),
        ("prd version empty", put(("prd_reference", "version"), "")),
        ("total_tasks negative", put(("statistics", "total_tasks"), -1)),
        ("completed_tasks above 64 bits", put(("statistics", "completed_tasks"), 2**63)),
        ("duration negative", put(("statistics", "duration_seconds"), -0.5)),
        ("max_iterations zero", put(("configuration", "max_iterations"), 0)),
        ("timeout negative", put(("configuration", "timeout_minutes"), -5)),
        ("revision negative", put(("revision",), -1)),
        ("revision above 64 bits", put(("revision",), 2**63)),
        ("schema_version from the future", put(("schema_version",), 2)),
        ("schema_version negative", put(("schema_version",), -1)),
        ("session_id of another session", put(("session_id",), other_id)),
        ("session_id upper case", lambda r: r.update(session_id=r["session_id"].upper())),
        ("session_id a path", put(("session_id",), "../outside")),
        ("unknown key in statistics", put(("statistics", "bonus"), 1)),
        ("unknown key in configuration", put(("configuration", "turbo"), True)),
        ("unknown key in git_context", put(("git_context", "remote"), "origin")),
        ("unknown key in prd_reference", put(("prd_reference", "owner"), "me")),
        ("unknown key in a history entry", put(("history", 0, "by"), "me")),
        ("history entry empty", put(("history",), [{}])),
        ("history entry a number", put(("history",), [1])),
        ("history entry without at", remove(("history", 0, "at"))),
        ("no session_id", remove(("session_id",))),
        ("no feature_request", remove(("feature_request",))),
        ("no status", remove(("status",))),
        ("no created_at", remove(("created_at",))),
        ("no git_context", remove(("git_context",))),
        ("no branch", remove(("git_context", "branch"))),
        ("no prd filename", remove(("prd_reference", "path"))),
    ]


def test_schema_invalid_values(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    record = json.loads(store.original[store.slots[0]])
    variants = [
        Variant(label, edit(change), "corrupt") for label, change in schema_invalid_variants(record)
    ]
    # A healthy record of another session, copied into this one's directory.
    donor = store.path(store.healthy[0]).read_bytes()
    variants.append(Variant("another session's record", lambda raw: donor, "corrupt"))
    run_all(store, variants, caplog)
    STATS["schema-invalid values"] += len(variants)


def test_timestamps_outside_the_calendar(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """Well-formed timestamps whose UTC instant does not exist in ``datetime``."""
    variants = []
    for stamp in ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"):
        for path in (("created_at",), ("updated_at",), ("history", 0, "at")):
            variants.append(Variant(f"{path[0]} = {stamp}", edit(put(path, stamp)), "corrupt"))
    run_all(store, variants, caplog)
    STATS["unrepresentable timestamps"] += len(variants)


def test_messages_never_quote_the_request_or_stored_values(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A record whose fields slipped: the request text lands where it is invalid.

    The read fails; neither the error nor the queries' warnings may quote it.
    """
    fields: list[tuple[Any, ...]] = [
        ("status",),
        ("current_phase",),
        ("paused_from",),
        ("history", 0, "from"),
        ("history", 0, "to"),
        ("created_at",),
        ("updated_at",),
        ("history", 0, "at"),
        ("session_id",),
        ("git_context", "is_worktree"),
        ("statistics", "total_tasks"),
        ("configuration", "auto_checkpoint"),
    ]
    variants = []
    for path in fields:
        variants.append(Variant(f"request in {path}", edit(put(path, REQUEST)), "corrupt"))
        stored = f"{MARKER}: stored text"
        variants.append(
            Variant(f"stored text in {path}", edit(put(path, stored)), "corrupt", (stored,))
        )
    run_all(store, variants, caplog)
    STATS["message checks"] += len(variants)


def test_session_directories_without_a_record(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """The checkpoint component writes first: such a directory is not corrupt, just absent."""
    variants = [
        Variant("no metadata.json", lambda raw: None, "missing"),
        Variant("no metadata.json", lambda raw: None, "missing"),
        Variant("empty record", lambda raw: b"", "corrupt"),
        Variant("healthy", lambda raw: raw, "valid"),
    ]
    run_all(store, variants, caplog)
    for sid in store.slots[:2]:
        folder = store.manager.sessions_dir / sid
        assert (folder / "checkpoints.json").read_text() == '{"checkpoints": []}'
        assert not (folder / "metadata.json").exists()
        with pytest.raises(SessionNotFoundError) as caught:
            store.manager.delete_session(sid)
        assert not isinstance(caught.value, InvalidSessionIdError)
        assert folder.is_dir(), "a directory without a record was removed"
    STATS["missing records"] += 2
