"""``maestro serve``: the HTTP API and the dashboard (the ``server`` extra)."""

from __future__ import annotations

import contextlib

import click

from maestro.cli.context import _EPILOG, EXIT_USAGE, CommandError, Context, handled, pass_ctx
from maestro.cli.group import cli
from maestro.cli.options import _Number
from maestro.netpolicy import check_bind, is_loopback, resolve_token

__all__ = ["serve"]


@cli.command(epilog=_EPILOG)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; any but loopback needs a token.",
)
@click.option(
    "--port", type=_Number(minimum=0), default=8765, show_default=True, help="Port (0: any free)."
)
@click.option(
    "--token",
    metavar="TOKEN",
    help="Require this bearer token (default: $MAESTRO_TOKEN). Needed off loopback.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer to this Host name, as a proxy forwards it (repeatable).",
)
@pass_ctx
@handled
def serve(
    ctx: Context,
    host: str,
    port: int,
    token: str | None,
    allowed_hosts: tuple[str, ...],
) -> None:
    """Serve the HTTP API (/api/v1, /openapi.json) and the live dashboard.

    Bound to loopback by default: only this machine can connect, and only
    through a loopback name (a foreign Host header is refused, so DNS
    rebinding fails).  For a team, bind another address with a token: every
    request then needs "Authorization: Bearer TOKEN"; a browser opens the
    printed /login URL once.  Behind a proxy, name the host it forwards with
    --allowed-host.  Ctrl-C stops.

    \b
    Example:
      maestro serve
      maestro serve --port 9000
      maestro serve --host 0.0.0.0 --token "$(cat token)" --allowed-host maestro.example.org
    """
    try:
        from maestro.server import create_app
        from maestro.server import server as make_server
    except ImportError as error:
        raise CommandError(
            f"maestro serve needs the server extra ({error.name} is missing): "
            "pip install 'maestro-sessions[server]'",
            EXIT_USAGE,
        ) from None
    token = resolve_token(token)
    manager = ctx.manager()
    check_bind(host, token)
    app = create_app(manager, host=host, allowed_hosts=allowed_hosts, token=token)

    def announce(bound_port: int) -> None:
        shown = "localhost" if is_loopback(host) else host
        if ":" in shown:
            shown = f"[{shown}]"
        url = f"http://{shown}:{bound_port}/"
        if token is not None:
            url += "login?token=" + token
        click.echo(f"maestro: serving {manager.repo_root} at {url}  (Ctrl-C stops)", err=True)

    server = make_server(app, host=host, port=port, on_start=announce)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server stops
        server.run()
    if not server.started:
        raise CommandError(f"could not listen on {host}:{port}")
