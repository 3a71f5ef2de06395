"""The stores every contract test runs against, and how a test asks for a capability.

A store joins the suite by adding one entry to ``STORES``: a name and a
function that opens a manager on that store for a fresh temporary root.
A test that needs an optional capability marks itself
``@pytest.mark.needs(Capability.X)``; it is then generated only for the
stores that declare it (never skipped at run time).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from maestro import Capability, SessionManager
from tests.conftest import Clock

#: Opens a manager on the store rooted at a directory (keyword arguments pass through).
OpenManager = Callable[..., SessionManager]


def _file(root: Path, **kwargs: Any) -> SessionManager:
    return SessionManager(root, **kwargs)


def _file_without_index(root: Path, **kwargs: Any) -> SessionManager:
    return SessionManager(root, index=False, **kwargs)


STORES: dict[str, OpenManager] = {
    "file": _file,
    "file-noindex": _file_without_index,
}


def _declared(name: str, root: Path) -> frozenset[Capability]:
    """What a store declares (opening a manager creates nothing on disk)."""
    return STORES[name](root).store.capabilities


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "needs(capability): run only on stores that declare the capability"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "store_name" not in metafunc.fixturenames:
        return
    needed = {
        Capability(arg) for mark in metafunc.definition.iter_markers("needs") for arg in mark.args
    }
    probe = Path(metafunc.config.rootpath) / ".pytest-probe-does-not-exist"
    names = [name for name in STORES if needed <= _declared(name, probe)]
    metafunc.parametrize("store_name", names)


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
