"""What the server tests share: an in-process client and a real server in a thread."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

with warnings.catch_warnings():
    # Starlette's test client asks for a newer httpx; the one installed works.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from maestro import SessionManager
from maestro.server import create_app
from maestro.server import server as make_server

__all__ = ["BASE", "TestClient", "client", "live_server"]

#: The address the in-process client claims to reach (a loopback Host).
BASE = "http://127.0.0.1:8765"


def client(manager: SessionManager, **options: Any) -> TestClient:
    """An in-process client of a server over ``manager`` (no socket)."""
    return TestClient(create_app(manager, **options), base_url=BASE)


@contextmanager
def live_server(manager: SessionManager, **options: Any) -> Iterator[str]:
    """A real server on a free loopback port, for streams and browsers; yields its URL."""
    server = make_server(create_app(manager, **options), host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
