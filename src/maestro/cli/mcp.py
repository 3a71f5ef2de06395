"""``maestro mcp``: serve the sessions to agents over the Model Context Protocol.

The SDK is imported inside the command only: the rest of the command line
starts without it, and works without the ``mcp`` extra installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from maestro.cli.context import (
    EXIT_USAGE,
    CommandError,
    Context,
    _install_log_handler,
    handled,
    pass_ctx,
)
from maestro.cli.group import cli
from maestro.netpolicy import (
    allowed_host_names,
    check_bind,
    host_allowed,
    is_loopback,
    resolve_token,
    token_matches,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["mcp_command"]

DEFAULT_PORT = 8766


@cli.command(
    "mcp",
    epilog="\b\nExit codes: 0 ok (the client closed the connection), 1 error, 2 usage.",
)
@click.option("--http", "over_http", is_flag=True, help="Serve streamable HTTP, not stdio.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind with --http; any non-loopback address needs a token.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port to bind with --http.",
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="Bearer token HTTP clients must send (default: $MAESTRO_TOKEN); "
    "required when --host is not a loopback address.",
)
@click.option(
    "--allowed-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="With --http, also answer requests whose Host is NAME (the name clients use to "
    "reach a server bound to 0.0.0.0, say); repeatable.",
)
@click.option(
    "--allow-delete", is_flag=True, help="Offer the delete_session tool (off by default)."
)
@pass_ctx
@handled
def mcp_command(
    ctx: Context,
    over_http: bool,
    host: str,
    port: int,
    token: str | None,
    allow_hosts: tuple[str, ...],
    allow_delete: bool,
) -> None:
    """Serve the sessions to agents over the Model Context Protocol.

    By default over stdio: an MCP client starts this command and speaks
    JSON-RPC on its stdin and stdout (nothing else is written to stdout;
    warnings and logs go to stderr).  With --http, over streamable HTTP at
    http://HOST:PORT/mcp, loopback only unless a token is given.

    Tools: list_sessions, search_sessions, get_session, session_timeline,
    stats, find_stale_sessions, create_session, transition_session,
    pause_session, resume_session, update_session, increment_statistics,
    heartbeat (and delete_session with --allow-delete).  Resources:
    maestro://sessions/{id} and maestro://sessions/{id}/timeline, announced
    to listeners whenever the session changes, from any process.

    \b
    Example:
      maestro mcp
      maestro --root ~/src/app mcp --allow-delete
      maestro mcp --http --port 8766
      maestro mcp --http --host 0.0.0.0 --allowed-host build-box --token s3cret
    """
    try:
        from maestro.mcp.server import build_server
    except ImportError:
        raise CommandError(
            "maestro mcp needs the MCP SDK: pip install 'maestro-sessions[mcp]'"
        ) from None
    token = resolve_token(token)
    if over_http:
        check_bind(host, token)
    elif token is not None and _on_command_line("token"):
        raise CommandError("--token applies to --http only", EXIT_USAGE)
    manager = ctx.manager()
    server = build_server(manager, allow_delete=allow_delete)
    with _logs_to_stderr():
        try:
            if over_http:
                _serve_http(server, host, port, token, allow_hosts)
            else:
                server.run("stdio")
        except KeyboardInterrupt:
            return  # Ctrl-C is how a server is stopped


def _on_command_line(name: str) -> bool:
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) is ParameterSource.COMMANDLINE


@contextmanager
def _logs_to_stderr() -> Iterator[None]:
    """While serving: every log line on stderr, once, and the SDK's routine ones left out.

    The library's warnings reach stderr through the command line's handler;
    the SDK puts a handler of its own on the root logger, which would print
    them a second time.  Put back as it was afterwards (the command may run
    inside a longer-lived process, a test runner's).
    """
    import logging

    _install_log_handler()  # logging is loaded now: the handler goes in at once
    library = logging.getLogger("maestro")
    quiet = [logging.getLogger(name) for name in ("mcp", "uvicorn", "httpx")]
    before = library.propagate, [logger.level for logger in quiet]
    logging.captureWarnings(True)
    library.propagate = False
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        library.propagate = before[0]
        for logger, level in zip(quiet, before[1], strict=True):
            logger.setLevel(level)


def _serve_http(
    server: Any, host: str, port: int, token: str | None, allow_hosts: tuple[str, ...]
) -> None:
    import uvicorn
    from mcp.server.transport_security import TransportSecuritySettings

    # The Host, Origin and token checks are the package's own (maestro.netpolicy),
    # the same for every network face; the SDK's Host check is left off.
    app = server.streamable_http_app(
        host=host,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    guarded = Guard(app, allowed_host_names(host, allow_hosts), token)
    where = f"[{host}]" if ":" in host else host
    click.echo(f"maestro mcp: serving http://{where}:{port}/mcp", err=True)
    if not is_loopback(host):
        click.echo("maestro mcp: clients must send 'Authorization: Bearer <token>'", err=True)
    uvicorn.run(guarded, host=host, port=port, log_level="warning")


class Guard:
    """ASGI middleware: the ``Host`` allow-list, a same-host ``Origin``, the bearer token."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str], token: str | None) -> None:
        self.app = app
        self.allowed = allowed
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope.get("headers", [])
        }
        refusal = self.refusal(headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        body = message.encode()
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-content-type-options", b"nosniff"),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def refusal(self, headers: dict[str, str]) -> tuple[int, str] | None:
        if not host_allowed(headers.get("host"), self.allowed):
            return 421, "unknown Host\n"
        origin = headers.get("origin")
        if origin is not None and not host_allowed(_origin_host(origin), self.allowed):
            return 403, "cross-origin request refused\n"
        if self.token is not None and not token_matches(headers.get("authorization"), self.token):
            return 401, "a bearer token is required\n"
        return None


def _origin_host(origin: str) -> str:
    """``http://localhost:8766`` → ``localhost:8766``; ``null`` stays unknown."""
    _, _, rest = origin.partition("://")
    return rest.split("/", 1)[0]
