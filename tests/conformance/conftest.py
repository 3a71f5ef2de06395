"""The stores every contract test runs against, and how a test asks for a capability.

A store joins the suite by adding one entry to ``STORES``: a name and a
function that opens a manager on that store for a fresh temporary root.
A test that needs an optional capability marks itself
``@pytest.mark.needs(Capability.X)``; it is then generated only for the
stores that declare it (never skipped at run time).  A test that needs an
unreadable record marks itself ``@pytest.mark.corruptible``: it is generated
for the stores that can hold one, those with an entry in ``CORRUPT`` (a
function that puts bytes in place of a session's stored record).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from maestro import Capability, SessionManager
from maestro.stores.memory import MemoryStore
from tests.conftest import Clock

#: Opens a manager on the store rooted at a directory (keyword arguments pass through).
OpenManager = Callable[..., SessionManager]


def _file(root: Path, **kwargs: Any) -> SessionManager:
    return SessionManager(root, **kwargs)


def _file_without_index(root: Path, **kwargs: Any) -> SessionManager:
    return SessionManager(root, index=False, **kwargs)


#: One memory store per root, for the test that made it: re-opening a manager
#: on the same root finds the same sessions, as with the other stores.
_memory_stores: dict[Path, MemoryStore] = {}


def _memory(root: Path, *, lock_timeout: float = 10.0, **kwargs: Any) -> SessionManager:
    store = _memory_stores.get(root)
    if store is None:
        store = _memory_stores[root] = MemoryStore(lock_timeout=lock_timeout)
    return SessionManager(root, store=store, **kwargs)


def _postgres(root: Path, **kwargs: Any) -> SessionManager:
    """The test database, one project per root (skips, or fails under CI, without a server)."""
    from tests.postgres_server import store_url

    return SessionManager(root, store=store_url(root), **kwargs)


STORES: dict[str, OpenManager] = {
    "file": _file,
    "file-noindex": _file_without_index,
    "memory": _memory,
    "postgres": _postgres,
}


def _corrupt_file(manager: SessionManager, session_id: str, raw: bytes) -> None:
    (manager.sessions_dir / session_id / "metadata.json").write_bytes(raw)


#: Puts raw bytes in place of a session's record, for stores that can hold one.
CORRUPT: dict[str, Callable[[SessionManager, str, bytes], None]] = {
    "file": _corrupt_file,
    "file-noindex": _corrupt_file,
}


def _declared(name: str, root: Path) -> frozenset[Capability]:
    """What a store declares (opening a manager creates nothing on disk)."""
    if name == "postgres":  # known without a server, so that collection needs none
        from maestro.stores.postgres import PostgresStore

        return PostgresStore.capabilities
    return STORES[name](root).store.capabilities


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(capability): run only on stores that declare the capability"
    )
    config.addinivalue_line(
        "markers", "corruptible: run only on stores that can hold an unreadable record"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_name" not in metafunc.fixturenames:
        return
    needed = {
        Capability(arg) for mark in metafunc.definition.iter_markers("needs") for arg in mark.args
    }
    probe = Path(metafunc.config.rootpath) / ".pytest-probe-does-not-exist"
    names = [name for name in STORES if needed <= _declared(name, probe)]
    if metafunc.definition.get_closest_marker("corruptible") is not None:
        names = [name for name in names if name in CORRUPT]
    metafunc.parametrize("store_name", names)


@pytest.fixture(autouse=True)
def _forget_memory_stores() -> Iterator[None]:
    yield
    _memory_stores.clear()


@pytest.fixture
def corrupt(store_name: str) -> Callable[[SessionManager, str, bytes], None]:
    """Put raw bytes in place of a session's record (only in ``corruptible`` tests)."""
    return CORRUPT[store_name]


@pytest.fixture
def open_manager(store_name: str, tmp_path: Path, clock: Clock) -> Callable[..., SessionManager]:
    """Open (or re-open) a manager on this test's store; every call shares one root."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)

    def opener(**kwargs: Any) -> SessionManager:
        kwargs.setdefault("clock", clock)
        return STORES[store_name](root, **kwargs)

    return opener


@pytest.fixture
def manager(open_manager: Callable[..., SessionManager]) -> SessionManager:
    return open_manager()
