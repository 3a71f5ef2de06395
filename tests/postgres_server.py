"""The PostgreSQL server the tests use, and a fresh database per test run.

``MAESTRO_TEST_POSTGRES`` is the admin URL (default: the local server, user
``postgres``).  The first test that needs the server creates a database with
a random name; it is dropped when the run ends.  Its URL is put in the
environment (``MAESTRO_TEST_POSTGRES_URL``) so that processes the tests
start use the same database.  Without a server the tests skip with a
message, except under ``CI=true``, where they fail.

Tests are isolated from each other by project: each test root is its own
project (a hash of its path), which also puts the project scoping of every
query and of the change feed under test.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ADMIN_URL = os.environ.get("MAESTRO_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
URL_VARIABLE = "MAESTRO_TEST_POSTGRES_URL"

_state: dict[str, str] = {}


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL server not available ({reason}); set MAESTRO_TEST_POSTGRES"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: the PostgreSQL tests must run)")
    pytest.skip(message)


def database_url() -> str:
    """The URL of this run's test database, made on first use (skips without a server)."""
    inherited = os.environ.get(URL_VARIABLE)
    if inherited:
        return inherited
    if "error" in _state:
        _unavailable(_state["error"])
    if "url" in _state:
        return _state["url"]
    try:
        import psycopg
    except ImportError:
        _state["error"] = "psycopg is not installed"
        _unavailable(_state["error"])
    name = "maestro_test_" + secrets.token_hex(6)
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as error:
        _state["error"] = str(error).strip().splitlines()[0] if str(error).strip() else "error"
        _unavailable(_state["error"])
    url = _with_database(ADMIN_URL, name)
    _state["url"] = url
    os.environ[URL_VARIABLE] = url
    atexit.register(_drop, name)
    return url


def _drop(name: str) -> None:
    import psycopg

    from maestro.stores import postgres

    postgres._close_all()
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass  # a test database left behind is harmless, and named as such


def drop_test_database() -> None:
    """Drop this run's database now (the end of the test session)."""
    url = _state.pop("url", None)
    if url is not None:
        os.environ.pop(URL_VARIABLE, None)
        _drop(urlsplit(url).path.lstrip("/"))


def project_of(root: Path) -> str:
    """The project a test root stands for: its own, so tests never see each other."""
    return "test-" + hashlib.sha256(str(root).encode()).hexdigest()[:16]


def store_url(root: Path, **parameters: str) -> str:
    """The store URL of the test database for the project of ``root``."""
    query = "&".join(f"{k}={v}" for k, v in {"project": project_of(root), **parameters}.items())
    return f"{database_url()}?{query}"
