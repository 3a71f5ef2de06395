"""Names of the file store's layout, and the smallest helper its modules share."""

from __future__ import annotations

import os

__all__ = ["METADATA"]

METADATA = "metadata.json"


def _close(fd: int) -> None:
    try:  # noqa: SIM105 - not contextlib.suppress: this runs several times in every write
        os.close(fd)
    except OSError:
        pass
