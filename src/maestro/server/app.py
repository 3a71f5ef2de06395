"""The ASGI application: the API, the dashboard, ``/healthz`` and ``/openapi.json``.

``create_app(manager)`` builds it over any :class:`SessionManager`; the
:class:`~maestro.server.security.Guard` wraps all of it.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException

from maestro import errors
from maestro.manager import SessionManager
from maestro.netpolicy import allowed_host_names, check_bind
from maestro.server import schemas
from maestro.server.api import json_response, router
from maestro.server.errors import describe, error_body
from maestro.server.events import FeedHub
from maestro.server.pagecache import PageCache, serve_kept
from maestro.server.security import Guard, GuardSettings

__all__ = ["create_app", "server"]

#: Largest request body accepted, in bytes.
MAX_BODY = 1024 * 1024
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0

_STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
#: Dashboard pages: every one is the same document, its script draws the page.
_PAGES = ("/", "/overview", "/sessions/{session_id}")


def _asset(name: str) -> bytes:
    return resources.files("maestro.server").joinpath("static", name).read_bytes()


def _error(status: int, kind: str, message: str) -> Response:
    return Response(
        orjson.dumps(error_body(kind, message, status)),
        status_code=status,
        media_type="application/json",
        headers={"cache-control": "no-store"},
    )


def _validation_message(error: RequestValidationError) -> str:
    """Where and what, never the value given (it may be large or hostile)."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        if item.get("type") == "json_invalid":
            parts.append("the body is not valid JSON")
        else:
            parts.append(f"{where}: {item.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(
    manager: SessionManager,
    *,
    host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    token: str | None = None,
    keepalive: float = KEEPALIVE,
    max_body: int = MAX_BODY,
) -> Guard:
    """The server over ``manager``, guarded as the bind address ``host`` requires.

    ``allowed_hosts`` adds ``Host`` names to the loopback ones (those a
    proxy forwards); ``token`` is then required of every request but
    ``/healthz``.  A ``host`` beyond loopback without a token is refused
    (``SessionValidationError``), as ``maestro serve`` refuses it.
    """
    check_bind(host, token)
    hub = FeedHub(manager)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        hub.close()

    app = FastAPI(
        title="maestro",
        summary="Sessions of the Maestro orchestrator: read, steer and follow them live.",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.manager = manager
    app.state.hub = hub
    app.state.keepalive = keepalive
    pages = PageCache(manager)
    app.state.pages = pages
    app.include_router(router)

    @app.exception_handler(errors.SessionError)
    async def session_error(request: Request, error: errors.SessionError) -> Response:
        status, body = describe(error)
        headers = {"cache-control": "no-store"}
        if status == 503:
            headers["retry-after"] = "1"
        return Response(
            orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        return _error(400, "RequestValidationError", _validation_message(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        kinds = {404: "NotFoundError", 405: "MethodNotAllowedError"}
        kind = kinds.get(error.status_code, "RequestError")
        return _error(error.status_code, kind, str(error.detail))

    @app.get(
        "/healthz",
        summary="Whether the server is up",
        responses=schemas.responses(200, schemas.HEALTH),
    )
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    page = _asset("index.html")
    for path in _PAGES:
        app.add_api_route(
            path,
            _html(page),
            methods=["GET"],
            include_in_schema=False,
            name=f"page {path}",
        )
    for name, media_type in _STATIC.items():
        app.add_api_route(
            f"/static/{name}",
            _file(_asset(name), media_type),
            methods=["GET"],
            include_in_schema=False,
            name=f"static {name}",
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            for methods in document.get("paths", {}).values():
                for operation in methods.values():
                    operation.get("responses", {}).pop("422", None)
            found = document.setdefault("components", {}).setdefault("schemas", {})
            found.pop("HTTPValidationError", None)
            found.pop("ValidationError", None)
            found.update(schemas.components())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    settings = GuardSettings(
        allowed_hosts=allowed_host_names(host, allowed_hosts), token=token, max_body=max_body
    )
    guard = Guard(serve_kept(app, pages, json_response), settings)
    guard.on_shutdown.append(hub.close)
    return guard


def server(
    app: Guard, *, host: str, port: int, on_start: Callable[[int], None] | None = None
) -> uvicorn.Server:
    """A uvicorn server for ``app`` that ends its event streams when it stops.

    Uvicorn waits for running responses before it shuts an application
    down, and an event stream never finishes by itself: the streams are
    ended first, so Ctrl-C stops the server at once.  ``on_start`` is
    called with the port listened on once the server accepts connections.
    """

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and on_start is not None and self.servers:
                on_start(self.servers[0].sockets[0].getsockname()[1])

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for stop in app.on_shutdown:
                stop()
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        proxy_headers=False,
        server_header=False,
    )
    return Server(config)


def _html(body: bytes) -> Any:
    def page() -> Response:
        return Response(body, media_type="text/html; charset=utf-8")

    return page


def _file(body: bytes, media_type: str) -> Any:
    def asset() -> Response:
        return Response(body, media_type=media_type, headers={"cache-control": "no-cache"})

    return asset
