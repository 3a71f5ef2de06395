"""What only the PostgreSQL store does: URLs, bad servers, migrations, projects,
the change feed's visibility rule, the pool, export and import.

The contract every store keeps is in tests/conformance/, which runs against
PostgreSQL too.  These tests need the server of tests/postgres_server.py:
they skip without one, and fail under ``CI=true``.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import secrets
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner

from maestro import (
    Capability,
    ChangeKind,
    Session,
    SessionManager,
    SessionStatus,
    UnsupportedOperationError,
)
from maestro.cli import cli
from maestro.errors import SessionValidationError, StoreUnavailableError
from maestro.project import normalise_remote, project_identity
from tests.conftest import GIT
from tests.postgres_server import ADMIN_URL, database_url, project_of, store_url

psycopg = pytest.importorskip("psycopg")


def _runner() -> CliRunner:
    import inspect

    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    return CliRunner()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return store_url(tmp_path)


@pytest.fixture
def manager(tmp_path: Path, url: str) -> SessionManager:
    return SessionManager(tmp_path, store=url)


@pytest.fixture
def empty_database() -> Iterator[str]:
    """A database of its own, with no schema, dropped afterwards."""
    database_url()  # skips (or fails under CI) without a server
    name = "maestro_empty_" + secrets.token_hex(5)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(ADMIN_URL)
    yield urlunsplit(parts._replace(path="/" + name))
    from maestro.stores import postgres

    postgres._close_all()
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _with(url: str, **parameters: str) -> str:
    extra = "&".join(f"{k}={v}" for k, v in parameters.items())
    return f"{url}{'&' if '?' in url else '?'}{extra}"


# ---------------------------------------------------------------- bad servers


def _other_database(name: str) -> str:
    return urlunsplit(urlsplit(ADMIN_URL)._replace(path="/" + name))


def test_bad_servers_are_one_typed_error_each(tmp_path: Path) -> None:
    database_url()
    host = urlsplit(ADMIN_URL).hostname
    cases = {
        "unreachable": f"postgresql://postgres:s3cret@{host}:1/postgres?connect_timeout=2",
        "authentication": urlunsplit(
            urlsplit(ADMIN_URL)._replace(netloc=f"no_such_role_x:s3cret@{host}:5432")
        ),
        "missing_database": _other_database("no_such_database_" + secrets.token_hex(3)),
    }
    for reason, url in cases.items():
        with pytest.raises(StoreUnavailableError) as caught:
            SessionManager(tmp_path, store=url)
        assert caught.value.reason == reason, str(caught.value)
        assert isinstance(caught.value, OSError)
        assert "s3cret" not in str(caught.value)
        result = _runner().invoke(cli, ["--store", url, "list"])
        assert result.exit_code == 1
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


def test_a_schema_newer_than_the_code_is_refused(empty_database: str, tmp_path: Path) -> None:
    SessionManager(tmp_path, store=empty_database)  # creates the schema
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("INSERT INTO maestro_schema (version) VALUES (99)")
    from maestro.stores import postgres

    postgres._close_all()  # a new process, as far as the store can tell
    with pytest.raises(StoreUnavailableError) as caught:
        SessionManager(tmp_path, store=empty_database)
    assert caught.value.reason == "schema_too_new"
    assert "version 99" in str(caught.value)
    result = _runner().invoke(cli, ["--store", empty_database, "db", "upgrade"])
    assert result.exit_code == 1 and "newer than this maestro" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_url_parameters_go_to_libpq_and_bad_ones_of_ours_are_refused(
    tmp_path: Path, url: str
) -> None:
    from maestro.errors import SessionValidationError

    manager = SessionManager(tmp_path, store=_with(url, application_name="maestro-test"))
    assert manager.query_sessions() == []
    for bad in ({"pool_max": "0"}, {"pool_timeout": "soon"}, {"all_projects": "maybe"}):
        with pytest.raises(SessionValidationError):
            SessionManager(tmp_path, store=_with(url, **bad))


# ---------------------------------------------------------------- migrations


def _open_at_once(url: str, root: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        manager = SessionManager(root, store=url)
        results.put(("ok", manager.upgrade_schema()))
    except Exception as error:
        results.put(("error", repr(error)))


def test_processes_starting_at_once_on_an_empty_database_migrate_once(
    empty_database: str, tmp_path: Path
) -> None:
    context = multiprocessing.get_context("spawn")
    count = 4
    barrier, results = context.Barrier(count), context.Queue()
    children = [
        context.Process(
            target=_open_at_once, args=(empty_database, str(tmp_path), barrier, results)
        )
        for _ in range(count)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    # Each step is a transaction of its own: an opener may find some applied.
    assert {tuple(found) for _, found in outcomes} <= {(0, 2), (1, 2), (2, 2)}
    with psycopg.connect(empty_database) as conn:
        rows = conn.execute("SELECT version FROM maestro_schema ORDER BY version").fetchall()
    assert rows == [(1,), (2,)]


def test_db_upgrade_says_what_it_found(empty_database: str, tmp_path: Path) -> None:
    result = _runner().invoke(cli, ["--store", empty_database, "--json", "db", "upgrade"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"found": 0, "version": 2, "upgraded": True}
    from maestro.stores import postgres

    postgres._close_all()
    again = _runner().invoke(cli, ["--store", empty_database, "db", "upgrade"])
    assert again.exit_code == 0 and "up to date (version 2)" in again.stdout
    on_files = _runner().invoke(cli, ["--root", str(tmp_path), "db", "upgrade"])
    assert on_files.exit_code == 0 and "nothing to upgrade" in on_files.stdout
    with pytest.raises(UnsupportedOperationError):
        SessionManager(tmp_path).upgrade_schema()


# ---------------------------------------------------------------- doctor


def test_doctor_reports_schema_pool_and_feed_and_refuses_reindex(
    manager: SessionManager, url: str, tmp_path: Path
) -> None:
    manager.create_session("x", git_context=GIT)
    report = manager.doctor()
    assert report.healthy and report.sessions == 1
    assert set(report.engine) == {"schema", "pool", "feed"}
    assert report.engine["schema"] == "version 2 of 2"
    with pytest.raises(UnsupportedOperationError):
        manager.doctor(reindex=True)
    with pytest.raises(UnsupportedOperationError):
        manager.rebuild_index()
    result = _runner().invoke(cli, ["--store", url, "doctor"])
    assert result.exit_code == 0, result.stderr
    assert "schema: version 2 of 2" in result.stdout and "pool:" in result.stdout


# ---------------------------------------------------------------- projects


def test_remote_urls_normalise_to_one_project() -> None:
    same = [
        "git@github.com:Org/App.git",
        "https://github.com/Org/App",
        "https://user:token@GitHub.com/Org/App.git/",
        "ssh://git@github.com/Org/App.git",
    ]
    assert {normalise_remote(url) for url in same} == {"github.com/Org/App"}
    assert normalise_remote("/srv/git/app.git") == "app"
    assert normalise_remote("file:///srv/git/app.git") == "app"
    assert normalise_remote("") is None


def test_project_identity_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    repo = tmp_path / "checkout-name"
    repo.mkdir()
    monkeypatch.delenv("MAESTRO_PROJECT", raising=False)
    assert project_identity(repo) == "checkout-name"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert project_identity(repo) == "checkout-name"
    subprocess.run(
        ["git", "-C", str(repo), "remote", "add", "origin", "git@example.com:team/app.git"],
        check=True,
    )
    assert project_identity(repo) == "example.com/team/app"
    monkeypatch.setenv("MAESTRO_PROJECT", "chosen")
    assert project_identity(repo) == "chosen"


def test_projects_see_their_own_sessions_unless_all_are_asked_for(tmp_path: Path) -> None:
    base = database_url()
    tag = secrets.token_hex(4)
    first = SessionManager(tmp_path, store=f"{base}?project=a-{tag}")
    second = SessionManager(tmp_path, store=f"{base}?project=b-{tag}")
    a = first.create_session("alpha login", git_context=GIT).session_id
    b = second.create_session("beta login", git_context=GIT).session_id
    assert [s.session_id for s in first.query_sessions(text="login")] == [a]
    assert [s.session_id for s in second.query_sessions()] == [b]
    assert [e.session_id for e in first.changes()] == [a]
    with pytest.raises(FileNotFoundError):
        first.get_session(b)
    every = SessionManager(tmp_path, store=f"{base}?project=a-{tag}", all_projects=True)
    assert {s.session_id for s in every.query_sessions(text="login")} >= {a, b}
    assert every.get_session(b).session_id == b
    # From the command line: this project by default, all with --all-projects.
    listed = _runner().invoke(cli, ["--store", f"{base}?project=a-{tag}", "--json", "list"])
    assert [s["session_id"] for s in json.loads(listed.stdout)] == [a]
    both = _runner().invoke(
        cli, ["--store", f"{base}?project=a-{tag}", "--all-projects", "--json", "list"]
    )
    assert {a, b} <= {s["session_id"] for s in json.loads(both.stdout)}
    # The file store holds one project: the flag changes nothing there.
    assert SessionManager(tmp_path / "files", all_projects=True).query_sessions() == []


# ---------------------------------------------------------------- writes


def _elsewhere(tmp_path: Path) -> SessionManager:
    """Another process's manager on the same project: a pool and memory of its own."""
    return SessionManager(tmp_path, store=store_url(tmp_path, pool_max="3"))


def test_a_write_builds_on_what_others_wrote_since_its_last_one(tmp_path: Path) -> None:
    """A writer remembers the record it wrote last and is sent no record while the
    row is still that version: every other write, an operator's edit that leaves
    the revision alone, or a re-created session at the same revision, is a new
    version, read and built on."""
    here = SessionManager(tmp_path, store=store_url(tmp_path))
    there = _elsewhere(tmp_path)
    sid = here.create_session("first", git_context=GIT).session_id
    here.transition_state(sid, SessionStatus.PLANNING)
    there.update_session(sid, {"statistics": {"total_tasks": 5}})
    moved = here.transition_state(sid, SessionStatus.GENERATING_TASKS)
    assert moved.statistics.total_tasks == 5
    assert [entry.to_status for entry in moved.history] == [
        SessionStatus.PLANNING,
        SessionStatus.GENERATING_TASKS,
    ]
    assert there.get_session(sid) == moved

    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(
            "UPDATE maestro_sessions SET record = jsonb_set(record, '{feature_request}', "
            "'\"edited by hand\"') WHERE session_id = %s",
            (sid,),
        )
    edited = here.update_session(sid, {"current_phase": "plan"})
    assert (edited.feature_request, edited.revision) == ("edited by hand", 5)

    # Deleted and made again elsewhere, up to the revision this writer last wrote.
    there.delete_session(sid)
    again = dataclasses.replace(
        edited,
        feature_request="made again",
        status=SessionStatus.INITIALIZING,
        current_phase=None,
        history=[],
        revision=0,
        requests=[],
    )
    there.store.create(again)
    for state in (SessionStatus.PLANNING, SessionStatus.GENERATING_TASKS):
        there.transition_state(sid, state)
    there.update_session(sid, {"statistics": {"total_tasks": 1}})
    there.heartbeat(sid)
    assert there.get_session(sid).revision == edited.revision
    after = here.heartbeat(sid)
    assert after.feature_request == "made again"
    assert after.statistics.total_tasks == 1
    assert len(after.history) == 2
    assert there.get_session(sid) == after


def test_a_change_to_the_history_read_is_stored_and_checked(
    manager: SessionManager, tmp_path: Path
) -> None:
    """Entries the write leaves as they were keep their stored form; one changed in
    place, dropped or invalid is encoded and checked like any other field."""
    sid = manager.create_session("history", git_context=GIT).session_id
    for state in (SessionStatus.PLANNING, SessionStatus.GENERATING_TASKS):
        manager.transition_state(sid, state)

    def amend(session: Session) -> Session:
        session.history[0].reason = "amended"
        del session.history[1]
        return session

    amended = manager.store.modify(sid, amend)
    stored = _elsewhere(tmp_path).get_session(sid)
    assert stored == amended
    assert [(e.to_status, e.reason) for e in stored.history] == [
        (SessionStatus.PLANNING, "amended")
    ]

    def spoil(session: Session) -> Session:
        session.history[0].reason = 5  # type: ignore[assignment]
        return session

    with pytest.raises(SessionValidationError, match="history"):
        manager.store.modify(sid, spoil)
    assert _elsewhere(tmp_path).get_session(sid) == stored
    assert manager.heartbeat(sid).history == stored.history


# ---------------------------------------------------------------- the change feed


def test_an_event_of_a_transaction_in_flight_holds_back_later_ones(
    manager: SessionManager,
) -> None:
    """Events are read in transaction order, never past one still open: a cursor
    taken while a slow write is in flight must not skip it."""
    slow = manager.create_session("slow", git_context=GIT).session_id
    quick = manager.create_session("quick", git_context=GIT).session_id
    start = manager.changes_cursor()
    entered, release = threading.Event(), threading.Event()
    real_modify = manager.store.modify

    def slow_modify(session_id: str, change: Any, **kwargs: Any) -> Any:
        def waiting(session: Any) -> Any:
            updated = change(session)
            entered.set()
            assert release.wait(30)
            return updated

        return real_modify(session_id, waiting if session_id == slow else change, **kwargs)

    manager.store.modify = slow_modify  # type: ignore[method-assign]
    # The slow write takes its transaction id now (the heartbeat's row lock).
    writer = threading.Thread(target=manager.heartbeat, args=(slow,))
    writer.start()
    try:
        assert entered.wait(30)  # its row lock gave it a transaction id
        manager.store.modify = real_modify  # type: ignore[method-assign]
        manager.heartbeat(quick)
        # The quick write committed, but after the slow one began: held back.
        assert list(manager.changes(start)) == []
        release.set()
        writer.join()
    finally:
        release.set()
        manager.store.modify = real_modify  # type: ignore[method-assign]
    events = list(manager.changes(start))
    assert sorted(e.session_id or "" for e in events) == sorted([slow, quick])
    assert all(e.kind is ChangeKind.HEARTBEAT for e in events)


def test_transactions_of_other_programs_do_not_hold_the_feed_back(
    manager: SessionManager, url: str
) -> None:
    """An open transaction with an id, in this database (another table) or in
    another database of the server, writes no event: a write made after it
    began is read at once."""
    manager.create_session("first", git_context=GIT)
    start = manager.changes_cursor()
    conninfo = urlunsplit(urlsplit(url)._replace(query=""))
    with (
        psycopg.connect(conninfo) as here,
        psycopg.connect(_other_database("postgres")) as elsewhere,
    ):
        for conn in (here, elsewhere):
            conn.execute("CREATE TEMP TABLE held (x int)")
            conn.execute("INSERT INTO held VALUES (1)")  # takes a transaction id
            assert conn.execute("SELECT pg_current_xact_id_if_assigned()").fetchone()[0]
        sid = manager.create_session("second", git_context=GIT).session_id
        manager.heartbeat(sid)
        assert [(e.kind, e.session_id) for e in manager.changes(start)] == [
            (ChangeKind.CREATED, sid),
            (ChangeKind.HEARTBEAT, sid),
        ]
        end = manager.changes_cursor()
        manager.heartbeat(sid)
        assert [e.kind for e in manager.changes(end)] == [ChangeKind.HEARTBEAT]
        for conn in (here, elsewhere):
            conn.rollback()


def test_a_watcher_survives_its_doorbell_connection_being_killed(
    manager: SessionManager,
) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    cursor = manager.changes_cursor()
    assert list(manager.changes(cursor, follow=True, timeout=0.3)) == []  # starts the doorbell
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query ILIKE 'LISTEN%%'"
        )
    writer = threading.Timer(0.5, manager.transition_state, args=(sid, SessionStatus.PLANNING))
    writer.start()
    try:
        event = next(manager.changes(cursor, follow=True, timeout=30))
    finally:
        writer.join()
    assert (event.session_id, event.to_status) == (sid, "planning")


def test_a_cursor_of_another_database_is_answered_with_a_reset(
    manager: SessionManager,
) -> None:
    manager.create_session("x", git_context=GIT)
    events = list(manager.changes("pg:ffffffff:1:1"))
    assert events[0].kind is ChangeKind.RESET
    assert [e.kind for e in events[1:]] == [ChangeKind.CREATED]


def _events_kept(project: str) -> int:
    with psycopg.connect(database_url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM maestro_events WHERE project = %s", (project,)
        ).fetchone()
    return int(row[0]) if row else 0


def test_the_feed_keeps_its_newest_events_and_a_reader_behind_them_is_reset(
    tmp_path: Path,
) -> None:
    url = store_url(tmp_path, feed_retention="3")
    manager = SessionManager(tmp_path, store=url)
    sid = manager.create_session("kept", git_context=GIT).session_id
    behind = manager.changes_cursor()
    revisions = [manager.heartbeat(sid).revision for _ in range(8)]
    # Each write trims the feed down to the 3 newest events readers can see;
    # a maestro write in flight elsewhere (another test's) may hold some back.
    deadline = time.monotonic() + 60
    while _events_kept(project_of(tmp_path)) > 3:
        assert time.monotonic() < deadline, "the feed was never trimmed"
        revisions.append(manager.heartbeat(sid).revision)
    events = list(manager.changes(behind))
    assert events[0].kind is ChangeKind.RESET
    assert [e.revision for e in events[1:]] == revisions[-3:]
    # Reading on from the reset's cursor gives the same events, without a reset.
    assert list(manager.changes(events[0].cursor)) == events[1:]
    # A reader that starts at the beginning starts at the oldest event kept.
    assert [e.revision for e in manager.changes()] == revisions[-3:]
    # A reader that kept up is never reset.
    current = events[-1].cursor
    manager.heartbeat(sid)
    assert [e.kind for e in manager.changes(current)] == [ChangeKind.HEARTBEAT]
    # Another project's feed is its own.
    other = SessionManager(tmp_path / "other", store=store_url(tmp_path / "other"))
    first = other.create_session("other", git_context=GIT)
    assert [e.session_id for e in other.changes()] == [first.session_id]


def test_a_feed_retention_of_zero_turns_the_feed_off(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path, store=store_url(tmp_path, feed_retention="0"))
    sid = manager.create_session("quiet", git_context=GIT).session_id
    manager.transition_state(sid, SessionStatus.PLANNING)
    manager.delete_session(sid)
    assert _events_kept(project_of(tmp_path)) == 0
    assert Capability.CHANGES not in manager.store.capabilities
    with pytest.raises(UnsupportedOperationError):
        list(manager.changes())


@pytest.mark.parametrize("value", ["-1", "many", "1.5"])
def test_a_bad_feed_retention_is_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(SessionValidationError, match="feed_retention"):
        SessionManager(tmp_path, store=store_url(tmp_path, feed_retention=value))


def test_the_feed_retention_comes_from_the_environment_without_a_parameter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAESTRO_FEED_RETENTION", "7")
    assert SessionManager(tmp_path, store=store_url(tmp_path)).store.feed_retention == 7
    url = store_url(tmp_path, feed_retention="9")
    assert SessionManager(tmp_path, store=url).store.feed_retention == 9
    monkeypatch.setenv("MAESTRO_FEED_RETENTION", "seven")
    with pytest.raises(SessionValidationError, match="MAESTRO_FEED_RETENTION"):
        SessionManager(tmp_path, store=store_url(tmp_path))


def test_a_version_1_database_is_upgraded_with_its_events(
    empty_database: str, tmp_path: Path
) -> None:
    from maestro.stores import postgres_schema

    with psycopg.connect(empty_database, autocommit=True) as conn:
        real = postgres_schema.MIGRATIONS
        postgres_schema.MIGRATIONS = real[:1]
        postgres_schema.LATEST = 1
        try:
            postgres_schema.upgrade(conn)
        finally:
            postgres_schema.MIGRATIONS = real
            postgres_schema.LATEST = len(real)
    manager = SessionManager(tmp_path, store=empty_database + "?project=old")
    assert manager.store.schema_found == 1
    sid = manager.create_session("after the upgrade", git_context=GIT).session_id
    assert [e.session_id for e in manager.changes()] == [sid]


# ---------------------------------------------------------------- the pool


def test_an_exhausted_pool_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    url = store_url(tmp_path, pool_max="1", pool_timeout="0.5", max_waiting="1")
    manager = SessionManager(tmp_path, store=url)
    sid = manager.create_session("x", git_context=GIT).session_id
    entered, release = threading.Event(), threading.Event()

    def hold(session: Any) -> Any:
        entered.set()
        release.wait(30)
        return session

    holder = threading.Thread(target=manager.store.modify, args=(sid, hold))
    holder.start()
    try:
        assert entered.wait(30)
        with pytest.raises(StoreUnavailableError) as caught:
            manager.get_session(sid)
        assert caught.value.reason == "pool_exhausted"
    finally:
        release.set()
        holder.join()
    assert manager.get_session(sid).session_id == sid  # and it recovers


def test_prepared_statements_can_be_turned_off(tmp_path: Path) -> None:
    manager = SessionManager(tmp_path, store=store_url(tmp_path, prepare_threshold="none"))
    sid = manager.create_session("x", git_context=GIT).session_id
    for _ in range(8):  # past the default threshold of 5
        manager.heartbeat(sid)
    assert manager.get_session(sid).revision == 9


# ---------------------------------------------------------------- local directories, moving


def test_the_session_directory_stays_on_the_local_disk(
    manager: SessionManager, tmp_path: Path
) -> None:
    sid = manager.create_session("x", git_context=GIT).session_id
    directory = manager.session_directory(sid)
    assert directory == tmp_path / ".flow" / "maestro" / "sessions" / sid
    assert directory.is_dir() and not (directory / "metadata.json").exists()
    (directory / "checkpoints.json").write_text("{}")
    manager.delete_session(sid)
    assert not directory.exists()


def test_export_and_import_between_the_stores_keep_every_record(tmp_path: Path, url: str) -> None:
    files = SessionManager(tmp_path / "files")
    made = files.create_session("Add OAuth login", git_context=GIT, request_id="make-1")
    files.transition_state(made.session_id, SessionStatus.PLANNING, reason="go")
    files.increment_statistics(made.session_id, completed_tasks=2)
    (files.session_directory(made.session_id) / "checkpoints.json").write_text('{"a": 1}')
    original = files.get_session(made.session_id)
    archive = tmp_path / "out.tar.gz"
    files.export_sessions(archive)

    shared = SessionManager(tmp_path / "host", store=url)
    result = shared.import_sessions(archive)
    assert result.created == [made.session_id]
    assert shared.get_session(made.session_id).to_dict() == original.to_dict()
    local = shared.session_directory(made.session_id) / "checkpoints.json"
    assert local.read_text() == '{"a": 1}'
    assert shared.import_sessions(archive).unchanged == [made.session_id]
    assert [e.kind for e in shared.changes()][-1] is ChangeKind.CREATED
    # The create key came along: a retry of the create finds the session.
    again = shared.create_session("Add OAuth login", git_context=GIT, request_id="make-1")
    assert again.session_id == made.session_id

    back = tmp_path / "back.tar.gz"
    shared.export_sessions(back)
    with tarfile.open(back) as opened:
        names = sorted(opened.getnames())
    assert f"{made.session_id}/checkpoints.json" in names
    returned = SessionManager(tmp_path / "files-again")
    assert returned.import_sessions(back).created == [made.session_id]
    assert returned.get_session(made.session_id).to_dict() == original.to_dict()


def test_capabilities_declared() -> None:
    from maestro.stores.postgres import PostgresStore

    assert Capability.REINDEX not in PostgresStore.capabilities
    assert {Capability.CHANGES, Capability.MULTI_PROCESS, Capability.MIGRATIONS} <= (
        PostgresStore.capabilities
    )


def test_a_worktree_file_store_s_sessions_are_adopted_whole(tmp_path: Path, url: str) -> None:
    """What ``doctor`` does with a linked worktree's own sessions: found, and with
    ``move`` brought in (record as an import brings it, other files to this
    host's directory) unless the database has the id or a writer holds it."""
    import fcntl

    worktree = SessionManager(tmp_path / "worktree")
    stray = worktree.create_session("made in a worktree", git_context=GIT)
    worktree.transition_state(stray.session_id, SessionStatus.PLANNING)
    stray = worktree.update_session(stray.session_id, {"statistics": {"total_tasks": 2}})
    folder = worktree.sessions_dir / stray.session_id
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "one.json").write_text("{}")
    twin = worktree.create_session("also here", git_context=GIT)
    busy = worktree.create_session("being written", git_context=GIT)
    manager = SessionManager(tmp_path / "host", store=url)
    manager.store._put(twin)  # type: ignore[attr-defined]

    seen = manager.store.adopt_sessions(worktree.sessions_dir, move=False)  # type: ignore[attr-defined]
    assert sorted(seen.found) == sorted([stray.session_id, twin.session_id, busy.session_id])
    assert (seen.duplicates, seen.moved) == ([twin.session_id], [])
    with pytest.raises(FileNotFoundError):
        manager.get_session(stray.session_id)

    lock = (worktree.sessions_dir / busy.session_id / ".lock").open("a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        moved = manager.store.adopt_sessions(worktree.sessions_dir, move=True)  # type: ignore[attr-defined]
    finally:
        lock.close()
    assert (moved.moved, moved.duplicates) == ([stray.session_id], [twin.session_id])
    assert manager.get_session(stray.session_id) == stray
    assert not folder.exists()
    local = manager.store.session_directory(stray.session_id)  # type: ignore[attr-defined]
    assert (local / "checkpoints" / "one.json").read_text() == "{}"
    assert not (local / ".lock").exists()
    assert (worktree.sessions_dir / twin.session_id).is_dir()  # never overwritten
    again = manager.store.adopt_sessions(worktree.sessions_dir, move=True)  # type: ignore[attr-defined]
    assert again.moved == [busy.session_id]
    assert manager.get_session(busy.session_id) == busy
