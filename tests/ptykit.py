"""Reading what a command writes to a pseudo-terminal, for tests that run one."""

from __future__ import annotations

import os
import select


def read_terminal(leader: int, *, wait: float = 60) -> bytes:
    """Everything written to the pseudo-terminal whose leader side is ``leader``,
    up to the moment its last writer closes it (closing ``leader`` then)."""
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], wait)
            assert ready, f"the command wrote nothing for {wait:g} s"
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the command closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    return b"".join(chunks)
