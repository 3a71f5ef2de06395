"""The guard in front of every route, as plain ASGI so it also covers event streams.

In order, for each HTTP request:

1. ``Host`` must be a name this server answers to (DNS rebinding: a page on
   another site whose name was re-pointed at 127.0.0.1 sends its own name).
2. With a token, the request must carry it: ``Authorization: Bearer TOKEN``,
   or the cookie a browser gets from ``/login?token=TOKEN`` (an event stream
   cannot send headers).  ``/healthz`` needs none.
3. A state-changing method (anything but GET, HEAD, OPTIONS) with an
   ``Origin`` header must come from this server's own origin; no ``Origin``
   at all (curl, scripts) is allowed.
4. A body larger than the limit is refused with 413 before the app reads it.

Every answer, refused or not, carries ``X-Content-Type-Options: nosniff``,
``X-Frame-Options: DENY``, a strict content security policy and
``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from maestro.netpolicy import host_allowed, token_matches
from maestro.server.errors import error_body

__all__ = ["COOKIE", "SECURITY_HEADERS", "Guard", "GuardSettings"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The cookie that carries the token for a browser.
COOKIE = "maestro_token"

#: Headers set on every answer.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_OPEN_PATHS = frozenset({"/healthz"})


@dataclass(frozen=True)
class GuardSettings:
    """Who may talk to the server: ``Host`` names, token, largest body in bytes."""

    allowed_hosts: frozenset[str]
    token: str | None = None
    max_body: int = 1024 * 1024


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def _answer(
    send: Send,
    status: int,
    kind: str,
    message: str,
    extra_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    body = orjson.dumps(error_body(kind, message, status))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *SECURITY_HEADERS,
                *extra_headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _same_origin(origin: str, host: str | None) -> bool:
    """Whether ``Origin`` names the site the request was sent to (its ``Host``)."""
    if host is None or origin == "null":
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()


class Guard:
    """ASGI middleware applying :class:`GuardSettings` (see the module docstring)."""

    def __init__(self, app: ASGIApp, settings: GuardSettings) -> None:
        self.app = app
        self.settings = settings
        #: Called when the server starts shutting down (ends the event streams).
        self.on_shutdown: list[Callable[[], None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.settings
        host = _header(scope, b"host")
        if not host_allowed(host, settings.allowed_hosts):
            await _answer(
                send,
                403,
                "HostNotAllowedError",
                "this server does not answer to that Host name; "
                "start it with --allowed-host NAME to add a name a proxy forwards",
            )
            return
        path: str = scope.get("path", "")
        method: str = scope.get("method", "GET")
        if settings.token is not None and path not in _OPEN_PATHS:
            if path == "/login" and method == "GET":
                await self._login(scope, send)
                return
            if not self._authorized(scope):
                await _answer(
                    send,
                    401,
                    "UnauthorizedError",
                    "a token is required: send Authorization: Bearer TOKEN, "
                    "or open /login?token=TOKEN in a browser",
                    ((b"www-authenticate", b'Bearer realm="maestro"'),),
                )
                return
        if method not in _SAFE_METHODS:
            origin = _header(scope, b"origin")
            if origin is not None and not _same_origin(origin, host):
                await _answer(
                    send, 403, "CrossOriginError", "a change from another site is refused"
                )
                return
            length = _header(scope, b"content-length")
            if length is not None and length.strip().isdigit() and int(length) > settings.max_body:
                await self._too_large(send)
                return
            body = await self._read_body(receive)
            if body is None:
                await self._too_large(send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, _with_headers(send))

    def _authorized(self, scope: Scope) -> bool:
        token = self.settings.token
        assert token is not None
        if token_matches(_header(scope, b"authorization"), token):
            return True
        cookie_header = _header(scope, b"cookie")
        if not cookie_header:
            return False
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(cookie_header)
        except Exception:  # noqa: BLE001 - a malformed cookie header carries no token
            return False
        morsel = cookies.get(COOKIE)
        return morsel is not None and token_matches(f"Bearer {morsel.value}", token)

    async def _login(self, scope: Scope, send: Send) -> None:
        """``/login?token=T``: a browser trades the token for a cookie, then opens ``/``."""
        token = self.settings.token
        assert token is not None
        query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
        given = (query.get("token") or [""])[0]
        if not token_matches(f"Bearer {given}", token):
            await _answer(send, 401, "UnauthorizedError", "wrong or missing token")
            return
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = f"{COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict{secure}"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", b"/"),
                    (b"set-cookie", cookie.encode("latin-1")),
                    (b"cache-control", b"no-store"),
                    (b"content-length", b"0"),
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or ``None`` once it passes the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.settings.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        limit = self.settings.max_body
        await _answer(
            send,
            413,
            "RequestTooLargeError",
            f"the request body is larger than {limit} bytes; nothing was stored",
            ((b"connection", b"close"),),
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the client sends next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {bytes(key).lower() for key, _ in message.get("headers", ())}
            extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return wrapped
