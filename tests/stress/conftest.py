"""Sizes for the stress tests: small in CI, large with ``MAESTRO_STRESS=full``.

Every stress test takes its counts from :func:`size`, so one variable scales
the whole suite::

    pytest tests/stress                      # CI size, a minute or so
    MAESTRO_STRESS=full pytest tests/stress  # the long run
"""

from __future__ import annotations

import os

import pytest

FULL = os.environ.get("MAESTRO_STRESS", "").lower() == "full"


def size(small: int, full: int) -> int:
    """``small`` normally, ``full`` when ``MAESTRO_STRESS=full``."""
    return full if FULL else small


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/stress/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.stress)
