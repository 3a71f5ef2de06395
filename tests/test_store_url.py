"""Stores chosen by URL: the library's ``open_store``, ``SessionManager(store=)``, ``--store``."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from maestro import (
    FileSessionStore,
    SessionManager,
    SessionValidationError,
)
from maestro.cli import cli
from maestro.errors import StoreUnavailableError
from maestro.stores import open_store, parse_store_url
from maestro.stores.memory import MemoryStore

from .conftest import GIT


def test_a_plain_path_and_file_urls_are_the_file_store_of_that_root(tmp_path: Path) -> None:
    for url in (str(tmp_path), f"file:{tmp_path}", f"file://{tmp_path}", tmp_path):
        store = open_store(url)
        assert isinstance(store, FileSessionStore)
        assert store.sessions_dir == tmp_path / ".flow" / "maestro" / "sessions"
        assert store.index is not None and store.durable
    manager = SessionManager(store=f"file:{tmp_path}")
    assert manager.repo_root == tmp_path and manager.sessions_dir == store.sessions_dir
    sid = manager.create_session("x", git_context=GIT).session_id
    assert SessionManager(tmp_path).get_session(sid).session_id == sid


def test_a_relative_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_store_url("here").root == tmp_path / "here"
    assert parse_store_url("file:here").root == tmp_path / "here"


def test_file_url_parameters_turn_the_index_and_fsyncs_off(tmp_path: Path) -> None:
    store = open_store(f"file:{tmp_path}?index=off&durable=off")
    assert isinstance(store, FileSessionStore)
    assert store.index is None and not store.durable
    # "off" wins over a keyword left at its default
    store = open_store(f"file:{tmp_path}?index=0", index=True)
    assert isinstance(store, FileSessionStore) and store.index is None
    with pytest.raises(SessionValidationError, match="unknown file: store URL parameter"):
        open_store(f"file:{tmp_path}?colour=blue")
    with pytest.raises(SessionValidationError, match="on or off"):
        open_store(f"file:{tmp_path}?index=maybe")


def test_each_memory_url_is_a_fresh_store_and_a_name_is_shared(tmp_path: Path) -> None:
    first, second = SessionManager(store="memory:"), SessionManager(store="memory:")
    assert isinstance(first.store, MemoryStore) and first.store is not second.store
    first.create_session("x", git_context=GIT)
    assert second.query_sessions() == []
    name = f"memory:{tmp_path.name}"
    writer, reader = SessionManager(store=name), SessionManager(store=name)
    sid = writer.create_session("shared", git_context=GIT).session_id
    assert [s.session_id for s in reader.query_sessions()] == [sid]


def test_unknown_schemes_are_refused_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(SessionValidationError) as caught:
        SessionManager(store="s3://bucket/secret-key")
    message = str(caught.value)
    assert "'s3'" in message
    for known in ("file:", "memory:", "postgresql://"):
        assert known in message
    assert "secret-key" not in message
    with pytest.raises(SessionValidationError, match="non-empty"):
        open_store("")


def test_postgresql_urls_open_the_postgresql_store(tmp_path: Path) -> None:
    # Nothing listens on port 1: the store is recognised, opened, and says so
    # in one typed error that keeps the password to itself.
    for url in (
        "postgresql://maestro:hunter2@127.0.0.1:1/sessions?connect_timeout=2",
        "postgres://127.0.0.1:1/sessions?connect_timeout=2",
    ):
        with pytest.raises(StoreUnavailableError) as caught:
            SessionManager(tmp_path, store=url)
        assert caught.value.reason == "unreachable"
        assert "cannot be reached" in str(caught.value)
        assert "hunter2" not in str(caught.value)
    assert parse_store_url("postgres://db/x?project=a").scheme == "postgresql"
    with pytest.raises(SessionValidationError, match="cannot be used with a postgresql"):
        open_store("postgresql://127.0.0.1:1/x", retention=5)


def test_file_store_options_are_refused_by_other_stores(tmp_path: Path) -> None:
    for options in ({"index": False}, {"durable": False}, {"allow_symlinked_root": True}):
        with pytest.raises(SessionValidationError, match="cannot be used with a memory: store"):
            SessionManager(store="memory:", **options)  # type: ignore[arg-type]
    with pytest.raises(SessionValidationError, match="retention"):
        open_store(f"file:{tmp_path}", retention=5)
    # Their defaults ask nothing of the memory store.
    assert isinstance(open_store("memory:", durable=True, index=True), MemoryStore)
    # A store object carries its own options: none is dropped on the floor.
    with pytest.raises(SessionValidationError, match="pass them to the store"):
        SessionManager(store=MemoryStore(), lock_timeout=1.0)
    with pytest.raises(SessionValidationError, match="pass them to the store"):
        SessionManager(store=MemoryStore(), index=False)


def test_lock_timeout_applies_to_every_store(tmp_path: Path) -> None:
    memory = SessionManager(store="memory:", lock_timeout=0.25).store
    assert isinstance(memory, MemoryStore) and memory.lock_timeout == 0.25
    files = SessionManager(store=f"file:{tmp_path}", lock_timeout=0.25).store
    assert isinstance(files, FileSessionStore) and files.lock_timeout == 0.25


def test_a_file_url_and_another_repo_root_do_not_mix(tmp_path: Path) -> None:
    with pytest.raises(SessionValidationError, match="different roots"):
        SessionManager(tmp_path / "a", store=f"file:{tmp_path / 'b'}")
    assert SessionManager(tmp_path, store=f"file:{tmp_path}").repo_root == tmp_path


# ---------------------------------------------------------------- the command line


def invoke(*args: str, **env: str | None) -> Result:
    extra = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}
    clean = {"MAESTRO_ROOT": None, "MAESTRO_STORE": None, "NO_COLOR": "1", "COLUMNS": "80"}
    return CliRunner(**extra).invoke(cli, list(args), env={**clean, **env})


def listed(result: Result) -> list[str]:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return [session["session_id"] for session in json.loads(result.stdout)]


def test_store_option_and_variable_win_over_root(tmp_path: Path) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    mine = SessionManager(here).create_session("here", git_context=GIT).session_id
    theirs = SessionManager(there).create_session("there", git_context=GIT).session_id
    assert listed(invoke("--root", str(here), "--json", "list")) == [mine]
    assert listed(invoke("--root", str(here), "--store", str(there), "--json", "list")) == [theirs]
    assert listed(
        invoke("--json", "list", MAESTRO_ROOT=str(here), MAESTRO_STORE=f"file:{there}")
    ) == [theirs]
    assert listed(invoke("--root", str(here), "--store", "memory:", "--json", "list")) == []
    # an empty variable is no choice at all
    assert listed(invoke("--root", str(here), "--json", "list", MAESTRO_STORE="")) == [mine]


def test_the_command_line_reports_a_bad_store_url(tmp_path: Path) -> None:
    result = invoke("--store", "mongodb://x", "list")
    assert result.exit_code == 1
    assert "unknown store URL scheme 'mongodb'" in result.stderr
    assert "Traceback" not in result.stderr
    result = invoke("--store", "postgresql://127.0.0.1:1/x?connect_timeout=2", "list")
    assert result.exit_code == 1 and "cannot be reached" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_create_and_show_through_a_file_url_without_the_index(tmp_path: Path) -> None:
    url = f"file:{tmp_path}?index=off"
    created = invoke("--store", url, "--json", "create", "Add OAuth login")
    assert created.exit_code == 0, created.stderr
    sid = json.loads(created.stdout)["session_id"]
    assert (tmp_path / ".flow" / "maestro" / "sessions" / sid / "metadata.json").exists()
    assert not (tmp_path / ".flow" / "maestro" / "index.sqlite3").exists()
    assert listed(invoke("--store", url, "--json", "list")) == [sid]
    shown = invoke("--store", url, "show", sid[:8])
    assert shown.exit_code == 0 and "Add OAuth login" in shown.stdout
